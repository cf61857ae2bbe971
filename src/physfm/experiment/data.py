"""The experiment's data: simulated once, then reused from a cache keyed by system and settings.

Each :class:`~physfm.experiment.presets.DataSpec` maps to ``<cache_dir>/<system>-<hash>``, where the hash
covers every setting that changes the data (system, trajectories, grid, steps, seed, splits) and the
physfm version. ``physfm.simulate.generate`` writes atomically, so a directory that exists is complete.

The in-domain pretraining set must not share a trajectory with the downstream set. shear_flow's initial
conditions are a deterministic function of its parameters, drawn from a finite grid, so two seeds can draw
the same parameters, i.e. the same trajectory. :func:`simulate_distinct` therefore draws the in-domain
parameter sets itself, skipping every set the downstream data holds, and simulates exactly those.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .presets import DataSpec

logger = logging.getLogger("physfm.experiment")

MAX_DRAW_ROUNDS = 20


def default_cache_dir() -> Path:
    """``$PHYSFM_CACHE/data``, else ``$XDG_CACHE_HOME/physfm/data``, else ``~/.cache/physfm/data``."""
    if os.environ.get("PHYSFM_CACHE"):
        return Path(os.environ["PHYSFM_CACHE"]).expanduser() / "data"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "physfm" / "data"


def cache_path(spec: DataSpec, cache_dir: str | os.PathLike) -> Path:
    """Where ``spec``'s dataset lives in ``cache_dir``."""
    from physfm import __version__

    key = json.dumps({**spec.cache_key(), "physfm": __version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{spec.system}-{digest}"


def simulate_cached(spec: DataSpec, cache_dir: str | os.PathLike, device: str = "cpu",
                    progress: bool = False) -> Path:
    """The dataset of ``spec``: from the cache, or simulated into it."""
    from physfm.simulate import generate

    path = cache_path(spec, cache_dir)
    if (path / "stats.yaml").is_file():
        logger.info("reusing %s data from %s", spec.system, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        generate(spec.system, path, n_trajectories=spec.n_trajectories, resolution=spec.resolution,
                 n_steps=spec.n_steps, seed=spec.seed, device=device, split_fractions=spec.split_fractions,
                 progress=progress, **spec.params)
    except ValueError:
        # Another experiment sharing the cache finished the same dataset first: use it.
        if not (path / "stats.yaml").is_file():
            raise
    return path


def parameter_sets(path: str | os.PathLike) -> set[str]:
    """The simulation-parameter sets of every file of a dataset, as canonical JSON strings."""
    from physfm.data import read_well_metadata

    metadata = read_well_metadata(path)
    return {json.dumps(_plain(p), sort_keys=True) for p in metadata.parameters.values()}


def _plain(value):
    """Parameters as JSON-able Python scalars (HDF5 attributes come back as NumPy types)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _file_parameters(spec, params: dict[str, Any]) -> dict[str, Any]:
    """Per-trajectory parameters as the files store them (as ``physfm.simulate.generate`` does)."""
    mapping = spec.extra.get("file_parameters")
    if mapping is None:
        mapping = {k: k for k, v in params.items() if k != "seed" and isinstance(v, numbers.Real)}
    return {stored: params[ours] for ours, stored in mapping.items() if ours in params}


def _simulate_parameter_sets(data: DataSpec, draws: list[dict[str, Any]], out: Path, device: str,
                             progress: bool, batch_size: int = 16) -> Path:
    """Simulate exactly the parameter sets ``draws`` and write them as ``data``'s splits into ``out``."""
    import numpy as np
    import torch

    from physfm.data import write_well_dataset
    from physfm.simulate import get_system, simulate_system, split_counts

    spec = get_system(data.system)
    chunks = []
    for start in range(0, len(draws), batch_size):
        # Seeded per batch as physfm.simulate.generate does, so equal draws give equal data.
        generator = torch.Generator().manual_seed(data.seed * 1_000_003 + start // batch_size)
        fields = simulate_system(data.system, draws[start:start + batch_size], resolution=data.resolution,
                                 n_steps=data.n_steps, device=device, generator=generator, progress=progress)
        chunks.append({k: v.detach().to("cpu", torch.float32).numpy() for k, v in fields.items()})
    arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    counts = split_counts(len(draws), data.split_fractions)
    splits, parameters, first = {}, {}, 0
    for split, count in counts.items():
        if count:
            splits[split] = {k: v[first:first + count] for k, v in arrays.items()}
            parameters[split] = [_file_parameters(spec, p) for p in draws[first:first + count]]
            first += count
    return write_well_dataset(out, dataset_name=spec.name, splits=splits, dt=spec.dt,
                              coords=spec.coordinates(data.resolution),
                              periodic=dict(zip(spec.axis_names, spec.periodic, strict=True)),
                              grid_type="cartesian", simulation_parameters=parameters)


def simulate_distinct(spec: DataSpec, cache_dir: str | os.PathLike, device: str = "cpu", progress: bool = False,
                      disjoint_from: str | os.PathLike | None = None) -> Path:
    """``spec``'s dataset with every trajectory distinct, and none in ``disjoint_from``'s data.

    Draws parameter sets from the system's grid with ``spec.seed`` (fixed parameters applied) and keeps
    those whose stored parameters (which fix a shear_flow trajectory) were neither drawn before nor occur
    in ``disjoint_from``: the datasets share no trajectory by construction, and a valid trajectory never
    repeats a train one (fixing a parameter can make two grid points equal)."""
    import torch

    from physfm.simulate import get_system

    path = cache_path(spec, cache_dir)
    if disjoint_from is not None:
        path = path.with_name(f"{path.name}-disjoint-from-{Path(disjoint_from).name}")
    if (path / "stats.yaml").is_file():
        logger.info("reusing %s data from %s", spec.system, path)
        return path
    system = get_system(spec.system)
    taken = parameter_sets(disjoint_from) if disjoint_from is not None else set()
    generator = torch.Generator().manual_seed(spec.seed)
    draws: list[dict[str, Any]] = []
    for _ in range(MAX_DRAW_ROUNDS):  # each round draws a fresh stretch of the grid
        for drawn in system.sample_parameters(spec.n_trajectories, generator):
            params = system.resolve_parameters(drawn, dict(spec.params))
            key = json.dumps(_plain(_file_parameters(system, params)), sort_keys=True)
            if key not in taken and len(draws) < spec.n_trajectories:
                taken.add(key)
                draws.append(params)
        if len(draws) == spec.n_trajectories:
            break
    else:
        raise ValueError(
            f"{spec.system}: only {len(draws)} distinct parameter sets are left (fixed {spec.params}, excluding "
            f"{disjoint_from}); {spec.n_trajectories} asked for. Lower n_trajectories or fix fewer parameters"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _simulate_parameter_sets(spec, draws, path, device, progress)
    except ValueError:
        if not (path / "stats.yaml").is_file():  # not a concurrent experiment finishing it first
            raise
    return path


def check_disjoint(paths: Iterable[Path]) -> None:
    """Raise if two datasets share a simulation-parameter set (used by the tests and the report)."""
    seen: dict[str, Path] = {}
    for path in paths:
        for params in parameter_sets(path):
            if params in seen:
                raise ValueError(f"datasets {seen[params]} and {path} share the trajectory with parameters {params}")
            seen[params] = path


__all__ = ["cache_path", "check_disjoint", "default_cache_dir", "parameter_sets", "simulate_cached",
           "simulate_distinct"]
