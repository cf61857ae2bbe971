"""Linear acoustics in a heterogeneous medium: a wave system for cross-domain pretraining.

The variable-coefficient acoustic equations of The Well's ``acoustic_scattering`` datasets,

    dp/dt + K div(u) = 0,        du/dt + grad(p) / rho(x, y) = 0,

for the pressure perturbation ``p``, the velocity ``u = (u_x, u_y)``, a static material density
``rho(x, y)`` and bulk modulus ``K`` (so the local speed of sound is ``c = sqrt(K / rho)``).
It is linear and non-dissipative, unlike the other simulated systems, so it adds a distinct
kind of dynamics (dispersion-free propagation, refraction and scattering) to a pretraining mix.

Set-up (physfm's own; The Well's acoustic sets use walls and open boundaries on [-1, 1]^2):

* domain [0, 1]^2, periodic on both axes (waves leave one side and re-enter the other), stored
  every ``dt = 0.01`` for 100 steps by default;
* ``K = 1``; ``rho`` is a smooth random medium: a background ``rho_0 ~ logU(0.5, 2)`` times
  ``exp`` of 0-4 Gaussian inclusions of log-amplitude ``U(-1, 1)`` and width ``U(0.04, 0.12)``,
  so ``c`` lies roughly in [0.4, 2.3];
* initial condition: fluid at rest and 1-4 Gaussian pressure pulses of amplitude ``U(0.5, 2)``
  and width ``U(0.03, 0.06)`` at uniform random centres (distances taken periodically);
* stored fields: ``pressure``, ``density``, ``speed_of_sound`` (the static medium, repeated
  over time, as The Well stores it) and ``velocity`` (``velocity_x``, ``velocity_y``).

Numerics. Fourier pseudo-spectral derivatives (exact for every resolved wave; the Nyquist mode
of odd derivatives is dropped, which makes the discrete gradient exactly minus the transpose of
the discrete divergence) and kick-drift-kick leapfrog (Stormer-Verlet) in time. Together they
conserve the discrete energy

    E_dt = sum p^2 / (2 K) + sum rho |u|^2 / 2 - dt^2 / 8 * sum |grad p|^2 / rho

to round-off, so the scheme neither damps nor amplifies waves; :func:`acoustic_energy` returns
it. The step is a fixed fraction ``cfl`` (default 0.5) of the leapfrog stability limit
``dt < 2 / (c_max * |k|_max)``, chosen per trajectory and divided evenly into each output
interval. The medium must be smooth (it is, by construction) for spectral accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .base import Parameter, SystemSpec, check_run, grid_mesh, trajectory_seed

__all__ = [
    "SPEC",
    "AcousticStats",
    "acoustic_energy",
    "random_medium_and_pulses",
    "sample_parameters",
    "simulate",
    "solve_acoustic",
]

DOMAIN: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.0, 1.0))
DT = 0.01
BULK_MODULUS = 1.0
BACKGROUND_DENSITY_RANGE = (0.5, 2.0)  # log-uniform
INCLUSION_LOG_AMPLITUDE = (-1.0, 1.0)
INCLUSION_WIDTH = (0.04, 0.12)
PULSE_AMPLITUDE = (0.5, 2.0)
PULSE_WIDTH = (0.03, 0.06)
MAX_PULSES = 4
MAX_INCLUSIONS = 4


@dataclass
class AcousticStats:
    """Diagnostics of one :func:`solve_acoustic` call.

    Attributes:
        n_substeps: leapfrog steps per output interval, per trajectory ``[batch]``.
        dt: the leapfrog step of each trajectory ``[batch]`` (``dt_out / n_substeps``).
    """

    n_substeps: torch.Tensor
    dt: torch.Tensor


def _wavenumbers(
    shape: Sequence[int], lengths: Sequence[float], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angular wavenumbers ``kx [Nx, 1]``, ``ky [1, Ny//2+1]`` of an ``rfft2`` grid, with the
    Nyquist modes zeroed: a first derivative of the Nyquist cosine is not representable on the
    grid, and dropping it makes the discrete derivative exactly skew-symmetric."""
    nx, ny = shape
    kx = torch.fft.fftfreq(nx, d=lengths[0] / nx, device=device, dtype=dtype) * 2 * math.pi
    ky = torch.fft.rfftfreq(ny, d=lengths[1] / ny, device=device, dtype=dtype) * 2 * math.pi
    if nx % 2 == 0:
        kx[nx // 2] = 0
    if ny % 2 == 0:
        ky[ny // 2] = 0
    return kx[:, None], ky[None, :]


def _gradient(p: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Spectral gradient ``[B, Nx, Ny] -> [B, 2, Nx, Ny]``."""
    p_hat = torch.fft.rfft2(p)
    grad_hat = torch.stack([1j * kx * p_hat, 1j * ky * p_hat], dim=1)
    return torch.fft.irfft2(grad_hat, s=p.shape[-2:])


def _divergence(u: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Spectral divergence ``[B, 2, Nx, Ny] -> [B, Nx, Ny]``."""
    u_hat = torch.fft.rfft2(u)
    return torch.fft.irfft2(1j * kx * u_hat[:, 0] + 1j * ky * u_hat[:, 1], s=u.shape[-2:])


def acoustic_energy(
    pressure: torch.Tensor,
    velocity: torch.Tensor,
    density: torch.Tensor,
    bulk_modulus: torch.Tensor | float,
    lengths: Sequence[float] = (1.0, 1.0),
    dt: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Acoustic energy per trajectory, ``integral of p^2 / (2K) + rho |u|^2 / 2``.

    Args:
        pressure: ``[B, Nx, Ny]``; velocity: ``[B, 2, Nx, Ny]``; density ``[B, Nx, Ny]``.
        bulk_modulus: a float or ``[B]``.
        lengths: domain size per axis (the sum is scaled by the cell area).
        dt: if given (float or ``[B]``), return the leapfrog-modified energy
            ``E - dt^2/8 * integral |grad p|^2 / rho``, which :func:`solve_acoustic` conserves
            exactly (up to round-off) with that step.
    """
    B = pressure.shape[0]
    K = torch.as_tensor(bulk_modulus, dtype=pressure.dtype, device=pressure.device).reshape(-1, 1, 1)
    cell = lengths[0] * lengths[1] / pressure[0].numel()
    energy = pressure.square() / (2 * K) + 0.5 * density * velocity.square().sum(1)
    if dt is not None:
        kx, ky = _wavenumbers(pressure.shape[-2:], lengths, pressure.device, pressure.dtype)
        dt = torch.as_tensor(dt, dtype=pressure.dtype, device=pressure.device).reshape(-1, 1, 1)
        energy = energy - dt.square() / 8 * _gradient(pressure, kx, ky).square().sum(1) / density
    return energy.reshape(B, -1).sum(1) * cell


def solve_acoustic(
    pressure: torch.Tensor,
    velocity: torch.Tensor,
    density: torch.Tensor,
    bulk_modulus: torch.Tensor | float,
    lengths: Sequence[float],
    dt_out: float,
    n_steps: int,
    cfl: float = 0.5,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, AcousticStats]:
    """Integrate the periodic acoustic equations and return every ``dt_out`` frame.

    Args:
        pressure: initial pressure ``[B, Nx, Ny]`` (axis 1 is x); its dtype is the working
            precision.
        velocity: initial velocity ``[B, 2, Nx, Ny]`` (components x, y).
        density: static material density ``[B, Nx, Ny]``, positive and smooth.
        bulk_modulus: ``K``, a positive float or one per trajectory ``[B]``.
        lengths: periodic domain size per axis.
        dt_out: time between returned frames.
        n_steps: number of output intervals; ``n_steps + 1`` frames are returned.
        cfl: leapfrog step as a fraction of its stability limit, in ``(0, 1)``.
        progress: show a tqdm bar over output frames.

    Returns:
        ``pressure [B, n_steps + 1, Nx, Ny]``, ``velocity [B, n_steps + 1, 2, Nx, Ny]`` and
        :class:`AcousticStats`.
    """
    if pressure.dim() != 3 or velocity.shape != (pressure.shape[0], 2, *pressure.shape[1:]):
        raise ValueError(
            f"pressure/velocity: got shapes {tuple(pressure.shape)}/{tuple(velocity.shape)}, "
            "expected [B, Nx, Ny] and [B, 2, Nx, Ny]"
        )
    if density.shape != pressure.shape or bool((density <= 0).any()):
        raise ValueError(
            f"density: got shape {tuple(density.shape)}, expected {tuple(pressure.shape)} and > 0"
        )
    if not 0 < cfl < 1:
        raise ValueError(f"cfl: got {cfl}, expected 0 < cfl < 1 (fraction of the leapfrog stability limit)")
    if n_steps < 0 or dt_out <= 0:
        raise ValueError(f"n_steps/dt_out: got {n_steps}/{dt_out}, expected n_steps >= 0 and dt_out > 0")
    B, nx, ny = pressure.shape
    device, dtype = pressure.device, pressure.dtype
    K = torch.as_tensor(bulk_modulus, dtype=dtype, device=device).reshape(-1)
    K = K.expand(B) if K.numel() == 1 else K
    if K.numel() != B or bool((K <= 0).any()):
        raise ValueError(f"bulk_modulus: got {K.tolist()}, expected one positive value per trajectory ({B})")
    kx, ky = _wavenumbers((nx, ny), lengths, device, dtype)

    # Leapfrog is stable for dt * omega_max < 2; omega_max^2 <= max(K) max(1/rho) |k|_max^2
    # bounds the spectrum of the variable-coefficient operator (a Rayleigh-quotient estimate).
    k_max = math.sqrt(float(kx.abs().max()) ** 2 + float(ky.abs().max()) ** 2)
    c_bound = torch.sqrt(K / density.reshape(B, -1).amin(1))
    dt_stable = 2.0 / (c_bound * max(k_max, 1e-30))
    n_sub = torch.ceil(dt_out / (cfl * dt_stable)).to(torch.int64).clamp_min(1)
    dt = (dt_out / n_sub.to(dtype)).view(B, 1, 1)
    K = K.view(B, 1, 1)
    inv_rho = (1.0 / density).unsqueeze(1)

    p = pressure.clone()
    u = velocity.clone()
    p_frames = torch.empty((B, n_steps + 1, nx, ny), dtype=dtype, device=device)
    u_frames = torch.empty((B, n_steps + 1, 2, nx, ny), dtype=dtype, device=device)
    p_frames[:, 0], u_frames[:, 0] = p, u
    grad_p = _gradient(p, kx, ky)
    max_sub = int(n_sub.max())
    uniform = bool((n_sub == max_sub).all())

    bar = tqdm(range(1, n_steps + 1), desc="acoustic_wave", unit="frame", disable=not progress)
    for k in bar:
        for j in range(max_sub):
            # Kick-drift-kick; the gradient at the end of a step is reused by the next one.
            u_half = u - 0.5 * dt.unsqueeze(1) * inv_rho * grad_p
            p_new = p - dt * K * _divergence(u_half, kx, ky)
            grad_new = _gradient(p_new, kx, ky)
            u_new = u_half - 0.5 * dt.unsqueeze(1) * inv_rho * grad_new
            if uniform:
                p, u, grad_p = p_new, u_new, grad_new
            else:
                # Trajectories with fewer (longer) substeps are already at the frame: freeze them.
                live = (j < n_sub).view(B, 1, 1)
                p = torch.where(live, p_new, p)
                u = torch.where(live.unsqueeze(1), u_new, u)
                grad_p = torch.where(live.unsqueeze(1), grad_new, grad_p)
        if not bool(torch.isfinite(p).all()):
            raise RuntimeError(f"acoustic: non-finite pressure at frame {k} (t = {k * dt_out:g})")
        p_frames[:, k], u_frames[:, k] = p, u
    bar.close()
    return p_frames, u_frames, AcousticStats(n_substeps=n_sub, dt=dt.view(B))


# ----------------------------------------------------------------------------------------------
# Initial conditions and the dataset interface
# ----------------------------------------------------------------------------------------------


def _periodic_gaussian(x: torch.Tensor, y: torch.Tensor, centre: torch.Tensor, width: float) -> torch.Tensor:
    """``exp(-r^2 / (2 w^2))`` with ``r`` the shortest distance on the periodic unit square."""
    dx = torch.remainder(x - centre[0] + 0.5, 1.0) - 0.5
    dy = torch.remainder(y - centre[1] + 0.5, 1.0) - 0.5
    return torch.exp(-(dx.square() + dy.square()) / (2 * width**2))


def random_medium_and_pulses(
    params: dict[str, Any], resolution: Sequence[int], dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density ``[Nx, Ny]`` and initial pressure ``[Nx, Ny]`` of one trajectory (on the CPU).

    ``params`` holds ``seed`` and optionally ``background_density``, ``n_inclusions`` and
    ``n_pulses``; what is not given is drawn from the seed.
    """
    gen = torch.Generator().manual_seed(int(params["seed"]))

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))

    x, y = grid_mesh(DOMAIN, resolution, centred=False, dtype=torch.float64)
    # Draw everything in a fixed order so that fixing one parameter does not reshuffle the rest.
    rho0 = math.exp(uniform(*(math.log(v) for v in BACKGROUND_DENSITY_RANGE)))
    n_inc = int(torch.randint(0, MAX_INCLUSIONS + 1, (), generator=gen))
    n_pulses = int(torch.randint(1, MAX_PULSES + 1, (), generator=gen))
    rho0 = float(params.get("background_density", rho0))
    n_inc = int(params.get("n_inclusions", n_inc))
    n_pulses = int(params.get("n_pulses", n_pulses))

    log_rho = torch.full_like(x, math.log(rho0))
    for _ in range(n_inc):
        centre = torch.rand(2, generator=gen, dtype=torch.float64)
        log_rho += uniform(*INCLUSION_LOG_AMPLITUDE) * _periodic_gaussian(
            x, y, centre, uniform(*INCLUSION_WIDTH)
        )
    pressure = torch.zeros_like(x)
    for _ in range(n_pulses):
        centre = torch.rand(2, generator=gen, dtype=torch.float64)
        pressure += uniform(*PULSE_AMPLITUDE) * _periodic_gaussian(x, y, centre, uniform(*PULSE_WIDTH))
    return log_rho.exp().to(dtype), pressure.to(dtype)


def sample_parameters(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Draw ``n`` trajectories: only a seed; the medium and the pulses follow from it."""
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator)
    return [{"seed": int(s)} for s in seeds]


def simulate(
    params_batch: Sequence[dict[str, Any]],
    resolution: Sequence[int],
    n_steps: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = True,
    cfl: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Simulate a batch of acoustic trajectories on the periodic unit square.

    Each parameter dict holds ``seed`` and optionally ``background_density`` (> 0),
    ``n_inclusions`` (>= 0), ``n_pulses`` (>= 1). Returns float32 ``pressure``, ``density``,
    ``speed_of_sound`` ``[traj, n_steps + 1, Nx, Ny]`` and ``velocity``
    ``[traj, n_steps + 1, Nx, Ny, 2]`` at ``t = 0.01 k`` on the grid ``x_i = i / Nx``.
    """
    resolution, n_steps = check_run(SPEC, params_batch, resolution, n_steps)
    densities, pressures = [], []
    for i, params in enumerate(params_batch):
        params = {**params, "seed": trajectory_seed(params, i, generator)}
        for key, low in (("background_density", 0.0), ("n_inclusions", -1), ("n_pulses", 0)):
            value = params.get(key)
            if value is not None and not (math.isfinite(float(value)) and float(value) > low):
                raise ValueError(f"{key}: got {value!r} for trajectory {i}, expected a value > {low}")
        rho, p = random_medium_and_pulses(params, resolution)
        densities.append(rho)
        pressures.append(p)
    device = torch.device(device)
    density = torch.stack(densities).to(device)
    pressure = torch.stack(pressures).to(device)
    velocity = torch.zeros((len(params_batch), 2, *resolution), dtype=torch.float64, device=device)
    lengths = tuple(high - low for low, high in DOMAIN)
    p_frames, u_frames, _ = solve_acoustic(
        pressure, velocity, density, BULK_MODULUS, lengths, DT, n_steps, cfl=cfl, progress=progress
    )
    frames = n_steps + 1
    return {
        "pressure": p_frames.float(),
        "density": density.float().unsqueeze(1).repeat(1, frames, 1, 1),
        "speed_of_sound": torch.sqrt(BULK_MODULUS / density).float().unsqueeze(1).repeat(1, frames, 1, 1),
        "velocity": u_frames.float().movedim(2, -1).contiguous(),
    }


SPEC = SystemSpec(
    name="acoustic_wave",
    field_names=("pressure", "density", "speed_of_sound", "velocity_x", "velocity_y"),
    vector_fields={"velocity": ("velocity_x", "velocity_y")},
    periodic=(True, True),
    domain=DOMAIN,
    dt=DT,
    default_resolution=(64, 64),
    default_n_steps=100,
    simulate=simulate,
    sample_parameters=sample_parameters,
    parameters=(
        Parameter("background_density", float, "background material density (> 0); default logU(0.5, 2)"),
        Parameter("n_inclusions", int, "number of smooth density inclusions (>= 0); default 0-4"),
        Parameter("n_pulses", int, "number of initial Gaussian pressure pulses (>= 1); default 1-4"),
    ),
    grid_centred=False,
    description="linear acoustics in a smooth random medium, Gaussian pulses, periodic unit square",
    min_resolution=4,
)
