"""The experiment's plumbing on the ``micro`` preset: every configuration runs, the outputs have their schema."""

from __future__ import annotations

import json
import math

import pytest
import torch

from physfm.experiment import CONFIGURATIONS, PRESETS, main, run_experiment
from physfm.experiment.data import cache_path, check_disjoint
from physfm.experiment.presets import eval_schedule

SERIES = ("step", "vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high")
FIGURES = ("learning_curves.png", "rollout_horizons.png", "compute.png", "rollout_example.png")


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro")
    cache = tmp_path_factory.mktemp("cache")
    payload = run_experiment("micro", out / "run", cache_dir=cache, progress=False)
    return payload, out / "run", cache


def test_every_configuration_runs_with_the_results_schema(micro):
    payload, out, _ = micro
    preset = PRESETS["micro"]
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["runs"]) == set(CONFIGURATIONS)
    for name in CONFIGURATIONS:
        run = on_disk["runs"][name]
        lengths = {len(run[key]) for key in SERIES}
        assert len(lengths) == 1, f"{name}: series of different lengths {lengths}"
        assert all(math.isfinite(v) and v >= 0 for key in SERIES[1:] for v in run[key])
        assert set(run["rollout_vrmse"]) == {str(h) for h in preset.rollout_horizons}
    schedule = eval_schedule(preset.max_steps, preset.eval_steps)
    for name in set(CONFIGURATIONS) - {"scratch_compute_matched"}:
        assert on_disk["runs"][name]["step"] == schedule
    assert on_disk["settings"]["name"] == "micro"
    assert on_disk["wall_time_s"] > 0


def test_scratch_is_the_best_of_its_learning_rate_sweep(micro):
    payload, _, _ = micro
    sweep = payload["lr_sweep"]
    assert sweep["learning_rates"] == list(PRESETS["micro"].scratch_learning_rates)
    finals = {float(lr): run["vrmse"][-1] for lr, run in sweep["runs"].items()}
    assert sweep["selected"] == min(finals, key=finals.get)
    assert payload["runs"]["scratch"]["vrmse"] == sweep["runs"][f"{sweep['selected']:g}"]["vrmse"]


def test_compute_matched_scratch_gets_the_pretraining_flops_as_extra_steps(micro):
    payload, _, _ = micro
    compute = payload["compute"]
    pretraining = payload["tokenisers"]["in_domain"]["compute"]["total_flops"]
    per_step = compute["scratch"]["dynamics_flops_per_step"]
    extra = math.ceil(pretraining / per_step)
    assert extra >= 1
    assert compute["scratch_compute_matched"]["dynamics_steps"] == PRESETS["micro"].max_steps + extra
    assert compute["scratch_compute_matched"]["dynamics_flops"] >= compute["in_domain_frozen"]["pretraining_flops"]
    for name in ("in_domain_frozen", "in_domain_finetuned"):
        assert compute[name]["pretraining_flops"] == pretraining
        assert compute[name]["total_flops"] == pytest.approx(pretraining + compute[name]["dynamics_flops"])
    assert compute["scratch"]["pretraining_flops"] == 0


def test_tables_and_figures_are_written(micro):
    payload, out, _ = micro
    table = (out / "results.md").read_text()
    assert "| configuration | step 1 | step 2 |" in table
    for label in ("| scratch |", "| in-domain, frozen |", "| in-domain, finetuned |", "| cross-domain, frozen |",
                  "| cross-domain, finetuned |", "| scratch, compute-matched"):
        assert label in table
    assert "## Compute" in table and "## Scratch learning-rate sweep" in table
    assert table.count("| persistence (last input frame, no training) |") == 3  # checkpoints, spectra, rollouts
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_in_domain_pretraining_data_is_disjoint_and_cached(micro):
    payload, _, cache = micro
    data = payload["data"]
    preset = PRESETS["micro"]
    check_disjoint([data["downstream"]["path"], data["in_domain"]["path"]])
    assert data["downstream"]["path"] == str(cache_path(preset.downstream, cache))
    cross = {data[spec.system]["system"] for spec in preset.cross_domain}
    assert "shear_flow" not in cross and len(cross) == 3
    # The cross-domain tokeniser was pretrained on the other systems only.
    assert {d["system"] for d in payload["tokenisers"]["cross_domain"]["data"]} == cross


def test_rerun_reuses_finished_runs(micro, capsys):
    payload, out, cache = micro
    assert main(["--preset", "micro", "--out", str(out), "--cache_dir", str(cache), "--quiet"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["runs"]["scratch"]["vrmse"] == payload["runs"]["scratch"]["vrmse"]
    n_runs = len(PRESETS["micro"].scratch_learning_rates) + 5 + 2  # the sweep, the rest of the grid, 2 tokenisers
    assert payload["reused_runs"] == [] and len(again["reused_runs"]) == n_runs
    printed = capsys.readouterr().out
    assert "| configuration | step 1 | step 2 |" in printed and f"{n_runs} training runs reused" in printed


def test_user_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="--preset: got 'huge'"):
        main(["--preset", "huge", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--configurations: unknown"):
        main(["--preset", "micro", "--out", str(tmp_path), "--configurations", "frozen"])
    with pytest.raises(ValueError, match="--eval_steps"):
        run_experiment("micro", tmp_path, eval_steps=0)
    with pytest.raises(ValueError, match="required: --out"):
        main(["--preset", "micro"])


def test_persistence_reference_is_scored_like_the_models(micro):
    payload, _, _ = micro
    persistence = payload["references"]["persistence"]
    assert set(SERIES[1:]) <= set(persistence) and math.isfinite(persistence["vrmse"])
    assert set(persistence["rollout_vrmse"]) == set(payload["runs"]["scratch"]["rollout_vrmse"])


def test_cross_domain_tokeniser_learns_the_tracer_downstream_even_frozen(micro):
    """Pretraining never saw shear_flow's tracer: the dynamics stage adds it, and trains only its rows."""
    from physfm.models import PhysfmDynamicsModel, PhysfmTokeniserModel

    payload, _, _ = micro
    floors = {key: payload["tokenisers"][key]["downstream_reconstruction"] for key in ("in_domain", "cross_domain")}
    assert floors["in_domain"]["fields"] == ["tracer", "pressure", "velocity_x", "velocity_y"]
    assert floors["cross_domain"]["fields"] == ["pressure", "velocity_x", "velocity_y"]  # never saw the tracer
    assert all(math.isfinite(floor["vrmse"]) for floor in floors.values())
    pretrained = PhysfmTokeniserModel.from_pretrained(payload["tokenisers"]["cross_domain"]["model_dir"])
    assert "tracer" not in pretrained.config.field_names
    frozen = PhysfmDynamicsModel.from_pretrained(payload["runs"]["cross_domain_frozen"]["model_dir"]).tokeniser
    assert frozen.untrained_field_names == ["tracer"]
    reference = pretrained.state_dict()
    changed = {k for k, v in frozen.state_dict().items() if k not in reference or not torch.equal(v, reference[k])}
    assert changed == {n for n, p in frozen.named_parameters() if any(p is q for q in frozen.field_parameters(["tracer"]))}


def test_field_residual_flag_switches_the_dynamics_formulation(micro, tmp_path):
    _, out, cache = micro
    assert "the paper's (the predicted next latent is decoded" in (out / "results.md").read_text()
    assert main(["--preset", "micro", "--out", str(tmp_path), "--cache_dir", str(cache), "--quiet",
                 "--field_residual", "--configurations", "scratch"]) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["settings"]["dynamics_config"]["field_residual"] is True
    config = json.loads((tmp_path / "runs" / "scratch_lr0.001" / "config.json").read_text())
    assert config["field_residual"] is True
    assert "Dynamics formulation: field residual" in (tmp_path / "results.md").read_text()
