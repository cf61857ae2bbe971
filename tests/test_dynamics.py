"""Tests of the latent dynamics model: shapes, causality, frozen/finetuned/scratch tokeniser, rollout,
save/load (plain, AutoModel, remote code without physfm), learning on a smooth toy system, and user errors."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel

from physfm.models import (
    PhysfmDynamicsConfig,
    PhysfmDynamicsModel,
    PhysfmDynamicsOutput,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
)

FIELDS = ["u", "v"]
H = W = 16


def tiny_tokeniser_config(**overrides) -> PhysfmTokeniserConfig:
    kwargs = dict(
        field_names=FIELDS + ["w"],  # vocabulary larger than the fields used: dynamics selects a subset
        spatial_compressions=[2, 4],
        temporal_compressions=[1, 2],
        default_spatial_compression=2,
        latent_channels=4,
        hidden_channels=4,
        channel_multipliers=[1, 2, 2],
        layers_per_level=1,
    )
    kwargs.update(overrides)
    return PhysfmTokeniserConfig(**kwargs)


def tiny_dynamics_overrides(**overrides) -> dict:
    kwargs = dict(
        n_steps_input=3,
        field_names=FIELDS,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        patch_size=2,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_config(**overrides) -> PhysfmDynamicsConfig:
    return PhysfmDynamicsConfig(
        tokeniser_config=tiny_tokeniser_config().to_dict(), **tiny_dynamics_overrides(**overrides)
    )


def waves(batch: int, n_time: int, seed: int = 0) -> torch.Tensor:
    """Smooth periodic travelling waves [batch, time, H, W, 2] with random phases and speeds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(W) / W
    y = torch.arange(H) / H
    t = torch.arange(n_time).float()
    phase = 2 * math.pi * torch.rand(batch, 2, generator=g)
    speed = 0.05 * (torch.rand(batch, 2, generator=g) + 0.5)
    arg_u = 2 * math.pi * (x[None, None, None, :] - speed[:, 0, None, None, None] * t[None, :, None, None])
    arg_v = 2 * math.pi * (y[None, None, :, None] - speed[:, 1, None, None, None] * t[None, :, None, None])
    u = torch.sin(arg_u + phase[:, 0, None, None, None]).expand(batch, n_time, H, W)
    v = torch.cos(arg_v + phase[:, 1, None, None, None]).expand(batch, n_time, H, W)
    return torch.stack([u, v], dim=-1).contiguous()


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: with the 2 cores shared by other jobs, a second intra-op thread mostly spins and
    # was measured 5-10x slower than one thread here.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def pretrained_tokeniser() -> PhysfmTokeniserModel:
    return PhysfmTokeniserModel(tiny_tokeniser_config())


def _train_step(model: PhysfmDynamicsModel, steps: int = 1, lr: float = 1e-2) -> list[float]:
    # All parameters go to AdamW with weight decay: a frozen tokeniser must stay put even so, because it never
    # receives a gradient.
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    model.train()
    data = waves(4, 4)
    losses = []
    for _ in range(steps):
        out = model(data[:, :3], data[:, 3:])
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append(out.loss.item())
    return losses


# ------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("temporal_compression, n_in, n_out", [(1, 3, 1), (2, 3, 2)])
def test_output_shapes(temporal_compression, n_in, n_out):
    model = PhysfmDynamicsModel(tiny_config(temporal_compression=temporal_compression, n_steps_input=n_in))
    data = waves(2, n_in + n_out)
    out = model(data[:, :n_in], data[:, n_in:])
    assert isinstance(out, PhysfmDynamicsOutput)
    assert out.prediction.shape == (2, n_out, H, W, 2)  # one latent frame = t field frames
    assert out.latents.shape == (2, 1, H // 2, W // 2, 4)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert torch.allclose(out.loss, torch.nn.functional.mse_loss(out.prediction, data[:, n_in:]))
    assert model(data[:, :n_in]).loss is None
    # a latent grid that is not a multiple of the patch size is padded and cropped back
    odd = PhysfmDynamicsModel(
        tiny_config(patch_size=3, temporal_compression=temporal_compression, n_steps_input=n_in)
    )
    assert odd(data[:, :n_in]).prediction.shape == (2, n_out, H, W, 2)


def test_transformer_is_causal_in_time():
    model = PhysfmDynamicsModel(tiny_config(n_steps_input=4)).eval()
    latents = torch.randn(2, 4, H // 2, W // 2, 4)
    deltas = model.predict_deltas(latents)
    perturbed = latents.clone()
    perturbed[:, 2:] += torch.randn_like(perturbed[:, 2:])
    deltas_perturbed = model.predict_deltas(perturbed)
    torch.testing.assert_close(deltas_perturbed[:, :2], deltas[:, :2], rtol=0, atol=1e-6)
    assert (deltas_perturbed[:, 2:] - deltas[:, 2:]).abs().max() > 1e-3
    # the prediction itself depends on the newest input frame
    data = waves(1, 4)
    moved = data.clone()
    moved[:, -1] += 0.5
    assert not torch.allclose(model(data).prediction, model(moved).prediction)


@pytest.mark.parametrize("temporal_compression", [1, 2])
def test_field_residual_adds_the_decoded_change_to_the_last_frame(temporal_compression):
    t = temporal_compression
    residual = PhysfmDynamicsModel(tiny_config(temporal_compression=t)).eval()
    plain = PhysfmDynamicsModel(tiny_config(temporal_compression=t, field_residual=False)).eval()
    plain.load_state_dict(residual.state_dict())
    data = waves(2, 3)
    with torch.no_grad():
        latents = residual.encode(data)
        decoded = residual.tokeniser.decode(torch.cat([latents, residual(data).latents], 1), 2, t, FIELDS)
        expected = data[:, -1:] + decoded[:, -t:] - decoded[:, -t - 1 : -t]
        torch.testing.assert_close(residual(data).prediction, expected)
        torch.testing.assert_close(plain(data).prediction, decoded[:, -t:])
    # A predicted latent equal to the last one decodes to nearly the last frame's reconstruction, so the
    # residual model starts close to persistence whatever the tokeniser's reconstruction error.
    with torch.no_grad():
        residual.processor.head.weight.zero_()
        residual.processor.head.bias.zero_()
        persistence_error = (residual(data).prediction - data[:, -1:]).abs().mean()
        reconstruction_error = (plain.tokeniser(data[:, -1:], 2, 1, FIELDS).reconstruction - data[:, -1:]).abs().mean()
    assert persistence_error < 0.5 * reconstruction_error


# --------------------------------------------------------------------------------- the three constructions
def test_pretrained_frozen_tokeniser_gets_no_gradient(pretrained_tokeniser):
    reference = {k: v.clone() for k, v in pretrained_tokeniser.state_dict().items()}
    model = PhysfmDynamicsModel.from_tokeniser(
        pretrained_tokeniser, tiny_dynamics_overrides(), freeze_tokeniser=True
    )
    assert model.config.freeze_tokeniser
    # the pretrained weights are not re-initialised, and the caller's tokeniser is left alone
    for key, value in model.tokeniser.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert all(p.requires_grad for p in pretrained_tokeniser.parameters())

    _train_step(model, steps=2)
    assert not model.tokeniser.training  # model.train() keeps a frozen tokeniser in eval mode
    assert all(p.grad is None and not p.requires_grad for p in model.tokeniser.parameters())
    assert all(p.grad is not None for p in model.processor.parameters())
    for key, value in model.tokeniser.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_pretrained_finetuned_tokeniser_changes(pretrained_tokeniser):
    reference = {k: v.clone() for k, v in pretrained_tokeniser.state_dict().items()}
    model = PhysfmDynamicsModel.from_tokeniser(
        pretrained_tokeniser, tiny_dynamics_overrides(), freeze_tokeniser=False
    )
    assert not model.config.freeze_tokeniser
    _train_step(model, steps=1)
    assert model.tokeniser.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.tokeniser.parameters())
    changed = [k for k, v in model.tokeniser.state_dict().items() if not torch.equal(v, reference[k])]
    assert changed
    for key, value in pretrained_tokeniser.state_dict().items():  # finetuning works on a copy
        assert torch.equal(value, reference[key]), key


def test_scratch_model_trains_tokeniser_too():
    model = PhysfmDynamicsModel(tiny_config())
    assert isinstance(model.tokeniser, PhysfmTokeniserModel) and not model.config.freeze_tokeniser
    assert model.tokeniser.config is model.config.tokeniser_config
    _train_step(model, steps=1)
    unused = model.tokeniser.field_parameters(["w"])  # in the vocabulary, not in the data
    assert all(p.grad is None for p in unused)
    # Everything on the path of the model's ratio trains; only other ratios' heads and transitions sit out.
    s, t = model.config.spatial_compression, model.config.temporal_compression
    idle = [name for name, p in model.tokeniser.named_parameters()
            if p.grad is None and all(p is not q for q in unused)]
    assert idle and all(_off_the_path(name, s, t) for name in idle), idle


def _off_the_path(name: str, spatial: int, temporal: int) -> bool:
    """Whether a tokeniser parameter is unused at ratio (spatial, temporal): another level's latent head, a level
    below the exit level, the exit level's own down-sampling, or a time kernel where time is not halved."""
    exit_level = max(spatial.bit_length(), temporal.bit_length()) - 1
    head = re.match(r"(?:en|de)coder\.latent_heads\.(\d+)\.", name)
    if head:
        return int(head.group(1)) != exit_level
    level = re.match(r"(en|de)coder\.levels\.(\d+)\.(\w+)\.", name)
    if level is None:
        return False
    side, index, part = level.group(1), int(level.group(2)), level.group(3)
    transition = index if side == "en" else index - 1  # the encoder goes down from a level, the decoder up to it
    return (index > exit_level or (side == "en" and index == exit_level and part.startswith("downsample"))
            or (part.endswith("_time") and transition >= temporal.bit_length() - 1))


def test_frozen_tokeniser_still_trains_a_field_it_never_saw(tmp_path, pretrained_tokeniser):
    """Like new token embeddings in a frozen language model: the rows of an added field train, nothing else."""
    pretrained_tokeniser.config.trained_field_names = ["u", "w"]  # as recorded by a pretraining without "v"
    reference = {k: v.clone() for k, v in pretrained_tokeniser.state_dict().items()}
    model = PhysfmDynamicsModel.from_tokeniser(pretrained_tokeniser, tiny_dynamics_overrides(), freeze_tokeniser=True)
    new_rows = model.tokeniser.field_parameters(["v"])
    assert model.tokeniser.untrained_field_names == ["v"] and len(new_rows) == 3  # input row, output row + bias
    assert [p for p in model.tokeniser.parameters() if p.requires_grad] == new_rows

    _train_step(model, steps=2)  # AdamW with weight decay over every parameter
    changed = {k for k, v in model.tokeniser.state_dict().items() if not torch.equal(v, reference[k])}
    assert changed == {"encoder.field_in.weight_1", "decoder.field_out.weight_1", "decoder.field_out.bias_1"}
    assert not model.tokeniser.training
    model.save_pretrained(tmp_path)
    loaded = PhysfmDynamicsModel.from_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.config.freeze_tokeniser
    assert [n for n, p in loaded.tokeniser.named_parameters() if p.requires_grad] == [
        "encoder.field_in.weight_1", "decoder.field_out.weight_1", "decoder.field_out.bias_1"]


def test_from_tokeniser_path_and_config_forms(tmp_path, pretrained_tokeniser):
    pretrained_tokeniser.save_pretrained(tmp_path / "tok")
    model = PhysfmDynamicsModel.from_tokeniser(str(tmp_path / "tok"), {"hidden_size": 16, "num_layers": 1})
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert model.config.tokeniser_name_or_path == str(tmp_path / "tok")
    assert model.config.freeze_tokeniser and model.config.spatial_compression == 2
    for key, value in model.tokeniser.state_dict().items():
        assert torch.equal(value, pretrained_tokeniser.state_dict()[key]), key
    # a full config: its dynamics settings are kept, its tokeniser config is replaced by the pretrained one
    config = PhysfmDynamicsConfig(
        n_steps_input=2, hidden_size=8, num_attention_heads=2, spatial_compression=4
    )
    model = PhysfmDynamicsModel.from_tokeniser(pretrained_tokeniser, config, freeze_tokeniser=False)
    assert model.config.tokeniser_config.field_names == FIELDS + ["w"]
    assert model.config.n_steps_input == 2 and model.config.spatial_compression == 4
    assert model(waves(1, 2), field_names=FIELDS).prediction.shape == (1, 1, H, W, 2)
    # one config object: growing the tokeniser's vocabulary is what the dynamics config (and checkpoint) records
    model.tokeniser.add_fields(["rho"])
    assert model.config.tokeniser_config.field_names == FIELDS + ["w", "rho"]


# ---------------------------------------------------------------------------------------------- rollout
def test_rollout_matches_forward():
    model = PhysfmDynamicsModel(tiny_config()).eval()
    data = waves(2, 3)
    rollout = model.rollout(data, n_steps=3)
    assert rollout.shape == (2, 3, H, W, 2)
    first = model(data).prediction
    torch.testing.assert_close(rollout[:, :1], first)
    # the window slides: step 2 is a forward pass on [frames 1..2, prediction 1]
    second = model(torch.cat([data[:, 1:], first], dim=1)).prediction
    torch.testing.assert_close(rollout[:, 1:2], second)
    # t = 2: each step yields two frames, the rollout is cut to n_steps
    model2 = PhysfmDynamicsModel(tiny_config(temporal_compression=2)).eval()
    assert model2.rollout(data, n_steps=3).shape == (2, 3, H, W, 2)
    # a longer history: the last n_steps_input frames are the window
    torch.testing.assert_close(model.rollout(torch.cat([waves(2, 2, seed=5), data], 1), 1), rollout[:, :1])


# ------------------------------------------------------------------------------------------ save / load
def test_save_load_automodel_and_remote_code(tmp_path, pretrained_tokeniser):
    import physfm  # noqa: F401 - registers physfm_dynamics with AutoConfig / AutoModel

    model = PhysfmDynamicsModel.from_tokeniser(
        pretrained_tokeniser, tiny_dynamics_overrides(), freeze_tokeniser=True
    )
    _train_step(model, steps=1)  # move the processor away from its initialisation
    model.eval()
    data = waves(2, 3)
    expected = model(data).prediction
    out_dir = tmp_path / "dyn"
    model.save_pretrained(out_dir)

    files = sorted(p.name for p in out_dir.iterdir())
    assert (
        "model.safetensors" in files and "modeling_dynamics.py" in files and "modeling_tokeniser.py" in files
    )
    config_json = json.loads((out_dir / "config.json").read_text())
    assert config_json["auto_map"]["AutoModel"] == "modeling_dynamics.PhysfmDynamicsModel"
    assert config_json["tokeniser_config"]["model_type"] == "physfm_tokeniser"
    with safe_open(out_dir / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("tokeniser.") for k in keys) and any(k.startswith("processor.") for k in keys)
    assert all(k.startswith(("tokeniser.", "processor.")) for k in keys)

    for loaded in (PhysfmDynamicsModel.from_pretrained(out_dir), AutoModel.from_pretrained(out_dir)):
        assert type(loaded) is PhysfmDynamicsModel
        assert loaded.config.freeze_tokeniser and not any(
            p.requires_grad for p in loaded.tokeniser.parameters()
        )
        assert loaded.tokeniser.config is loaded.config.tokeniser_config
        torch.testing.assert_close(loaded(data).prediction, expected, rtol=0, atol=0)

    torch.save({"data": data, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["physfm"] = None  # physfm is not importable: the checkpoint's own code must do
        import torch
        from transformers import AutoModel
        try:
            import physfm  # noqa: F401
            raise SystemExit("physfm should not be importable here")
        except ImportError:
            pass
        torch.set_num_threads(1)
        model = AutoModel.from_pretrained({str(out_dir)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert not any(p.requires_grad for p in model.tokeniser.parameters())
        io = torch.load({str(tmp_path / "io.pt")!r})
        torch.testing.assert_close(model(io["data"]).prediction, io["expected"], rtol=0, atol=0)
        print("REMOTE_OK")
        """
    )
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ learning
def test_loss_decreases_on_smooth_waves():
    torch.manual_seed(0)
    model = PhysfmDynamicsModel(tiny_config())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = waves(8, 4, seed=1)
    losses = []
    for _ in range(40):
        loss = model(data[:, :3], data[:, 3:]).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.3 * first, losses
    # and it learned dynamics, not just reconstruction: better than repeating the last input frame
    persistence = torch.nn.functional.mse_loss(data[:, 2:3], data[:, 3:]).item()
    assert last < persistence, (last, persistence)
    # batch keys that are not model inputs pass through (a mixture dataset's dataset_index)
    assert model(data[:, :3], data[:, 3:], dataset_index=torch.zeros(8)).loss is not None


# -------------------------------------------------------------------------------------------------- errors
def test_bad_input_errors(tmp_path, pretrained_tokeniser):
    model = PhysfmDynamicsModel(tiny_config())
    data = waves(1, 4)
    cases = [
        (lambda: model(data[0, :3]), r"input_fields: got shape \(3, 16, 16, 2\) \(4 dimensions\); expected 5 dimensions"),
        (lambda: model(data), r"input_fields: got 4 time steps .* expected n_steps_input=3"),
        (lambda: model(torch.cat([data[:, :3]] * 2, -1)), r"input_fields: got 4 fields .* expected 2"),
        (
            lambda: model(data[:, :3].clone().index_fill_(2, torch.tensor([0]), float("nan"))),
            r"input_fields: .*NaN",
        ),
        (
            lambda: model(data[:, :3], data[:, 3:, :8]),
            r"output_fields: got shape \(1, 1, 8, 16, 2\); expected",
        ),
        (
            lambda: model(data[:, :3], return_lost=True),
            r"forward: got unexpected arguments \['return_lost'\]",
        ),
        (lambda: model(data[:, :3], return_loss=True), r"output_fields: got None"),
        (lambda: model.rollout(data[:, :2], 2), r"fields: got 2 time steps .* at least n_steps_input=3"),
        (lambda: model.rollout(data, 0), r"n_steps: got 0"),
        (lambda: tiny_config(n_steps_input=4, temporal_compression=2), r"n_steps_input: got 4;.* 1 \+ k\*2"),
        (
            lambda: tiny_config(spatial_compression=8),
            r"spatial_compression: got 8; the tokeniser supports \[2, 4\]",
        ),
        (lambda: tiny_config(field_names=["rho"]), r"field_names: got \['rho'\].*unknown: \['rho'\]"),
        (lambda: PhysfmDynamicsModel.from_tokeniser(model), r"tokeniser: got PhysfmDynamicsModel"),
        (
            lambda: PhysfmDynamicsModel.from_tokeniser(pretrained_tokeniser, {"tokeniser_config": {}}),
            "config: got",
        ),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(FileNotFoundError, match="tokeniser: no folder"):
        PhysfmDynamicsModel.from_tokeniser(str(tmp_path / "missing"))
    model.save_pretrained(tmp_path / "dyn")
    with pytest.raises(
        ValueError, match="holds a 'physfm_dynamics' checkpoint; expected a 'physfm_tokeniser'"
    ):
        PhysfmDynamicsModel.from_tokeniser(str(tmp_path / "dyn"))


def test_float64_fields_are_computed_in_the_model_dtype():
    model = PhysfmDynamicsModel(tiny_config()).eval()
    n_in, n_fields = model.config.n_steps_input, len(FIELDS)
    fields = torch.randn(1, n_in, 16, 16, n_fields)
    target = torch.randn(1, 1, 16, 16, n_fields)
    with torch.no_grad():
        out64 = model(fields.double(), output_fields=target.double())
        out32 = model(fields, output_fields=target)
        assert model.rollout(fields.double(), n_steps=1).dtype == torch.float32
    assert out64.prediction.dtype == torch.float32
    torch.testing.assert_close(out64.loss, out32.loss)
