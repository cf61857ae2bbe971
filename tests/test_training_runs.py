"""Tiny real training runs in-process: both stages, frozen vs finetuned tokeniser, exact resume,
NaN stop, misfit tokeniser refusal, learning, one reconstruction number, and `physfm evaluate`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_training_common import TINY_DYNAMICS, TINY_TOKENISER, make_dataset, weights

import physfm
from physfm.models import PhysfmTokeniserModel, finite_checks
from physfm.reconstruction import evaluate_reconstruction
from physfm.training.checkpoint_evaluation import evaluate_checkpoint
from physfm.training.checkpoint_evaluation import main as evaluate_main
from physfm.training.sampling import step_generator
from physfm.training.trainer import NonFiniteLossError, train

COMMON = {"per_device_train_batch_size": 2, "max_eval_samples": 2, "max_rollout_samples": 1, "disable_tqdm": True,
          "logging_steps": 1, "count_flops": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"adv": make_dataset(root / "adv"),
            "other": make_dataset(root / "other", fields=("pressure", "tracer"), seed=1, name="other"),
            "unknown": make_dataset(root / "unknown", fields=("density",), seed=2, name="unknown")}


@pytest.fixture(scope="module")
def tokeniser(data, tmp_path_factory):
    """Stage 1 on a two-dataset mixture with different field sets, two spatial x two temporal ratios."""
    out = tmp_path_factory.mktemp("tok")
    result = train(stage="tokeniser", data=[data["adv"], data["other"]], output_dir=out, max_steps=4, eval_steps=2,
                   save_steps=2, spatial_compression=[2, 4], temporal_compression=[1, 2], learning_rate=3e-3,
                   model_config=TINY_TOKENISER, **COMMON)
    return out, result


def test_tokeniser_stage_outputs(tokeniser):
    out, result = tokeniser
    assert result.steps == 4 and [e["step"] for e in result.history] == [2, 4]
    ratios = {k for k in result.history[-1] if k.startswith("vrmse@")}
    assert ratios == {"vrmse@s2t1", "vrmse@s2t2", "vrmse@s4t1", "vrmse@s4t2"}  # one checkpoint, all ratios
    assert all(torch.isfinite(torch.tensor(v)) for v in result.history[-1].values())
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "physfm_tokeniser"
    assert set(config["field_names"]) == {"tracer", "velocity_x", "velocity_y", "pressure"}  # union of the mixture
    assert config["trained_field_names"] == config["field_names"]
    for name in ("metrics.json", "learning_curve.csv", "learning_curve.png", "checkpoint-2", "checkpoint-4"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compute"]["flops_per_step"] > 0
    assert metrics["compute"]["total_flops"] == pytest.approx(4 * metrics["compute"]["flops_per_step"])
    assert metrics["history"] == result.history


@pytest.mark.parametrize("freeze", [True, False])
def test_dynamics_frozen_vs_finetuned_tokeniser(data, tokeniser, tmp_path, freeze):
    tok_dir, _ = tokeniser
    before = weights(tok_dir)
    result = train(stage="dynamics", data=[data["adv"]], output_dir=tmp_path, tokeniser=str(tok_dir),
                   freeze_tokeniser=freeze, spatial_compression=4, max_steps=3, eval_steps=3, save_steps=3,
                   learning_rate=1e-2, rollout_horizons=[1, 3], model_config=TINY_DYNAMICS, **COMMON)
    after = {k.removeprefix("tokeniser."): v for k, v in weights(tmp_path).items() if k.startswith("tokeniser.")}
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if freeze:
        assert changed == []  # bit-identical
        # and no optimiser state was allocated for it: only the processor's parameters are in the optimiser
        optimizer = torch.load(tmp_path / "checkpoint-3" / "optimizer.bin", weights_only=True)
        n_processor = sum(1 for k in weights(tmp_path) if k.startswith("processor."))
        assert len(optimizer["state"]) == n_processor
    else:
        assert len(changed) > len(before) // 2
    assert set(result.rollout_vrmse) == {1, 3} and (tmp_path / "rollout.png").exists()
    assert {"vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high"} <= set(result.history[-1])


def test_resume_is_exact(data, tmp_path):
    settings = dict(stage="dynamics", data=[data["adv"]], max_steps=6, eval_steps=3, save_steps=3,
                    learning_rate=3e-3, rollout_horizons=[1],
                    model_config={**TINY_DYNAMICS, "hidden_dropout": 0.1, "tokeniser_config": TINY_TOKENISER},
                    spatial_compression=4, **COMMON)
    full = train(output_dir=tmp_path / "full", **settings)
    # A second run that only has checkpoint-3 of the first (as after a crash) and resumes from it.
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    resumed = train(output_dir=tmp_path / "resumed", resume_from_checkpoint="latest", **settings)
    assert [e["loss"] for e in resumed.train_log] == [e["loss"] for e in full.train_log]  # same data, same losses
    assert resumed.history == full.history
    a, b = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.compute["total_flops"] == full.compute["total_flops"]


def test_non_finite_loss_stops_with_step_and_checkpoint(data, tmp_path):
    # Caught by type: a diverged run is a NonFiniteError, like a NaN a model refuses.
    with pytest.raises(physfm.NonFiniteError, match=r"diverged at step [2-9].*the training loss is (nan|inf); "
                                                    r"stopped before.*Last good checkpoint: .*checkpoint-[1-8]") as caught:
        train(stage="dynamics", data=[data["adv"]], output_dir=tmp_path, max_steps=30, save_steps=1, eval_steps=0,
              learning_rate=1e30, max_grad_norm=0, lr_scheduler_type="constant", rollout_horizons=[1],
              model_config={**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER}, spatial_compression=4, **COMMON)
    assert isinstance(caught.value, NonFiniteLossError)


def test_models_skip_their_nan_check_in_the_training_step_only(data, tmp_path, monkeypatch):
    """The per-forward check (a device sync) is off where the trainer checks the loss, on for evaluation."""
    import physfm.models.input_checks as checks

    states, real_check = [], checks.check_finite

    def recording(x, argument):
        states.append(checks._ENABLED.get())
        real_check(x, argument)

    monkeypatch.setattr(checks, "check_finite", recording)
    train(stage="tokeniser", data=[data["adv"]], output_dir=tmp_path, max_steps=2, eval_steps=2, save_steps=0,
          spatial_compression=[4], temporal_compression=[1], model_config=TINY_TOKENISER, **COMMON)
    assert False in states and True in states  # training steps skipped it; the evaluation checked
    tokeniser = PhysfmTokeniserModel.from_pretrained(tmp_path)
    nan = torch.full((1, 1, 16, 16, 3), float("nan"))
    with pytest.raises(physfm.NonFiniteError, match=r"fields: got 768 NaN/Inf values"):
        tokeniser(nan)  # a user's forward checks by default
    with finite_checks(False):
        assert torch.isnan(tokeniser(nan).reconstruction).all()


def test_tokeniser_stage_draws_through_the_public_sampler_and_resumes_exactly(data, tmp_path, monkeypatch):
    """Stage 1's ratio of step k is ``sample_compression(step_generator(seed, k), ratios)``, the draw
    ``autoencoding_loss`` makes; a run resumed at step 2 draws what the uninterrupted one drew, and ends equal."""
    draws = []
    sample = PhysfmTokeniserModel.sample_compression

    def recording(self, generator=None, ratios=None):
        draws.append(sample(self, generator, ratios))
        return draws[-1]

    monkeypatch.setattr(PhysfmTokeniserModel, "sample_compression", recording)
    settings = dict(stage="tokeniser", data=[data["adv"]], max_steps=4, eval_steps=2, save_steps=2, seed=3,
                    spatial_compression=[2, 4], temporal_compression=[1, 2], learning_rate=3e-3,
                    model_config=TINY_TOKENISER, **COMMON)
    full = train(output_dir=tmp_path / "full", **settings)
    tokeniser = PhysfmTokeniserModel.from_pretrained(tmp_path / "full")  # it lists exactly the trained ratios
    expected = [sample(tokeniser, step_generator(3, step)) for step in range(4)]
    assert draws[-4:] == expected and len(set(expected)) > 1
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    draws.clear()
    resumed = train(output_dir=tmp_path / "resumed", resume_from_checkpoint="latest", **settings)
    assert draws == expected[2:]
    assert [e["loss"] for e in resumed.train_log] == [e["loss"] for e in full.train_log]
    assert resumed.history == full.history
    a, b = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_one_checkpoint_has_one_reconstruction_number(data, tmp_path):
    """Training's valid metrics, `physfm evaluate` and evaluate_reconstruction (cards, select-tokeniser) agree."""
    train(stage="tokeniser", data=[data["adv"]], output_dir=tmp_path, max_steps=2, eval_steps=2, save_steps=0,
          spatial_compression=[2, 4], temporal_compression=[1, 2], model_config=TINY_TOKENISER, **COMMON)
    logged = json.loads((tmp_path / "metrics.json").read_text())["final"]
    rows = evaluate_reconstruction(tmp_path, data["adv"], "valid", max_samples=COMMON["max_eval_samples"])
    assert {(r.spatial_compression, r.temporal_compression) for r in rows} == {(2, 1), (2, 2), (4, 1), (4, 2)}
    for row in rows:
        assert logged[f"vrmse@s{row.spatial_compression}t{row.temporal_compression}"] == pytest.approx(row.vrmse,
                                                                                                      rel=1e-6)
    evaluated = evaluate_checkpoint(str(tmp_path), str(data["adv"]), str(tmp_path / "eval"),
                                    max_samples=COMMON["max_eval_samples"])["reconstruction"]
    assert evaluated == pytest.approx({k: v for k, v in logged.items() if k != "step"}, rel=1e-6)


def test_dynamics_adds_and_trains_a_field_the_pretrained_tokeniser_never_saw(data, tokeniser, tmp_path):
    tok_dir, _ = tokeniser
    before = weights(tok_dir)
    train(stage="dynamics", data=[data["unknown"]], output_dir=tmp_path, tokeniser=str(tok_dir), freeze_tokeniser=True,
          spatial_compression=4, max_steps=2, eval_steps=2, save_steps=2, learning_rate=1e-2, rollout_horizons=[1],
          model_config=TINY_DYNAMICS, **COMMON)
    config = json.loads((tmp_path / "config.json").read_text())["tokeniser_config"]
    assert config["field_names"][-1] == "density" and "density" not in config["trained_field_names"]
    after = {k.removeprefix("tokeniser."): v for k, v in weights(tmp_path).items() if k.startswith("tokeniser.")}
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    new = len(config["field_names"]) - 1  # frozen: only the new field's own rows were trained
    assert changed == {f"encoder.field_in.weight_{new}", f"decoder.field_out.weight_{new}",
                       f"decoder.field_out.bias_{new}"}


def test_loss_decreases(data, tmp_path):
    result = train(stage="tokeniser", data=[data["adv"]], output_dir=tmp_path, max_steps=40, eval_steps=10,
                   save_steps=0, spatial_compression=[2], temporal_compression=[1], learning_rate=5e-3,
                   lr_scheduler_type="constant", model_config={**TINY_TOKENISER, "channel_multipliers": [1, 2]},
                   **{**COMMON, "count_flops": False, "per_device_train_batch_size": 4})
    losses = [e["loss"] for e in result.train_log]
    assert sum(losses[-8:]) < 0.5 * sum(losses[:8])
    assert result.history[-1]["loss"] < result.history[0]["loss"]  # on valid too


def test_evaluate_cli(data, tmp_path, capsys):
    run = tmp_path / "run"
    train(stage="dynamics", data=[data["adv"]], output_dir=run, max_steps=2, eval_steps=2, save_steps=2,
          rollout_horizons=[1], model_config={**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER},
          spatial_compression=4, **COMMON)
    for checkpoint in (run, run / "checkpoint-2"):  # a saved model and a training checkpoint
        out = tmp_path / f"eval-{checkpoint.name}"
        assert evaluate_main([str(checkpoint), "--data", str(data["adv"]), "--output_dir", str(out),
                              "--horizons", "1", "2", "--max_samples", "2"]) == 0
        table = capsys.readouterr().out
        assert "vrmse" in table and "spectral_mse_high" in table and "step 2" in table
        payload = json.loads((out / "metrics.json").read_text())
        assert set(payload["rollout_vrmse"]) == {"1", "2"} and (out / "rollout.png").stat().st_size > 1000
    metrics = json.loads((tmp_path / "eval-run" / "metrics.json").read_text())
    saved = json.loads((tmp_path / "eval-checkpoint-2" / "metrics.json").read_text())
    assert metrics["next_frame"] == saved["next_frame"]  # same weights whichever way they were loaded
    with pytest.raises(FileNotFoundError, match="no folder"):
        evaluate_main([str(tmp_path / "nope"), "--data", str(data["adv"])])
    with pytest.raises(ValueError, match=r"--field: 'nosuch' is not one of the data's fields"):
        evaluate_main([str(run), "--data", str(data["adv"]), "--field", "nosuch", "--output_dir", str(tmp_path / "e")])
    with pytest.raises(ValueError, match=r"--horizons: got \[-1, 0\]; expected positive"):
        evaluate_main([str(run), "--data", str(data["adv"]), "--horizons", "-1", "0"])
    assert evaluate_main([str(run), "--data", str(data["adv"]), "--horizons", "1", "100", "--max_samples", "2",
                          "--output_dir", str(tmp_path / "far")]) == 0
    assert "horizons [100] skipped: longer than the valid split's trajectories allow" in capsys.readouterr().out
    assert json.loads((tmp_path / "far" / "metrics.json").read_text())["skipped_horizons"] == [100]


@pytest.mark.parametrize("forecaster", ["persistence", "linear_extrapolation"])
def test_reference_forecasters_are_scored_like_models(data, forecaster):
    from physfm.data import WellWindowDataset
    from physfm.metrics import vrmse
    from physfm.training.evaluation import reference_metrics

    metrics = reference_metrics(data["adv"], n_steps_input=2, horizons=[1, 3], max_samples=0, max_rollout_samples=0,
                                forecaster=forecaster)

    def forecast(inputs, horizon):  # by hand: the last frame, plus the last change per step for linear
        last = inputs[-1:]
        return last if forecaster == "persistence" else last + horizon * (inputs[-1:] - inputs[-2:-1])

    def score(dataset, indices, horizon):
        guess = torch.stack([forecast(dataset[i]["input_fields"], horizon) for i in indices])
        truth = torch.stack([dataset[i]["output_fields"][horizon - 1 : horizon] for i in indices])
        return float(vrmse(dataset.normalizer.denormalize(guess), dataset.normalizer.denormalize(truth),
                           n_spatial_dims=2).mean())

    next_frame = WellWindowDataset(data["adv"], "valid", n_steps_input=2, n_steps_output=1)
    assert metrics["vrmse"] == pytest.approx(score(next_frame, range(len(next_frame)), 1), rel=1e-5)
    # rollouts: one window per valid trajectory (2 of 10 frames), the latest that fits 3 frames ahead
    rollout = WellWindowDataset(data["adv"], "valid", n_steps_input=2, n_steps_output=3)
    latest = [5, 11]  # 6 windows per trajectory
    assert metrics["rollout_vrmse"] == {h: pytest.approx(score(rollout, latest, h), rel=1e-5) for h in (1, 3)}


def test_unknown_reference_forecaster_is_named(data):
    from physfm.training.evaluation import reference_metrics

    with pytest.raises(ValueError, match="forecaster: got 'oracle'"):
        reference_metrics(data["adv"], n_steps_input=2, horizons=[1], forecaster="oracle")
    with pytest.raises(ValueError, match="at least 2 input frames"):
        reference_metrics(data["adv"], n_steps_input=1, horizons=[1], forecaster="linear_extrapolation")


def test_silent_training_choices_are_warned_about(data, tmp_path):
    settings = {**COMMON, "count_flops": False, "eval_steps": 0, "spatial_compression": 4, "rollout_horizons": [1],
                "model_config": {**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER}}
    run = tmp_path / "run"
    train(stage="dynamics", data=[data["adv"]], output_dir=run, max_steps=2, save_steps=2, **settings)
    with pytest.warns(UserWarning, match=r"keeps its optimiser and learning-rate schedule, so --learning_rate "
                                         r"0\.0003 -> 0\.01 is not applied"):
        train(stage="dynamics", data=[data["adv"]], output_dir=run, max_steps=3, save_steps=3,
              resume_from_checkpoint="latest", **{**settings, "learning_rate": 1e-2})
    with pytest.warns(UserWarning, match=r"the global batch \(512 windows\) is larger than the training data"):
        train(stage="dynamics", data=[data["adv"]], output_dir=tmp_path / "big", max_steps=1, save_steps=0,
              **{**settings, "per_device_train_batch_size": 512})
