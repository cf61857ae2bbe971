"""Physics tests of the Gray-Scott reaction-diffusion simulator (The Well's system)."""

import math

import numpy as np
import pytest
import torch

import physfm.simulate as simulate
from physfm.simulate.gray_scott import (
    DELTA_A,
    DELTA_B,
    PATTERNS,
    SPEC,
    initial_condition,
    merge_parameters,
    solve_gray_scott,
)


def _grid(n):
    x, y = np.meshgrid(*SPEC.coordinates((n, n)).values(), indexing="ij")
    return torch.tensor(x), torch.tensor(y)


def test_the_wells_parameters_and_grid():
    assert PATTERNS == {
        "gliders": (0.014, 0.054),
        "bubbles": (0.098, 0.057),
        "maze": (0.029, 0.057),
        "worms": (0.058, 0.065),
        "spirals": (0.018, 0.051),
        "spots": (0.03, 0.062),
    }
    assert (DELTA_A, DELTA_B, SPEC.dt, SPEC.domain) == (2e-5, 1e-5, 10.0, ((-1.0, 1.0), (-1.0, 1.0)))
    np.testing.assert_allclose(SPEC.coordinates((8, 8))["x"], -1 + 2 * np.arange(8) / 8)


def test_reaction_free_diffusion_matches_exact_fourier_decay():
    """With f = k = 0 and one species zero, both reaction terms vanish identically, so each
    Fourier mode decays as exp(-delta |k|^2 t) exactly (ETDRK4 integrates it exactly)."""
    n, t_frames = 32, 3
    x, y = _grid(n)
    kx, ky = 3 * math.pi, 5 * math.pi  # 3 and 5 wavelengths on [-1, 1)
    mode = torch.cos(kx * x) * torch.sin(ky * y)
    zero = torch.zeros_like(mode)
    out = solve_gray_scott(
        torch.stack([mode, zero]), torch.stack([zero, mode]), torch.zeros(2), torch.zeros(2), t_frames
    )
    t = 10.0 * torch.arange(t_frames + 1, dtype=torch.float64)[:, None, None]
    k2 = kx**2 + ky**2
    torch.testing.assert_close(out[0, ..., 0], mode * torch.exp(-DELTA_A * k2 * t), rtol=0, atol=1e-13)
    torch.testing.assert_close(out[1, ..., 1], mode * torch.exp(-DELTA_B * k2 * t), rtol=0, atol=1e-13)
    assert out[0, ..., 1].abs().max() == 0 and out[1, ..., 0].abs().max() == 0
    assert math.exp(-DELTA_A * k2 * 30) < 0.9  # decay visible at this resolution and time


def test_linear_feed_relaxation_is_fourth_order_accurate():
    """With B = 0 the A equation is linear: A - 1 relaxes as exp(-(delta_A |k|^2 + f) t). The feed
    term is stepped explicitly by ETDRK4, so this checks the scheme's coupling and accuracy."""
    n, f = 16, 0.05
    x, y = _grid(n)
    kx = 2 * math.pi
    a0 = 0.5 + 0.3 * torch.cos(kx * x)
    out = solve_gray_scott(a0[None], torch.zeros_like(a0)[None], torch.tensor([f]), torch.tensor([0.03]), 4)
    t = 10.0 * torch.arange(5, dtype=torch.float64)[:, None, None]
    exact = 1 - 0.5 * torch.exp(-f * t) + 0.3 * torch.cos(kx * x) * torch.exp(-(DELTA_A * kx**2 + f) * t)
    torch.testing.assert_close(out[0, ..., 0], exact, rtol=0, atol=1e-7)
    assert (out[0, -1, ..., 0] - a0).abs().max() > 0.3


def test_homogeneous_steady_state_of_the_fourier_initial_condition_is_a_fixed_point():
    f, k = PATTERNS["bubbles"]  # the only one of The Well's sets with a non-trivial steady state
    a, b = initial_condition("fourier", f, k, (32, 32), seed=3)
    s = math.sqrt(f) / (f + k)
    a_star, b_star = (s - math.sqrt(s * s - 4)) / (2 * s), math.sqrt(f) * (s + math.sqrt(s * s - 4)) / 2
    assert abs(-a_star * b_star**2 + f * (1 - a_star)) < 1e-12
    assert abs(a_star * b_star**2 - (f + k) * b_star) < 1e-12
    assert abs(float(a.mean()) - a_star) < 0.02 and abs(float(b.mean()) - b_star) < 0.02
    assert 0 < float(a.min()) and float(a.max()) < 1 and 0 < float(b.min()) and float(b.max()) < 1
    ga, gb = initial_condition("gaussians", f, k, (32, 32), seed=3)
    assert (float(ga.min()), float(ga.max()), float(gb.min()), float(gb.max())) == (0.0, 1.0, 0.0, 1.0)


def test_homogeneous_state_follows_the_reaction_ode():
    """A spatially uniform state stays uniform and obeys dA/dt = -AB^2 + f(1-A),
    dB/dt = AB^2 - (f+k)B; compared with a fine-step RK4 solution of that ODE."""
    f, k = PATTERNS["spirals"]
    a0, b0 = 0.9, 0.3

    def run(solver_dt):
        return solve_gray_scott(
            torch.full((1, 8, 8), a0, dtype=torch.float64),
            torch.full((1, 8, 8), b0, dtype=torch.float64),
            torch.tensor([f], dtype=torch.float64),
            torch.tensor([k], dtype=torch.float64),
            3,
            solver_dt=solver_dt,
        )[0]

    out, fine = run(1.0), run(0.5)
    assert out.std(dim=(1, 2)).max() < 1e-14

    def rhs(v):
        a, b = v
        return np.array([-a * b * b + f * (1 - a), a * b * b - (f + k) * b])

    v, h, expected = np.array([a0, b0]), 0.01, [np.array([a0, b0])]
    for _ in range(3):
        for _ in range(1000):
            k1 = rhs(v)
            k2 = rhs(v + h / 2 * k1)
            k3 = rhs(v + h / 2 * k2)
            v = v + h / 6 * (k1 + 2 * k2 + 2 * k3 + rhs(v + h * k3))
        expected.append(v)
    expected = np.array(expected)
    err = np.abs(out[:, 0, 0].numpy() - expected).max()
    err_fine = np.abs(fine[:, 0, 0].numpy() - expected).max()
    # The Well's step (dt = 1) through a fast transient, and 4th-order convergence when halved.
    assert err < 2e-4 and err_fine < err / 10, (err, err_fine)
    assert np.abs(expected[:, 0] - a0).max() > 0.5  # the reaction did change the state


def test_species_stay_bounded_and_patterns_develop():
    # Concentrations start in [0, 1] and the ODE keeps {A, B >= 0, A + B <= 1}-type bounds; the
    # spectral discretisation of sharp Gaussians may only add a small Gibbs over/undershoot.
    for pattern in ("bubbles", "maze"):
        out = simulate.gray_scott_reaction_diffusion(pattern=pattern, seed=0, resolution=(64, 64), n_steps=10)
        a, b = out["A"], out["B"]
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        assert -0.05 < a.min() and a.max() < 1.1 and -0.1 < b.min() and b.max() < 1.05, pattern
    # Under the "maze" rates a spatial pattern persists and keeps evolving (it neither decays
    # to a homogeneous state nor freezes).
    b = simulate.gray_scott_reaction_diffusion(pattern="maze", seed=1, resolution=(64, 64), n_steps=20)["B"]
    assert b[-1].std() > 0.05
    assert (b[-1] - b[-2]).abs().max() > 1e-3
    assert (b[-1] - b[0]).abs().max() > 0.1


def test_deterministic_and_batch_independent():
    params = SPEC.sample_parameters(3, torch.Generator().manual_seed(4))
    assert params == SPEC.sample_parameters(3, torch.Generator().manual_seed(4))
    batch = simulate.simulate_system(
        "gray_scott_reaction_diffusion", params, (16, 16), 2, dtype=torch.float64
    )
    alone = simulate.simulate_system(
        "gray_scott_reaction_diffusion", params[1:2], (16, 16), 2, dtype=torch.float64
    )
    assert set(batch) == {"A", "B"} and batch["A"].shape == (3, 3, 16, 16)
    torch.testing.assert_close(batch["B"][1:2], alone["B"], rtol=0, atol=1e-13)
    other = dict(params[1], seed=params[1]["seed"] + 1)
    moved = simulate.simulate_system("gray_scott_reaction_diffusion", [other], (16, 16), 0)
    assert not torch.allclose(moved["B"][0, 0], alone["B"][0, 0].float())


def test_fixing_a_pattern_fixes_its_rates():
    drawn = {"pattern": "spots", "f": 0.03, "k": 0.062, "initial_condition": "fourier", "seed": 1}
    assert merge_parameters(drawn, {"pattern": "worms"})[("f")] == 0.058
    custom = merge_parameters(drawn, {"f": 0.04})
    assert custom["pattern"] == "custom" and custom["f"] == 0.04 and custom["k"] == 0.062


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"pattern": "zebra"}, "pattern"),
        ({"initial_condition": "noise"}, "initial_condition"),
        ({"f": -0.1}, "f"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        simulate.gray_scott_reaction_diffusion(resolution=(16, 16), n_steps=1, **kwargs)
