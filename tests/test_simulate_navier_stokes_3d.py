"""Physics tests of the navier_stokes_3d simulator (3-D periodic incompressible Navier-Stokes).

Every reference here is independent of the solver: exact solutions (a single Fourier mode,
Taylor-Green's initial pressure), conservation laws and budgets evaluated with NumPy FFTs of the
stored frames, and a NumPy Taylor series in time of the exact (untruncated) Taylor-Green flow.
"""

import math

import h5py
import numpy as np
import pytest
import torch

import physfm.simulate as simulate
from physfm.simulate import generate
from physfm.simulate.navier_stokes_3d import (
    DOMAIN,
    PARAMETER_GRID,
    SPEC,
    NavierStokes3DSolver,
    taylor_green_velocity,
    turbulence_coefficients,
)

TG = {"reynolds": 100.0, "schmidt": 1.0, "initial_condition": "taylor_green"}


def _run(params, res, n_steps, **kwargs):
    return simulate.simulate_system("navier_stokes_3d", params, res, n_steps, dtype=torch.float64, **kwargs)


def _wavenumbers(n):
    k = np.fft.fftfreq(n, 1 / n)  # the box side is 2 pi: integer wavenumbers
    return np.meshgrid(k, k, k, indexing="ij")


def _energy_and_dissipation(u, nu):
    """Kinetic energy mean(|u|^2)/2 and dissipation nu mean(|curl u|^2) per frame of u [T, N, N, N, 3]."""
    kx, ky, kz = _wavenumbers(u.shape[1])
    uh = np.fft.fftn(u, axes=(1, 2, 3)) / u.shape[1] ** 3
    ux, uy, uz = uh[..., 0], uh[..., 1], uh[..., 2]
    curl = (1j * (ky * uz - kz * uy), 1j * (kz * ux - kx * uz), 1j * (kx * uy - ky * ux))
    energy = 0.5 * (np.abs(uh) ** 2).sum(axis=(1, 2, 3, 4))
    return energy, nu * sum((np.abs(w) ** 2).sum(axis=(1, 2, 3)) for w in curl)


def _divergence(u):
    kx, ky, kz = _wavenumbers(u.shape[-2])
    uh = np.fft.fftn(u, axes=(-4, -3, -2))
    return np.fft.ifftn(1j * (kx * uh[..., 0] + ky * uh[..., 1] + kz * uh[..., 2]), axes=(-3, -2, -1)).real


def _taylor_green_series(nu, order):
    """Taylor coefficients in t of the energy and dissipation of the exact Taylor-Green solution.

    u(t) = sum_n c_n t^n with (n + 1) c_{n+1} = P(sum_{i+j=n} c_i x curl c_j) - nu k^2 c_n (Cauchy
    product). c_n is a trigonometric polynomial of degree n + 1, so on M >= 2 (order + 1) + 1
    points every product is computed without aliasing: the coefficients are exact to round-off,
    with no spatial truncation (unlike the solver's grid)."""
    m = 2 * (order + 1) + 2
    kx, ky, kz = _wavenumbers(m)
    k, k2 = np.stack([kx, ky, kz]), kx**2 + ky**2 + kz**2
    g = 2 * np.pi * np.arange(m) / m
    u0 = np.stack(taylor_green_velocity(*(torch.tensor(a) for a in np.meshgrid(g, g, g, indexing="ij"))))

    def curl(a):
        return 1j * np.stack([k[1] * a[2] - k[2] * a[1], k[2] * a[0] - k[0] * a[2], k[0] * a[1] - k[1] * a[0]])

    def grid(a):
        return np.fft.ifftn(a, axes=(1, 2, 3)).real * m**3

    c = [np.fft.fftn(u0, axes=(1, 2, 3)) / m**3]
    u_grid, w_grid = [grid(c[0])], [grid(curl(c[0]))]
    for n in range(order):
        rhs = sum(np.fft.fftn(np.cross(u_grid[i], w_grid[n - i], axis=0), axes=(1, 2, 3)) for i in range(n + 1))
        rhs = rhs / m**3
        rhs = rhs - k * (k * rhs).sum(0) / np.where(k2 == 0, 1, k2)  # Leray projection
        c.append((rhs - nu * k2 * c[n]) / (n + 1))
        u_grid.append(grid(c[-1]))
        w_grid.append(grid(curl(c[-1])))
    w = [curl(ci) for ci in c]
    energy = [0.5 * sum(np.vdot(c[i], c[n - i]).real for i in range(n + 1)) for n in range(order + 1)]
    dissipation = [nu * sum(np.vdot(w[i], w[n - i]).real for i in range(n + 1)) for n in range(order + 1)]
    return np.array(energy), np.array(dissipation)


def test_shapes_dtype_and_the_well_layout():
    params = [TG, {"reynolds": 50.0, "schmidt": 2.0, "initial_condition": "turbulence", "k0": 2.0, "seed": 1}]
    out = simulate.simulate_system("navier_stokes_3d", params, (8, 8, 8), 2)
    assert set(out) == {"tracer", "pressure", "velocity"}
    assert out["tracer"].shape == out["pressure"].shape == (2, 3, 8, 8, 8)
    assert out["velocity"].shape == (2, 3, 8, 8, 8, 3)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    # Non-cubic grids are laid out [x, y, z] like the coordinates.
    out = simulate.simulate_system("navier_stokes_3d", [TG], (8, 6, 4), 1)
    x, y, z = torch.meshgrid(*(torch.tensor(c) for c in SPEC.coordinates((8, 6, 4)).values()), indexing="ij")
    torch.testing.assert_close(out["velocity"][0, 0], torch.stack(taylor_green_velocity(x, y, z), -1).float())


def test_single_fourier_modes_decay_at_the_viscous_rate():
    """A shear wave u = (sin 2z, 0, 0) and u = (0, 0, sin(x + y)) have u x omega = grad(|u|^2 / 2),
    so they are exact solutions of the nonlinear equations, decaying as exp(-nu |k|^2 t). A tracer
    s(y, z) is not advected by the first (u . grad s = 0) and decays mode by mode at D |k|^2."""
    res = (16, 16, 16)
    reynolds = torch.tensor([10.0, 40.0], dtype=torch.float64)
    schmidt = torch.tensor([2.0, 0.5], dtype=torch.float64)
    x, y, z = torch.meshgrid(*(torch.tensor(c) for c in SPEC.coordinates(res).values()), indexing="ij")
    zero = torch.zeros_like(x)
    u = torch.stack([torch.stack([torch.sin(2 * z), zero, zero]), torch.stack([zero, zero, torch.sin(x + y)])])
    s0 = torch.cos(y) + torch.cos(2 * z)
    solver = NavierStokes3DSolver(reynolds, schmidt, res, torch.device("cpu"))
    state = solver.state_from_grid(u, torch.stack([s0, s0]))
    t = 0.0
    for _ in range(3):
        state, _ = solver.advance(state, 0.1)
        t += 0.1
        f = solver.fields(state)
        nu, diff = 1 / reynolds, 1 / (reynolds * schmidt)
        exact_u = torch.stack([torch.sin(2 * z) * math.exp(-4 * nu[0] * t), torch.sin(x + y) * math.exp(-2 * nu[1] * t)])
        torch.testing.assert_close(f["velocity_x"][0], exact_u[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(f["velocity_z"][1], exact_u[1], rtol=0, atol=1e-12)
        for other in (f["velocity_y"][0], f["velocity_z"][0], f["velocity_x"][1], f["velocity_y"][1]):
            assert other.abs().max() < 1e-12
        exact_s = torch.cos(y) * math.exp(-diff[0] * t) + torch.cos(2 * z) * math.exp(-4 * diff[0] * t)
        torch.testing.assert_close(f["tracer"][0], exact_s, rtol=0, atol=1e-12)
    assert math.exp(-4 * t / 10.0) < 0.9  # the decay is large enough to be tested


def test_taylor_green_initial_pressure_is_the_analytic_one():
    """p = (cos 2x + cos 2y)(cos 2z + 2) / 16 at t = 0 (Taylor & Green 1937); it has zero mean."""
    out = _run([TG], (16, 16, 16), 0)
    x, y, z = torch.meshgrid(*(torch.tensor(c) for c in SPEC.coordinates((16,) * 3).values()), indexing="ij")
    p = (torch.cos(2 * x) + torch.cos(2 * y)) * (torch.cos(2 * z) + 2) / 16
    torch.testing.assert_close(out["pressure"][0, 0], p, rtol=0, atol=1e-13)


def test_turbulence_stays_divergence_free_and_loses_energy():
    params = [{"reynolds": 200.0, "schmidt": 1.0, "initial_condition": "turbulence", "k0": 3.0, "seed": 5}]
    u = _run(params, (16, 16, 16), 3)["velocity"][0].numpy()
    assert np.abs(_divergence(u)).max() < 1e-10
    energy, dissipation = _energy_and_dissipation(u, 1 / 200)
    assert (np.diff(energy) < 0).all() and energy[-1] < 0.99 * energy[0]  # decaying turbulence
    assert dissipation.min() > 0


def test_inviscid_flow_conserves_energy_and_tracer_variance():
    """Re = inf: the 3/2-dealiased Galerkin system conserves kinetic energy and tracer variance
    exactly; what drifts is the RK4 time-stepping error only."""
    params = [{"reynolds": math.inf, "initial_condition": "turbulence", "k0": 2.0, "seed": 2}]
    out = _run(params, (16, 16, 16), 5)
    u, s = out["velocity"][0].numpy(), out["tracer"][0].numpy()
    energy, _ = _energy_and_dissipation(u, 0.0)
    variance = (s**2).mean(axis=(1, 2, 3))
    assert abs(energy[0] - 1.5) < 1e-6  # unit rms velocity per component (the 16^3 grid holds k0 = 2)
    energy_drift, variance_drift = np.abs(energy / energy[0] - 1).max(), np.abs(variance / variance[0] - 1).max()
    assert energy_drift < 1e-6 and variance_drift < 1e-5  # measured 5.4e-7 and 2.7e-6
    # The drift is RK4's: halving the CFL number shrinks it ~16x (measured 15x and 14x).
    finer = _run(params, (16, 16, 16), 5, cfl=0.25)
    energy_fine, _ = _energy_and_dissipation(finer["velocity"][0].numpy(), 0.0)
    variance_fine = (finer["tracer"][0].numpy() ** 2).mean(axis=(1, 2, 3))
    assert np.abs(energy_fine / energy_fine[0] - 1).max() < energy_drift / 10
    assert np.abs(variance_fine / variance_fine[0] - 1).max() < variance_drift / 10
    # The flow does evolve: nonlinear transfer changes the fields by O(1) over t = 0.5.
    assert np.abs(u[-1] - u[0]).max() > 0.1


def test_taylor_green_energy_and_dissipation_match_the_exact_taylor_series():
    """Reference: the Taylor series in time of the exact solution (``_taylor_green_series``). It
    reproduces the analytic early-time behaviour: E = E0 exp(-6 nu t) through t^2 (every mode of the
    vortex has |k|^2 = 3 and curl curl u = 3 u, so the nonlinear term does not act on E before t^3)
    and at t^3 the nonlinear correction -(5/192) nu t^3, which is Taylor & Green's (1937) inviscid
    mean-square vorticity growth mean(|omega|^2) = 3/4 (1 + 5 t^2 / 48) integrated once."""
    nu, e0 = 1 / TG["reynolds"], 1 / 8
    energy_series, dissipation_series = _taylor_green_series(nu, 16)
    np.testing.assert_allclose(
        energy_series[:4],
        [e0, -6 * nu * e0, 18 * nu**2 * e0, -36 * nu**3 * e0 - 5 / 192 * nu],
        rtol=1e-12,
    )
    u = _run([TG], (24, 24, 24), 10)["velocity"][0].numpy()
    energy, dissipation = _energy_and_dissipation(u, nu)
    t = 0.1 * np.arange(11)
    # The series has converged to ~1e-10 at t <= 1 (its terms fall below 1e-10 by order 16).
    np.testing.assert_allclose(energy, np.polyval(energy_series[::-1], t), rtol=0, atol=1e-9 * e0)
    np.testing.assert_allclose(dissipation, np.polyval(dissipation_series[::-1], t), rtol=0, atol=1e-7 * 6 * nu * e0)
    # ... and the nonlinear transfer is visible: at t = 1 the energy is no longer E0 exp(-6 nu t).
    assert abs(energy[-1] / (e0 * math.exp(-6 * nu)) - 1) > 1e-3


def test_taylor_green_energy_budget_from_the_stored_frames():
    """dE/dt = -nu mean(|omega|^2): dE/dt from 4th-order central differences of the stored frames
    (h = 0.1) must equal the dissipation computed from the frames' velocity gradients, through the
    growth of the dissipation from 0.0075 to its peak region (t = 4)."""
    nu = 1 / TG["reynolds"]
    out = _run([TG], (16, 16, 16), 40)
    energy, dissipation = _energy_and_dissipation(out["velocity"][0].numpy(), nu)
    h = 0.1
    dedt = (energy[:-4] - 8 * energy[1:-3] + 8 * energy[3:-1] - energy[4:]) / (12 * h)
    assert np.abs(-dedt - dissipation[2:-2]).max() < 1e-5 * dissipation.max()
    assert dissipation[-1] > 1.5 * dissipation[0]  # vortex stretching has raised the dissipation
    # The tracer (1 + sin x) / 2 keeps its mean exactly.
    np.testing.assert_allclose(out["tracer"][0].numpy().mean(axis=(1, 2, 3)), 0.5, rtol=0, atol=1e-14)


def test_tracer_mean_and_variance_budget_in_turbulence():
    """The tracer's mean is conserved and d/dt mean(s^2)/2 = -D mean(|grad s|^2). Frames every
    0.025 (through the solver) so that 4th-order differences resolve the fast turbulent decay."""
    reynolds, schmidt, h = 100.0, 2.0, 0.025
    solver = NavierStokes3DSolver(
        torch.tensor([reynolds], dtype=torch.float64), torch.tensor([schmidt], dtype=torch.float64),
        (16, 16, 16), torch.device("cpu"),
    )
    uc, sc, m = turbulence_coefficients(2.0, seed=9)
    state = solver.state_from_coefficients(uc[None], sc[None], m)
    frames = []
    for _ in range(13):
        frames.append(solver.fields(state)["tracer"][0].numpy())
        state, _ = solver.advance(state, h)
    s = np.stack(frames)
    assert np.abs(s.mean(axis=(1, 2, 3))).max() < 1e-15
    kx, ky, kz = _wavenumbers(16)
    sh = np.fft.fftn(s, axes=(1, 2, 3)) / 16**3
    half_variance = 0.5 * (np.abs(sh) ** 2).sum(axis=(1, 2, 3))
    destruction = (1 / (reynolds * schmidt)) * ((kx**2 + ky**2 + kz**2) * np.abs(sh) ** 2).sum(axis=(1, 2, 3))
    rate = (half_variance[:-4] - 8 * half_variance[1:-3] + 8 * half_variance[3:-1] - half_variance[4:]) / (12 * h)
    # Measured 5e-5: the RK4 error of the variance at the default CFL (the same ~5e-6 per unit time
    # as the inviscid drift above), not the difference formula (its error is ~1e-7 at h = 0.025).
    np.testing.assert_allclose(-rate, destruction[2:-2], rtol=2e-4)


def test_turbulence_initial_condition_has_the_prescribed_spectrum():
    uh, sh, m = turbulence_coefficients(1.5, seed=3)
    k = torch.arange(-m, m + 1, dtype=torch.float64)
    kx, ky, kz = torch.meshgrid(k, k, k, indexing="ij")
    kk = torch.sqrt(kx**2 + ky**2 + kz**2)
    # Hermitian (a real field), divergence free, unit rms per component, exact amplitude per mode.
    torch.testing.assert_close(uh, torch.conj(torch.flip(uh, dims=(1, 2, 3))), rtol=0, atol=1e-15)
    assert (kx * uh[0] + ky * uh[1] + kz * uh[2]).abs().max() < 1e-15
    assert abs(float((uh.abs() ** 2).sum()) - 3.0) < 1e-12 and abs(float((sh.abs() ** 2).sum()) - 1.0) < 1e-12
    shape = kk * torch.exp(-((kk / 1.5) ** 2))
    amplitude = torch.sqrt((uh.abs() ** 2).sum(0))
    ratio = amplitude[kk > 0] / shape[kk > 0]
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-10, atol=0)


def test_turbulence_initial_condition_is_the_same_field_at_every_resolution():
    params = [{"reynolds": 100.0, "initial_condition": "turbulence", "k0": 1.5, "seed": 4}]
    coarse, fine = _run(params, (16, 16, 16), 0), _run(params, (32, 32, 32), 0)
    # Not the pressure: it is quadratic in u, so its modes reach twice as far and the coarse grid
    # keeps only their Galerkin truncation (a ~1e-6 difference here, as it should be).
    for name in ("velocity", "tracer"):
        torch.testing.assert_close(coarse[name][0, 0], fine[name][0, 0, ::2, ::2, ::2], rtol=0, atol=1e-9)


def test_deterministic_from_the_seed_and_independent_of_batch_composition():
    a = {"reynolds": 50.0, "schmidt": 1.0, "initial_condition": "turbulence", "k0": 2.0, "seed": 11}
    b = {"reynolds": 200.0, "schmidt": 0.5, "initial_condition": "turbulence", "k0": 3.0, "seed": 12}
    both = _run([a, b, TG], (8, 8, 8), 2)
    alone = _run([a], (8, 8, 8), 2)
    again = _run([a], (8, 8, 8), 2)
    other_seed = _run([a | {"seed": 13}], (8, 8, 8), 2)
    for name in ("tracer", "pressure", "velocity"):
        assert torch.equal(alone[name], again[name])
        torch.testing.assert_close(both[name][:1], alone[name], rtol=0, atol=1e-12)
        assert (other_seed[name] - alone[name]).abs().max() > 0.1
    torch.testing.assert_close(both["velocity"][2:], _run([TG], (8, 8, 8), 2)["velocity"], rtol=0, atol=1e-12)
    # A missing seed is drawn from the generator, reproducibly.
    no_seed = {k: v for k, v in a.items() if k != "seed"}
    g1 = _run([no_seed], (8, 8, 8), 0, generator=torch.Generator().manual_seed(0))["velocity"]
    g2 = _run([no_seed], (8, 8, 8), 0, generator=torch.Generator().manual_seed(0))["velocity"]
    assert torch.equal(g1, g2)


def test_parameter_grid_and_sampling():
    draws = SPEC.sample_parameters(50, torch.Generator().manual_seed(0))
    assert draws == SPEC.sample_parameters(50, torch.Generator().manual_seed(0))
    assert all(d["initial_condition"] == "turbulence" for d in draws)
    for name, values in PARAMETER_GRID.items():
        assert {d[name] for d in draws} == set(values)
    assert len({d["seed"] for d in draws}) == 50
    # Fixing the Taylor-Green vortex drops the parameters it does not use.
    merged = SPEC.resolve_parameters(draws[0], {"initial_condition": "taylor_green"})
    assert "k0" not in merged and "seed" not in merged and merged["reynolds"] == draws[0]["reynolds"]


@pytest.mark.parametrize(
    ("params", "kwargs", "needle"),
    [
        ({"initial_condition": "kelvin_helmholtz"}, {}, "initial_condition"),
        ({"reynolds": 0.0}, {}, "reynolds"),
        ({"reynolds": -5.0}, {}, "reynolds"),
        ({"reynolds": float("nan")}, {}, "reynolds"),
        ({"schmidt": 0.0}, {}, "schmidt"),
        ({"k0": 50.0}, {}, "k0"),
        ({"k0": -1.0}, {}, "k0"),
        ({"seed": -1}, {}, "seed"),
        ({}, {"resolution": (9, 8, 8)}, "even"),
        ({}, {"resolution": (8, 8)}, "resolution"),
        ({}, {"n_steps": -1}, "n_steps"),
        ({}, {"cfl": 2.0}, "cfl"),
    ],
)
def test_bad_parameters_raise_one_clear_error(params, kwargs, needle):
    base = {"reynolds": 100.0, "initial_condition": "turbulence", "k0": 2.0, "seed": 0}
    args = {"resolution": (8, 8, 8), "n_steps": 1} | kwargs
    with pytest.raises(ValueError, match=needle):
        SPEC.simulate([base | params], args.pop("resolution"), args.pop("n_steps"), "cpu", None, False, **args)


def test_generate_writes_a_3d_well_dataset_that_both_readers_load(tmp_path):
    from the_well.data import WellDataset

    from physfm.data import WellWindowDataset

    path = generate(
        "navier_stokes_3d",
        tmp_path / "ns3d",
        n_trajectories=3,
        resolution=(8, 8, 8),
        n_steps=3,
        split_fractions=(1.0, 0.0, 0.0),
        progress=False,
        reynolds=50.0,
        schmidt=1.0,
        k0=2.0,
    )
    files = sorted((path / "data" / "train").glob("*.hdf5"))
    assert len(files) == 1  # equal stored parameters (the seeds differ) -> one file, as in The Well
    with h5py.File(files[0]) as f:
        assert f.attrs["n_spatial_dims"] == 3 and f.attrs["dataset_name"] == "navier_stokes_3d"
        assert (float(f.attrs["Reynolds"]), f.attrs["initial_condition"]) == (50.0, "turbulence")
        assert [d.decode() if isinstance(d, bytes) else d for d in f["dimensions"].attrs["spatial_dims"]] == [
            "x", "y", "z",
        ]
        np.testing.assert_allclose(f["dimensions"]["z"][()], 2 * np.pi * np.arange(8) / 8, rtol=1e-6)
        assert sorted(f["boundary_conditions"]) == ["x_periodic", "y_periodic", "z_periodic"]
        assert f["t0_fields"]["pressure"].shape == (3, 4, 8, 8, 8)
        velocity = f["t1_fields"]["velocity"][()]
    assert velocity.shape == (3, 4, 8, 8, 8, 3)
    # generate() draws the same parameters as sample_parameters (with reynolds etc. fixed).
    with_fixed = [
        SPEC.resolve_parameters(p, {"reynolds": 50.0, "schmidt": 1.0, "k0": 2.0})
        for p in SPEC.sample_parameters(3, torch.Generator().manual_seed(0))
    ]
    direct = simulate.simulate_system("navier_stokes_3d", with_fixed, (8, 8, 8), 3)
    np.testing.assert_allclose(velocity, direct["velocity"].numpy(), rtol=0, atol=1e-6)

    ds = WellWindowDataset(path, split="train", n_steps_input=2, n_steps_output=1)
    assert ds.field_names == ["tracer", "pressure", "velocity_x", "velocity_y", "velocity_z"]
    assert tuple(ds.periodic) == (True, True, True) and tuple(ds.spatial_shape) == (8, 8, 8)
    assert ds[0]["input_fields"].shape == (2, 8, 8, 8, 5)
    well = WellDataset(path=str(path / "data" / "train"), n_steps_input=2, n_steps_output=1, use_normalization=False)
    sample = well[0]
    assert sample["input_fields"].shape == (2, 8, 8, 8, 5)
    np.testing.assert_allclose(sample["input_fields"].numpy()[..., 2:], velocity[0, :2], rtol=0, atol=0)


def test_taylor_green_from_the_cli_options(tmp_path):
    from physfm.simulate.cli import main

    out = tmp_path / "tg"
    argv = ["navier_stokes_3d", "--out", str(out), "--n-trajectories", "1", "--resolution", "8x8x8"]
    assert main(argv + ["--n-steps", "1", "--initial-condition", "taylor_green", "--reynolds", "100", "--no-progress"]) == 0
    with h5py.File(next((out / "data" / "train").glob("*.hdf5"))) as f:
        assert "k0" not in f.attrs and f.attrs["initial_condition"] == "taylor_green"
        velocity = f["t1_fields"]["velocity"][0]
    x, y, z = np.meshgrid(*SPEC.coordinates((8, 8, 8)).values(), indexing="ij")
    np.testing.assert_allclose(velocity[0, ..., 0], np.sin(x) * np.cos(y) * np.cos(z), atol=1e-6)
    assert DOMAIN == ((0.0, 2 * math.pi),) * 3
