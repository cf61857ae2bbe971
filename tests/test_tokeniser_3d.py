"""The tokeniser on 3-D fields ``[batch, time, x, y, z, fields]``: everything the 2-D tokeniser promises (shapes at
every ratio, T = 1, causality, exact shift-equivariance on periodic axes, replication on walled ones, field
vocabulary, save/load), plus the layers' 3-D paths against their slow definitions. The remote-code round trip of a
3-D checkpoint is the ``3d`` case of ``test_tokeniser_hub_code.py``."""

import pytest
import torch
from test_tokeniser_layers import assert_same_map, reference_pad
from transformers import AutoModel

import physfm  # noqa: F401  (registers the Auto classes)
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.models.layers import pad_space, spatial_conv, upsample, upsampling_conv

SHAPE = (8, 8, 16)  # x, y, z: small, anisotropic, a multiple of every ratio below


def tiny_model(**overrides) -> PhysfmTokeniserModel:
    torch.manual_seed(0)
    kwargs = dict(n_spatial_dims=3, field_names=["u", "v", "w"], hidden_channels=4, latent_channels=4,
                  spatial_compressions=[2, 4, 8], temporal_compressions=[1, 2, 4], default_spatial_compression=4)
    return PhysfmTokeniserModel(PhysfmTokeniserConfig(**{**kwargs, **overrides})).eval()


def fields(frames: int, shape=SHAPE, n_fields: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, frames, *shape, n_fields, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("periodic", [(True, True, True), (False, True, False), (True, False, True)])
@pytest.mark.parametrize("pad", [1, 3])  # 3 is wider than the 2-cell axis: the indexing fallback
def test_padding_wraps_periodic_axes_and_replicates_the_others(periodic, pad):
    x = torch.randn(2, 3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(pad_space(x, pad, periodic), reference_pad(x, pad, periodic), rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda v: pad_space(v, pad, periodic), (x,))


@pytest.mark.parametrize("periodic", [(True, True, True), (False, True, False)])
def test_folded_upsampling_conv_is_a_convolution_of_the_nearest_upsampled_grid(periodic):
    x = torch.randn(1, 2, 3, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64)
    folded = upsampling_conv(x, weight, bias, periodic)
    direct = spatial_conv(upsample(x, 1, 2), weight, bias, periodic)
    assert folded.shape == (1, 2, 6, 8, 4, 2)
    assert_same_map(folded, direct, (x, weight))


# ------------------------------------------------------------------------------------------------ shapes
def test_shapes_at_every_ratio_and_single_frame():
    tok = tiny_model()
    for s in tok.config.spatial_compressions:
        for t in tok.config.temporal_compressions:
            for n_frames in (1, 1 + 2 * t):
                x = fields(n_frames)
                with torch.no_grad():
                    z = tok.encode(x, spatial_compression=s, temporal_compression=t)
                    assert z.shape == (1, 1 + (n_frames - 1) // t, *(n // s for n in SHAPE), 4), (s, t, n_frames)
                    assert tok.decode(z, spatial_compression=s, temporal_compression=t).shape == x.shape


def test_single_frame_is_the_first_frame_of_any_clip():
    """T = 1 collapses every time kernel onto the first frame, exactly what a clip's first frame sees."""
    tok = tiny_model()
    clip = fields(5)
    with torch.no_grad():
        for t in (1, 2, 4):
            alone = tok(clip[:, :1], temporal_compression=t)
            within = tok(clip, temporal_compression=t)
            torch.testing.assert_close(alone.latents, within.latents[:, :1], atol=1e-6, rtol=0)
            torch.testing.assert_close(alone.reconstruction, within.reconstruction[:, :1], atol=1e-6, rtol=0)


def test_sizes_not_a_multiple_are_padded_and_cropped():
    tok = tiny_model(periodic=[True, False, True])
    x = fields(1, shape=(7, 8, 9))
    with torch.no_grad():
        out = tok(x, spatial_compression=4)
        assert out.latents.shape == (1, 1, 2, 2, 3, 4) and out.reconstruction.shape == x.shape
        full = tok.decode(out.latents, spatial_compression=4)
        assert full.shape == (1, 1, 8, 8, 12, 3)
        torch.testing.assert_close(full[:, :, :7, :8, :9], out.reconstruction)


# ---------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("t", [1, 2, 4])
def test_causal_in_time(t):
    """Perturbing frames after tau = j * t leaves latents <= j and reconstructed frames <= tau untouched."""
    tok = tiny_model()
    n_latent = 3
    x = fields(1 + (n_latent - 1) * t)
    with torch.no_grad():
        base = tok(x, temporal_compression=t)
        for j in range(n_latent - 1):
            tau = j * t
            perturbed = x.clone()
            perturbed[:, tau + 1 :] += torch.randn_like(perturbed[:, tau + 1 :])
            out = tok(perturbed, temporal_compression=t)
            torch.testing.assert_close(out.latents[:, : j + 1], base.latents[:, : j + 1], atol=1e-6, rtol=0)
            torch.testing.assert_close(out.reconstruction[:, : tau + 1], base.reconstruction[:, : tau + 1],
                                       atol=1e-6, rtol=0)
            assert (out.reconstruction[:, tau + 1 :] - base.reconstruction[:, tau + 1 :]).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------- boundaries
@pytest.mark.parametrize(("s", "shifts"), [(2, (2, 0, 6)), (4, (4, 0, 8)), (8, (0, 0, 8))])
def test_exactly_shift_equivariant_on_periodic_axes(s, shifts):
    """Shifts by multiples of the total stride commute with the model, the walled y axis notwithstanding."""
    tok = tiny_model(periodic=[True, False, True])
    x = fields(3)
    dims = (2, 3, 4)
    with torch.no_grad():
        base = tok(x, spatial_compression=s)
        shifted = tok(torch.roll(x, shifts, dims), spatial_compression=s)
    torch.testing.assert_close(shifted.reconstruction, torch.roll(base.reconstruction, shifts, dims), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(shifted.latents, torch.roll(base.latents, tuple(n // s for n in shifts), dims),
                               atol=1e-5, rtol=0)
    assert (shifted.reconstruction - base.reconstruction).abs().max() > 1e-3  # the shift is no identity


def test_walled_axes_are_replicated_not_wrapped():
    """On a walled axis a roll is no symmetry, and a field constant near a wall sees only itself beyond it."""
    tok = tiny_model(periodic=[True, True, False])
    x = fields(1)
    with torch.no_grad():
        base = tok(x, spatial_compression=2).reconstruction
        across = tok(torch.roll(x, 4, dims=4), spatial_compression=2).reconstruction
    assert (across - torch.roll(base, 4, dims=4)).abs().max() > 1e-3
    # Replication makes the first cell along z indistinguishable from a wall-side copy of itself; wrapping would
    # pull in the far side instead. Changing the far side must therefore not reach the first latent cell.
    far = x.clone()
    far[..., -4:, :] += 1.0
    with torch.no_grad():
        near_latent = tok.encode(x, spatial_compression=2)[..., 0, :]
        torch.testing.assert_close(tok.encode(far, spatial_compression=2)[..., 0, :], near_latent, atol=0, rtol=0)
        wrapped = tok.encode(far, spatial_compression=2, periodic=[True, True, True])[..., 0, :]
        assert (wrapped - tok.encode(x, spatial_compression=2, periodic=[True, True, True])[..., 0, :]).abs().max() > 0


# --------------------------------------------------------------------------------------- field vocabulary
def test_field_subsets_in_any_order_and_add_fields_with_save_load(tmp_path):
    tok = tiny_model(field_names=["a", "b", "c"])
    x = fields(1)
    with torch.no_grad():
        z_ac = tok.encode(x[..., [0, 2]], field_names=["a", "c"])
        torch.testing.assert_close(tok.encode(x[..., [2, 0]], field_names=["c", "a"]), z_ac, atol=1e-5, rtol=1e-5)
        full = tok.decode(z_ac)
        torch.testing.assert_close(tok.decode(z_ac, field_names=["c", "a"]), full[..., [2, 0]], atol=1e-5, rtol=1e-5)
        before = tok(x).reconstruction
    tok.add_fields(["velocity_z"])
    assert tok.config.field_names == ["a", "b", "c", "velocity_z"] and tok.untrained_field_names == ["velocity_z"]
    four = torch.cat([x, fields(1, n_fields=1, seed=1)], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(tok(x, field_names=["a", "b", "c"]).reconstruction, before, atol=0, rtol=0)
        out = tok(four)
    tok.save_pretrained(tmp_path)
    for cls in (PhysfmTokeniserModel, AutoModel):
        loaded = cls.from_pretrained(tmp_path, dtype=torch.float32).eval()
        assert type(loaded) is PhysfmTokeniserModel and loaded.config.n_spatial_dims == 3
        with torch.no_grad():
            torch.testing.assert_close(loaded(four).reconstruction, out.reconstruction, atol=0, rtol=0)


def test_default_vocabulary_has_three_velocity_components():
    assert PhysfmTokeniserConfig(n_spatial_dims=3).field_names == [
        "tracer", "pressure", "velocity_x", "velocity_y", "velocity_z"]
    assert PhysfmTokeniserConfig().field_names == ["tracer", "pressure", "velocity_x", "velocity_y"]


# ------------------------------------------------------------------------------------------ memory / errors
def assert_checkpointing_keeps_gradients(model: torch.nn.Module, loss) -> None:
    """Activation checkpointing recomputes activations instead of storing them: ``loss(model)`` must give the same
    parameters the same gradients with it as without."""
    model.train()
    loss(model).backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    loss(model).backward()
    assert {name for name, p in model.named_parameters() if p.grad is not None} == set(reference)
    for name, p in model.named_parameters():
        if name in reference:
            torch.testing.assert_close(p.grad, reference[name], atol=1e-6, rtol=1e-5)


def test_activation_checkpointing_gives_same_gradients():
    x = fields(3)
    assert_checkpointing_keeps_gradients(tiny_model(), lambda tok: tok(x).loss)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda tok: tok.encode(torch.randn(1, 1, 8, 8, 3)),
         r"fields: got shape \(1, 1, 8, 8, 3\) \(5 dimensions\); expected 6 dimensions \[batch, time, x, y, z, "
         r"fields\] for this 3-D model \(n_spatial_dims=3\)"),
        (lambda tok: tok.decode(torch.randn(1, 1, 2, 2, 4)), r"latents: got shape .*; expected 6 dimensions \[batch, time, x, y, z, "),
        (lambda tok: tok.encode(fields(1), periodic=[True, False]),
         r"periodic=\(True, False\) must hold one bool per spatial axis \(3\)"),
        (lambda tok: PhysfmTokeniserConfig(n_spatial_dims=3, periodic=[True, True]), r"periodic=.*\(3\)"),
    ],
)
def test_bad_input_is_one_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(tiny_model())
