"""The tokeniser's building blocks against their slow definitions: padding, the folded up-sampling convolution,
the causal time kernel, and a pyramid that stops at each ratio's own level."""

import pytest
import torch

from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.models.layers import (
    ACTIVATIONS,
    pad_space,
    spatial_conv,
    temporal_conv,
    upsample,
    upsampling_conv,
)


def reference_pad(x: torch.Tensor, pad: int, periodic) -> torch.Tensor:
    for axis, circular in enumerate(periodic):
        n = x.shape[1 + axis]
        index = torch.arange(-pad, n + pad)
        x = x.index_select(1 + axis, index % n if circular else index.clamp(0, n - 1))
    return x


def assert_same_map(ours: torch.Tensor, reference: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> None:
    """``ours`` and ``reference`` agree in value and in their gradients with respect to ``inputs``."""
    torch.testing.assert_close(ours, reference)
    grad = torch.randn_like(reference)
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(reference, inputs, grad), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("periodic", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("pad", [1, 2, 4])  # 4 is wider than the 3-cell axis: the indexing fallback
def test_padding_and_its_gradient_match_indexing(periodic, pad):
    x = torch.randn(2, 3, 5, 2, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(pad_space(x, pad, periodic), reference_pad(x, pad, periodic), rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda v: pad_space(v, pad, periodic), (x,))


@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize("pad", [1, 4])
def test_activation_fused_into_the_padding_matches_activating_first(activation, pad):
    x = torch.randn(2, 3, 5, 2, dtype=torch.float64, requires_grad=True)
    periodic = (True, False)
    fused = pad_space(x, pad, periodic, activation)
    torch.testing.assert_close(fused, reference_pad(ACTIVATIONS[activation](x), pad, periodic))
    assert torch.autograd.gradcheck(lambda v: pad_space(v, pad, periodic, activation), (x,))


def test_convolution_gradients_with_the_in_place_halo_fold_match_a_reference():
    # spatial_conv folds its private halo gradient in place; checked against padding by indexing.
    x = torch.randn(2, 3, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    periodic = (True, False)
    ours = spatial_conv(x, weight, None, periodic, activation="silu")
    frames = reference_pad(ACTIVATIONS["silu"](x).flatten(0, 1), 1, periodic).movedim(-1, 1)
    reference = torch.nn.functional.conv2d(frames, weight).movedim(1, -1).unflatten(0, (2, 3))
    assert_same_map(ours, reference, (x, weight))


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("periodic", [(True, True), (False, True), (False, False)])
def test_upsampling_conv_is_a_convolution_of_the_nearest_upsampled_grid(kernel, periodic):
    x = torch.randn(2, 3, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 5, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64)
    folded = upsampling_conv(x, weight, bias, periodic)
    direct = spatial_conv(upsample(x, 1, 2), weight, bias, periodic)
    assert folded.shape == (2, 3, 12, 8, 3)
    assert_same_map(folded, direct, (x, weight))


def test_temporal_conv_is_causal_with_the_first_frame_replicated():
    x = torch.randn(2, 5, 3, 3, 4, dtype=torch.float64)
    weight = torch.randn(6, 4, 3, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    padded = torch.cat([x[:, :1], x[:, :1], x], dim=1)
    expected = torch.stack([sum(padded[:, j + k] @ weight[:, :, k].T for k in range(3)) + bias for j in range(5)], 1)
    torch.testing.assert_close(temporal_conv(x, weight, bias), expected)
    torch.testing.assert_close(temporal_conv(x, weight, bias, stride=2), expected[:, ::2])
    # One frame: the collapsed kernel equals the first output of any longer clip.
    torch.testing.assert_close(temporal_conv(x[:, :1], weight, bias), expected[:, :1])
    assert torch.autograd.gradcheck(lambda v, w: temporal_conv(v, w, bias, stride=2), (
        x[:, :, :1, :1].clone().requires_grad_(), weight.clone().requires_grad_()))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("repeat", [2, 4])
def test_temporal_conv_of_repeated_frames_equals_convolving_the_upsampled_clip(stride, repeat):
    x = torch.randn(2, 3, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64)
    folded = temporal_conv(x, weight, bias, stride, repeat=repeat)
    direct = temporal_conv(upsample(x, repeat, 1), weight, bias, stride)
    assert folded.shape[1] == (2 * repeat) // stride + 1
    assert_same_map(folded, direct, (x, weight))


@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize(("stride", "repeat", "frames"), [(1, 1, 5), (2, 1, 5), (1, 2, 3), (1, 1, 1)])
def test_activation_fused_into_the_time_padding_matches_activating_first(activation, stride, repeat, frames):
    # The fused clip is read in place by a (k, 1) convolution, and its gradient is folded in place.
    x = torch.randn(2, frames, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    fused = temporal_conv(x, weight, bias, stride, repeat, activation)
    activated = ACTIVATIONS[activation](x)
    assert_same_map(fused, temporal_conv(activated, weight, bias, stride, repeat), (x, weight, bias))
    clip = torch.cat([activated[:, :1]] * 2 + [upsample(activated, repeat, 1)], dim=1)
    taps = [clip[:, k : clip.shape[1] - 2 + k : stride] @ weight[:, :, k].T for k in range(3)]
    torch.testing.assert_close(fused, sum(taps) + bias)
    assert torch.autograd.gradcheck(lambda v, w: temporal_conv(v, w, bias, stride, repeat, activation), (
        x[:, :, :1, :1].detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()))


def test_a_ratio_runs_only_the_levels_it_needs():
    tok = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u"], hidden_channels=4, latent_channels=4))
    assert sorted(tok.encoder.latent_heads) == ["1", "2", "3", "4"]  # s in 2..16, t <= s: exit levels 1..4
    tok(torch.randn(1, 1, 16, 16, 1), spatial_compression=4, temporal_compression=1).loss.backward()
    trained = {name for name, p in tok.named_parameters() if p.grad is not None}
    assert "encoder.latent_heads.2.weight" in trained and "decoder.latent_heads.2.weight" in trained
    assert not any(name.startswith(("encoder.levels.3.", "encoder.latent_heads.3", "decoder.levels.3.",
                                    "encoder.levels.2.downsample")) for name in trained)


def test_temporal_ratio_above_spatial_runs_extra_time_only_levels():
    tok = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u"], hidden_channels=4, latent_channels=4,
                                                     spatial_compressions=[2, 4], temporal_compressions=[1, 4]))
    latents = tok.encode(torch.randn(1, 9, 8, 8, 1), spatial_compression=2, temporal_compression=4)
    assert latents.shape == (1, 3, 4, 4, 4)
    assert tok.decode(latents, spatial_compression=2, temporal_compression=4).shape == (1, 9, 8, 8, 1)


def test_config_levels_and_presets():
    config = PhysfmTokeniserConfig()
    assert config.n_levels == 5 and config.layers_per_level == [0, 1, 1, 1, 1]
    assert config.level_widths == [32, 64, 64, 64, 64] and config.exit_levels == [1, 2, 3, 4]
    assert PhysfmTokeniserConfig(layers_per_level=2).layers_per_level == [2] * 5
    gpu = PhysfmTokeniserConfig.for_gpu(latent_channels=32)
    assert gpu.hidden_channels == 64 and gpu.latent_channels == 32 and gpu.channel_multipliers == [1, 2, 4, 4, 4]
    assert PhysfmTokeniserConfig.for_gpu(spatial_compressions=[2, 4]).layers_per_level == [1, 2, 2]
    with pytest.raises(ValueError, match="layers_per_level"):
        PhysfmTokeniserConfig(layers_per_level=[1, 1])
    with pytest.raises(ValueError, match="activation"):
        PhysfmTokeniserConfig(activation="relu")
