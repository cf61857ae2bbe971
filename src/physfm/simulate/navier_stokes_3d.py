"""Three-dimensional incompressible Navier-Stokes in a periodic box, with a passive tracer.

This system is a physfm addition: The Well has no such dataset. It exists so that 3-D fields
(``[traj, time, x, y, z(, 3)]``) can be generated, stored in The Well's format and tested with a
solver whose accuracy can be checked against exact results.

Equations, on ``x, y, z in [0, 2 pi)``, all periodic::

    du/dt + grad p - nu lap u = -u . grad u,      div u = 0,      mean(p) = 0
    ds/dt - D lap s           = -u . grad s,      nu = 1 / Re,    D = nu / Sc

``Re = inf`` is allowed and gives the inviscid (Euler) equations with a non-diffusing tracer.
Units: the box side is ``2 pi``; both initial conditions have velocities of order one.

Initial conditions (``initial_condition``):

* ``"taylor_green"``: the Taylor-Green vortex ``u = (sin x cos y cos z, -cos x sin y cos z, 0)``
  (kinetic energy ``E0 = mean(|u|^2) / 2 = 1/8``), tracer ``s = (1 + sin x) / 2``. Deterministic:
  ``k0`` and ``seed`` are ignored. Every Fourier mode of this velocity has ``|k|^2 = 3`` and
  ``curl curl u = 3 u``, so the nonlinear term first changes the energy at order ``t^3``; until
  then the energy decays as ``E0 exp(-6 nu t)`` (``dE/dt = -nu mean(|omega|^2) = -6 nu E``).
* ``"turbulence"``: random-phase decaying turbulence. Each Fourier mode ``k`` of the velocity has
  a random complex direction perpendicular to ``k`` (divergence free) and the amplitude
  ``|u_k|^2 = E(|k|) / (4 pi |k|^2)`` of the energy spectrum ``E(k) ~ k^4 exp(-2 (k / k0)^2)``,
  scaled to unit rms velocity per component (``mean(|u|^2) = 3``). The tracer is an independent
  random-phase scalar with the same spectral shape, zero mean and unit rms. The random numbers
  are drawn on the CPU from ``torch.Generator().manual_seed(seed)`` for every integer
  wavenumber with ``|k_i| <= ceil(6 k0)`` (where ``k exp(-(k/k0)^2)`` has fallen below 1e-14 of
  its peak), independently of the grid, so one seed gives the *same* physical field at every
  resolution (truncated to the modes the grid holds) and on every device.

Numerics:

* Fourier pseudo-spectral on an ``Nx x Ny x Nz`` grid (even sizes), real FFT along ``z``; the
  Nyquist modes are dropped, so the retained modes are ``|k_i| < N_i / 2``, as in Dedalus'
  ``RealFourier`` basis (the 2-D ``shear_flow`` solver does the same).
* Rotational form with Leray projection: ``du/dt = P(u x omega) + nu lap u``, where
  ``P = I - k k^T / |k|^2`` removes the gradient part (``u . grad u = omega x u + grad |u|^2/2``,
  and the gradient goes into the pressure). The products are evaluated on a 3/2-padded grid,
  which is exact for quadratic terms, so this Galerkin system is identical (to round-off) to the
  truncated convective form, conserves kinetic energy exactly when ``nu = 0`` (up to the time
  stepping error) and keeps ``div u`` at round-off. The rotational form needs ``u`` and
  ``omega`` on the padded grid (6 inverse FFTs) where the convective form needs ``u`` and its 9
  gradients (12).
* The tracer is advanced in conservative form ``-div(u s)`` (equal to ``-u . grad s`` for a
  solenoidal ``u``): its mean is conserved exactly and it reuses the padded velocity, so a stage
  costs 7 inverse and 6 forward padded FFTs in all. Its variance is conserved exactly too when
  ``D = 0``, for the same reason as the energy.
* The mean velocity (``k = 0``) is conserved exactly (its nonlinear term is set to zero, which it
  is analytically).
* 4th-order integrating-factor (Lawson) Runge-Kutta: viscosity and diffusivity are integrated
  exactly; CFL-adaptive substeps are chosen per trajectory at the start of every output interval
  so that each stored frame lands exactly on ``t = 0.1 k`` and results do not depend on which
  other trajectories share the batch.
* float64 throughout; ``simulate`` returns float32 (the public dtype) unless asked otherwise.
* The pressure is diagnosed from its Poisson equation ``lap p = -d_i d_j (u_i u_j)`` with
  dealiased products and zero mean, for every frame (frame 0 included: both initial velocities
  are divergence free).

Deviations from The Well's conventions: none in the layout (t0 fields ``tracer``, ``pressure``
``[traj, time, x, y, z]``; t1 field ``velocity`` ``[traj, time, x, y, z, 3]``; coordinates are
the left cell edges ``2 pi i / N`` of the Fourier grid). There is no Well dataset to match, so
the parameter grid is physfm's own: Reynolds numbers the default 64^3 grid resolves
(``k_max eta`` of order one for the turbulence initial conditions).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from .base import (
    Parameter,
    SystemSpec,
    advance_in_substeps,
    check_run,
    grid_mesh,
    lawson_rk4_step,
    record_frames,
    trajectory_seed,
)

__all__ = [
    "SPEC",
    "PARAMETER_GRID",
    "INITIAL_CONDITIONS",
    "NavierStokes3DSolver",
    "taylor_green_velocity",
    "turbulence_coefficients",
    "simulate",
    "simulate_navier_stokes_3d",
    "sample_parameters",
]

DOMAIN = ((0.0, 2 * math.pi),) * 3
FRAME_DT = 0.1
INITIAL_CONDITIONS = ("taylor_green", "turbulence")
PARAMETER_GRID: dict[str, tuple[Any, ...]] = {
    "reynolds": (25.0, 50.0, 100.0, 200.0),
    "schmidt": (0.5, 1.0, 2.0),
    "k0": (2.0, 3.0, 4.0),
}
# Cube of drawn wavenumbers |k_i| <= ceil(K0_CUTOFF * k0): the mode amplitude k exp(-(k/k0)^2)
# is below 1e-14 of its peak there, so a finer grid would not see a different field.
K0_CUTOFF = 6.0
# The cube holds (2 ceil(6 k0) + 1)^3 modes x 3 components; k0 = 10 is ~1.8e6 modes (~90 MB).
MAX_K0 = 10.0
# RK4's stability limit on the imaginary axis is 2.83. The CFL number below bounds
# dt sum_i |u_i| / dx_i, and the largest retained wavenumber is pi / dx, so dt |u . k| <= 0.5 pi
# = 1.57 keeps a factor ~1.8 in hand, as in the 2-D shear_flow solver.
DEFAULT_CFL = 0.5
MAX_DT = 0.05


def taylor_green_velocity(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Taylor-Green vortex ``(sin x cos y cos z, -cos x sin y cos z, 0)`` on the grid."""
    ux = torch.sin(x) * torch.cos(y) * torch.cos(z)
    uy = -torch.cos(x) * torch.sin(y) * torch.cos(z)
    return ux, uy, torch.zeros_like(ux)


def _spectrum_amplitude(k: torch.Tensor, k0: float) -> torch.Tensor:
    """Per-mode amplitude ``sqrt(E(k) / (4 pi k^2))`` of ``E(k) ~ k^4 exp(-2 (k/k0)^2)`` (unscaled)."""
    return k * torch.exp(-((k / k0) ** 2))


def turbulence_coefficients(k0: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random-phase velocity and tracer Fourier coefficients on the grid-independent cube.

    Returns ``(u_hat [3, L, L, L], s_hat [L, L, L], m)`` with ``L = 2 m + 1``: complex128
    coefficients of ``u(x) = sum_k u_hat(k) exp(i k . x)`` for the integer wavenumbers
    ``-m ... m`` per axis (index ``m + k``), Hermitian (real fields), divergence free, with
    ``mean(|u|^2) = sum |u_hat|^2 = 3`` and ``mean(s^2) = 1``. Drawn on the CPU.
    """
    m = math.ceil(K0_CUTOFF * k0)
    gen = torch.Generator().manual_seed(int(seed))
    n = 2 * m + 1
    # One draw per component and mode (velocity x, y, z, then tracer), real and imaginary parts.
    raw = torch.randn(4, n, n, n, 2, generator=gen, dtype=torch.float64)
    a = torch.complex(raw[..., 0], raw[..., 1])
    # Hermitian symmetrisation c(k) = (a(k) + conj(a(-k))) / 2 makes the field real; index m + k
    # maps to m - k by flipping every spatial axis.
    a = 0.5 * (a + torch.conj(torch.flip(a, dims=(1, 2, 3))))
    ks = torch.arange(-m, m + 1, dtype=torch.float64)
    kx, ky, kz = torch.meshgrid(ks, ks, ks, indexing="ij")
    kvec = torch.stack([kx, ky, kz])
    k2 = kx**2 + ky**2 + kz**2
    safe_k2 = torch.where(k2 > 0, k2, 1.0)
    u = a[:3]
    # Leray projection onto k . u = 0 (even in k, so it keeps the Hermitian symmetry).
    u = u - kvec * (kvec * u).sum(0) / safe_k2
    s = a[3]
    # Rescale every mode to the prescribed amplitude: only the (random) phase and direction survive.
    # |u(k)| = |u(-k)| after symmetrisation, so the rescaling keeps the symmetry too.
    target = _spectrum_amplitude(torch.sqrt(k2), k0)
    norm_u = torch.sqrt((u.abs() ** 2).sum(0))
    u = u * torch.where(norm_u > 0, target / torch.where(norm_u > 0, norm_u, 1.0), 0.0)
    s = s * torch.where(s.abs() > 0, target / torch.where(s.abs() > 0, s.abs(), 1.0), 0.0)
    u[:, m, m, m] = 0.0
    s[m, m, m] = 0.0
    u = u * math.sqrt(3.0 / float((u.abs() ** 2).sum()))  # unit rms per velocity component
    s = s * math.sqrt(1.0 / float((s.abs() ** 2).sum()))  # unit rms tracer
    return u, s, m


class _PseudoSpectral3D:
    """Real-FFT transforms on an ``Nx x Ny x Nz`` periodic grid of ``[0, 2 pi)^3`` with Nyquist
    modes dropped, and 3/2-padded evaluation of products."""

    def __init__(self, resolution: tuple[int, int, int], device: torch.device):
        nx, ny, nz = resolution
        self.n = (nx, ny, nz)
        self.m = (3 * nx // 2, 3 * ny // 2, 3 * nz // 2)
        self.h = (nx // 2, ny // 2, nz // 2)  # retained |k_i| < N_i / 2
        f64 = torch.float64
        # The box side is 2 pi, so the angular wavenumbers are the integers.
        self.kx = torch.fft.fftfreq(nx, d=1.0 / nx, dtype=f64, device=device)[:, None, None]
        self.ky = torch.fft.fftfreq(ny, d=1.0 / ny, dtype=f64, device=device)[None, :, None]
        self.kz = torch.fft.rfftfreq(nz, d=1.0 / nz, dtype=f64, device=device)[None, None, :]
        self.k2 = self.kx**2 + self.ky**2 + self.kz**2
        # 1/k^2 with the mean mode set to 0 (pressure gauge; no projection of the mean).
        self.inv_k2 = torch.where(self.k2 > 0, 1.0 / torch.where(self.k2 > 0, self.k2, 1.0), 0.0)
        keep = torch.ones(nx, ny, nz // 2 + 1, dtype=torch.bool, device=device)
        keep[nx // 2, :, :] = False
        keep[:, ny // 2, :] = False
        keep[:, :, nz // 2] = False
        self.keep = keep
        hx, hy, _ = self.h
        mx, my, _ = self.m
        # (source, destination) index ranges of the retained low and high (negative) wavenumbers
        # along the full-spectrum axes x and y; along z (real FFT) only 0 ... h_z - 1.
        self._x = ((slice(0, hx), slice(0, hx)), (slice(nx - hx + 1, nx), slice(mx - hx + 1, mx)))
        self._y = ((slice(0, hy), slice(0, hy)), (slice(ny - hy + 1, ny), slice(my - hy + 1, my)))

    @property
    def size(self) -> int:
        return self.n[0] * self.n[1] * self.n[2]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Grid [..., Nx, Ny, Nz] -> coefficients [..., Nx, Ny, Nz//2+1], Nyquist dropped."""
        return torch.fft.rfftn(f, dim=(-3, -2, -1)) * self.keep

    def inverse(self, fh: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(fh, s=self.n, dim=(-3, -2, -1))

    def padded_inverse(self, fh: torch.Tensor) -> torch.Tensor:
        """Coefficients -> values on the 3/2-refined grid [..., Mx, My, Mz]."""
        mx, my, mz = self.m
        hz = self.h[2]
        pad = fh.new_zeros(*fh.shape[:-3], mx, my, mz // 2 + 1)
        for (sx, dx), (sy, dy) in itertools.product(self._x, self._y):
            pad[..., dx, dy, :hz] = fh[..., sx, sy, :hz]
        scale = (mx * my * mz) / self.size
        return torch.fft.irfftn(pad, s=self.m, dim=(-3, -2, -1)) * scale

    def padded_forward(self, g: torch.Tensor) -> torch.Tensor:
        """Values on the 3/2 grid -> truncated coefficients [..., Nx, Ny, Nz//2+1] (Nyquist dropped)."""
        nx, ny, nz = self.n
        hz = self.h[2]
        gh = torch.fft.rfftn(g, dim=(-3, -2, -1))
        out = gh.new_zeros(*g.shape[:-3], nx, ny, nz // 2 + 1)
        for (sx, dx), (sy, dy) in itertools.product(self._x, self._y):
            out[..., sx, sy, :hz] = gh[..., dx, dy, :hz]
        return out * (self.size / (self.m[0] * self.m[1] * self.m[2]))

    def curl(self, uh: torch.Tensor) -> torch.Tensor:
        """``i k x u_hat`` for coefficients [..., 3, Nx, Ny, Nz//2+1]."""
        ux, uy, uz = uh.unbind(-4)
        return torch.stack(
            [
                1j * (self.ky * uz - self.kz * uy),
                1j * (self.kz * ux - self.kx * uz),
                1j * (self.kx * uy - self.ky * ux),
            ],
            dim=-4,
        )

    def project(self, nh: torch.Tensor) -> torch.Tensor:
        """Leray projection ``(I - k k^T / |k|^2) n_hat``; the mean mode is set to zero."""
        kdotn = self.kx * nh[..., 0, :, :, :] + self.ky * nh[..., 1, :, :, :] + self.kz * nh[..., 2, :, :, :]
        kdotn = (kdotn * self.inv_k2).unsqueeze(-4)
        out = torch.stack(
            [
                nh[..., 0, :, :, :] - self.kx * kdotn[..., 0, :, :, :],
                nh[..., 1, :, :, :] - self.ky * kdotn[..., 0, :, :, :],
                nh[..., 2, :, :, :] - self.kz * kdotn[..., 0, :, :, :],
            ],
            dim=-4,
        )
        out[..., 0, 0, 0] = 0.0  # analytically mean(u x omega) = 0: momentum is conserved exactly
        return out

    def divergence(self, uh: torch.Tensor) -> torch.Tensor:
        return 1j * (self.kx * uh[..., 0, :, :, :] + self.ky * uh[..., 1, :, :, :] + self.kz * uh[..., 2, :, :, :])


class NavierStokes3DSolver:
    """Batched velocity/tracer pseudo-spectral solver (see the module docstring).

    State: coefficients ``[B, 4, Nx, Ny, Nz//2+1]`` (complex128) of ``(u_x, u_y, u_z, s)`` in the
    unnormalised ``rfftn`` convention, Nyquist modes zero.
    """

    def __init__(
        self,
        reynolds: torch.Tensor,
        schmidt: torch.Tensor,
        resolution: tuple[int, int, int],
        device: torch.device,
        cfl: float = DEFAULT_CFL,
        max_dt: float = MAX_DT,
    ):
        self.sp = _PseudoSpectral3D(resolution, device)
        # Convert before dividing: 1/Re computed in float32 would cost ~1e-8 relative accuracy.
        # Re = inf gives nu = 0 exactly (inviscid).
        nu = 1.0 / reynolds.to(device=device, dtype=torch.float64)
        diff = nu / schmidt.to(device=device, dtype=torch.float64)
        coeff = torch.stack([nu, nu, nu, diff], dim=1)[:, :, None, None, None]  # [B, 4, 1, 1, 1]
        # Linear operator of the integrating factor for (u_x, u_y, u_z, s): -nu k^2, -D k^2.
        self.linear = -coeff * self.sp.k2
        self.nu = nu
        self.cfl, self.max_dt = cfl, max_dt
        self.dx = tuple((hi - lo) / n for (lo, hi), n in zip(DOMAIN, resolution, strict=True))

    # --- state <-> physical fields -------------------------------------------------------------
    def state_from_grid(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Transform grid values ``u [B, 3, Nx, Ny, Nz]`` and ``s [B, Nx, Ny, Nz]``; the Leray
        projection removes any divergent part of ``u`` (none for the built-in initial conditions)."""
        sp = self.sp
        uh = sp.forward(u)
        mean = uh[:, :, 0, 0, 0].clone()
        uh = sp.project(uh)
        uh[:, :, 0, 0, 0] = mean
        return torch.cat([uh, sp.forward(s)[:, None]], dim=1)

    def state_from_coefficients(self, uh_cube: torch.Tensor, sh_cube: torch.Tensor, m: int) -> torch.Tensor:
        """Place normalised cube coefficients (``turbulence_coefficients``: ``[B, 3, L, L, L]``,
        ``[B, L, L, L]`` for wavenumbers ``-m ... m``) on this grid, dropping what it cannot hold."""
        sp = self.sp
        nx, ny, nz = sp.n
        device = sp.k2.device
        state = torch.zeros(uh_cube.shape[0], 4, nx, ny, nz // 2 + 1, dtype=torch.complex128, device=device)
        cube = torch.cat([uh_cube, sh_cube[:, None]], dim=1).to(device)
        # Retained wavenumbers of each grid axis (|k| < N/2), intersected with the cube's |k| <= m.
        ax = [k for k in range(-(nx // 2) + 1, nx // 2) if abs(k) <= m]
        ay = [k for k in range(-(ny // 2) + 1, ny // 2) if abs(k) <= m]
        az = [k for k in range(0, nz // 2) if k <= m]
        ix = torch.tensor([k % nx for k in ax], device=device)
        iy = torch.tensor([k % ny for k in ay], device=device)
        iz = torch.tensor(az, device=device)
        cx = torch.tensor([m + k for k in ax], device=device)
        cy = torch.tensor([m + k for k in ay], device=device)
        cz = torch.tensor([m + k for k in az], device=device)
        block = cube[:, :, cx][:, :, :, cy][:, :, :, :, cz]
        state[:, :, ix[:, None, None], iy[None, :, None], iz[None, None, :]] = block * sp.size
        return state

    def fields(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Grid fields [B, Nx, Ny, Nz] (float64) of the current state, pressure included."""
        sp = self.sp
        uh = state[:, :3]
        u = sp.padded_inverse(uh)
        ux, uy, uz = u.unbind(1)
        # lap p = -d_i d_j (u_i u_j): p_hat = -k_i k_j (u_i u_j)_hat / |k|^2, zero mean.
        prods = sp.padded_forward(torch.stack([ux * ux, uy * uy, uz * uz, ux * uy, ux * uz, uy * uz], dim=1))
        kx, ky, kz = sp.kx, sp.ky, sp.kz
        kk = (
            kx * kx * prods[:, 0]
            + ky * ky * prods[:, 1]
            + kz * kz * prods[:, 2]
            + 2 * (kx * ky * prods[:, 3] + kx * kz * prods[:, 4] + ky * kz * prods[:, 5])
        )
        ph = -kk * sp.inv_k2
        grid = sp.inverse(torch.cat([state, ph[:, None]], dim=1))
        return {
            "tracer": grid[:, 3],
            "pressure": grid[:, 4],
            "velocity_x": grid[:, 0],
            "velocity_y": grid[:, 1],
            "velocity_z": grid[:, 2],
        }

    # --- dynamics ------------------------------------------------------------------------------
    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        """``(P(u x omega), -div(u s))``, 3/2-dealiased, as coefficients [B, 4, Nx, Ny, Nz//2+1]."""
        sp = self.sp
        uh, sh = state[:, :3], state[:, 3]
        grid = sp.padded_inverse(torch.cat([uh, sp.curl(uh), sh[:, None]], dim=1))
        u, w, s = grid[:, :3], grid[:, 3:6], grid[:, 6:7]
        ux, uy, uz = u.unbind(1)
        wx, wy, wz = w.unbind(1)
        products = torch.stack([uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx], dim=1)
        products = sp.padded_forward(torch.cat([products, u * s], dim=1))
        # The conservative tracer flux has an exactly zero mean mode (it is multiplied by k = 0).
        return torch.cat([sp.project(products[:, :3]), -sp.divergence(products[:, 3:])[:, None]], dim=1)

    def max_stable_dt(self, state: torch.Tensor) -> torch.Tensor:
        """Per-trajectory CFL time step ``cfl / max(sum_i |u_i| / dx_i)``, capped at ``max_dt``."""
        u = self.sp.inverse(state[:, :3])
        rate = sum(u[:, i].abs() / self.dx[i] for i in range(3)).amax(dim=(-3, -2, -1))
        return torch.clamp(self.cfl / rate.clamp_min(1e-12), max=self.max_dt)

    def step(self, state: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """One Lawson RK4 step (:func:`~physfm.simulate.base.lawson_rk4_step`); ``dt`` is per trajectory [B]."""
        return lawson_rk4_step(self.linear, self.nonlinear, state, dt)

    def advance(self, state: torch.Tensor, duration: float) -> tuple[torch.Tensor, int]:
        """Advance exactly ``duration`` with per-trajectory CFL substeps; returns (state, steps)."""
        return advance_in_substeps(self.step, state, self.max_stable_dt(state), duration)


def _validate(params: dict[str, Any], index: int) -> None:
    where = f" (trajectory {index})"
    v = params.get("reynolds")
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or math.isnan(v) or v <= 0:
        raise ValueError(f"reynolds: got {v!r}{where}, expected a positive number (inf for inviscid flow)")
    v = params.get("schmidt", 1.0)
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"schmidt: got {v!r}{where}, expected a positive finite number")
    ic = params.get("initial_condition", "turbulence")
    if ic not in INITIAL_CONDITIONS:
        raise ValueError(f"initial_condition: got {ic!r}{where}, expected one of {list(INITIAL_CONDITIONS)}")
    if ic == "turbulence":
        v = params.get("k0", 2.0)
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not (0 < v <= MAX_K0):
            raise ValueError(f"k0: got {v!r}{where}, expected a peak wavenumber 0 < k0 <= {MAX_K0:g}")
        seed = params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed: got {seed!r}{where}, expected a non-negative integer")


def simulate(
    params_batch: list[dict[str, Any]],
    resolution: Sequence[int] | None = None,
    n_steps: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = True,
    cfl: float = DEFAULT_CFL,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Simulate a batch of 3-D flows (one dict of parameters per trajectory).

    Each dict holds ``reynolds``, optionally ``schmidt`` (default 1), ``initial_condition``
    (default ``"turbulence"``), and for turbulence ``k0`` (default 2) and ``seed`` (drawn from
    ``generator`` when missing). Returns Well-layout tensors on ``device``: ``tracer``,
    ``pressure`` ``[B, T, Nx, Ny, Nz]`` and ``velocity`` ``[B, T, Nx, Ny, Nz, 3]`` with
    ``T = n_steps + 1`` frames at ``t = 0.1 k``.
    """
    res, n_steps = check_run(SPEC, params_batch, resolution, n_steps, fourier=True, cfl=cfl)
    device = torch.device(device)
    for i, p in enumerate(params_batch):
        _validate(p, i)

    solver = NavierStokes3DSolver(
        torch.tensor([float(p["reynolds"]) for p in params_batch], dtype=torch.float64),
        torch.tensor([float(p.get("schmidt", 1.0)) for p in params_batch], dtype=torch.float64),
        res,
        device,
        cfl=cfl,
    )
    x, y, z = grid_mesh(DOMAIN, res, centred=False, device=device)
    states = []
    for i, p in enumerate(params_batch):
        if p.get("initial_condition", "turbulence") == "taylor_green":
            u = torch.stack(taylor_green_velocity(x, y, z))
            states.append(solver.state_from_grid(u[None], (0.5 * (1 + torch.sin(x)))[None]))
            continue
        seed = trajectory_seed(p, i, generator)
        uc, sc, m = turbulence_coefficients(float(p.get("k0", 2.0)), int(seed))
        states.append(solver.state_from_coefficients(uc[None], sc[None], m))
    state = torch.cat(states)

    def advance():
        nonlocal state
        state, n_sub = solver.advance(state, FRAME_DT)
        return solver.fields(state), n_sub

    out = record_frames("navier_stokes_3d", solver.fields(state), advance, n_steps, progress, dtype)
    return {"tracer": out["tracer"], "pressure": out["pressure"],
            "velocity": torch.stack([out[f"velocity_{axis}"] for axis in "xyz"], dim=-1)}


def simulate_navier_stokes_3d(
    reynolds: float = 100.0,
    schmidt: float = 1.0,
    initial_condition: str = "turbulence",
    k0: float = 2.0,
    seed: int = 0,
    resolution: Sequence[int] = (64, 64, 64),
    n_steps: int = 50,
    device: torch.device | str = "cpu",
    cfl: float = DEFAULT_CFL,
    progress: bool = False,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """One trajectory: returns ``{"tracer", "pressure", "velocity_x", "velocity_y", "velocity_z"}``,
    each ``[n_steps + 1, Nx, Ny, Nz]`` on ``device`` in ``dtype`` (float64 by default, the
    solver's precision), on the grid ``2 pi (i, j, l) / N`` with frame ``k`` at ``t = 0.1 k``.
    To write a Well dataset instead, use ``physfm.simulate.generate("navier_stokes_3d", out, ...)``."""
    params = {
        "reynolds": reynolds,
        "schmidt": schmidt,
        "initial_condition": initial_condition,
        "k0": k0,
        "seed": seed,
    }
    out = simulate([params], resolution, n_steps, device=device, progress=progress, cfl=cfl, dtype=dtype)
    return {
        "tracer": out["tracer"][0],
        "pressure": out["pressure"][0],
        **{f"velocity_{c}": out["velocity"][0, ..., i] for i, c in enumerate("xyz")},
    }


def merge_parameters(drawn: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """The Taylor-Green vortex has no random phases and no peak wavenumber: fixing it drops the
    drawn ``k0`` and ``seed``, so stored files are not split by parameters that change nothing."""
    out = drawn | fixed
    if out.get("initial_condition") == "taylor_green":
        out.pop("k0", None)
        out.pop("seed", None)
    return out


def sample_parameters(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """``n`` turbulence trajectories: ``reynolds``, ``schmidt`` and ``k0`` uniform over
    :data:`PARAMETER_GRID`, and a seed each for the random phases. The Taylor-Green vortex is
    not drawn (it is one deterministic flow per ``(Re, Sc)``, so held-out trajectories would
    repeat training ones); fix ``initial_condition="taylor_green"`` to get it."""
    draws = {
        name: torch.randint(len(values), (n,), generator=generator).tolist()
        for name, values in PARAMETER_GRID.items()
    }
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    return [
        {name: PARAMETER_GRID[name][draws[name][i]] for name in PARAMETER_GRID}
        | {"initial_condition": "turbulence", "seed": seeds[i]}
        for i in range(n)
    ]


SPEC = SystemSpec(
    name="navier_stokes_3d",
    field_names=("tracer", "pressure", "velocity_x", "velocity_y", "velocity_z"),
    vector_fields={"velocity": ("velocity_x", "velocity_y", "velocity_z")},
    periodic=(True, True, True),
    domain=DOMAIN,
    dt=FRAME_DT,
    default_resolution=(64, 64, 64),
    default_n_steps=50,  # t = 0 ... 5: ~10-20 eddy turnovers of the turbulence initial conditions
    simulate=simulate,
    sample_parameters=sample_parameters,
    parameters=(
        Parameter("reynolds", float, "Reynolds number Re (nu = 1/Re, inf: inviscid); grid 25 ... 200"),
        Parameter("schmidt", float, "Schmidt number Sc of the tracer (D = nu/Sc); grid 0.5, 1, 2"),
        Parameter("initial_condition", str, "initial velocity and tracer", choices=INITIAL_CONDITIONS),
        Parameter("k0", float, f"peak wavenumber of the turbulence spectrum (0 < k0 <= {MAX_K0:g}); grid 2, 3, 4"),
    ),
    axis_names=("x", "y", "z"),
    grid_centred=False,
    description="3-D periodic incompressible Navier-Stokes (Taylor-Green or decaying turbulence) "
    "with a passive tracer (physfm)",
    min_resolution=4,
    merge_parameters=merge_parameters,
    # Stored file attributes, spelt like shear_flow's ("Reynolds", "Schmidt").
    extra={
        "file_parameters": {
            "reynolds": "Reynolds",
            "schmidt": "Schmidt",
            "initial_condition": "initial_condition",
            "k0": "k0",
        }
    },
)
