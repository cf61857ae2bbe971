"""Physics tests of the linear acoustics simulator (physfm.simulate.acoustic_wave)."""

from __future__ import annotations

import math

import pytest
import torch

from physfm.simulate import acoustic_wave as acoustic

F64 = torch.float64


def _plane_wave(n: int, t: float, k=(1, 2), c: float = 1.0, rho: float = 1.0):
    """Right-going plane wave p = cos(k.x - c|k|t), u = k_hat p / (rho c) on the unit square."""
    x, y = torch.meshgrid(torch.arange(n, dtype=F64) / n, torch.arange(n, dtype=F64) / n, indexing="ij")
    kx, ky = 2 * math.pi * k[0], 2 * math.pi * k[1]
    kn = math.hypot(kx, ky)
    p = torch.cos(kx * x + ky * y - c * kn * t)
    return p, torch.stack([kx / kn * p, ky / kn * p]) / (rho * c)


def _medium(seed: int, n: int, n_inclusions: int = 4):
    rho, p = acoustic.random_medium_and_pulses({"seed": seed, "n_inclusions": n_inclusions}, (n, n))
    return rho[None], p[None], torch.zeros(1, 2, n, n, dtype=F64)


def test_energy_is_conserved_in_a_heterogeneous_medium():
    rho, p0, u0 = _medium(5, 32)
    assert float(rho.max() / rho.min()) > 1.5  # the medium really varies
    p, u, stats = acoustic.solve_acoustic(p0, u0, rho, 1.0, (1.0, 1.0), 0.01, 30)
    modified = torch.stack(
        [acoustic.acoustic_energy(p[:, k], u[:, k], rho, 1.0, dt=stats.dt) for k in range(31)]
    )
    physical = torch.stack([acoustic.acoustic_energy(p[:, k], u[:, k], rho, 1.0) for k in range(31)])
    # Leapfrog + skew-symmetric spectral derivatives: the modified energy is exact to round-off,
    # the physical one oscillates by O(dt^2) without drifting.
    assert float(((modified - modified[0]).abs() / modified[0]).max()) < 1e-13
    assert float(((physical - physical[0]).abs() / physical[0]).max()) < 1e-2
    # Energy really moved between pressure and velocity (waves propagate).
    kinetic = 0.5 * (rho * u[:, -1].square().sum(1)).sum()
    assert float(kinetic) > 0.1 * float(physical[0]) * 32 * 32
    # Total momentum (sum rho u) and the pressure mean (sum p / K) are invariants too.
    torch.testing.assert_close(
        (rho[:, None] * u).sum((-2, -1)), torch.zeros(1, 31, 2, dtype=F64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(p.sum((-2, -1)), p[:, :1].sum((-2, -1)).expand(1, 31), atol=1e-10, rtol=0)


def test_plane_wave_matches_exact_solution_with_second_order_in_time():
    p0, u0 = _plane_wave(16, 0.0)
    p_exact, u_exact = _plane_wave(16, 0.5)
    rho = torch.ones(1, 16, 16, dtype=F64)
    errors = []
    for cfl in (0.4, 0.2):
        p, u, _ = acoustic.solve_acoustic(p0[None], u0[None], rho, 1.0, (1.0, 1.0), 0.05, 10, cfl=cfl)
        errors.append(max(float((p[0, -1] - p_exact).abs().max()), float((u[0, -1] - u_exact).abs().max())))
    # Spectral in space (an exactly represented mode): the error is leapfrog's phase error only.
    assert errors[0] < 2e-2
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_pulses_in_a_uniform_medium_match_the_exact_fourier_solution():
    # In a uniform medium each Fourier mode evolves exactly as p_k(t) = p_k(0) cos(c |k| t) from
    # rest; density 1/4 gives c = sqrt(K / rho) = 2.
    params = {"seed": 3, "n_pulses": 2, "n_inclusions": 0, "background_density": 0.25}
    out = acoustic.simulate([params], (32, 32), 10, progress=False)
    torch.testing.assert_close(out["speed_of_sound"], torch.full_like(out["speed_of_sound"], 2.0))
    _, p0 = acoustic.random_medium_and_pulses(params, (32, 32))
    k = 2 * math.pi * torch.fft.fftfreq(32, d=1 / 32, dtype=F64)
    k_norm = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    for frame in (5, 10):
        exact = torch.fft.ifft2(torch.fft.fft2(p0) * torch.cos(2.0 * k_norm * acoustic.DT * frame)).real
        error = float((out["pressure"][0, frame].double() - exact).abs().max())
        assert error < 0.02 * float(p0.abs().max())
    assert float((out["pressure"][0, 10].double() - p0).abs().max()) > 0.3 * float(p0.abs().max())


def test_cfl_stability():
    rho, p0, u0 = _medium(7, 24)
    # Close to the leapfrog limit the scheme is still stable over many steps.
    p, u, stats = acoustic.solve_acoustic(p0, u0, rho, 1.0, (1.0, 1.0), 0.02, 40, cfl=0.95)
    e = [float(acoustic.acoustic_energy(p[:, k], u[:, k], rho, 1.0, dt=stats.dt)) for k in (0, 40)]
    assert abs(e[1] - e[0]) < 1e-12 * e[0]
    assert float(p.abs().max()) < 2 * float(p0.abs().max())
    # The step is what the stability bound allows: fewer substeps at a larger CFL fraction.
    _, _, coarse = acoustic.solve_acoustic(p0, u0, rho, 1.0, (1.0, 1.0), 0.02, 1, cfl=0.95)
    _, _, fine = acoustic.solve_acoustic(p0, u0, rho, 1.0, (1.0, 1.0), 0.02, 1, cfl=0.3)
    assert int(fine.n_substeps) >= 3 * int(coarse.n_substeps) - 2
    with pytest.raises(ValueError, match="cfl"):
        acoustic.solve_acoustic(p0, u0, rho, 1.0, (1.0, 1.0), 0.02, 1, cfl=1.2)


def test_simulate_outputs_determinism_and_batch_independence():
    params = acoustic.sample_parameters(3, torch.Generator().manual_seed(2))
    assert params == acoustic.sample_parameters(3, torch.Generator().manual_seed(2))
    a = acoustic.simulate(params, (16, 16), 4, progress=False)
    b = acoustic.simulate(params, (16, 16), 4, progress=False)
    alone = acoustic.simulate(params[2:], (16, 16), 4, progress=False)
    assert set(a) == {"pressure", "density", "speed_of_sound", "velocity"}
    assert a["velocity"].shape == (3, 5, 16, 16, 2) and a["pressure"].shape == (3, 5, 16, 16)
    for k in a:
        assert a[k].dtype == torch.float32
        assert torch.equal(a[k], b[k])
        # Same trajectory alone or in a batch (batched FFTs may differ in the last bits).
        torch.testing.assert_close(alone[k][0], a[k][2], rtol=1e-5, atol=1e-6)
    # Static medium, fluid initially at rest, then moving.
    assert torch.equal(a["density"], a["density"][:, :1].expand_as(a["density"]))
    torch.testing.assert_close(a["speed_of_sound"], torch.sqrt(acoustic.BULK_MODULUS / a["density"]))
    assert a["velocity"][:, 0].abs().max() == 0 and a["velocity"][:, -1].abs().max() > 1e-2
    assert not torch.allclose(a["pressure"][0], a["pressure"][1])


def test_spec_and_user_errors():
    from physfm.simulate import SYSTEMS

    assert SYSTEMS["acoustic_wave"] is acoustic.SPEC
    assert acoustic.SPEC.periodic == (True, True) and not acoustic.SPEC.grid_centred
    with pytest.raises(ValueError, match="background_density"):
        acoustic.simulate([{"seed": 1, "background_density": -1.0}], (8, 8), 1, progress=False)
    with pytest.raises(ValueError, match="n_pulses"):
        acoustic.simulate([{"seed": 1, "n_pulses": 0}], (8, 8), 1, progress=False)
    with pytest.raises(ValueError, match="resolution"):
        acoustic.simulate([{"seed": 1}], (8,), 1, progress=False)
    with pytest.raises(ValueError, match="density"):
        acoustic.solve_acoustic(
            torch.zeros(1, 8, 8), torch.zeros(1, 2, 8, 8), -torch.ones(1, 8, 8), 1.0, (1, 1), 0.1, 1
        )


def test_generate_writes_a_readable_well_dataset(tmp_path):
    from physfm.data import WellWindowDataset
    from physfm.simulate import generate

    path = generate(
        "acoustic_wave", tmp_path / "ac", n_trajectories=2, resolution=(8, 8), n_steps=3, progress=False
    )
    ds = WellWindowDataset(path, split="train", n_steps_input=2, n_steps_output=1, normalize=False)
    assert ds.field_names == ["pressure", "density", "speed_of_sound", "velocity_x", "velocity_y"]
    assert tuple(ds.periodic) == (True, True) and tuple(ds.spatial_shape) == (8, 8)
    fields = ds[0]["input_fields"]
    torch.testing.assert_close(fields[..., 2], torch.sqrt(acoustic.BULK_MODULUS / fields[..., 1]))
