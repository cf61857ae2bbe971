"""The dynamics model on 3-D fields: patchified 3-D latents (one patch extent per axis), positions on a 3-D token
grid, forward / loss / rollout shapes, causality in time, activation checkpointing, save/load, and both training
stages for a few steps through physfm's trainer on a simulated 3-D Navier-Stokes dataset."""

from __future__ import annotations

import json

import pytest
import torch
from test_tokeniser_3d import assert_checkpointing_keeps_gradients
from transformers import AutoModel

import physfm  # noqa: F401  (registers the Auto classes)
from physfm.models import PhysfmDynamicsConfig, PhysfmDynamicsModel, PhysfmTokeniserConfig
from physfm.models.modeling_dynamics import sincos_embedding
from physfm.simulate import generate
from physfm.training import train

FIELDS = ["u", "v", "w"]
SHAPE = (8, 8, 16)


def tiny_model(**overrides) -> PhysfmDynamicsModel:
    torch.manual_seed(0)
    tokeniser = PhysfmTokeniserConfig(
        n_spatial_dims=3, field_names=FIELDS, spatial_compressions=[2, 4], temporal_compressions=[1, 2],
        default_spatial_compression=2, latent_channels=4, hidden_channels=4, channel_multipliers=[1, 2, 2],
    )
    kwargs = dict(n_steps_input=3, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, patch_size=2)
    return PhysfmDynamicsModel(PhysfmDynamicsConfig(tokeniser_config=tokeniser.to_dict(), **{**kwargs, **overrides}))


def fields(frames: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, *SHAPE, len(FIELDS), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(("t", "patch_size"), [(1, 2), (2, 2), (1, [1, 2, 3])])
def test_forward_loss_and_shapes(t, patch_size):
    """[1, 2, 3] patches a [4, 4, 8] latent grid unevenly: z is zero-padded to 9 and cropped back."""
    model = tiny_model(temporal_compression=t, patch_size=patch_size)
    data = fields(3 + t)
    out = model(data[:, :3], data[:, 3:])
    assert out.prediction.shape == (2, t, *SHAPE, 3)
    assert out.latents.shape == (2, 1, 4, 4, 8, 4)
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.prediction, data[:, 3:]))
    out.loss.backward()
    assert all(p.grad is not None for p in model.processor.parameters())


def test_tokens_are_patches_of_every_axis():
    model = tiny_model(patch_size=[1, 2, 4])
    assert model.config.patch_sizes == (1, 2, 4)
    assert model.processor.patch_embed.in_features == 1 * 2 * 4 * 4  # prod(patch) * latent_channels
    assert tiny_model().processor.patch_embed.in_features == 2**3 * 4


def test_positions_encode_each_axis_in_its_own_channels():
    grid, dim = (2, 3, 4), 26  # 26 = 3 axes * 8 channels + 2 zero channels
    emb = sincos_embedding(grid, dim).reshape(*grid, dim)
    assert emb.shape == (*grid, dim) and not emb[..., 24:].any()
    for axis in range(3):
        part = emb[..., 8 * axis : 8 * (axis + 1)]  # varies along its own axis only
        others = [a for a in range(3) if a != axis]
        torch.testing.assert_close(part, part.mean(dim=others, keepdim=True).expand_as(part))
    assert len(set(map(tuple, emb.reshape(-1, dim).tolist()))) == 2 * 3 * 4  # every token has its own position


# ---------------------------------------------------------------------------------------------- causality
def test_transformer_is_causal_in_time():
    model = tiny_model(n_steps_input=4).eval()
    latents = torch.randn(1, 4, 4, 4, 8, 4)
    deltas = model.predict_deltas(latents)
    perturbed = latents.clone()
    perturbed[:, 2:] += torch.randn_like(perturbed[:, 2:])
    changed = model.predict_deltas(perturbed)
    torch.testing.assert_close(changed[:, :2], deltas[:, :2], rtol=0, atol=1e-6)
    assert (changed[:, 2:] - deltas[:, 2:]).abs().max() > 1e-3


def test_rollout_slides_its_window():
    model = tiny_model().eval()
    data = fields(3, batch=1)
    rollout = model.rollout(data, n_steps=2)
    assert rollout.shape == (1, 2, *SHAPE, 3)
    with torch.no_grad():
        first = model(data).prediction
        torch.testing.assert_close(rollout[:, :1], first)
        torch.testing.assert_close(rollout[:, 1:], model(torch.cat([data[:, 1:], first], 1)).prediction)
    assert tiny_model(temporal_compression=2).rollout(data, n_steps=3).shape == (1, 3, *SHAPE, 3)


# ------------------------------------------------------------------------------------- memory / save / errors
def test_activation_checkpointing_gives_same_gradients():
    data = fields(4, batch=1)
    model = tiny_model()
    assert_checkpointing_keeps_gradients(model, lambda m: m(data[:, :3], data[:, 3:]).loss)
    assert model.processor.blocks[0].gradient_checkpointing  # the transformer's blocks, not only the tokeniser's


def test_save_load_round_trip(tmp_path):
    model = tiny_model(patch_size=[2, 2, 4]).eval()
    data = fields(3, batch=1)
    with torch.no_grad():
        expected = model(data).prediction
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["patch_size"] == [2, 2, 4]
    for cls in (PhysfmDynamicsModel, AutoModel):
        loaded = cls.from_pretrained(tmp_path, dtype=torch.float32).eval()
        assert type(loaded) is PhysfmDynamicsModel and loaded.config.patch_sizes == (2, 2, 4)
        with torch.no_grad():
            torch.testing.assert_close(loaded(data).prediction, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda model: model(torch.randn(1, 3, 8, 8, 3)),
         r"input_fields: got shape \(1, 3, 8, 8, 3\) \(5 dimensions\); expected 6 dimensions \[batch, time, x, y, z, n_fields\] "
         r"for this 3-D model"),
        (lambda model: tiny_model(patch_size=[2, 2]), r"patch_size: got \[2, 2\]; expected a positive integer or 3"),
        (lambda model: tiny_model(periodic=[True, True]), r"periodic: got \[True, True\]; expected one bool per"),
    ],
)
def test_bad_input_is_one_value_error(call, pattern):
    model = tiny_model()
    with pytest.raises(ValueError, match=pattern):
        call(model)


# ---------------------------------------------------------------------------------------------- training
COMMON = {"per_device_train_batch_size": 1, "max_eval_samples": 1, "max_rollout_samples": 1, "disable_tqdm": True,
          "logging_steps": 1, "max_steps": 2, "eval_steps": 2, "save_steps": 2}


@pytest.fixture(scope="module")
def navier_stokes_3d(tmp_path_factory):
    """Three 8^3 turbulent trajectories of 5 frames, one per split."""
    return generate("navier_stokes_3d", tmp_path_factory.mktemp("data") / "ns3d", n_trajectories=3,
                    resolution=(8, 8, 8), n_steps=4, split_fractions=(1 / 3, 1 / 3, 1 / 3), progress=False,
                    initial_condition="turbulence")


def test_both_training_stages_run_on_3d_data(navier_stokes_3d, tmp_path):
    tok = train(stage="tokeniser", data=[str(navier_stokes_3d)], output_dir=tmp_path / "tok",
                spatial_compression=[2, 4], temporal_compression=[1, 2], learning_rate=3e-3,
                model_config={"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2, 2]}, **COMMON)
    assert tok.steps == 2 and {"vrmse@s2t1", "vrmse@s4t2"} <= set(tok.history[-1])
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["n_spatial_dims"] == 3 and {"velocity_x", "velocity_y", "velocity_z"} <= set(config["field_names"])
    dyn = train(stage="dynamics", data=[str(navier_stokes_3d)], output_dir=tmp_path / "dyn",
                tokeniser=str(tmp_path / "tok"), freeze_tokeniser=False, spatial_compression=2, learning_rate=1e-3,
                rollout_horizons=[1], model_config={"hidden_size": 16, "num_hidden_layers": 1,
                                                    "num_attention_heads": 2, "patch_size": 2}, **COMMON)
    assert dyn.steps == 2 and all(torch.isfinite(torch.tensor(v)) for v in dyn.history[-1].values())
    assert set(dyn.rollout_vrmse) == {1} and (tmp_path / "dyn" / "rollout.png").exists()
    model = PhysfmDynamicsModel.from_pretrained(tmp_path / "dyn", dtype=torch.float32)
    assert model.tokeniser.config.n_spatial_dims == 3
