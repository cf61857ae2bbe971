"""The experiment's data: simulated once, then reused from a cache keyed by system and settings.

Each :class:`~physfm.experiment.presets.DataSpec` maps to ``<cache_dir>/<system>-<hash>``, where the hash
covers every setting that changes the data (system, trajectories, grid, steps, seed, splits) and the
physfm version. ``physfm.simulate.generate`` writes atomically, so a directory that exists is complete.

Datasets share no trajectory because every dataset has its own seed and every trajectory its own initial
condition (shear_flow's ``perturbation``); :mod:`physfm.experiment.leakage` measures that it is so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .presets import DataSpec

logger = logging.getLogger("physfm.experiment")


def default_cache_dir() -> Path:
    """``$PHYSFM_CACHE/data``, else ``$XDG_CACHE_HOME/physfm/data``, else ``~/.cache/physfm/data``."""
    if os.environ.get("PHYSFM_CACHE"):
        return Path(os.environ["PHYSFM_CACHE"]).expanduser() / "data"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "physfm" / "data"


def cache_path(data: DataSpec, cache_dir: str | os.PathLike) -> Path:
    """Where the dataset ``data`` describes lives in ``cache_dir``."""
    from physfm import __version__

    key = json.dumps({**data.cache_key(), "physfm": __version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{data.system}-{digest}"


def simulate_cached(data: DataSpec, cache_dir: str | os.PathLike, device: str = "cpu",
                    progress: bool = False) -> Path:
    """The dataset ``data`` describes: from the cache, or simulated into it."""
    from physfm.simulate import generate

    path = cache_path(data, cache_dir)
    if (path / "stats.yaml").is_file():
        logger.info("reusing %s data from %s", data.system, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        generate(data.system, path, n_trajectories=data.n_trajectories, resolution=data.resolution,
                 n_steps=data.n_steps, seed=data.seed, device=device, split_fractions=data.split_fractions,
                 progress=progress, **data.params)
    except ValueError:
        # Another experiment sharing the cache finished the same dataset first: use it.
        if not (path / "stats.yaml").is_file():
            raise
    return path


__all__ = ["cache_path", "default_cache_dir", "simulate_cached"]
