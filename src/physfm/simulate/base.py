"""Shared pieces of the offline simulators: the system description and grid helpers.

Every system module (``physfm/simulate/<name>.py``) exposes ``SPEC: SystemSpec``. The registry
``physfm.simulate.SYSTEMS`` maps names to these descriptions, and ``physfm.simulate.generate`` turns
one into a Well-format dataset on disk.

Conventions shared by all simulators:

* Arrays are returned in The Well's layout ``[traj, time, *space]`` for scalar (t0) fields and
  ``[traj, time, *space, d]`` for vector (t1) fields, space axes in the order of ``axis_names``
  (``x`` first), float32 on the device the simulation ran on.
* Frame ``k`` is at ``t = k * dt``; frame 0 is the initial condition, so ``n_steps`` stored
  steps give ``n_steps + 1`` frames.
* Randomness (initial conditions) is drawn on the CPU from a ``torch.Generator`` or from a
  per-trajectory ``seed`` parameter, so results do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "Parameter",
    "SystemSpec",
    "grid_coordinates",
    "grid_mesh",
    "parse_resolution",
    "check_resolution",
    "check_run",
    "advance_in_substeps",
    "fourier_wavenumbers",
    "lawson_rk4_step",
    "record_frames",
    "trajectory_seed",
]


@dataclass(frozen=True)
class Parameter:
    """A physical parameter a user may fix from Python (``generate(name, ..., **params)``) or
    the command line (``--name``). Unfixed parameters are drawn per trajectory by
    ``SystemSpec.sample_parameters``."""

    name: str
    type: type = float
    help: str = ""
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True, eq=False)
class SystemSpec:
    """Description of one simulated physical system.

    Attributes:
        name: dataset name, also the ``physfm simulate NAME`` command name.
        field_names: flattened field names in storage order (``"velocity_x", "velocity_y"``).
        vector_fields: t1 field name -> its flattened components, e.g.
            ``{"velocity": ("velocity_x", "velocity_y")}``. Fields not listed are t0 (scalars).
        periodic: one flag per spatial axis.
        domain: ``(low, high)`` per spatial axis.
        dt: physical time between stored frames.
        default_resolution: grid points per axis used when the user gives none.
        default_n_steps: stored steps (frames - 1) used when the user gives none.
        simulate: ``simulate(params_batch, resolution, n_steps, device, generator, progress)``
            -> ``dict[str, Tensor]`` keyed by Well field name (t0 and t1 names), shaped
            ``[traj, time, *space(, d)]``.
        sample_parameters: ``sample_parameters(n, generator) -> list[dict]``, one dict of
            per-trajectory parameters drawn from the system's parameter grid.
        parameters: the parameters a user may fix (for the CLI and for validation).
        axis_names: names of the spatial axes, ``("x", "y")`` in 2-D.
        grid_centred: whether stored coordinates are cell centres (``True``) or the left edges
            of cells (``False``, e.g. the Fourier grid of a spectral solver).
        description: one line shown by ``physfm simulate --help``.
        min_resolution: smallest number of grid points per axis the solver accepts.
        merge_parameters: ``merge(drawn, fixed) -> params`` combines one trajectory's drawn
            parameters with those the user fixed (default ``drawn | fixed``); a system whose
            parameters depend on each other (a named pattern and its rates) overrides it.
        extra: free-form settings, e.g. ``file_parameters`` ({our name: stored attribute name}).
    """

    name: str
    field_names: tuple[str, ...]
    vector_fields: Mapping[str, tuple[str, ...]]
    periodic: tuple[bool, ...]
    domain: tuple[tuple[float, float], ...]
    dt: float
    default_resolution: tuple[int, ...]
    default_n_steps: int
    simulate: Callable[..., dict[str, torch.Tensor]]
    sample_parameters: Callable[[int, torch.Generator], list[dict[str, Any]]]
    parameters: tuple[Parameter, ...] = ()
    axis_names: tuple[str, ...] = ("x", "y")
    grid_centred: bool = True
    description: str = ""
    min_resolution: int = 4
    merge_parameters: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def resolve_parameters(self, drawn: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
        """One trajectory's parameters: drawn values, overridden by the user's fixed ones."""
        if self.merge_parameters is not None:
            return self.merge_parameters(drawn, fixed)
        return drawn | fixed

    @property
    def n_spatial_dims(self) -> int:
        return len(self.domain)

    @property
    def scalar_fields(self) -> tuple[str, ...]:
        """t0 field names (those not part of any vector field)."""
        in_vectors = {c for comps in self.vector_fields.values() for c in comps}
        return tuple(f for f in self.field_names if f not in in_vectors)

    def coordinates(self, resolution: Sequence[int]) -> dict[str, np.ndarray]:
        """1-D grid coordinates per axis name, as stored in the Well file."""
        return dict(
            zip(
                self.axis_names,
                grid_coordinates(self.domain, resolution, centred=self.grid_centred),
                strict=True,
            )
        )


def grid_coordinates(
    domain: Sequence[tuple[float, float]], resolution: Sequence[int], centred: bool = True
) -> list[np.ndarray]:
    """1-D float64 coordinates per axis of a uniform grid on ``domain``.

    ``centred=True`` gives cell centres ``low + (i + 1/2) h``; ``centred=False`` gives the left
    cell edges ``low + i h`` (the grid of a Fourier spectral solver, as in Dedalus).
    """
    if len(domain) != len(resolution):
        raise ValueError(
            f"resolution: got {tuple(resolution)} with {len(resolution)} axes, expected "
            f"{len(domain)} axes (one per spatial dimension)"
        )
    out = []
    for (low, high), n in zip(domain, resolution, strict=True):
        h = (high - low) / n
        shift = 0.5 if centred else 0.0
        out.append(low + (np.arange(n, dtype=np.float64) + shift) * h)
    return out


def grid_mesh(
    domain: Sequence[tuple[float, float]],
    resolution: Sequence[int],
    centred: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, ...]:
    """``meshgrid(..., indexing="ij")`` of :func:`grid_coordinates` as torch tensors."""
    axes = [
        torch.as_tensor(c, dtype=dtype, device=device) for c in grid_coordinates(domain, resolution, centred)
    ]
    return torch.meshgrid(*axes, indexing="ij")


def parse_resolution(text: str | Sequence[int] | None, n_dims: int = 2) -> tuple[int, ...] | None:
    """Parse ``"128x256"`` (or a sequence of ints) into a tuple; ``None`` passes through."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"--resolution: got {text!r}, expected {n_dims} integers joined by 'x', e.g. '128x256'"
            ) from None
    else:
        values = tuple(int(v) for v in text)
    if len(values) != n_dims:
        raise ValueError(
            f"resolution: got {text!r} with {len(values)} axes, expected {n_dims} (e.g. '128x256')"
        )
    return values


def check_resolution(system: SystemSpec, resolution: Sequence[int] | None) -> tuple[int, ...]:
    """Validate a resolution for ``system`` (defaults to ``system.default_resolution``)."""
    if resolution is None:
        return tuple(system.default_resolution)
    res = parse_resolution(resolution, system.n_spatial_dims)
    assert res is not None
    if any(n < system.min_resolution for n in res):
        raise ValueError(
            f"resolution: got {res} for {system.name!r}, expected at least {system.min_resolution} points per axis"
        )
    return res


def check_run(system: SystemSpec, params_batch, resolution: Sequence[int] | None, n_steps: int | None,
              fourier: bool = False, cfl: float | None = None) -> tuple[tuple[int, ...], int]:
    """What every simulator checks before it starts: a non-empty batch, a grid ``system`` accepts (with an even number
    of points per axis on a Fourier grid), a number of stored steps and, for a pseudo-spectral RK4 solver, its
    ``cfl``; returns ``(resolution, n_steps)``."""
    if len(params_batch) == 0:
        raise ValueError("params_batch: got an empty list, expected one parameter dict per trajectory")
    res = check_resolution(system, resolution)
    if fourier and any(n % 2 for n in res):
        raise ValueError(f"resolution: got {res}, expected even numbers of points (Fourier grid)")
    n_steps = system.default_n_steps if n_steps is None else int(n_steps)
    if n_steps < 0:
        raise ValueError(f"n_steps: got {n_steps}, expected a non-negative number of stored steps")
    if cfl is not None and not (0 < cfl <= 0.9):
        raise ValueError(f"cfl: got {cfl}, expected 0 < cfl <= 0.9 (RK4 stability limit)")
    return res, n_steps


def trajectory_seed(params: Mapping[str, Any], index: int, generator: torch.Generator | None) -> Any:
    """Trajectory ``index``'s ``seed`` parameter, or, when it has none, one drawn from ``generator``."""
    seed = params.get("seed")
    if seed is None:
        if generator is None:
            raise ValueError(f"seed: trajectory {index} has no 'seed' parameter and no generator was given")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return seed


def record_frames(system: str, first: dict[str, torch.Tensor], advance: Callable[[], tuple[dict, int]],
                  n_steps: int, progress: bool, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Frame 0, then ``n_steps`` frames from ``advance() -> (fields, substeps)``, stacked along time as
    ``{field: [traj, time, *space]}`` in ``dtype``. A progress bar shows the substeps per frame; a non-finite
    frame stops the run at once with one clear error instead of writing NaNs."""
    frames = [first]
    n_traj = len(next(iter(first.values())))
    with tqdm(total=n_steps, desc=f"{system} x{n_traj}", disable=not progress, leave=False) as bar:
        for _ in range(n_steps):
            fields, n_sub = advance()
            if not all(bool(torch.isfinite(value).all()) for value in fields.values()):
                raise RuntimeError(f"{system}: the solution became non-finite; lower --cfl")
            frames.append(fields)
            bar.set_postfix(substeps=n_sub)
            bar.update()
    return {name: torch.stack([frame[name] for frame in frames], dim=1).to(dtype) for name in first}


def lawson_rk4_step(linear: torch.Tensor, nonlinear: Callable[[torch.Tensor], torch.Tensor], state: torch.Tensor,
                    dt: torch.Tensor) -> torch.Tensor:
    """One Lawson (integrating-factor) RK4 step of ``d state / dt = linear * state + nonlinear(state)``: the stiff
    linear part (viscosity, diffusivity) exactly, the rest by classic RK4. ``dt`` is per trajectory ``[B]``; a zero
    dt is an exact no-op, which lets trajectories with fewer substeps idle inside a batch."""
    dt = dt.reshape(-1, *[1] * (state.ndim - 1))
    e_half = torch.exp(linear * (dt / 2))
    e_full = e_half * e_half
    a = nonlinear(state)
    b = nonlinear(e_half * (state + dt / 2 * a))
    c = nonlinear(e_half * state + dt / 2 * b)
    d = nonlinear(e_full * state + dt * e_half * c)
    return e_full * state + dt / 6 * (e_full * a + 2 * e_half * (b + c) + d)


def advance_in_substeps(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], state: torch.Tensor,
                        stable_dt: torch.Tensor, duration: float) -> tuple[torch.Tensor, int]:
    """Advance every trajectory exactly ``duration`` in equal substeps ``step(state, dt)`` of at most its own
    ``stable_dt`` ``[B]``; returns the state and the most substeps any trajectory took."""
    n_sub = torch.ceil(duration / stable_dt).to(torch.long).clamp_min(1)
    dt = duration / n_sub.to(torch.float64)
    n_max = int(n_sub.max())
    for i in range(n_max):
        state = step(state, torch.where(n_sub > i, dt, torch.zeros_like(dt)))
    return state, n_max


def fourier_wavenumbers(
    domain: Sequence[tuple[float, float]],
    resolution: Sequence[int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angular wavenumbers ``(kx [Nx, 1], ky [1, Ny//2 + 1])`` matching ``torch.fft.rfft2`` of a
    2-D periodic field laid out ``[x, y]`` (real FFT along the last axis)."""
    (x0, x1), (y0, y1) = domain
    nx, ny = resolution
    kx = 2 * np.pi / (x1 - x0) * torch.fft.fftfreq(nx, d=1.0 / nx, dtype=dtype, device=device)
    ky = 2 * np.pi / (y1 - y0) * torch.fft.rfftfreq(ny, d=1.0 / ny, dtype=dtype, device=device)
    return kx[:, None], ky[None, :]
