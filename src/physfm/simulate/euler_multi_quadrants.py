"""2-D compressible Euler equations with multi-quadrant Riemann initial data.

This is physfm's version of The Well's ``euler_multi_quadrants`` system, the headline case of
the tokeniser-pretraining paper. The equations, for an ideal gas with ratio of specific heats
``gamma``, are

    d/dt [rho, rho u, rho v, e] + d/dx [rho u, rho u^2 + p, rho u v, u (e + p)]
                                + d/dy [rho v, rho u v, rho v^2 + p, v (e + p)] = 0,
    e = p / (gamma - 1) + rho (u^2 + v^2) / 2,

on the unit square. The Well stores ``energy``, ``density``, ``pressure`` and ``momentum``
(``momentum_x``, ``momentum_y``) every ``dt = 0.015`` for 100 steps (t in [0, 1.5]), with
``gamma`` drawn from ten gases and either periodic or open ("extrap") boundaries, published as
two datasets. physfm follows that split: :data:`SPEC` (``euler_multi_quadrants``) is periodic on
both axes, :data:`SPEC_OPEN` (``euler_multi_quadrants_openBC``) uses zero-gradient outflow
boundaries, Clawpack's ``extrap``.

Initial data. The Well generated its data with Clawpack/AMRClaw from "randomly generated
initial quadrants" and does not publish the sampler, so ours is a reconstruction: each axis is
cut 1-3 times at random positions, and every resulting rectangle gets its own constant state
with ``rho, p ~ U(0.1, 2)`` and ``u, v ~ U(-1, 1)``. With one cut per axis this is the classic
four-quadrant 2-D Riemann problem (Lax & Liu 1998); more cuts give the "multi-quadrant" data
with several interacting wave fans. The ranges give magnitudes comparable to The Well's
``stats.yaml`` (theirs / ours at 32x32 over 100 steps: density mean 0.90 / 1.05, std 0.65 /
0.71; pressure mean 0.90 / 1.20, std 0.80 / 0.47; momentum rms 0.53 / 0.59).

Numerics. A finite-volume Godunov scheme, second order in space and time:

* MUSCL reconstruction of the primitive variables ``(rho, u, v, p)`` with a TVD slope limiter
  (monotonised central by default, or minmod / van Leer). Limited face values stay between the
  neighbouring cell averages, so faces inherit positive density and pressure.
* The HLLC approximate Riemann solver (Toro, Spruce & Speares 1994) with Einfeldt/Roe wave
  speed bounds, which resolves contacts and shear layers.
* Dimensionally unsplit SSP-RK3 (Shu & Osher) time integration.
* Adaptive time steps from the 2-D CFL condition ``dt * sum_d (|u_d| + c) / h_d <= cfl``,
  chosen separately for every trajectory, and divided evenly so that each output interval is
  hit exactly. A trajectory's result therefore does not depend on the others in its batch.
* A positivity guard: density and pressure below ``1e-10`` are floored (counted in
  :class:`EulerStats`). It is a last resort: it did not fire on 16 sampled trajectories run for
  100 steps at 48x48 (both boundary types), nor in Toro's near-vacuum "123" test; without it a
  bad case would produce NaNs instead of a reported problem.

The state is kept in float64 (shock capturing and exact conservation checks want it, and it is
cheap on CPUs and on data-centre GPUs); the returned fields are float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .base import Parameter, SystemSpec, check_run, grid_coordinates, trajectory_seed

__all__ = [
    "GAMMAS",
    "SPEC",
    "SPEC_OPEN",
    "EulerStats",
    "conserved_from_primitives",
    "primitives_from_conserved",
    "quadrant_initial_state",
    "sample_parameters",
    "simulate",
    "simulate_open",
    "solve_euler",
]

#: Ratios of specific heats of The Well's ten gases.
GAMMAS: tuple[float, ...] = (1.13, 1.22, 1.3, 1.33, 1.365, 1.4, 1.404, 1.453, 1.597, 1.76)
DOMAIN: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, 1.0))
DT = 0.015
DENSITY_FLOOR = 1e-10
PRESSURE_FLOOR = 1e-10
LIMITERS = ("mc", "minmod", "vanleer")

# Ranges of the random piecewise-constant states (see the module docstring).
DENSITY_RANGE = (0.1, 2.0)
PRESSURE_RANGE = (0.1, 2.0)
VELOCITY_RANGE = (-1.0, 1.0)
MAX_CUTS = 3


@dataclass
class EulerStats:
    """Diagnostics of one :func:`solve_euler` call.

    Attributes:
        n_substeps: RK steps taken per trajectory, ``[batch]`` (int64).
        max_cfl: largest CFL number of any step taken (``<= cfl`` by construction).
        n_floored: cells whose density or pressure hit the positivity floor, per trajectory.
    """

    n_substeps: torch.Tensor
    max_cfl: float
    n_floored: torch.Tensor


# ----------------------------------------------------------------------------------------------
# Variables
# ----------------------------------------------------------------------------------------------


def primitives_from_conserved(U: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``[..., 4 (rho, rho u, rho v, e), *space]`` -> ``[..., 4 (rho, u, v, p), *space]``.

    ``gamma`` broadcasts against one component, e.g. ``[batch, 1, 1]`` in 2-D.
    """
    rho, mx, my, e = U.unbind(1)
    u, v = mx / rho, my / rho
    p = (gamma - 1) * (e - 0.5 * (mx * u + my * v))
    return torch.stack([rho, u, v, p], dim=1)


def conserved_from_primitives(W: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`primitives_from_conserved`."""
    rho, u, v, p = W.unbind(1)
    e = p / (gamma - 1) + 0.5 * rho * (u * u + v * v)
    return torch.stack([rho, rho * u, rho * v, e], dim=1)


# ----------------------------------------------------------------------------------------------
# Spatial operator
# ----------------------------------------------------------------------------------------------


def _limited_slope(dl: torch.Tensor, dr: torch.Tensor, limiter: str) -> torch.Tensor:
    """TVD slope from the left and right differences; zero at extrema."""
    same_sign = dl * dr > 0
    if limiter == "minmod":
        slope = torch.sign(dl) * torch.minimum(dl.abs(), dr.abs())
    elif limiter == "mc":
        slope = torch.sign(dl) * torch.minimum(
            torch.minimum(2 * dl.abs(), 2 * dr.abs()), 0.5 * (dl + dr).abs()
        )
    else:  # van Leer; the where() below removes the 0/0 at extrema
        slope = 2 * dl * dr / torch.where(same_sign, dl + dr, torch.ones_like(dl))
    return torch.where(same_sign, slope, torch.zeros_like(slope))


def _hllc_flux(
    WL: torch.Tensor, WR: torch.Tensor, gamma: torch.Tensor, normal: int, tangential: int
) -> torch.Tensor:
    """HLLC flux through faces with left/right primitive states ``[B, 4, ...]``.

    ``normal``/``tangential`` are the primitive indices (1 = u, 2 = v) of the velocity
    components normal and tangential to the faces; the flux is returned in conserved order
    ``(rho, rho u, rho v, e)``.
    """
    g = gamma
    rL, unL, utL, pL = WL[:, 0], WL[:, normal], WL[:, tangential], WL[:, 3]
    rR, unR, utR, pR = WR[:, 0], WR[:, normal], WR[:, tangential], WR[:, 3]
    eL = pL / (g - 1) + 0.5 * rL * (unL * unL + utL * utL)
    eR = pR / (g - 1) + 0.5 * rR * (unR * unR + utR * utR)
    cL = torch.sqrt(g * pL / rL)
    cR = torch.sqrt(g * pR / rR)

    # Einfeldt's bounds: the extreme of the one-sided speeds and of the Roe-averaged ones.
    sqL, sqR = torch.sqrt(rL), torch.sqrt(rR)
    wsum = sqL + sqR
    un_roe = (sqL * unL + sqR * unR) / wsum
    ut_roe = (sqL * utL + sqR * utR) / wsum
    h_roe = (sqL * (eL + pL) / rL + sqR * (eR + pR) / rR) / wsum
    c_roe = torch.sqrt(((g - 1) * (h_roe - 0.5 * (un_roe * un_roe + ut_roe * ut_roe))).clamp_min(0))
    sL = torch.minimum(unL - cL, un_roe - c_roe)
    sR = torch.maximum(unR + cR, un_roe + c_roe)

    # Speed of the contact wave.
    mL = rL * (sL - unL)
    mR = rR * (sR - unR)
    s_star = (pR - pL + unL * mL - unR * mR) / (mL - mR)

    # The flux is F_K + S_K (U*_K - U_K) on the side K of the contact that the face lies on, and
    # plain F_K where that side's outer wave has swept past the face (supersonic): setting S_K to
    # zero there selects F_K without a second where() per component.
    left = s_star >= 0
    r = torch.where(left, rL, rR)
    un = torch.where(left, unL, unR)
    ut = torch.where(left, utL, utR)
    p = torch.where(left, pL, pR)
    e = torch.where(left, eL, eR)
    s = torch.where(left, sL, sR)
    m = torch.where(left, mL, mR)
    s_eff = torch.where(left, sL.clamp_max(0), sR.clamp_min(0))

    mass = r * un
    factor = m / torch.where(s == s_star, torch.ones_like(s), s - s_star)  # s == s*: vacuum only
    flux_mass = mass + s_eff * (factor - r)
    flux_normal = mass * un + p + s_eff * (factor * s_star - mass)
    flux_tangential = mass * ut + s_eff * (factor - r) * ut
    flux_energy = un * (e + p) + s_eff * (factor * (e / r + (s_star - un) * (s_star + p / m)) - e)
    # Rows in conserved order (rho, rho u, rho v, e).
    if normal == 1:
        return torch.stack([flux_mass, flux_normal, flux_tangential, flux_energy], dim=1)
    return torch.stack([flux_mass, flux_tangential, flux_normal, flux_energy], dim=1)


def _axis_divergence(
    W: torch.Tensor, gamma: torch.Tensor, spacing: float, dim: int, periodic: bool, limiter: str
) -> torch.Tensor:
    """``-dF/dx_dim`` for the cells of ``W`` (primitives ``[B, 4, Nx, Ny]``) along one axis."""
    n = W.shape[dim]
    # Two ghost cells per side: circular for periodic axes, copies of the edge cell ("extrap").
    pad = [0, 0, 0, 0]
    pad_index = 2 * (W.dim() - 1 - dim)  # F.pad lists the last axis first
    pad[pad_index : pad_index + 2] = [2, 2]
    Wp = F.pad(W, pad, mode="circular" if periodic else "replicate")

    def cells(start: int, length: int) -> torch.Tensor:
        return Wp.narrow(dim, start, length)

    # Slopes in padded cells 1 .. n+2, faces between padded cells j and j+1 for j = 1 .. n+1.
    slope = _limited_slope(cells(1, n + 2) - cells(0, n + 2), cells(2, n + 2) - cells(1, n + 2), limiter)
    WL = cells(1, n + 1) + 0.5 * slope.narrow(dim, 0, n + 1)
    WR = cells(2, n + 1) - 0.5 * slope.narrow(dim, 1, n + 1)
    normal, tangential = (1, 2) if dim == 2 else (2, 1)
    flux = _hllc_flux(WL, WR, gamma, normal, tangential)
    return -(flux.narrow(dim, 1, n) - flux.narrow(dim, 0, n)) / spacing


def _rhs(
    U: torch.Tensor,
    gamma: torch.Tensor,
    spacing: Sequence[float],
    periodic: Sequence[bool],
    limiter: str,
) -> torch.Tensor:
    """Semi-discrete right-hand side ``dU/dt`` of the finite-volume scheme."""
    W = primitives_from_conserved(U, gamma)
    return _axis_divergence(W, gamma, spacing[0], 2, periodic[0], limiter) + _axis_divergence(
        W, gamma, spacing[1], 3, periodic[1], limiter
    )


def _max_rate(U: torch.Tensor, gamma: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
    """Per trajectory ``max_cells sum_d (|u_d| + c) / h_d`` (1 / time), ``[B]``."""
    W = primitives_from_conserved(U, gamma)
    c = torch.sqrt(gamma * W[:, 3].clamp_min(PRESSURE_FLOOR) / W[:, 0])
    rate = (W[:, 1].abs() + c) / spacing[0] + (W[:, 2].abs() + c) / spacing[1]
    return rate.flatten(1).amax(dim=1)


def _apply_floor(U: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raise density/pressure below the floors; returns the state and the count per trajectory."""
    rho = U[:, 0]
    W = primitives_from_conserved(U, gamma)
    bad = (rho < DENSITY_FLOOR) | (W[:, 3] < PRESSURE_FLOOR) | ~torch.isfinite(W[:, 3])
    n_bad = bad.flatten(1).sum(dim=1)
    if not bool(bad.any()):
        return U, n_bad
    rho = rho.clamp_min(DENSITY_FLOOR)
    u = torch.where(bad, U[:, 1] / rho, W[:, 1])
    v = torch.where(bad, U[:, 2] / rho, W[:, 2])
    p = W[:, 3].nan_to_num(PRESSURE_FLOOR).clamp_min(PRESSURE_FLOOR)
    fixed = conserved_from_primitives(torch.stack([rho, u, v, p], dim=1), gamma)
    return torch.where(bad.unsqueeze(1), fixed, U), n_bad


# ----------------------------------------------------------------------------------------------
# Time stepping
# ----------------------------------------------------------------------------------------------


def solve_euler(
    U0: torch.Tensor,
    gamma: torch.Tensor | float,
    spacing: Sequence[float],
    dt_out: float,
    n_steps: int,
    periodic: Sequence[bool] = (True, True),
    cfl: float = 0.4,
    limiter: str = "mc",
    progress: bool = False,
    max_substeps_per_frame: int = 100_000,
) -> tuple[torch.Tensor, EulerStats]:
    """Integrate the 2-D Euler equations and return every ``dt_out`` frame.

    Args:
        U0: conserved initial state ``[B, 4, Nx, Ny]`` ordered ``(rho, rho u, rho v, e)``, axis
            2 is x and axis 3 is y. Its dtype is the working precision (float64 recommended).
        gamma: ratio of specific heats, a float or one per trajectory ``[B]``.
        spacing: cell sizes ``(dx, dy)``.
        dt_out: time between returned frames.
        n_steps: number of output intervals; ``n_steps + 1`` frames are returned.
        periodic: per axis, periodic (``True``) or zero-gradient outflow (``False``).
        cfl: CFL number of the unsplit 2-D condition, in ``(0, 0.5]``.
        limiter: ``"mc"`` (monotonised central), ``"minmod"`` or ``"vanleer"``.
        progress: show a tqdm bar over output frames.
        max_substeps_per_frame: abort (RuntimeError) if one output interval needs more steps.

    Returns:
        ``frames [B, n_steps + 1, 4, Nx, Ny]`` (conserved variables, dtype of ``U0``) and
        :class:`EulerStats`.
    """
    if U0.dim() != 4 or U0.shape[1] != 4:
        raise ValueError(f"U0: got shape {tuple(U0.shape)}, expected [batch, 4, Nx, Ny]")
    if limiter not in LIMITERS:
        raise ValueError(f"limiter: got {limiter!r}, expected one of {LIMITERS}")
    if not 0 < cfl <= 0.5:
        raise ValueError(f"cfl: got {cfl}, expected 0 < cfl <= 0.5 (SSP-RK3 + MUSCL stability)")
    if n_steps < 0 or dt_out <= 0:
        raise ValueError(f"n_steps/dt_out: got {n_steps}/{dt_out}, expected n_steps >= 0 and dt_out > 0")
    if len(spacing) != 2 or len(periodic) != 2:
        raise ValueError(f"spacing/periodic: got {spacing}/{periodic}, expected one value per axis (2)")
    B = U0.shape[0]
    device, dtype = U0.device, U0.dtype
    gamma = torch.as_tensor(gamma, dtype=dtype, device=device).reshape(-1)
    gamma = gamma.expand(B) if gamma.numel() == 1 else gamma
    if gamma.numel() != B or bool((gamma <= 1).any()):
        raise ValueError(f"gamma: got {gamma.tolist()}, expected one value > 1 per trajectory ({B})")
    W0 = primitives_from_conserved(U0, gamma.view(B, 1, 1))
    if not bool(torch.isfinite(U0).all()) or bool((W0[:, 0] <= 0).any()) or bool((W0[:, 3] <= 0).any()):
        raise ValueError("U0: expected finite values with positive density and pressure everywhere")

    frames = torch.empty((B, n_steps + 1, *U0.shape[1:]), dtype=dtype, device=device)
    frames[:, 0] = U0
    U = U0.clone()
    n_substeps = torch.zeros(B, dtype=torch.int64, device=device)
    n_floored = torch.zeros(B, dtype=torch.int64, device=device)
    max_cfl = 0.0

    bar = tqdm(range(1, n_steps + 1), desc="euler_multi_quadrants", unit="frame", disable=not progress)
    for k in bar:
        # Time left to the next output, per trajectory. Every step divides what is left evenly
        # into the fewest CFL-admissible steps, so the last one lands exactly on the frame.
        remaining = torch.full((B,), dt_out, dtype=dtype, device=device)
        for _ in range(max_substeps_per_frame):
            active = (remaining > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            # Advance only the trajectories still short of the frame: batch members do not
            # influence each other's arithmetic, so results are independent of the batching.
            every = active.numel() == B
            Ua = U if every else U[active]
            ga = (gamma if every else gamma[active]).view(-1, 1, 1)
            rate = _max_rate(Ua, ga, spacing)
            if not bool(torch.isfinite(rate).all()):
                raise RuntimeError(f"euler: non-finite state before frame {k} (t = {k * dt_out:g})")
            rem = remaining[active]
            n_sub = torch.ceil(rem * rate / cfl).clamp_min(1)
            dt = rem / n_sub
            max_cfl = max(max_cfl, float((dt * rate).max()))
            Ua, floored = _ssprk3_step(Ua, ga, dt.view(-1, 1, 1, 1), spacing, periodic, limiter)
            if every:
                U = Ua
            else:
                U = U.index_copy(0, active, Ua)
            remaining = remaining.index_copy(
                0, active, torch.where(n_sub == 1, torch.zeros_like(rem), rem - dt)
            )
            n_substeps = n_substeps.index_add(0, active, torch.ones_like(active))
            n_floored = n_floored.index_add(0, active, floored)
        else:
            raise RuntimeError(
                f"euler: more than {max_substeps_per_frame} steps needed for frame {k}; "
                "the time step collapsed (near-vacuum or extreme speeds)"
            )
        frames[:, k] = U
    bar.close()
    return frames, EulerStats(n_substeps=n_substeps, max_cfl=max_cfl, n_floored=n_floored)


def _ssprk3_step(
    U: torch.Tensor,
    gamma: torch.Tensor,
    dt: torch.Tensor,
    spacing: Sequence[float],
    periodic: Sequence[bool],
    limiter: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Shu-Osher SSP-RK3 step; every stage is a convex combination of forward-Euler steps,
    so the scheme keeps the TVD/positivity properties of the forward-Euler update."""
    floored = torch.zeros(U.shape[0], dtype=torch.int64, device=U.device)
    U1, n = _apply_floor(U + dt * _rhs(U, gamma, spacing, periodic, limiter), gamma)
    floored += n
    U2, n = _apply_floor(0.75 * U + 0.25 * (U1 + dt * _rhs(U1, gamma, spacing, periodic, limiter)), gamma)
    floored += n
    U3, n = _apply_floor(U / 3 + (2.0 / 3.0) * (U2 + dt * _rhs(U2, gamma, spacing, periodic, limiter)), gamma)
    return U3, floored + n


# ----------------------------------------------------------------------------------------------
# Initial conditions and the dataset interface
# ----------------------------------------------------------------------------------------------


def quadrant_initial_state(
    seed: int, resolution: Sequence[int], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Random multi-quadrant primitive state ``[4 (rho, u, v, p), Nx, Ny]`` on the CPU.

    Each axis is cut 1-3 times (one cut drawn uniformly inside each of equal-width bins of
    [0.1, 0.9], which keeps cuts apart); each rectangle gets a constant state drawn from the
    module's ranges. Cells take the state of the rectangle containing their centre.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)

    block = []
    for coord in grid_coordinates(DOMAIN, resolution, centred=True):
        n_cuts = int(torch.randint(1, MAX_CUTS + 1, (1,), generator=gen))
        cuts = 0.1 + 0.8 * (torch.arange(n_cuts, dtype=torch.float64) + uniform(n_cuts, 0.15, 0.85)) / n_cuts
        block.append((torch.bucketize(torch.from_numpy(coord), cuts), n_cuts + 1))
    (ix, nx), (iy, ny) = block
    states = torch.stack(
        [
            uniform((nx, ny), *DENSITY_RANGE),
            uniform((nx, ny), *VELOCITY_RANGE),
            uniform((nx, ny), *VELOCITY_RANGE),
            uniform((nx, ny), *PRESSURE_RANGE),
        ]
    )
    return states[:, ix[:, None], iy[None, :]].to(dtype)


def sample_parameters(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Draw ``n`` trajectories: a gas (``gamma`` from :data:`GAMMAS`) and an initial-data seed."""
    choice = torch.randint(len(GAMMAS), (n,), generator=generator)
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator)
    return [{"gamma": GAMMAS[int(c)], "seed": int(s)} for c, s in zip(choice, seeds, strict=True)]


def simulate(
    params_batch: Sequence[dict[str, Any]],
    resolution: Sequence[int],
    n_steps: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = True,
    cfl: float = 0.4,
    limiter: str = "mc",
    *,
    periodic: tuple[bool, bool] = (True, True),
) -> dict[str, torch.Tensor]:
    """Simulate a batch with periodic boundaries (The Well's ``periodicBC`` variant; ``periodic=(False, False)``:
    zero-gradient outflow, :func:`simulate_open`).

    Each parameter dict holds ``gamma`` and ``seed`` (the seed of the initial quadrants).
    ``n_steps=None`` means :data:`SPEC`'s default; ``cfl`` and ``limiter`` go to
    :func:`solve_euler`. Returns float32 ``energy``, ``density``, ``pressure`` ``[traj, n_steps + 1, Nx, Ny]`` and
    ``momentum`` ``[traj, n_steps + 1, Nx, Ny, 2]`` at ``t = 0.015 k``.
    """
    resolution, n_steps = check_run(SPEC, params_batch, resolution, n_steps)
    gammas, states = [], []
    for i, params in enumerate(params_batch):
        gamma = float(params.get("gamma", 1.4))
        if not (math.isfinite(gamma) and gamma > 1):
            raise ValueError(f"gamma: got {gamma} for trajectory {i}, expected a finite value > 1")
        seed = trajectory_seed(params, i, generator)
        gammas.append(gamma)
        states.append(quadrant_initial_state(int(seed), resolution))
    device = torch.device(device)
    gamma = torch.tensor(gammas, dtype=torch.float64, device=device)
    W0 = torch.stack(states).to(device)
    U0 = conserved_from_primitives(W0, gamma.view(-1, 1, 1))
    spacing = tuple((high - low) / n for (low, high), n in zip(DOMAIN, resolution, strict=True))
    frames, _ = solve_euler(
        U0, gamma, spacing, DT, n_steps, periodic=periodic, cfl=cfl, limiter=limiter, progress=progress
    )
    pressure = primitives_from_conserved(
        frames.flatten(0, 1), gamma.repeat_interleave(n_steps + 1).view(-1, 1, 1)
    )[:, 3]
    frames = frames.float()
    return {
        "energy": frames[:, :, 3].contiguous(),
        "density": frames[:, :, 0].contiguous(),
        "pressure": pressure.view(frames.shape[0], n_steps + 1, *resolution).float(),
        "momentum": frames[:, :, 1:3].movedim(2, -1).contiguous(),
    }


def simulate_open(params_batch: Sequence[dict[str, Any]], resolution: Sequence[int], *args, **kwargs
                  ) -> dict[str, torch.Tensor]:
    """As :func:`simulate`, with zero-gradient outflow boundaries (The Well's ``openBC``)."""
    return simulate(params_batch, resolution, *args, periodic=(False, False), **kwargs)


_COMMON = dict(
    field_names=("energy", "density", "pressure", "momentum_x", "momentum_y"),
    vector_fields={"momentum": ("momentum_x", "momentum_y")},
    domain=DOMAIN,
    dt=DT,
    default_resolution=(64, 64),
    default_n_steps=100,
    sample_parameters=sample_parameters,
    parameters=(
        Parameter(
            "gamma",
            float,
            "ratio of specific heats (> 1); default: drawn per trajectory from The Well's gases "
            + ", ".join(str(g) for g in GAMMAS),
        ),
    ),
    grid_centred=True,
    min_resolution=4,
)

SPEC = SystemSpec(
    name="euler_multi_quadrants",
    periodic=(True, True),
    simulate=simulate,
    description="2-D compressible Euler, random multi-quadrant Riemann data, periodic (The Well's periodicBC)",
    **_COMMON,
)

SPEC_OPEN = SystemSpec(
    name="euler_multi_quadrants_openBC",
    periodic=(False, False),
    simulate=simulate_open,
    description="2-D compressible Euler, random multi-quadrant Riemann data, open boundaries (The Well's openBC)",
    **_COMMON,
)
