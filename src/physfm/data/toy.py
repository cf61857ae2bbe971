"""A tiny analytic Well dataset for examples, tests and smoke runs.

Travelling sine waves on a periodic grid: a scalar ``tracer`` and a vector ``velocity`` (stored in
``t1_fields``, read back as ``velocity_x, velocity_y``). Cheap to make, exactly reproducible from
``seed``, and non-trivial in space and time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .well_format import write_well_dataset


def toy_fields(n_traj: int, n_steps: int, shape: tuple[int, int], dt: float = 0.1, seed: int = 0
               ) -> dict[str, np.ndarray]:
    """``{"tracer": [n_traj, n_steps, H, W], "velocity": [n_traj, n_steps, H, W, 2]}`` float32."""
    rng = np.random.default_rng(seed)
    nx, ny = shape
    x = np.arange(nx) / nx
    y = np.arange(ny) / ny
    t = dt * np.arange(n_steps)
    X, Y = np.meshgrid(x, y, indexing="ij")
    tracer = np.empty((n_traj, n_steps, nx, ny), np.float32)
    velocity = np.empty((n_traj, n_steps, nx, ny, 2), np.float32)
    for i in range(n_traj):
        kx, ky = rng.integers(1, 3, size=2)
        cx, cy, phase = rng.uniform(-1, 1, size=3)
        arg = 2 * np.pi * (kx * (X[None] - cx * t[:, None, None]) + ky * (Y[None] - cy * t[:, None, None])) + phase
        tracer[i] = 1.0 + 0.5 * np.sin(arg)
        velocity[i, ..., 0] = cx + 0.1 * np.cos(arg)
        velocity[i, ..., 1] = cy - 0.1 * np.sin(2 * arg)
    return {"tracer": tracer, "velocity": velocity}


def write_toy_dataset(out: str | os.PathLike, n_traj: tuple[int, int, int] = (4, 1, 1), n_steps: int = 8,
                      shape: tuple[int, int] = (16, 8), dt: float = 0.1, seed: int = 0,
                      dataset_name: str = "toy_waves", overwrite: bool = False) -> Path:
    """Write a toy Well dataset with ``n_traj`` = (train, valid, test) trajectories."""
    splits = {}
    for k, (split, n) in enumerate(zip(("train", "valid", "test"), n_traj, strict=True)):
        if n:
            splits[split] = toy_fields(n, n_steps, shape, dt, seed + 1000 * k)
    coords = {"x": np.arange(shape[0]) / shape[0], "y": np.arange(shape[1]) / shape[1]}
    return write_well_dataset(out, dataset_name=dataset_name, splits=splits, dt=dt, coords=coords,
                              periodic={"x": True, "y": True}, simulation_parameters={"amplitude": 0.5},
                              overwrite=overwrite)
