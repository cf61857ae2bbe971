"""Periodic shear flow: The Well's ``shear_flow`` system, re-implemented in PyTorch.

Equations (The Well, generated there with Dedalus on a Fourier x Fourier basis)::

    du/dt + grad p - nu lap u = -u . grad u,      div u = 0,      integ(p) = 0
    ds/dt - D lap s           = -u . grad s,      nu = 1 / Re,    D = nu / Sc

on x in [0, 1), y in [-1, 1), both periodic. The initial condition is The Well's
``init_standard_shear`` (``n_shear`` tanh shear layers in ``u_x``, sinusoidal blobs of ``u_y``
on each layer, tracer = ``u_x``, pressure = 0), and the parameter grid is The Well's:
Re in {1e4, 5e4, 1e5, 5e5}, Sc in {0.1, 0.2, 0.5, 1, 2, 5, 10}, n_shear in {2, 4},
n_blobs in {2, 3, 4, 5}, width in {0.25, 0.5, 1, 2, 4}.

Numerics. In 2-D the Galerkin-truncated primitive-variable system (Leray projection of
the 3/2-dealiased ``u . grad u``) is *identical* to the truncated vorticity system
``dw/dt = -u . grad w + nu lap w`` with ``u = mean(u) + curl psi``, ``lap psi = -w``, because the
dealiased products are exact for trigonometric polynomials. The vorticity form is cheaper
(6 + 2 padded FFTs per stage instead of 8 + 3) and keeps ``div u = 0`` to round-off, so the
solver steps ``(w, s)`` in Fourier space:

* real FFT basis on the ``Nx x Ny`` grid with the Nyquist modes dropped, as Dedalus'
  ``RealFourier`` does; the initial grid values are transformed as Dedalus' ``u['g'] = ...``;
* nonlinear terms evaluated on a 3/2-padded grid (the 3/2 rule: exact for quadratic terms);
* 4th-order integrating-factor (Lawson) Runge-Kutta: viscosity/diffusivity integrated exactly;
* CFL-adaptive substeps, chosen per trajectory at the start of every output interval so that
  each stored frame lands exactly on ``t = 0.1 k`` (and results do not depend on which other
  trajectories share the batch);
* float64 throughout; fields are returned as float32 (the public dtype) by ``simulate``.

The pressure is diagnosed from its Poisson equation ``lap p = -div(u . grad u)`` (zero mean),
which is what Dedalus' pressure multiplier converges to. Frame 0 is the initial condition
exactly as The Well stores it: the raw ``init_standard_shear`` grid values with ``p = 0``.
That velocity is not exactly divergence free (``u_y`` varies in y); like Dedalus' first implicit
step, the solver evolves its divergence-free (Leray) part.
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
    fourier_wavenumbers,
    grid_mesh,
    lawson_rk4_step,
    record_frames,
)

__all__ = [
    "SPEC",
    "PARAMETER_GRID",
    "initial_condition",
    "simulate",
    "simulate_shear_flow",
    "sample_parameters",
]

DOMAIN = ((0.0, 1.0), (-1.0, 1.0))
FRAME_DT = 0.1
# The Well's parameter grid (datasets/shear_flow/README.md): 28 PDE parameters x 40 initial conditions.
PARAMETER_GRID: dict[str, tuple[Any, ...]] = {
    "reynolds": (1e4, 5e4, 1e5, 5e5),
    "schmidt": (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
    "n_shear": (2, 4),
    "n_blobs": (2, 3, 4, 5),
    "width": (0.25, 0.5, 1.0, 2.0, 4.0),
}
# Dedalus run of The Well: CFL safety 0.2 with RK222 and max_dt = 1e-2. RK4 is far more accurate
# per step, and its stability limit on the imaginary axis (2.83) allows dt |u|_max pi / dx < 2.8;
# 0.5 keeps a factor ~1.8 in hand.
DEFAULT_CFL = 0.5
MAX_DT = 1e-2


def initial_condition(
    x: torch.Tensor, y: torch.Tensor, n_shear: int, n_blobs: int, width: float,
    perturbation: float = 0.0, seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Well's ``init_standard_shear``: returns ``(u_x, u_y)`` on the grid ``x, y`` ([x, y]).

    ``n_shear`` tanh layers at ``y_k = -1 + (2k + 1) / n_shear`` with alternating sign, each of
    width ``0.1 * 2 width / n_shear``; ``u_y`` carries ``0.1 sin(+-n_blobs pi x)`` Gaussian blobs
    on each layer.

    ``perturbation > 0`` is a physfm deviation from The Well, whose initial condition is a deterministic
    function of ``(n_shear, n_blobs, width)``, so that two trajectories with the same parameters are the same
    flow at the start. With it, each layer (drawn from ``seed``) moves by up to ``perturbation / 4`` of the
    layer spacing, its blobs get a random phase, and their amplitude is scaled by ``1 +- perturbation / 2``:
    every trajectory starts from its own initial condition, which an experiment needs to split data by
    initial condition.
    """
    if perturbation < 0 or not math.isfinite(perturbation):
        raise ValueError(f"perturbation: got {perturbation!r}, expected a finite number >= 0")
    offsets, phases, amplitudes = [0.0] * n_shear, [0.0] * n_shear, [1.0] * n_shear
    if perturbation > 0:
        if seed is None:
            raise ValueError("seed: a perturbed shear-flow initial condition needs a per-trajectory 'seed'")
        draws = torch.rand(n_shear, 3, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        spacing = 2.0 / n_shear
        offsets = (perturbation * spacing / 4 * (2 * draws[:, 0] - 1)).tolist()
        phases = (2 * math.pi * draws[:, 1]).tolist()
        amplitudes = (1 + perturbation / 2 * (2 * draws[:, 2] - 1)).tolist()
    shear = torch.zeros_like(x + y)
    blobs = torch.zeros_like(shear)
    for i in range(n_shear):
        y_k = -1.0 + 2.0 * i / n_shear + 1.0 / n_shear + offsets[i]  # linspace(-1, 1, n, endpoint=False) + 1/n
        sign = 2 * (i % 2) - 1
        ys = n_shear * (y - y_k) / 2 / width
        shear = shear + sign * 0.5 * torch.tanh(ys / 0.1)
        blobs = blobs + 0.1 * amplitudes[i] * torch.sin(
            sign * n_blobs * math.pi * x / (DOMAIN[0][1] - DOMAIN[0][0]) + phases[i]
        ) * torch.exp(-(ys**2) / 0.01)
    return shear + 0.5, blobs


class _PseudoSpectral2D:
    """Real-FFT transforms on an ``Nx x Ny`` periodic grid with Nyquist modes dropped, and
    3/2-padded evaluation of products."""

    def __init__(self, resolution: tuple[int, int], device: torch.device):
        nx, ny = resolution
        self.nx, self.ny = nx, ny
        self.mx, self.my = 3 * nx // 2, 3 * ny // 2
        self.kx, self.ky = fourier_wavenumbers(DOMAIN, resolution, device=device)
        self.k2 = self.kx**2 + self.ky**2
        # 1/k^2 with the mean mode set to 0 (the mean is carried separately / gauged to 0).
        self.inv_k2 = torch.where(self.k2 > 0, 1.0 / torch.where(self.k2 > 0, self.k2, 1.0), 0.0)
        keep = torch.ones(nx, ny // 2 + 1, dtype=torch.bool, device=device)
        keep[nx // 2, :] = False
        keep[:, ny // 2] = False
        self.keep = keep
        self.hx, self.hy = nx // 2, ny // 2  # retained |k| < N/2

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Grid [..., Nx, Ny] -> coefficients [..., Nx, Ny//2+1], Nyquist dropped."""
        return torch.fft.rfft2(f) * self.keep

    def inverse(self, fh: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(fh, s=(self.nx, self.ny))

    def padded_inverse(self, fh: torch.Tensor) -> torch.Tensor:
        """Coefficients -> values on the 3/2-refined grid [..., Mx, My]."""
        hx, hy = self.hx, self.hy
        pad = fh.new_zeros(*fh.shape[:-2], self.mx, self.my // 2 + 1)
        pad[..., :hx, :hy] = fh[..., :hx, :hy]
        pad[..., self.mx - hx + 1 :, :hy] = fh[..., self.nx - hx + 1 :, :hy]
        scale = (self.mx * self.my) / (self.nx * self.ny)
        return torch.fft.irfft2(pad, s=(self.mx, self.my)) * scale

    def padded_forward(self, g: torch.Tensor) -> torch.Tensor:
        """Values on the 3/2 grid -> truncated coefficients [..., Nx, Ny//2+1] (Nyquist dropped)."""
        hx, hy = self.hx, self.hy
        gh = torch.fft.rfft2(g)
        out = gh.new_zeros(*g.shape[:-2], self.nx, self.ny // 2 + 1)
        out[..., :hx, :hy] = gh[..., :hx, :hy]
        out[..., self.nx - hx + 1 :, :hy] = gh[..., self.mx - hx + 1 :, :hy]
        return out * ((self.nx * self.ny) / (self.mx * self.my))


class ShearFlowSolver:
    """Batched vorticity/tracer pseudo-spectral solver (see the module docstring).

    State: vorticity and tracer coefficients ``[B, Nx, Ny//2+1]`` plus the (conserved) mean
    velocity ``[B, 2]``.
    """

    def __init__(
        self,
        reynolds: torch.Tensor,
        schmidt: torch.Tensor,
        resolution: tuple[int, int],
        device: torch.device,
        cfl: float = DEFAULT_CFL,
        max_dt: float = MAX_DT,
    ):
        self.sp = _PseudoSpectral2D(resolution, device)
        # Convert before dividing: 1/Re computed in float32 would cost ~1e-8 relative accuracy.
        nu = 1.0 / reynolds.to(device=device, dtype=torch.float64)[:, None, None]
        diff = nu / schmidt.to(device=device, dtype=torch.float64)[:, None, None]
        # Linear operators of the integrating factor, [B, 2, Nx, Ny//2+1] for (w, s).
        self.linear = -torch.stack([nu * self.sp.k2, diff * self.sp.k2], dim=1)
        self.cfl, self.max_dt = cfl, max_dt
        self.dx = (DOMAIN[0][1] - DOMAIN[0][0]) / resolution[0]
        self.dy = (DOMAIN[1][1] - DOMAIN[1][0]) / resolution[1]

    # --- state <-> physical fields -------------------------------------------------------
    def state_from_grid(self, ux: torch.Tensor, uy: torch.Tensor, s: torch.Tensor):
        """Transform grid values [B, Nx, Ny]; the curl discards the divergent part of u."""
        sp = self.sp
        uxh, uyh = sp.forward(ux), sp.forward(uy)
        wh = 1j * sp.kx * uyh - 1j * sp.ky * uxh
        mean = torch.stack([uxh[:, 0, 0].real, uyh[:, 0, 0].real], dim=1) / (sp.nx * sp.ny)
        return torch.stack([wh, sp.forward(s)], dim=1), mean

    def velocity_coefficients(
        self, wh: torch.Tensor, mean: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sp = self.sp
        psih = wh * sp.inv_k2  # lap psi = -w
        uxh = 1j * sp.ky * psih
        uyh = -1j * sp.kx * psih
        n = sp.nx * sp.ny
        uxh[:, 0, 0] = mean[:, 0] * n
        uyh[:, 0, 0] = mean[:, 1] * n
        return uxh, uyh

    def fields(self, state: torch.Tensor, mean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Grid fields [B, Nx, Ny] (float64) of the current state, pressure included."""
        sp = self.sp
        uxh, uyh = self.velocity_coefficients(state[:, 0], mean)
        grads = torch.stack([1j * sp.kx * uxh, 1j * sp.ky * uxh, 1j * sp.kx * uyh, 1j * sp.ky * uyh], dim=1)
        dxux, dyux, dxuy, dyuy = sp.padded_inverse(grads).unbind(1)
        # lap p = -div(u . grad u) = -(d_i u_j d_j u_i) for div-free u; zero-mean gauge.
        rhs = sp.padded_forward(-(dxux * dxux + 2 * dyux * dxuy + dyuy * dyuy))
        ph = -rhs * sp.inv_k2
        return {
            "tracer": sp.inverse(state[:, 1]),
            "pressure": sp.inverse(ph),
            "velocity_x": sp.inverse(uxh),
            "velocity_y": sp.inverse(uyh),
        }

    # --- dynamics ----------------------------------------------------------------------------
    def nonlinear(self, state: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``-(u . grad)(w, s)``, 3/2-dealiased, as coefficients [B, 2, Nx, Ny//2+1]."""
        sp = self.sp
        wh, sh = state[:, 0], state[:, 1]
        uxh, uyh = self.velocity_coefficients(wh, mean)
        spectra = torch.stack(
            [uxh, uyh, 1j * sp.kx * wh, 1j * sp.ky * wh, 1j * sp.kx * sh, 1j * sp.ky * sh], dim=1
        )
        ux, uy, wx, wy, sx, sy = sp.padded_inverse(spectra).unbind(1)
        adv = torch.stack([ux * wx + uy * wy, ux * sx + uy * sy], dim=1)
        return -sp.padded_forward(adv)

    def max_stable_dt(self, state: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Per-trajectory CFL time step ``cfl / max(|u_x|/dx + |u_y|/dy)``, capped at max_dt."""
        uxh, uyh = self.velocity_coefficients(state[:, 0], mean)
        ux, uy = self.sp.inverse(uxh), self.sp.inverse(uyh)
        rate = (ux.abs() / self.dx + uy.abs() / self.dy).amax(dim=(-2, -1))
        return torch.clamp(self.cfl / rate.clamp_min(1e-12), max=self.max_dt)

    def step(self, state: torch.Tensor, mean: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """One Lawson RK4 step (:func:`~physfm.simulate.base.lawson_rk4_step`); ``dt`` is per trajectory [B]."""
        return lawson_rk4_step(self.linear, lambda s: self.nonlinear(s, mean), state, dt)

    def advance(self, state: torch.Tensor, mean: torch.Tensor, duration: float) -> tuple[torch.Tensor, int]:
        """Advance exactly ``duration`` with per-trajectory CFL substeps; returns (state, steps)."""
        return advance_in_substeps(lambda s, dt: self.step(s, mean, dt), state, self.max_stable_dt(state, mean),
                                   duration)


def _as_float64(values: Sequence[float], device: torch.device) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)


def _validate(params: dict[str, Any]) -> None:
    for name in ("reynolds", "schmidt", "width"):
        v = params.get(name)
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: got {v!r}, expected a positive finite number")
    for name in ("n_shear", "n_blobs"):
        v = params.get(name)
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v).is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: got {params.get(name)!r}, expected a positive integer")


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
    """Simulate a batch of shear flows (one dict of parameters per trajectory).

    Returns Well-layout tensors on ``device``: ``tracer``, ``pressure`` ``[B, T, Nx, Ny]`` and
    ``velocity`` ``[B, T, Nx, Ny, 2]`` with ``T = n_steps + 1`` frames at ``t = 0.1 k``.
    The initial condition is deterministic unless ``perturbation > 0``, which draws it from each
    trajectory's ``seed`` (see :func:`initial_condition`), so ``generator`` is unused (kept for the common
    simulator signature).
    """
    del generator
    res, n_steps = check_run(SPEC, params_batch, resolution, n_steps, fourier=True, cfl=cfl)
    device = torch.device(device)
    for p in params_batch:
        _validate(p)

    x, y = grid_mesh(DOMAIN, res, centred=False, device=device)
    ics = [
        initial_condition(x, y, int(p["n_shear"]), int(p["n_blobs"]), float(p["width"]),
                          float(p.get("perturbation", 0.0)), p.get("seed"))
        for p in params_batch
    ]
    ux = torch.stack([u for u, _ in ics])
    uy = torch.stack([v for _, v in ics])
    solver = ShearFlowSolver(
        _as_float64([p["reynolds"] for p in params_batch], device),
        _as_float64([p["schmidt"] for p in params_batch], device),
        res,
        device,
        cfl=cfl,
    )
    state, mean = solver.state_from_grid(ux, uy, ux.clone())

    def advance():
        nonlocal state
        state, n_sub = solver.advance(state, mean, FRAME_DT)
        return solver.fields(state, mean), n_sub

    # Frame 0 is the initial condition as The Well stores it (raw grid values, p = 0).
    first = {"tracer": ux, "pressure": torch.zeros_like(ux), "velocity_x": ux, "velocity_y": uy}
    out = record_frames("shear_flow", first, advance, n_steps, progress, dtype)
    return {"tracer": out["tracer"], "pressure": out["pressure"],
            "velocity": torch.stack([out["velocity_x"], out["velocity_y"]], dim=-1)}


def simulate_shear_flow(
    reynolds: float = 1e5,
    schmidt: float = 1.0,
    n_shear: int = 2,
    n_blobs: int = 2,
    width: float = 1.0,
    resolution: Sequence[int] = (128, 256),
    n_steps: int = 200,
    device: torch.device | str = "cpu",
    cfl: float = DEFAULT_CFL,
    progress: bool = False,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """One shear-flow trajectory with The Well's parameters, exposed as
    ``physfm.simulate.shear_flow(...)``.

    Returns ``{"tracer", "pressure", "velocity_x", "velocity_y"}``, each a tensor
    ``[n_steps + 1, Nx, Ny]`` on ``device`` in ``dtype`` (float64 by default, the solver's
    precision), on the grid ``x = i / Nx``, ``y = -1 + 2 j / Ny`` (``SPEC.coordinates(resolution)``)
    with frame ``k`` at ``t = 0.1 k``. To write a Well dataset instead, use
    ``physfm.simulate.generate("shear_flow", out, reynolds=..., ...)``.
    """
    params = {
        "reynolds": reynolds,
        "schmidt": schmidt,
        "n_shear": n_shear,
        "n_blobs": n_blobs,
        "width": width,
    }
    out = simulate([params], resolution, n_steps, device=device, progress=progress, cfl=cfl, dtype=dtype)
    return {
        "tracer": out["tracer"][0],
        "pressure": out["pressure"][0],
        "velocity_x": out["velocity"][0, ..., 0],
        "velocity_y": out["velocity"][0, ..., 1],
    }


def sample_parameters(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """``n`` parameter sets from The Well's grid (4 x 7 x 2 x 4 x 5 = 1120 combinations):
    a random permutation of the grid, cycled if ``n`` exceeds it, so draws are distinct. Each also gets the
    ``seed`` of its initial condition, which only a ``perturbation > 0`` uses."""
    combos = list(itertools.product(*PARAMETER_GRID.values()))
    out: list[dict[str, Any]] = []
    while len(out) < n:
        order = torch.randperm(len(combos), generator=generator).tolist()
        out.extend(dict(zip(PARAMETER_GRID, combos[i], strict=True)) for i in order[: n - len(out)])
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    return [{**params, "seed": seed} for params, seed in zip(out, seeds, strict=True)]


SPEC = SystemSpec(
    name="shear_flow",
    field_names=("tracer", "pressure", "velocity_x", "velocity_y"),
    vector_fields={"velocity": ("velocity_x", "velocity_y")},
    periodic=(True, True),
    domain=DOMAIN,
    dt=FRAME_DT,
    default_resolution=(128, 256),
    default_n_steps=199,  # 200 frames, t = 0 ... 19.9, as The Well
    simulate=simulate,
    sample_parameters=sample_parameters,
    parameters=(
        Parameter("reynolds", float, "Reynolds number Re (nu = 1/Re); The Well: 1e4, 5e4, 1e5, 5e5"),
        Parameter("schmidt", float, "Schmidt number Sc (D = nu/Sc); The Well: 0.1 ... 10"),
        Parameter("n_shear", int, "number of tanh shear layers; The Well: 2, 4"),
        Parameter("n_blobs", int, "number of u_y blobs per layer; The Well: 2 ... 5"),
        Parameter("width", float, "shear-layer width factor; The Well: 0.25 ... 4"),
        Parameter("perturbation", float, "random initial-condition perturbation per trajectory (layer offsets, "
                  "blob phases and amplitudes); 0, The Well's, makes the start a function of the parameters"),
    ),
    grid_centred=False,
    description="2-D periodic incompressible Navier-Stokes shear layers with a passive tracer (The Well)",
    # Stored file attributes; The Well spells the PDE parameters "Reynolds" and "Schmidt".
    extra={
        "file_parameters": {
            "reynolds": "Reynolds",
            "schmidt": "Schmidt",
            "n_shear": "n_shear",
            "n_blobs": "n_blobs",
            "width": "width",
            "perturbation": "perturbation",
        }
    },
)
