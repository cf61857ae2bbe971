"""Gray-Scott reaction-diffusion: The Well's ``gray_scott_reaction_diffusion`` in PyTorch.

Equations (The Well; generated there with Chebfun's ``spin2``)::

    dA/dt = delta_A lap A - A B^2 + f (1 - A)
    dB/dt = delta_B lap B + A B^2 - (f + k) B

on the periodic square [-1, 1)^2 with ``delta_A = 2e-5``, ``delta_B = 1e-5``. The Well's six
(f, k) parameter sets give qualitatively different patterns (:data:`PATTERNS`), and its two
families of random initial conditions are reproduced from the generating code
(danfortunato/spectral-gray-scott):

* ``"gaussians"``: A = normalise(1 - G1), B = normalise(G2), where each G is a periodically
  tiled sum of 10-100 Gaussians ``a exp(-s |x - c|^2)``, a ~ U(1, 3), s ~ U(150, 300), and
  normalise maps the field onto [0, 1];
* ``"fourier"``: a random trigonometric interpolant of 32 x 32 uniform values about the third
  (non-trivial) homogeneous steady state when it exists, otherwise about (A, B) = (1, 0).

Numerics as The Well: Fourier pseudo-spectral in space with the 2/3 rule on the nonlinear
terms, and ETDRK4 (Cox & Matthews; coefficients by Kassam & Trefethen's contour integrals)
with time step 1; frames are stored every 10 time units. The Well runs 1000 stored steps
(t = 10 000); the default here is 200 so that CPU runs stay short.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from .base import Parameter, SystemSpec, check_run, fourier_wavenumbers, grid_coordinates, trajectory_seed

__all__ = [
    "PATTERNS",
    "SPEC",
    "initial_condition",
    "sample_parameters",
    "simulate",
    "simulate_gray_scott",
    "solve_gray_scott",
]

DOMAIN = ((-1.0, 1.0), (-1.0, 1.0))
DELTA_A, DELTA_B = 2e-5, 1e-5
FRAME_DT = 10.0
SOLVER_DT = 1.0
#: The Well's (f, k) parameter sets, by the pattern they produce.
PATTERNS: dict[str, tuple[float, float]] = {
    "gliders": (0.014, 0.054),
    "bubbles": (0.098, 0.057),
    "maze": (0.029, 0.057),
    "worms": (0.058, 0.065),
    "spirals": (0.018, 0.051),
    "spots": (0.03, 0.062),
}
INITIAL_CONDITIONS = ("gaussians", "fourier")


# --- initial conditions ---------------------------------------------------------------------------
def _random_gaussians(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Periodically tiled sum of 10-100 random Gaussians on the 1-D grids ``x [Nx]``, ``y [Ny]``.

    A Gaussian factorises, ``exp(-s (dx^2 + dy^2)) = exp(-s dx^2) exp(-s dy^2)``, and so does its
    3 x 3 tiling, so the field is ``(gx * a) @ gy.T`` -- cheap even for 100 Gaussians.
    """
    m = int(torch.randint(10, 101, (1,), generator=gen))
    amp, sharp, cx, cy = torch.rand(4, m, generator=gen, dtype=torch.float64).to(x.device)
    amp, sharp = 1 + 2 * amp, 150 + 150 * sharp
    cx, cy = -1 + 2 * cx, -1 + 2 * cy
    shifts = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64, device=x.device)

    def tiled(coord: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:  # [N, m]
        d = coord[:, None, None] - centre[None, :, None] - shifts
        return torch.exp(-sharp[None, :, None] * d**2).sum(-1)

    return (tiled(x, cx) * amp) @ tiled(y, cy).T


def _normalise(u: torch.Tensor) -> torch.Tensor:
    u = u - u.min()
    return u / u.max()


def _trig_interpolation_matrix(n: int, size: int) -> torch.Tensor:
    """``[size, n]`` matrix evaluating the trigonometric interpolant of ``n`` equispaced samples
    of a periodic function at ``size`` equispaced points (an even-n Nyquist mode enters as a
    cosine, the real interpolant Chebfun's 'trig' construction uses)."""
    t_out = 2 * math.pi * torch.arange(size, dtype=torch.float64) / size
    t_in = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    s = t_out[:, None] - t_in[None, :]
    ks = torch.arange(-((n - 1) // 2), (n - 1) // 2 + 1, dtype=torch.float64)
    kernel = torch.cos(ks * s[..., None]).sum(-1)
    if n % 2 == 0:
        kernel = kernel + torch.cos(n / 2 * s)
    return kernel / n


def _fourier_interpolate(values: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trigonometric interpolant of equispaced ``values [n, m]`` on a ``size`` grid (any size)."""
    mx = _trig_interpolation_matrix(values.shape[0], size[0])
    my = _trig_interpolation_matrix(values.shape[1], size[1])
    return mx @ values @ my.T


def initial_condition(
    kind: str, f: float, k: float, resolution: Sequence[int], seed: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Well's random initial condition ``(A, B)`` [Nx, Ny] (float64) for one trajectory."""
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "gaussians":
        x, y = (
            torch.as_tensor(c, device=device) for c in grid_coordinates(DOMAIN, resolution, centred=False)
        )
        a = _normalise(1 - _random_gaussians(x, y, gen))
        b = _normalise(_random_gaussians(x, y, gen))
        return a, b
    if kind == "fourier":
        mean_a, mean_b, da, db = 1.0, 0.0, 1.0, 1.0
        if k < (math.sqrt(f) - 2 * f) / 2:  # the third homogeneous steady state exists
            s = math.sqrt(f) / (f + k)
            root = math.sqrt(max(s * s - 4, 0.0))
            mean_a = (s - root) / (2 * s)
            mean_b = math.sqrt(f) * (s + root) / 2
            da = 0.9 * min(mean_a, 1 - mean_a)
            db = 0.9 * min(mean_b, 1 - mean_b)
        noise = torch.rand(2, 32, 32, generator=gen, dtype=torch.float64) - 0.5
        a = mean_a + 0.5 * da * _fourier_interpolate(noise[0], resolution)
        b = mean_b + 0.5 * db * _fourier_interpolate(noise[1], resolution)
        return a.to(device), b.to(device)
    raise ValueError(f"initial_condition: got {kind!r}, expected one of {list(INITIAL_CONDITIONS)}")


# --- solver ------------------------------------------------------------------------------------------
def _etdrk4_coefficients(lin: torch.Tensor, dt: float, n_contour: int = 32) -> dict[str, torch.Tensor]:
    """ETDRK4 coefficients for the diagonal linear operator ``lin`` (Kassam & Trefethen 2005:
    contour-integral evaluation avoids the cancellation of the phi-functions near 0)."""
    z = lin * dt
    roots = torch.exp(1j * math.pi * (torch.arange(1, n_contour + 1, dtype=torch.float64) - 0.5) / n_contour)
    lr = z[..., None] + roots.to(z.device)  # [..., M]

    def mean(expr: torch.Tensor) -> torch.Tensor:
        return expr.mean(-1).real

    return {
        "e": torch.exp(z),
        "e2": torch.exp(z / 2),
        "q": dt * mean((torch.exp(lr / 2) - 1) / lr),
        "f1": dt * mean((-4 - lr + torch.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3),
        "f2": dt * mean((2 + lr + torch.exp(lr) * (-2 + lr)) / lr**3),
        "f3": dt * mean((-4 - 3 * lr - lr**2 + torch.exp(lr) * (4 - lr)) / lr**3),
    }


def solve_gray_scott(
    a0: torch.Tensor,
    b0: torch.Tensor,
    f: torch.Tensor,
    k: torch.Tensor,
    n_steps: int,
    frame_dt: float = FRAME_DT,
    solver_dt: float = SOLVER_DT,
    diffusivities: tuple[float, float] = (DELTA_A, DELTA_B),
    progress: bool = False,
) -> torch.Tensor:
    """Integrate a batch from ``(a0, b0)`` [B, Nx, Ny] with rates ``f, k`` [B].

    Returns ``[B, n_steps + 1, Nx, Ny, 2]`` (float64) with frame ``i`` at ``t = i * frame_dt``.
    """
    n_sub = round(frame_dt / solver_dt)
    if n_sub < 1 or abs(n_sub * solver_dt - frame_dt) > 1e-9 * frame_dt:
        raise ValueError(f"solver_dt: got {solver_dt}, expected a divisor of the frame interval {frame_dt}")
    nx, ny = a0.shape[-2:]
    kx, ky = fourier_wavenumbers(DOMAIN, (nx, ny), device=a0.device)
    k2 = kx**2 + ky**2
    lin = -torch.stack([diffusivities[0] * k2, diffusivities[1] * k2])  # [2, Nx, Ny//2+1]
    c = _etdrk4_coefficients(lin, solver_dt)
    # 2/3 rule on the nonlinear terms (Chebfun spin2 with dealias 'on').
    dealias = (kx.abs() < (2 / 3) * kx.abs().max() + 1e-9) & (ky.abs() < (2 / 3) * ky.abs().max() + 1e-9)
    f = f.to(a0)[:, None, None]
    kf = f + k.to(a0)[:, None, None]

    def nonlinear(vh: torch.Tensor) -> torch.Tensor:
        a, b = torch.fft.irfft2(vh, s=(nx, ny)).unbind(1)
        ab2 = a * b * b
        rhs = torch.stack([-ab2 + f * (1 - a), ab2 - kf * b], dim=1)
        return torch.fft.rfft2(rhs) * dealias

    vh = torch.fft.rfft2(torch.stack([a0, b0], dim=1))
    frames = [torch.stack([a0, b0], dim=-1)]
    for _ in tqdm(range(n_steps), desc=f"gray_scott x{a0.shape[0]}", disable=not progress, leave=False):
        for _ in range(n_sub):
            nv = nonlinear(vh)
            a = c["e2"] * vh + c["q"] * nv
            na = nonlinear(a)
            b = c["e2"] * vh + c["q"] * na
            nb = nonlinear(b)
            cc = c["e2"] * a + c["q"] * (2 * nb - nv)
            nc = nonlinear(cc)
            vh = c["e"] * vh + c["f1"] * nv + 2 * c["f2"] * (na + nb) + c["f3"] * nc
        fields = torch.fft.irfft2(vh, s=(nx, ny))
        if not torch.isfinite(fields).all():
            raise RuntimeError("gray_scott: the solution became non-finite")
        frames.append(fields.movedim(1, -1))
    return torch.stack(frames, dim=1)


# --- parameters ---------------------------------------------------------------------------------------
def _rates(params: dict[str, Any]) -> tuple[float, float]:
    pattern = params.get("pattern")
    if pattern is not None and pattern not in PATTERNS and pattern != "custom":
        raise ValueError(f"pattern: got {pattern!r}, expected one of {list(PATTERNS)}")
    base = PATTERNS.get(pattern, (None, None))
    f, k = params.get("f", base[0]), params.get("k", base[1])
    for name, v in (("f", f), ("k", k)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}: got {v!r}, expected a non-negative rate (or a known pattern name)")
    return float(f), float(k)


def merge_parameters(drawn: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """Fixing ``pattern`` also fixes its (f, k); fixing f or k alone makes the pattern custom."""
    out = drawn | fixed
    if "pattern" in fixed:
        f, k = PATTERNS.get(fixed["pattern"], (None, None))
        out["f"], out["k"] = fixed.get("f", f), fixed.get("k", k)
    if ("f" in fixed or "k" in fixed) and PATTERNS.get(out.get("pattern")) != (out.get("f"), out.get("k")):
        out["pattern"] = "custom"
    return out


def sample_parameters(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Uniform over The Well's six patterns x two initial-condition families, with a seed per
    trajectory for its random initial condition."""
    names = list(PATTERNS)
    pattern = torch.randint(len(names), (n,), generator=generator).tolist()
    kind = torch.randint(len(INITIAL_CONDITIONS), (n,), generator=generator).tolist()
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator).tolist()
    return [
        {
            "pattern": names[p],
            "f": PATTERNS[names[p]][0],
            "k": PATTERNS[names[p]][1],
            "initial_condition": INITIAL_CONDITIONS[i],
            "seed": s,
        }
        for p, i, s in zip(pattern, kind, seeds, strict=True)
    ]


def simulate(
    params_batch: list[dict[str, Any]],
    resolution: Sequence[int] | None = None,
    n_steps: int | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    progress: bool = True,
    solver_dt: float = SOLVER_DT,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Simulate a batch; returns ``{"A": [B, T, Nx, Ny], "B": [B, T, Nx, Ny]}`` on ``device``.

    Each parameter dict holds ``pattern`` (or ``f``/``k``), ``initial_condition`` and ``seed``;
    a missing seed is drawn from ``generator``.
    """
    res, n_steps = check_run(SPEC, params_batch, resolution, n_steps)
    device = torch.device(device)
    rates, ics = [], []
    for i, p in enumerate(params_batch):
        f, k = _rates(p)
        seed = trajectory_seed(p, i, generator)
        ics.append(initial_condition(p.get("initial_condition", "gaussians"), f, k, res, seed, device))
        rates.append((f, k))
    fk = torch.tensor(rates, dtype=torch.float64, device=device)
    a0 = torch.stack([a for a, _ in ics])
    b0 = torch.stack([b for _, b in ics])
    out = solve_gray_scott(a0, b0, fk[:, 0], fk[:, 1], n_steps, solver_dt=solver_dt, progress=progress)
    return {"A": out[..., 0].to(dtype), "B": out[..., 1].to(dtype)}


def simulate_gray_scott(
    pattern: str = "maze",
    initial_condition: str = "gaussians",
    seed: int = 0,
    f: float | None = None,
    k: float | None = None,
    resolution: Sequence[int] = (128, 128),
    n_steps: int = 200,
    device: torch.device | str = "cpu",
    progress: bool = False,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """One trajectory, ``physfm.simulate.gray_scott_reaction_diffusion(...)``: returns
    ``{"A", "B"}`` tensors ``[n_steps + 1, Nx, Ny]`` with frame ``i`` at ``t = 10 i``."""
    params: dict[str, Any] = {"pattern": pattern, "initial_condition": initial_condition, "seed": seed}
    if f is not None:
        params["f"] = f
    if k is not None:
        params["k"] = k
    out = simulate([params], resolution, n_steps, device=device, progress=progress, dtype=dtype)
    return {name: v[0] for name, v in out.items()}


SPEC = SystemSpec(
    name="gray_scott_reaction_diffusion",
    field_names=("A", "B"),
    vector_fields={},
    periodic=(True, True),
    domain=DOMAIN,
    dt=FRAME_DT,
    default_resolution=(128, 128),
    default_n_steps=200,  # The Well: 1000 (t = 10 000); shortened for CPU runs
    simulate=simulate,
    sample_parameters=sample_parameters,
    parameters=(
        Parameter("pattern", str, "The Well's (f, k) set", choices=tuple(PATTERNS)),
        Parameter("f", float, "feed rate (overrides the pattern's)"),
        Parameter("k", float, "kill rate (overrides the pattern's)"),
        Parameter("initial_condition", str, "random initial-condition family", choices=INITIAL_CONDITIONS),
    ),
    grid_centred=False,
    description="Gray-Scott reaction-diffusion Turing patterns, six (f, k) regimes (The Well)",
    merge_parameters=merge_parameters,
    extra={"file_parameters": {"f": "F", "k": "k"}},
)
