"""Physics tests of the compressible Euler simulator (physfm.simulate.euler_multi_quadrants)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physfm.simulate import euler_multi_quadrants as euler

F64 = torch.float64


def _conserved(W: torch.Tensor, gamma: float) -> torch.Tensor:
    return euler.conserved_from_primitives(W, torch.tensor(gamma, dtype=W.dtype))


def _primitives(U: torch.Tensor, gamma: float) -> torch.Tensor:
    return euler.primitives_from_conserved(U, torch.tensor(gamma, dtype=U.dtype))


def exact_riemann(left, right, gamma: float, xi: np.ndarray) -> np.ndarray:
    """Toro's exact Riemann solver for (rho, u, p) states, sampled at ``xi = x / t``."""
    (rL, uL, pL), (rR, uR, pR), g = left, right, gamma
    cL, cR = math.sqrt(g * pL / rL), math.sqrt(g * pR / rR)

    def wave(p, r, pk, ck):  # velocity jump across the wave and its derivative in p*
        if p > pk:  # shock
            a, b = 2 / ((g + 1) * r), (g - 1) / (g + 1) * pk
            q = math.sqrt(a / (p + b))
            return (p - pk) * q, q * (1 - (p - pk) / (2 * (b + p)))
        ratio = p / pk  # rarefaction
        return 2 * ck / (g - 1) * (ratio ** ((g - 1) / (2 * g)) - 1), ratio ** (-(g + 1) / (2 * g)) / (r * ck)

    p = 0.5 * (pL + pR)
    for _ in range(100):
        fl, dl = wave(p, rL, pL, cL)
        fr, dr = wave(p, rR, pR, cR)
        step = (fl + fr + uR - uL) / (dl + dr)
        p = max(1e-12, p - step)
        if abs(step) < 1e-14 * p:
            break
    u_star = 0.5 * (uL + uR) + 0.5 * (wave(p, rR, pR, cR)[0] - wave(p, rL, pL, cL)[0])

    def side(s, r, u, pk, ck, sign):
        # sign = -1 for the left wave, +1 for the right one; s is measured in that wave's frame.
        if p > pk:
            speed = u + sign * ck * math.sqrt((g + 1) / (2 * g) * p / pk + (g - 1) / (2 * g))
            inside = (s - speed) * sign > 0
            r_star = r * (p / pk + (g - 1) / (g + 1)) / ((g - 1) / (g + 1) * p / pk + 1)
            return (r, u, pk) if inside else (r_star, u_star, p)
        head, tail = u + sign * ck, u_star + sign * ck * (p / pk) ** ((g - 1) / (2 * g))
        if (s - head) * sign >= 0:
            return r, u, pk
        if (s - tail) * sign <= 0:
            return r * (p / pk) ** (1 / g), u_star, p
        c = 2 / (g + 1) * (ck - sign * (g - 1) / 2 * (u - s))
        return (
            r * (c / ck) ** (2 / (g - 1)),
            2 / (g + 1) * (-sign * ck + (g - 1) / 2 * u + s),
            pk * (c / ck) ** (2 * g / (g - 1)),
        )

    return np.array([side(s, rL, uL, pL, cL, -1) if s <= u_star else side(s, rR, uR, pR, cR, +1) for s in xi])


def _riemann_1d(left, right, n: int, gamma: float, axis: int, t_end: float, **kwargs):
    """A 1-D Riemann problem at x = 0.5 embedded in a 2-D grid of n x 2 cells along ``axis``."""
    x = (torch.arange(n, dtype=F64) + 0.5) / n
    is_left = x < 0.5
    W = torch.empty(4, n, dtype=F64)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        W[(0, 1, 3)[i]] = torch.where(is_left, a, b)
    W[2] = 0.0
    W = W[:, :, None].expand(4, n, 2)
    periodic = (False, True)
    if axis == 1:  # the same problem along y: swap axes and velocity components
        W = W[[0, 2, 1, 3]].transpose(1, 2)
        periodic = (True, False)
    spacing = [0.5, 0.5]
    spacing[axis] = 1.0 / n
    frames, stats = euler.solve_euler(
        _conserved(W[None].contiguous(), gamma), gamma, spacing, t_end, 1, periodic=periodic, **kwargs
    )
    Wt = _primitives(frames[:, -1], gamma)[0]
    if axis == 1:
        Wt = Wt[[0, 2, 1, 3]].transpose(1, 2)
    exact = exact_riemann(left, right, gamma, (x.numpy() - 0.5) / t_end)
    return Wt, exact, stats


@pytest.mark.parametrize("axis", [0, 1])
def test_sod_shock_tube_matches_exact_solution(axis):
    W, exact, stats = _riemann_1d((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), 100, 1.4, axis, 0.2)
    # Embedded 1-D: identical along the transverse axis, no transverse velocity.
    assert torch.equal(W[..., 0], W[..., 1])
    assert W[2].abs().max() == 0
    rho, u, p = W[0, :, 0].numpy(), W[1, :, 0].numpy(), W[3, :, 0].numpy()
    # MUSCL-HLLC at 100 cells: L1 errors ~5e-3 (first order at discontinuities is optimal).
    assert np.abs(rho - exact[:, 0]).mean() < 0.008
    assert np.abs(u - exact[:, 1]).mean() < 0.015
    assert np.abs(p - exact[:, 2]).mean() < 0.006
    # The shock sits where the exact one does: x = 0.5 + 1.7522 t, where the density crosses
    # the midpoint of its jump from 0.2656 to 0.125.
    x = (np.arange(100) + 0.5) / 100
    shock = x[np.nonzero(rho > 0.5 * (0.2656 + 0.125))[0].max()]
    assert abs(shock - 0.8504) < 0.015
    assert int(stats.n_floored.sum()) == 0


def test_near_vacuum_rarefaction_stays_positive():
    # Toro's test 2 ("123 problem"): two strong rarefactions leave a near-vacuum in the middle.
    W, exact, stats = _riemann_1d((1.0, -2.0, 0.4), (1.0, 2.0, 0.4), 100, 1.4, 0, 0.15)
    assert float(W[0].min()) > 0 and float(W[3].min()) > 0
    assert int(stats.n_floored.sum()) == 0  # positivity came from the scheme, not the floor
    assert np.abs(W[0, :, 0].numpy() - exact[:, 0]).mean() < 0.03


def test_cfl_condition_is_respected():
    W, _, stats = _riemann_1d((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), 50, 1.4, 0, 0.2, cfl=0.3)
    assert 0.25 < stats.max_cfl <= 0.3 + 1e-12
    # Fastest signal ~ 1.75 (shock) to 1.18 (sound): at least t * speed / (cfl * dx) steps.
    assert int(stats.n_substeps) >= math.ceil(0.2 * 1.18 / (0.3 / 50))
    # Stable and essentially non-oscillatory: no new extrema beyond the data range.
    assert float(W[0].max()) < 1.0 + 1e-3 and float(W[0].min()) > 0.125 - 1e-3
    with pytest.raises(ValueError, match="cfl"):
        _riemann_1d((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), 16, 1.4, 0, 0.01, cfl=0.9)


@pytest.mark.parametrize("periodic", [(True, True), (False, False)])
def test_uniform_state_stays_uniform(periodic):
    W = torch.tensor([0.7, 0.3, -0.5, 1.3], dtype=F64).view(1, 4, 1, 1).expand(2, 4, 12, 10).contiguous()
    U0 = _conserved(W, 1.3)
    frames, stats = euler.solve_euler(U0, 1.3, (1 / 12, 1 / 10), 0.05, 3, periodic=periodic)
    torch.testing.assert_close(frames, U0[:, None].expand_as(frames), rtol=1e-14, atol=1e-14)
    assert int(stats.n_substeps.min()) > 3  # it did take CFL-limited steps


def _quadrant_batch(seeds, resolution, gammas):
    W0 = torch.stack([euler.quadrant_initial_state(s, resolution) for s in seeds])
    gamma = torch.tensor(gammas, dtype=F64)
    return euler.conserved_from_primitives(W0, gamma.view(-1, 1, 1)), gamma


def test_periodic_conservation_to_round_off():
    U0, gamma = _quadrant_batch([3, 11], (24, 20), [1.4, 1.76])
    frames, stats = euler.solve_euler(U0, gamma, (1 / 24, 1 / 20), 0.015, 4)
    totals = frames.sum(dim=(-2, -1))  # [B, T, 4]: mass, momentum x, momentum y, energy
    scale = frames.abs().sum(dim=(-2, -1))
    assert float(((totals - totals[:, :1]).abs() / scale).max()) < 1e-13
    assert int(stats.n_floored.sum()) == 0
    # ... while the solution itself changed substantially.
    assert float((frames[:, -1] - frames[:, 0]).abs().amax()) > 0.1


def test_open_boundaries_let_a_contact_leave():
    # A density step moving right at u = 1 with uniform pressure must leave the domain through
    # the outflow boundary without reflections, leaving the left state behind.
    n = 32
    x = (torch.arange(n, dtype=F64) + 0.5) / n
    W = torch.zeros(1, 4, n, 2, dtype=F64)
    W[0, 0] = torch.where(x < 0.5, 1.0, 0.2)[:, None]
    W[0, 1], W[0, 3] = 1.0, 1.0
    frames, _ = euler.solve_euler(_conserved(W, 1.4), 1.4, (1 / n, 0.5), 0.8, 1, periodic=(False, True))
    final = _primitives(frames[:, -1], 1.4)[0]
    expected = W[0, :, :1].expand_as(final)
    torch.testing.assert_close(final[0], expected[0], rtol=0, atol=1e-3)  # a diffused tail at most
    torch.testing.assert_close(final[1:], expected[1:], rtol=0, atol=1e-10)  # HLLC keeps contacts


def test_quadrant_data_has_nontrivial_structure():
    params = [{"gamma": 1.4, "seed": 5}, {"gamma": 1.13, "seed": 6}]
    out = euler.simulate(params, (32, 32), 6, progress=False)
    assert set(out) == {"energy", "density", "pressure", "momentum"}
    assert out["momentum"].shape == (2, 7, 32, 32, 2) and out["density"].shape == (2, 7, 32, 32)
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in out.values())
    rho, e, p, m = out["density"], out["energy"], out["pressure"], out["momentum"]
    gamma = torch.tensor([1.4, 1.13]).view(2, 1, 1, 1)
    torch.testing.assert_close(p, (gamma - 1) * (e - 0.5 * m.square().sum(-1) / rho), rtol=1e-4, atol=1e-5)
    assert float(rho.min()) > 0 and float(p.min()) > 0
    # Frame 0 is piecewise constant on a few rectangles; wave fans then fill in many values.
    assert torch.unique(rho[0, 0]).numel() <= (euler.MAX_CUTS + 1) ** 2
    assert torch.unique(rho[0, -1]).numel() > 200
    assert float((rho[:, -1] - rho[:, 0]).abs().amax()) > 0.1
    # Trajectories differ (different gases and quadrants).
    assert not torch.allclose(rho[0], rho[1])


def test_transposed_initial_data_gives_transposed_solution():
    U0, gamma = _quadrant_batch([8], (16, 16), [1.3])
    Ut = U0[:, [0, 2, 1, 3]].transpose(2, 3).contiguous()
    frames, _ = euler.solve_euler(U0, gamma, (1 / 16, 1 / 16), 0.015, 2)
    frames_t, _ = euler.solve_euler(Ut, gamma, (1 / 16, 1 / 16), 0.015, 2)
    torch.testing.assert_close(frames_t[:, :, [0, 2, 1, 3]].transpose(3, 4), frames, rtol=1e-12, atol=1e-12)


def test_deterministic_and_independent_of_batching():
    params = euler.sample_parameters(3, torch.Generator().manual_seed(4))
    assert params == euler.sample_parameters(3, torch.Generator().manual_seed(4))
    assert all(p["gamma"] in euler.GAMMAS for p in params)
    a = euler.simulate(params, (16, 16), 2, progress=False)
    b = euler.simulate(params, (16, 16), 2, progress=False)
    alone = euler.simulate_open(params[1:2], (16, 16), 2, progress=False)
    batch = euler.simulate_open(params, (16, 16), 2, progress=False)
    for k in a:
        assert torch.equal(a[k], b[k])
        assert torch.equal(alone[k][0], batch[k][1])
    assert not torch.equal(a["density"], batch["density"])  # boundaries matter


def test_specs_and_registry():
    from physfm.simulate import SYSTEMS

    assert SYSTEMS["euler_multi_quadrants"] is euler.SPEC
    assert SYSTEMS["euler_multi_quadrants_openBC"] is euler.SPEC_OPEN
    assert euler.SPEC.periodic == (True, True) and euler.SPEC_OPEN.periodic == (False, False)
    for spec in (euler.SPEC, euler.SPEC_OPEN):
        assert spec.field_names == ("energy", "density", "pressure", "momentum_x", "momentum_y")
        assert spec.dt == 0.015 and spec.domain == ((0.0, 1.0), (0.0, 1.0))


def test_user_errors_are_value_errors():
    with pytest.raises(ValueError, match="gamma"):
        euler.simulate([{"gamma": 0.9, "seed": 1}], (8, 8), 1, progress=False)
    with pytest.raises(ValueError, match="resolution"):
        euler.simulate([{"gamma": 1.4, "seed": 1}], (2, 8), 1, progress=False)
    with pytest.raises(ValueError, match="limiter"):
        euler.simulate([{"gamma": 1.4, "seed": 1}], (8, 8), 1, progress=False, limiter="superbee")
    bad = torch.ones(1, 4, 8, 8, dtype=F64)
    bad[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="positive density"):
        euler.solve_euler(bad, 1.4, (0.125, 0.125), 0.01, 1)


@pytest.mark.parametrize(
    "name, periodic",
    [("euler_multi_quadrants", (True, True)), ("euler_multi_quadrants_openBC", (False, False))],
)
def test_generate_writes_a_readable_well_dataset(tmp_path, name, periodic):
    from physfm.data import WellWindowDataset
    from physfm.simulate import generate

    path = generate(
        name, tmp_path / name, n_trajectories=2, resolution=(8, 8), n_steps=3, progress=False, gamma=1.4
    )
    ds = WellWindowDataset(path, split="train", n_steps_input=2, n_steps_output=1, normalize=False)
    assert ds.field_names == ["energy", "density", "pressure", "momentum_x", "momentum_y"]
    assert tuple(ds.periodic) == periodic and tuple(ds.spatial_shape) == (8, 8)
    fields = ds[0]["input_fields"]
    rho, e, p = fields[..., 1], fields[..., 0], fields[..., 2]
    kinetic = 0.5 * fields[..., 3:].square().sum(-1) / rho
    torch.testing.assert_close(p, 0.4 * (e - kinetic), rtol=1e-4, atol=1e-5)  # gamma = 1.4 was fixed
