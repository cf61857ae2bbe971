"""The tokeniser's contract: shapes at every ratio, causality, shift-equivariance, field vocabulary, bad input,
and one checkpoint that learns to reconstruct at two ratios."""

import math
import runpy
from pathlib import Path

import pytest
import torch

from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel, PhysfmTokeniserOutput
from physfm.training import autoencoding_step, fit_autoencoder, ratio_balanced_objective

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions on an oversubscribed 2-core machine: two OpenMP threads measured up to 50x slower than one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides) -> PhysfmTokeniserConfig:
    kwargs = dict(
        field_names=["u", "v"],
        hidden_channels=4,
        latent_channels=4,
        spatial_compressions=[2, 4, 8, 16],
        temporal_compressions=[1, 2, 4],
        default_spatial_compression=4,
    )
    kwargs.update(overrides)
    return PhysfmTokeniserConfig(**kwargs)


def tiny_model(**overrides) -> PhysfmTokeniserModel:
    return PhysfmTokeniserModel(tiny_config(**overrides)).eval()


def smooth_fields(batch: int, frames: int, size: int, n_fields: int, generator: torch.Generator) -> torch.Tensor:
    """Sums of a few low periodic modes drifting in time, z-scored: the kind of field a tokeniser sees."""
    grid = torch.arange(size) * (2 * math.pi / size)
    x, y = grid.view(-1, 1, 1), grid.view(1, -1, 1)
    time = torch.arange(frames).view(1, -1, 1, 1, 1) * 0.3
    out = torch.zeros(batch, frames, size, size, n_fields)
    for _ in range(3):
        kx, ky = torch.randint(0, 3, (2,), generator=generator).tolist()
        amplitude = torch.randn(batch, 1, 1, 1, n_fields, generator=generator)
        phase = torch.rand(batch, 1, 1, 1, n_fields, generator=generator) * 2 * math.pi
        out = out + amplitude * torch.sin(kx * x + ky * y + phase + time)
    return (out - out.mean()) / out.std()


# ------------------------------------------------------------------------------------------------ shapes
def test_shape_contract_every_listed_ratio_and_single_frame():
    tok = tiny_model()
    for s in tok.config.spatial_compressions:
        for t in tok.config.temporal_compressions:
            for n_frames in (1, 1 + 2 * t):
                fields = torch.randn(2, n_frames, 16, 32, 2)
                with torch.no_grad():
                    z = tok.encode(fields, spatial_compression=s, temporal_compression=t)
                    assert z.shape == (2, 1 + (n_frames - 1) // t, 16 // s, 32 // s, 4), (s, t, n_frames)
                    x = tok.decode(z, spatial_compression=s, temporal_compression=t)
                    assert x.shape == fields.shape, (s, t, n_frames)


def test_forward_output_and_defaults():
    tok = tiny_model()
    fields = torch.randn(1, 3, 16, 16, 2)
    out = tok(fields)
    assert isinstance(out, PhysfmTokeniserOutput)
    assert out.reconstruction.shape == fields.shape
    assert out.latents.shape == (1, 3, 4, 4, 4)  # defaults: s=4, t=1
    torch.testing.assert_close(out.loss, torch.mean((out.reconstruction - fields) ** 2))
    assert tok(fields, return_loss=False).loss is None


def test_spatial_sizes_not_a_multiple_are_padded_and_cropped():
    tok = tiny_model(periodic=[True, False])
    fields = torch.randn(1, 1, 13, 18, 2)
    with torch.no_grad():
        out = tok(fields, spatial_compression=8)
        assert out.latents.shape == (1, 1, 2, 3, 4)  # ceil(13 / 8), ceil(18 / 8)
        assert out.reconstruction.shape == fields.shape
        full = tok.decode(out.latents, spatial_compression=8)
        assert full.shape == (1, 1, 16, 24, 2)
        torch.testing.assert_close(full[:, :, :13, :18], out.reconstruction)
    with pytest.raises(ValueError, match="spatial_shape"):
        tok.decode(out.latents, spatial_compression=8, spatial_shape=(5, 18))


# ---------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("t", [1, 2, 4])
def test_causal_in_time(t):
    """Perturbing frames after tau leaves latents and reconstructed frames up to tau untouched (tau = j * t, the
    end of latent frame j's clip), and does change later frames."""
    tok = tiny_model()
    n_latent = 3
    fields = torch.randn(1, 1 + (n_latent - 1) * t, 16, 16, 2)
    with torch.no_grad():
        base = tok(fields, spatial_compression=4, temporal_compression=t)
        for j in range(n_latent - 1):
            tau = j * t
            perturbed = fields.clone()
            perturbed[:, tau + 1 :] += torch.randn_like(perturbed[:, tau + 1 :])
            out = tok(perturbed, spatial_compression=4, temporal_compression=t)
            torch.testing.assert_close(out.latents[:, : j + 1], base.latents[:, : j + 1], atol=1e-6, rtol=0)
            torch.testing.assert_close(
                out.reconstruction[:, : tau + 1], base.reconstruction[:, : tau + 1], atol=1e-6, rtol=0
            )
            assert (out.reconstruction[:, tau + 1 :] - base.reconstruction[:, tau + 1 :]).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------- boundaries
def test_shift_equivariant_on_periodic_axes():
    tok = tiny_model()
    fields = torch.randn(2, 3, 16, 32, 2)
    s = 4
    with torch.no_grad():
        base = tok(fields, spatial_compression=s)
        shifted = tok(torch.roll(fields, shifts=(s, 3 * s), dims=(2, 3)), spatial_compression=s)
    torch.testing.assert_close(
        shifted.reconstruction, torch.roll(base.reconstruction, (s, 3 * s), (2, 3)), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(shifted.latents, torch.roll(base.latents, (1, 3), (2, 3)), atol=1e-5, rtol=0)


def test_periodic_argument_is_per_axis():
    tok = tiny_model()  # config default: both axes periodic
    fields = torch.randn(1, 1, 16, 16, 2)
    with torch.no_grad():
        base = tok(fields, spatial_compression=2, periodic=[True, False]).reconstruction
        shifted = tok(torch.roll(fields, 4, dims=2), spatial_compression=2, periodic=[True, False]).reconstruction
        across = tok(torch.roll(fields, 4, dims=3), spatial_compression=2, periodic=[True, False]).reconstruction
    torch.testing.assert_close(shifted, torch.roll(base, 4, dims=2), atol=1e-5, rtol=0)
    # The replicated (walled) axis sees its edges: a roll along it is not a symmetry.
    assert (across - torch.roll(base, 4, dims=3)).abs().max() > 1e-3


# --------------------------------------------------------------------------------------- field vocabulary
def test_field_subsets_in_any_order():
    tok = tiny_model(field_names=["a", "b", "c"])
    fields = torch.randn(1, 1, 16, 16, 3)  # a, b, c
    with torch.no_grad():
        z_ac = tok.encode(fields[..., [0, 2]], field_names=["a", "c"])
        z_ca = tok.encode(fields[..., [2, 0]], field_names=["c", "a"])
        torch.testing.assert_close(z_ca, z_ac, atol=1e-5, rtol=1e-5)
        full = tok.decode(z_ac)
        torch.testing.assert_close(tok.decode(z_ac, field_names=["c", "a"]), full[..., [2, 0]], atol=1e-5, rtol=1e-5)
        out = tok(fields[..., [1]], field_names=["b"])
        assert out.reconstruction.shape == (1, 1, 16, 16, 1)
        # The fields present matter: dropping one changes the latents.
        assert (tok.encode(fields[..., [0]], field_names=["a"]) - z_ac).abs().max() > 1e-4


def test_add_fields_grows_vocabulary_and_keeps_existing_rows(tmp_path):
    tok = tiny_model()
    fields = torch.randn(1, 1, 16, 16, 2)
    with torch.no_grad():
        before = tok(fields).reconstruction
    tok.add_fields(["density"])
    assert tok.config.field_names == ["u", "v", "density"]
    # the new field is recorded as untrained: a frozen tokeniser inside a dynamics model still trains it
    assert tok.config.trained_field_names == ["u", "v"] and tok.untrained_field_names == ["density"]
    with torch.no_grad():
        torch.testing.assert_close(tok(fields, field_names=["u", "v"]).reconstruction, before, atol=0, rtol=0)
        three = torch.cat([fields, torch.randn(1, 1, 16, 16, 1)], dim=-1)
        out = tok(three)
        assert out.reconstruction.shape == three.shape
    tok.save_pretrained(tmp_path)
    loaded = PhysfmTokeniserModel.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert loaded.config.field_names == ["u", "v", "density"] and loaded.untrained_field_names == ["density"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(three).reconstruction, out.reconstruction, atol=0, rtol=0)
    # A grown tokeniser trains its new rows.
    loss, _ = autoencoding_step(tok, three, torch.optim.Adam(tok.parameters(), 1e-3), torch.Generator().manual_seed(0))
    assert all(p.grad.abs().sum() > 0 for p in tok.field_parameters(["density"])) and math.isfinite(loss)
    with pytest.raises(ValueError, match="already in the vocabulary"):
        tok.add_fields(["u"])


# -------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda tok: tok.encode(torch.randn(1, 16, 16, 2)), r"fields: got shape \(1, 16, 16, 2\) \(4 dimensions\); expected 5 dimensions"),
        (lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 3)), r"fields has 3 fields.*\['u', 'v'\]"),
        (
            lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 2), field_names=["u"]),
            r"fields has 2 fields.*field_names=\['u'\]",
        ),
        (
            lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 1), field_names=["rho"]),
            r"field_names contains \['rho'\].*vocabulary \['u', 'v'\]",
        ),
        (lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 2), spatial_compression=3), r"spatial_compression=3.*\[2, 4, 8, 16\]"),
        (lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 2), temporal_compression=8), r"temporal_compression=8.*\[1, 2, 4\]"),
        (
            lambda tok: tok.encode(torch.randn(1, 7, 16, 16, 2), temporal_compression=4),
            r"T=7.*temporal_compression=4.*1 \+ k\*4.*nearest valid lengths are 5 and 9",
        ),
        (
            lambda tok: tok.encode(torch.full((1, 1, 16, 16, 2), float("nan"))),
            r"fields: got 512 NaN/Inf",
        ),
        (
            lambda tok: tok(torch.tensor([1.0, float("inf")]).repeat(256).view(1, 1, 16, 16, 2)),
            r"fields: got 256 NaN/Inf",
        ),
        (lambda tok: tok.encode(torch.randn(1, 1, 16, 16, 2), periodic=[True]), r"periodic=\(True,\) must hold one bool per spatial axis \(2\)"),
        (lambda tok: tok.decode(torch.randn(1, 1, 4, 4, 5)), r"latents has 5 channels.*latent_channels is 4"),
        (lambda tok: tok.decode(torch.randn(1, 1, 4, 4, 4), field_names="u"), r"field_names='u' must be a list"),
        (lambda tok: tok.encode(torch.zeros(1, 1, 16, 16, 2, dtype=torch.long)), r"fields: got dtype torch.int64; expected a floating-point tensor"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(tiny_model())


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(n_spatial_dims=4, periodic=[True] * 4), r"n_spatial_dims=4 must be 2 or 3"),
        (dict(spatial_compressions=[3, 4]), r"spatial_compressions=\[3, 4\].*powers of two"),
        (dict(default_spatial_compression=32), r"default_spatial_compression=32.*\[2, 4, 8, 16\]"),
        (dict(temporal_compressions=[1, 32]), r"largest temporal factor"),
        (dict(channel_multipliers=[1, 2]), r"channel_multipliers=\[1, 2\] must hold 5"),
        (dict(field_names=["u", "u"]), r"distinct"),
        (dict(trained_field_names=["u", "rho"]), r"trained_field_names=\['u', 'rho'\] names \['rho'\], not in"),
    ],
)
def test_bad_config_raises_value_error(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_config(**overrides)


# --------------------------------------------------------------------------------------------- training
def test_sample_compression_covers_listed_pairs_reproducibly():
    tok = tiny_model(spatial_compressions=[2, 4], temporal_compressions=[1, 2], default_spatial_compression=2,
                     channel_multipliers=[1, 2, 2])
    draws = [tok.sample_compression(torch.Generator().manual_seed(i)) for i in range(64)]
    assert set(draws) == {(2, 1), (2, 2), (4, 1), (4, 2)}
    again = [tok.sample_compression(torch.Generator().manual_seed(i)) for i in range(64)]
    assert draws == again


def test_one_checkpoint_overfits_smooth_fields_at_two_ratios():
    """Trained with a ratio drawn per batch, one set of weights learns to reconstruct at both ratios."""
    torch.manual_seed(0)
    tok = PhysfmTokeniserModel(
        PhysfmTokeniserConfig(
            field_names=["a", "b"], hidden_channels=4, latent_channels=8, spatial_compressions=[2, 4],
            temporal_compressions=[1], default_spatial_compression=2,
        )
    )
    fields = smooth_fields(2, 1, 16, 2, torch.Generator().manual_seed(0))

    def losses() -> list[float]:
        tok.eval()
        with torch.no_grad():
            return [float(tok(fields, spatial_compression=s).loss) for s in (2, 4)]

    initial = losses()
    # 2e-3 overfits every one of six initial seeds tried (>= 40x); 5e-3 stalls at half the variance for some.
    history = fit_autoencoder(tok, fields, steps=150, lr=2e-3, generator=torch.Generator().manual_seed(1))
    final = losses()
    assert len(history) == 150
    for s, before, after in zip((2, 4), initial, final, strict=True):
        assert after * 10 <= before, f"ratio {s}: loss {before:.4f} -> {after:.4f}, less than a 10x drop"


def test_objective_weighs_each_ratio_by_its_own_error():
    """log(MSE): the gradient is the MSE's gradient over the MSE, so a coarse ratio's large error does not drown a
    fine ratio's in the shared weights."""
    tok = tiny_model().train()
    fields = torch.randn(1, 1, 16, 16, 2)
    mse = tok(fields, spatial_compression=4).loss
    (plain,) = torch.autograd.grad(mse, tok.encoder.field_in.bias, retain_graph=True)
    (balanced,) = torch.autograd.grad(ratio_balanced_objective(mse), tok.encoder.field_in.bias)
    torch.testing.assert_close(balanced, plain / mse.detach())
    assert torch.isfinite(ratio_balanced_objective(torch.zeros(())))  # a perfect batch is no NaN


def test_autoencoding_step_crops_clip_to_drawn_ratio():
    tok = tiny_model(spatial_compressions=[4], temporal_compressions=[4], default_spatial_compression=4,
                     default_temporal_compression=4, channel_multipliers=[1, 2, 2])
    optimizer = torch.optim.SGD(tok.parameters(), lr=1e-3)
    loss, ratio = autoencoding_step(tok, torch.randn(1, 7, 8, 8, 2), optimizer)  # 7 frames -> first 5
    assert ratio == (4, 4) and math.isfinite(loss)
    with pytest.raises(ValueError, match="steps=0"):
        fit_autoencoder(tok, torch.randn(1, 1, 8, 8, 2), steps=0)
    with pytest.raises(ValueError, match="yielded no batch"):
        fit_autoencoder(tok, [], steps=1)


def test_activation_checkpointing_gives_same_gradients():
    fields = torch.randn(1, 3, 16, 16, 2)
    tok = tiny_model().train()
    tok(fields).loss.backward()
    reference = {name: p.grad.clone() for name, p in tok.named_parameters() if p.grad is not None}
    tok.zero_grad()
    tok.activation_checkpointing_enable()
    tok(fields).loss.backward()
    assert {name for name, p in tok.named_parameters() if p.grad is not None} == set(reference)
    assert any("blocks" in name for name in reference)  # checkpointed layers took part
    for name, p in tok.named_parameters():
        if name in reference:
            torch.testing.assert_close(p.grad, reference[name], atol=1e-6, rtol=1e-5)


def test_quickstart_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves a checkpoint in the working directory
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "latents (2, 3, 4, 4, 16)" in printed and "decoded (2, 5, 32, 32, 4)" in printed
    assert "'density']" in printed and (tmp_path / "quickstart-tokeniser" / "model.safetensors").exists()


def test_misspelt_config_keys_are_errors_naming_the_nearest_key():
    from physfm.models import PhysfmDynamicsConfig

    with pytest.raises(ValueError, match=r"'hiden_channels' \(did you mean 'hidden_channels'\?\)"):
        PhysfmTokeniserConfig(hiden_channels=4)
    with pytest.raises(ValueError, match=r"'latnt_channels' \(did you mean 'latent_channels'\?\)"):
        PhysfmDynamicsConfig(tokeniser_config={"latnt_channels": 4})
    with pytest.raises(ValueError, match=r"PhysfmDynamicsConfig: unknown key\(s\) 'hiden_size'"):
        PhysfmDynamicsConfig(hiden_size=16)
    assert PhysfmDynamicsConfig(num_layers=3).num_hidden_layers == 3  # aliases stay valid


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_computed_in_the_model_dtype(dtype):
    """Simulators return float64: the tokeniser casts instead of failing inside a convolution."""
    tok = tiny_model()
    fields = torch.randn(1, 3, 16, 16, 2)
    out = tok(fields.to(dtype))
    assert out.reconstruction.dtype == torch.float32 and out.latents.dtype == torch.float32
    if dtype == torch.float64:
        torch.testing.assert_close(out.reconstruction, tok(fields).reconstruction)
