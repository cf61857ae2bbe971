"""physfm.metrics equals the_well.benchmark.metrics to 1e-5 relative, and behaves as a metric should."""

from types import SimpleNamespace

import pytest
import torch

from physfm.metrics import binned_spectral_mse, mse, nrmse, vrmse

peer = pytest.importorskip("the_well.benchmark.metrics")

SHAPES = [((2, 3, 16, 24, 4), 2), ((4, 32, 3), 1), ((2, 6, 8, 10, 2), 3), ((1, 17, 9, 1), 2),
          ((2, 3, 8, 6, 10, 5), 3)]  # the last: [batch, time, x, y, z, fields], as 3-D models emit


def _pair(shape):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(shape, generator=g) * 2 + 0.5
    pred = target + 0.3 * torch.randn(shape, generator=g)
    return pred, target


def _rel(a, b):
    return ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()


@pytest.mark.parametrize("shape,nd", SHAPES)
def test_vrmse_nrmse_match_the_well(shape, nd):
    pred, target = _pair(shape)
    meta = SimpleNamespace(n_spatial_dims=nd)  # the peer's metrics only read meta.n_spatial_dims
    ours = vrmse(pred, target, n_spatial_dims=nd)
    assert ours.shape == shape[: -nd - 1] + shape[-1:]
    assert _rel(ours, peer.VRMSE()(pred, target, meta)) < 1e-5
    assert _rel(nrmse(pred, target, n_spatial_dims=nd), peer.NRMSE()(pred, target, meta)) < 1e-5


@pytest.mark.parametrize("shape,nd", SHAPES)
def test_binned_spectral_mse_matches_the_well(shape, nd):
    pred, target = _pair(shape)
    ours = binned_spectral_mse(pred, target, n_spatial_dims=nd)
    theirs = peer.binned_spectral_mse()(pred, target, SimpleNamespace(n_spatial_dims=nd))
    for i, name in enumerate(("low", "mid", "high")):
        assert _rel(ours[f"mse_{name}"], theirs[f"spectral_error_mse_per_bin_{i}"]) < 1e-5
        assert _rel(ours[f"nmse_{name}"], theirs[f"spectral_error_nmse_per_bin_{i}"]) < 1e-5


def test_spectral_bins_sum_to_mse_and_separate_scales():
    # Parseval: the three bins partition the Fourier modes, so their MSEs add up to the plain MSE.
    pred, target = _pair((2, 32, 32, 3))
    bins = binned_spectral_mse(pred, target)
    total = bins["mse_low"] + bins["mse_mid"] + bins["mse_high"]
    torch.testing.assert_close(total, mse(pred, target), rtol=1e-4, atol=1e-6)
    # A large-scale error lands in the low bin, a grid-scale one in the high bin.
    x = torch.arange(32.0)
    smooth = torch.sin(2 * torch.pi * x / 32)[:, None, None].expand(32, 32, 1)
    rough = torch.cos(torch.pi * x)[:, None, None].expand(32, 32, 1)
    zero = torch.zeros(32, 32, 1)
    assert binned_spectral_mse(smooth, zero)["mse_low"] > 0.4
    assert binned_spectral_mse(smooth, zero)["mse_high"] < 1e-10
    assert binned_spectral_mse(rough, zero)["mse_high"] > 0.9


def test_perfect_prediction_and_bad_input():
    pred, target = _pair((2, 8, 8, 2))
    assert vrmse(target, target).abs().max() == 0
    assert torch.allclose(vrmse(target.mean(dim=(1, 2), keepdim=True).expand_as(target), target),
                          torch.ones(2, 2), atol=0.1)  # predicting the mean gives VRMSE ~ 1
    with pytest.raises(ValueError, match=r"pred shape \(2, 8, 8, 2\) != target shape"):
        vrmse(pred, target[..., :1])
    with pytest.raises(ValueError, match="fewer than n_spatial_dims"):
        nrmse(torch.zeros(4, 2), torch.zeros(4, 2), n_spatial_dims=2)
