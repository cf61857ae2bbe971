"""Physics tests of the shear_flow simulator (The Well's periodic shear flow)."""

import math

import numpy as np
import pytest
import torch

import physfm.simulate as simulate
from physfm.simulate.shear_flow import PARAMETER_GRID, SPEC, ShearFlowSolver, initial_condition

WELL_PARAMS = {"reynolds": 1e4, "schmidt": 0.5, "n_shear": 2, "n_blobs": 3, "width": 0.5}


# --- an independent reference: NumPy, primitive variables, full complex FFT, classic RK4 ----------
def _reference_shear_flow(ux0, uy0, s0, nu, diff, n_frames, substeps=40, frame_dt=0.1):
    """Dedalus-like Fourier x Fourier Galerkin solution of the primitive-variable equations:
    Nyquist modes dropped, 3/2-padded products, Leray projection for the pressure, explicit
    RK4 at a fixed small step. Returns grid fields per frame (frame 0 = raw initial condition)."""
    nx, ny = ux0.shape
    mx, my = 3 * nx // 2, 3 * ny // 2
    ix, iy = np.fft.fftfreq(nx, 1 / nx).astype(int), np.fft.fftfreq(ny, 1 / ny).astype(int)
    kx, ky = np.meshgrid(2 * np.pi * ix / 1.0, 2 * np.pi * iy / 2.0, indexing="ij")
    keep_x, keep_y = np.abs(ix) < nx / 2, np.abs(iy) < ny / 2
    keep = np.outer(keep_x, keep_y)
    k2 = kx**2 + ky**2
    k2s = np.where(k2 == 0, 1.0, k2)
    pad_x, pad_y = np.mod(ix[keep_x], mx), np.mod(iy[keep_y], my)

    def fwd(f):
        return np.fft.fft2(f) * keep

    def inv(fh):
        return np.fft.ifft2(fh).real

    def pinv(fh):
        big = np.zeros((mx, my), complex)
        big[np.ix_(pad_x, pad_y)] = fh[np.ix_(keep_x, keep_y)]
        return np.fft.ifft2(big).real * (mx * my) / (nx * ny)

    def pfwd(g):
        out = np.zeros((nx, ny), complex)
        out[np.ix_(keep_x, keep_y)] = np.fft.fft2(g)[np.ix_(pad_x, pad_y)]
        return out * (nx * ny) / (mx * my)

    def project(ax, ay):
        d = (kx * ax + ky * ay) / k2s
        return ax - kx * d, ay - ky * d

    def advection(uxh, uyh, sh):
        ux, uy = pinv(uxh), pinv(uyh)
        grad = [pinv(1j * k * f) for f in (uxh, uyh, sh) for k in (kx, ky)]
        return [pfwd(ux * grad[2 * i] + uy * grad[2 * i + 1]) for i in range(3)]

    def rhs(state):
        uxh, uyh, sh = state
        gx, gy, gs = advection(uxh, uyh, sh)
        px, py = project(-gx, -gy)
        return np.stack([px - nu * k2 * uxh, py - nu * k2 * uyh, -gs - diff * k2 * sh])

    def pressure(state):
        gx, gy, _ = advection(*state)
        return inv(1j * (kx * gx + ky * gy) / k2s)

    state = np.stack([*project(fwd(ux0), fwd(uy0)), fwd(s0)])
    frames = [(s0, np.zeros_like(s0), ux0, uy0)]
    h = frame_dt / substeps
    for _ in range(n_frames):
        for _ in range(substeps):
            a = rhs(state)
            b = rhs(state + h / 2 * a)
            c = rhs(state + h / 2 * b)
            d = rhs(state + h * c)
            state = state + h / 6 * (a + 2 * b + 2 * c + d)
        frames.append((inv(state[2]), pressure(state), inv(state[0]), inv(state[1])))
    return {k: np.stack([f[i] for f in frames]) for i, k in enumerate(SPEC.field_names)}


def test_matches_independent_primitive_variable_reference():
    res, n_frames = (16, 32), 3
    ours = simulate.shear_flow(**WELL_PARAMS, resolution=res, n_steps=n_frames)
    x, y = np.meshgrid(*SPEC.coordinates(res).values(), indexing="ij")
    ux0, uy0 = (t.numpy() for t in initial_condition(torch.tensor(x), torch.tensor(y), 2, 3, 0.5))
    nu = 1 / WELL_PARAMS["reynolds"]
    ref = _reference_shear_flow(ux0, uy0, ux0.copy(), nu, nu / WELL_PARAMS["schmidt"], n_frames)
    for name in SPEC.field_names:
        scale = np.abs(ref[name]).max()
        err = np.abs(ours[name].numpy() - ref[name]).max()
        # Both are 4th-order in time at different steps; their difference is ~1e-7 relative.
        assert err <= 1e-6 * max(scale, 1e-3), f"{name}: max error {err:.2e} (scale {scale:.2e})"
    # And the flow really moved: not a trivially passing comparison of initial conditions.
    assert np.abs(ref["velocity_y"][-1] - ref["velocity_y"][0]).max() > 1e-3


def test_grid_and_initial_condition_follow_the_well():
    res = (8, 16)
    coords = SPEC.coordinates(res)
    np.testing.assert_allclose(coords["x"], np.arange(8) / 8)
    np.testing.assert_allclose(coords["y"], -1 + 2 * np.arange(16) / 16)
    out = simulate.shear_flow(
        reynolds=1e4, schmidt=1.0, n_shear=2, n_blobs=2, width=1.0, resolution=res, n_steps=0
    )
    assert set(out) == set(SPEC.field_names) and out["tracer"].shape == (1, 8, 16)
    ux, uy = out["velocity_x"][0].numpy(), out["velocity_y"][0].numpy()
    assert np.array_equal(out["tracer"][0].numpy(), ux) and not out["pressure"].any()
    # Layers at y = -1/2 (sign -1) and y = +1/2 (sign +1): u_x = 1/2 - 1/2 tanh(...) + 1/2 tanh(...).
    j_mid = 8  # y = 0: both tanh saturate -> u_x = -1/2
    np.testing.assert_allclose(ux[:, j_mid], 0.5 - 0.5 * math.tanh(5.0) - 0.5 * math.tanh(5.0), rtol=1e-12)
    j_layer = 12  # y = +1/2: blob of the second (sign +1) layer, the other layer is far away
    np.testing.assert_allclose(uy[:, j_layer], 0.1 * np.sin(2 * np.pi * coords["x"]), atol=1e-12)


def test_divergence_free_and_conservation():
    res = (16, 32)
    out = simulate.shear_flow(
        reynolds=5e4, schmidt=2.0, n_shear=4, n_blobs=2, width=1.0, resolution=res, n_steps=4
    )
    kx = 2 * np.pi * np.fft.fftfreq(16, 1 / 16)[:, None]
    ky = 2 * np.pi * np.fft.fftfreq(32, 1 / 32)[None, :] / 2.0
    ux, uy = out["velocity_x"].numpy(), out["velocity_y"].numpy()
    div = np.fft.ifft2(1j * kx * np.fft.fft2(ux) + 1j * ky * np.fft.fft2(uy)).real
    # Frame 0 is The Well's raw initial condition (divergent); every evolved frame is solenoidal.
    assert np.abs(div[0]).max() > 0.1
    assert np.abs(div[1:]).max() < 1e-10
    # Tracer and momentum (domain means) are conserved, pressure has zero mean.
    for name in ("tracer", "velocity_x", "velocity_y"):
        means = out[name].mean(dim=(1, 2))
        assert torch.allclose(means, means[0].expand_as(means), atol=1e-13), name
    assert out["pressure"][1:].mean(dim=(1, 2)).abs().max() < 1e-13
    assert out["pressure"][1:].abs().max() > 1e-3


def test_single_fourier_mode_decays_at_the_viscous_rate():
    """psi = cos(2 pi x) cos(2 pi y) is a steady Euler flow (u . grad w = 0), so it decays as
    exp(-nu |k|^2 t); a tracer equal to psi is constant along streamlines and decays as
    exp(-D |k|^2 t). Both are exact solutions of the full nonlinear equations."""
    # A small amplitude keeps the cellular flow's inertial instability (growth rate ~ |w|) from
    # amplifying round-off during the test; the viscous decay is then exact to ~1e-13.
    res, reynolds, schmidt, amp = (16, 32), 20.0, 2.0, 0.05
    x, y = torch.meshgrid(*(torch.tensor(c) for c in SPEC.coordinates(res).values()), indexing="ij")
    kx, ky = 2 * math.pi, 2 * math.pi
    psi = amp * torch.cos(kx * x) * torch.cos(ky * y)
    ux, uy = (
        -amp * ky * torch.cos(kx * x) * torch.sin(ky * y),
        amp * kx * torch.sin(kx * x) * torch.cos(ky * y),
    )
    solver = ShearFlowSolver(torch.tensor([reynolds]), torch.tensor([schmidt]), res, torch.device("cpu"))
    state, mean = solver.state_from_grid(ux[None], uy[None], psi[None])
    energy0 = (ux**2 + uy**2).mean()
    k2, t = kx**2 + ky**2, 0.0
    for _ in range(3):
        state, _ = solver.advance(state, mean, 0.1)
        t += 0.1
        f = solver.fields(state, mean)
        energy = (f["velocity_x"] ** 2 + f["velocity_y"] ** 2).mean()
        torch.testing.assert_close(energy, energy0 * math.exp(-2 * k2 * t / reynolds), rtol=1e-12, atol=0)
        torch.testing.assert_close(
            f["tracer"][0], psi * math.exp(-k2 * t / (reynolds * schmidt)), rtol=0, atol=1e-12
        )
    assert math.exp(-2 * k2 * t / reynolds) < 0.2  # the decay is large enough to be tested


def test_cfl_stable_energy_non_increasing_and_patterns_develop():
    # Least dissipative, sharpest initial condition of The Well's grid.
    p = {"reynolds": 5e5, "schmidt": 10.0, "n_shear": 4, "n_blobs": 5, "width": 0.25}
    out = simulate.simulate_system("shear_flow", [p], resolution=(32, 64), n_steps=8, dtype=torch.float64)
    assert all(torch.isfinite(v).all() for v in out.values())
    u = out["velocity"][0]
    energy = (u**2).sum(-1).mean(dim=(1, 2))
    # Dealiased Galerkin NS never gains kinetic energy (frame 0 -> 1 removes the divergent part).
    assert (energy[2:] <= energy[1:-1] * (1 + 1e-9)).all(), energy
    # Kelvin-Helmholtz roll-up: the tracer is no longer a function of y only.
    tracer = out["tracer"][0]
    x_variation = (tracer - tracer.mean(dim=1, keepdim=True)).abs().amax(dim=(1, 2))
    assert x_variation[0] < 1e-12 and x_variation[-1] > 0.05, x_variation
    # The chosen substep respects the CFL limit the solver promises.
    solver = ShearFlowSolver(
        torch.tensor([p["reynolds"]]), torch.tensor([p["schmidt"]]), (32, 64), torch.device("cpu")
    )
    state, mean = solver.state_from_grid(u[-1, ..., 0][None], u[-1, ..., 1][None], tracer[-1][None])
    dt = solver.max_stable_dt(state, mean)
    rate = (u[-1, ..., 0].abs() * 32 + u[-1, ..., 1].abs() * 32).max()
    assert float(dt * rate) <= solver.cfl * 1.01


def test_deterministic_and_independent_of_batch_composition():
    a = {"reynolds": 1e4, "schmidt": 1.0, "n_shear": 2, "n_blobs": 4, "width": 2.0}
    b = {"reynolds": 5e5, "schmidt": 0.1, "n_shear": 4, "n_blobs": 5, "width": 0.25}
    both = simulate.simulate_system("shear_flow", [a, b], resolution=(16, 32), n_steps=2, dtype=torch.float64)
    alone = simulate.simulate_system("shear_flow", [a], resolution=(16, 32), n_steps=2, dtype=torch.float64)
    again = simulate.simulate_system("shear_flow", [a], resolution=(16, 32), n_steps=2, dtype=torch.float64)
    for name in ("tracer", "pressure", "velocity"):
        assert torch.equal(alone[name], again[name])
        torch.testing.assert_close(both[name][:1], alone[name], rtol=0, atol=1e-12)
    assert both["velocity"].shape == (2, 3, 16, 32, 2)


def test_parameter_grid_is_the_wells():
    assert PARAMETER_GRID["reynolds"] == (1e4, 5e4, 1e5, 5e5)
    assert PARAMETER_GRID["schmidt"] == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    draws = SPEC.sample_parameters(1120, torch.Generator().manual_seed(0))
    assert len({tuple(d.values()) for d in draws}) == 1120  # every combination exactly once
    again = SPEC.sample_parameters(5, torch.Generator().manual_seed(0))
    assert again == draws[:5]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"reynolds": -1.0}, "reynolds"),
        ({"schmidt": float("nan")}, "schmidt"),
        ({"n_shear": 0}, "n_shear"),
        ({"n_blobs": 2.5}, "n_blobs"),
        ({"resolution": (15, 32)}, "resolution"),
        ({"resolution": (16, 32, 4)}, "resolution"),
        ({"n_steps": -1}, "n_steps"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, needle):
    args = {"resolution": (16, 32), "n_steps": 1} | kwargs
    with pytest.raises(ValueError, match=needle):
        simulate.shear_flow(**args)


@pytest.mark.slow
def test_spectral_self_convergence_under_refinement():
    """Doubling the resolution twice: the change at the coarse grid points must shrink by far
    more than the 4x of a second-order method (spectral convergence). width = 0.5 keeps The
    Well's initial condition smooth across the periodic boundary (wide layers, e.g. width = 2,
    leave tanh tails there, a kink that limits any Fourier method, Dedalus included, to O(1/N))."""
    p = dict(reynolds=1e4, schmidt=1.0, n_shear=2, n_blobs=2, width=0.5, n_steps=3)
    runs = {n: simulate.shear_flow(**p, resolution=(n, 2 * n)) for n in (32, 64, 128)}
    for name in SPEC.field_names:
        e1, e2 = ((runs[n][name][1:] - runs[2 * n][name][1:, ::2, ::2]).abs().max() for n in (32, 64))
        assert e2 < e1 / 100, (name, float(e1), float(e2))


def test_perturbation_gives_every_seed_its_own_initial_condition():
    """physfm's deviation from The Well: with ``perturbation > 0`` equal parameters no longer mean equal flows."""
    from physfm.simulate.shear_flow import DOMAIN, initial_condition

    x, y = simulate.grid_mesh(DOMAIN, (32, 64), centred=False)
    well = initial_condition(x, y, 2, 3, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(well, initial_condition(x, y, 2, 3, 1.0, 0.0, seed=5), strict=True))
    first, again, other = (initial_condition(x, y, 2, 3, 1.0, 1.0, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    for base, changed in zip(well, first, strict=True):
        assert not torch.allclose(base, changed)
    # Each perturbed start is as far from another seed's as a blob pattern is from zero.
    distance = float((first[1] - other[1]).norm() / first[1].norm())
    assert distance > 0.3
    with pytest.raises(ValueError, match="seed"):
        initial_condition(x, y, 2, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="perturbation"):
        initial_condition(x, y, 2, 3, 1.0, -1.0, seed=1)


def test_perturbed_trajectories_are_seeded_and_stored_with_their_setting(tmp_path):
    out = simulate.generate("shear_flow", tmp_path / "sf", n_trajectories=2, resolution=(16, 32), n_steps=1,
                            seed=3, progress=False, split_fractions=(1.0, 0.0, 0.0), perturbation=1.0,
                            reynolds=1e4, schmidt=1.0, n_shear=2, n_blobs=2, width=1.0)
    from physfm.data import read_trajectory, read_well_metadata

    files = sorted((out / "data" / "train").glob("*.hdf5"))
    first, second = (read_trajectory(files[0], i) for i in range(2))
    assert not np.allclose(first["velocity_y"][0], second["velocity_y"][0])  # same parameters, own starts
    assert {p["perturbation"] for p in read_well_metadata(out).parameters.values()} == {1.0}
