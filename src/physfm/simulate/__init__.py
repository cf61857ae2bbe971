"""Offline simulators that write Well-format datasets.

>>> from physfm.simulate import SYSTEMS, generate
>>> sorted(SYSTEMS)  # doctest: +SKIP
['acoustic_wave', 'euler_multi_quadrants', 'euler_multi_quadrants_openBC',
 'gray_scott_reaction_diffusion', 'navier_stokes_3d', 'shear_flow']
>>> generate("shear_flow", "data/shear_flow", n_trajectories=10, resolution=(64, 128), n_steps=50)  # doctest: +SKIP

Every system lives in its own module and exposes a :class:`~physfm.simulate.base.SystemSpec`
(``SPEC``); :func:`generate` draws per-trajectory parameters from the system's parameter grid,
simulates in batches (on any torch device) and writes train/valid/test splits with
:func:`physfm.data.write_well_dataset`.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.splits import split_counts
from .base import Parameter, SystemSpec, check_resolution, grid_coordinates, grid_mesh
from .gray_scott import simulate_gray_scott as gray_scott_reaction_diffusion
from .shear_flow import simulate_shear_flow

__all__ = [
    "SYSTEMS",
    "Parameter",
    "SystemSpec",
    "generate",
    "get_system",
    "gray_scott_reaction_diffusion",
    "grid_coordinates",
    "grid_mesh",
    "shear_flow",
    "simulate_system",
    "split_counts",
]

# One-trajectory shortcut ``physfm.simulate.shear_flow(reynolds=..., ...)``. Bound after the
# submodule import above, so the package attribute is the function, not the module (the module
# stays importable as ``physfm.simulate.shear_flow`` through ``sys.modules``).
shear_flow = simulate_shear_flow

_SYSTEM_MODULES = ("shear_flow", "gray_scott", "euler_multi_quadrants", "acoustic_wave", "navier_stokes_3d")


def _collect_systems() -> dict[str, SystemSpec]:
    systems: dict[str, SystemSpec] = {}
    for module_name in _SYSTEM_MODULES:
        module = importlib.import_module(f".{module_name}", __name__)
        # A module may publish several variants (e.g. periodic and open boundaries).
        for value in vars(module).values():
            if isinstance(value, SystemSpec):
                systems[value.name] = value
    return dict(sorted(systems.items()))


#: Registry of all simulated systems, by dataset name.
SYSTEMS: dict[str, SystemSpec] = _collect_systems()


def get_system(name: str) -> SystemSpec:
    """The :class:`SystemSpec` called ``name``, with a clear error for unknown names."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ValueError(f"system: got {name!r}, expected one of {sorted(SYSTEMS)}") from None


def simulate_system(
    name: str,
    params_batch: list[dict[str, Any]],
    resolution: Sequence[int] | str | None = None,
    n_steps: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Run one batch of system ``name`` in memory: ``{field: Tensor[traj, time, *space(, d)]}``."""
    system = get_system(name)
    return system.simulate(
        params_batch, check_resolution(system, resolution), n_steps, device, generator, progress, **kwargs
    )


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: got {value!r}, expected a positive integer")
    return int(value)




def _file_parameters(system: SystemSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Per-trajectory parameters stored as file attributes (The Well groups trajectories with
    equal attributes into one file). ``system.extra["file_parameters"]`` maps our names to The
    Well's attribute names; by default every numeric parameter except the IC ``seed``."""
    mapping = system.extra.get("file_parameters")
    if mapping is None:
        mapping = {k: k for k, v in params.items() if k != "seed" and isinstance(v, numbers.Real)}
    return {stored: params[ours] for ours, stored in mapping.items() if ours in params}


def _check_device(device: torch.device | str) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device: got {device!r}, expected a torch device such as 'cpu' or 'cuda' ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} asked for, but CUDA is not available on this machine; "
                         "use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device: {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s) (cuda:0 ... cuda:{torch.cuda.device_count() - 1})")
    return device


def generate(
    name: str,
    out: str | os.PathLike,
    n_trajectories: int = 8,
    resolution: Sequence[int] | str | None = None,
    n_steps: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    progress: bool = True,
    batch_size: int | None = None,
    overwrite: bool = False,
    **params: Any,
) -> Path:
    """Simulate ``n_trajectories`` of system ``name`` and write a Well-format dataset to ``out``.

    Args:
        name: a key of :data:`SYSTEMS`.
        out: dataset directory (``out/data/{train,valid,test}/*.hdf5`` + ``out/stats.yaml``),
            written atomically.
        n_trajectories: number of trajectories over all splits.
        resolution: grid points per axis, ``(Nx, Ny)`` or ``"NxxNy"``; default the system's.
        n_steps: stored time steps per trajectory (frames - 1); default the system's.
        seed: seeds the parameter draws and the random initial conditions; equal seeds give
            identical datasets.
        device: torch device for the simulation (``"cuda"`` for GPUs).
        split_fractions: train/valid/test fractions.
        progress: show tqdm progress bars.
        batch_size: trajectories simulated together (default ``min(n_trajectories, 16)``).
        overwrite: replace an existing ``out``.
        **params: fix any of the system's parameters (``reynolds=1e5``) for every trajectory;
            parameters not given are drawn per trajectory from the system's grid.

    Returns:
        ``Path(out)``.
    """
    from physfm.data import write_well_dataset  # deferred: the data package imports h5py etc.

    system = get_system(name)
    n_trajectories = _check_positive_int("n_trajectories", n_trajectories)
    batch_size = _check_positive_int("batch_size", min(n_trajectories, 16) if batch_size is None else batch_size)
    res = check_resolution(system, resolution)
    device = _check_device(device)
    counts = split_counts(n_trajectories, split_fractions)
    known = {p.name: p for p in system.parameters}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"parameters {unknown} are not parameters of {name!r}; expected some of {sorted(known)}"
        )
    for key, value in params.items():
        choices = known[key].choices
        if choices is not None and value not in choices:
            raise ValueError(f"{key}: got {value!r}, expected one of {list(choices)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"out: {out} already exists; pass overwrite=True (--overwrite) to replace it")
    from physfm.data.well_format import check_replaceable

    check_replaceable(out)  # before minutes of simulation, not after
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: got {seed!r}, expected an integer")

    generator = torch.Generator().manual_seed(int(seed))
    all_params = [
        system.resolve_parameters(p, params) for p in system.sample_parameters(n_trajectories, generator)
    ]

    chunks: list[dict[str, np.ndarray]] = []
    n_batches = math.ceil(n_trajectories / batch_size)
    for b in tqdm(range(n_batches), desc=f"simulate {name}", disable=not progress or n_batches == 1):
        batch = all_params[b * batch_size : (b + 1) * batch_size]
        batch_generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + b)
        fields = system.simulate(batch, res, n_steps, device, batch_generator, progress)
        chunks.append({k: v.detach().to("cpu", torch.float32).numpy() for k, v in fields.items()})
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    splits, sim_params, start = {}, {}, 0
    for split, count in counts.items():
        if count == 0:
            continue
        splits[split] = {k: v[start : start + count] for k, v in data.items()}
        sim_params[split] = [_file_parameters(system, p) for p in all_params[start : start + count]]
        start += count
    return write_well_dataset(
        out,
        dataset_name=system.name,
        splits=splits,
        dt=system.dt,
        coords=system.coordinates(res),
        periodic=dict(zip(system.axis_names, system.periodic, strict=True)),
        grid_type="cartesian",
        simulation_parameters=sim_params,
        overwrite=overwrite,
    )
