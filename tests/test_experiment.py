"""The experiment's protocol on the ``micro`` preset: every configuration runs over seeds, choices are made on
valid and tables on test, leakage is measured and refused, and the outputs have their schema."""

from __future__ import annotations

import json
import math

import pytest
import torch

from physfm.experiment import CONFIGURATIONS, PRESETS, main, run_experiment
from physfm.experiment.data import cache_path
from physfm.experiment.leakage import LEAKAGE_THRESHOLD, Clip, LeakageError, check_leakage, measure_leakage
from physfm.experiment.presets import eval_schedule, get_preset
from physfm.experiment.report import mean_std

SERIES = ("step", "vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high", "test_vrmse")
FIGURES = ("learning_curves.png", "rollout_horizons.png", "compute.png", "rollout_example.png")
MICRO = PRESETS["micro"]


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    out = tmp_path_factory.mktemp("micro")
    cache = tmp_path_factory.mktemp("cache")
    payload = run_experiment("micro", out / "run", cache_dir=cache, progress=False)
    return payload, out / "run", cache


def _training_args(out, seed: int, run: str) -> dict:
    return json.loads((out / "runs" / f"seed{seed}" / run / "training_args.json").read_text())


def test_every_configuration_runs_with_the_results_schema(micro):
    payload, out, _ = micro
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["runs"]) == set(on_disk["test"]) == set(CONFIGURATIONS)
    schedule = eval_schedule(MICRO.max_steps, MICRO.eval_steps)
    for name in CONFIGURATIONS:
        run = on_disk["runs"][name]
        assert len({len(run[key]) for key in SERIES}) == 1, name
        assert all(math.isfinite(v) and v >= 0 for key in SERIES[1:] for v in run[key])
        assert set(run["rollout_vrmse"]) == {str(h) for h in MICRO.rollout_horizons}
        test = on_disk["test"][name]
        assert len(test["vrmse_per_seed"]) == MICRO.n_seeds
        assert test["vrmse_per_seed"][0] == run["test_vrmse"]  # seed 0's numbers are the runs' numbers
        if name != "scratch_compute_matched":
            assert test["step"] == run["step"] == schedule
    settings = on_disk["settings"]
    assert (settings["system"], settings["dt_stride"], settings["n_seeds"]) == ("shear_flow", MICRO.dt_stride,
                                                                               MICRO.n_seeds)
    for forecaster in ("persistence", "linear_extrapolation"):
        reference = on_disk["references"][forecaster]
        assert len(reference["test_vrmse_per_seed"]) == MICRO.n_seeds and math.isfinite(reference["test_vrmse"])
    assert on_disk["leakage"]["min_vrmse"] >= LEAKAGE_THRESHOLD
    assert on_disk["wall_time_s"] > 0


def test_test_tables_are_the_mean_and_spread_over_seeds(micro):
    payload, _, _ = micro
    for entry in payload["test"].values():
        for i in range(len(entry["step"])):
            mean, std = mean_std([seed[i] for seed in entry["vrmse_per_seed"]])
            assert entry["vrmse_mean"][i] == pytest.approx(mean) and entry["vrmse_std"][i] == pytest.approx(std)
    reference = payload["references"]["persistence"]
    assert reference["test_vrmse"] == pytest.approx(sum(reference["test_vrmse_per_seed"]) / MICRO.n_seeds)
    # Seeds draw new data: the seeds' persistence scores differ.
    assert len(set(reference["test_vrmse_per_seed"])) == MICRO.n_seeds
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std([5.0])[0] == 5.0 and math.isnan(mean_std([5.0])[1])  # one seed measures no spread


def test_every_configuration_gets_the_same_sweep_and_other_seeds_reuse_its_choice(micro):
    payload, out, _ = micro
    sweep = payload["lr_sweep"]
    assert sweep["learning_rates"] == list(MICRO.learning_rates)
    assert set(sweep["runs"]) == set(CONFIGURATIONS) - {"scratch_compute_matched"}
    for name, by_rate in sweep["runs"].items():
        finals = {float(lr): run["vrmse"][-1] for lr, run in by_rate.items()}
        chosen = sweep["selected"][name]
        assert chosen == min(finals, key=lambda lr: (finals[lr], lr))
        assert payload["runs"][name]["vrmse"] == by_rate[f"{chosen:g}"]["vrmse"]
        assert _training_args(out, 1, name)["learning_rate"] == chosen
    assert sweep["selected"]["scratch_compute_matched"] == sweep["selected"]["scratch"]


def test_compute_matched_scratch_gets_the_pretraining_flops_as_extra_steps(micro):
    payload, _, _ = micro
    compute = payload["compute"]
    pretraining = payload["tokenisers"]["in_domain"]["compute"]["total_flops"]
    per_step = compute["scratch"]["dynamics_flops_per_step"]
    extra = math.ceil(pretraining / per_step)
    assert extra >= 1
    assert compute["scratch_compute_matched"]["dynamics_steps"] == MICRO.max_steps + extra
    for name in ("in_domain_frozen", "in_domain_finetuned"):
        assert compute[name]["pretraining_flops"] == pretraining
        assert compute[name]["total_flops"] == pytest.approx(pretraining + compute[name]["dynamics_flops"])
    assert compute["scratch"]["pretraining_flops"] == 0
    # The sweep is charged: the runs at the rates not chosen.
    assert compute["scratch"]["sweep_flops"] == pytest.approx(compute["scratch"]["dynamics_flops"])


def test_pretraining_uses_the_dynamics_clips_and_the_same_data_control_only_the_train_split(micro):
    payload, out, _ = micro
    clip = MICRO.dynamics_config["n_steps_input"] + 1
    for key in ("in_domain", "cross_domain", "same_data"):
        args = _training_args(out, 0, f"tokeniser_{key}")
        assert (args["n_steps_input"], args["dt_stride"]) == (clip, MICRO.dt_stride)
    assert _training_args(out, 0, "scratch@lr0.001")["dt_stride"] == MICRO.dt_stride
    same_data = payload["tokenisers"]["same_data"]
    assert [d["path"] for d in same_data["data"]] == [payload["data"]["downstream"]["path"]]
    assert _training_args(out, 0, "tokeniser_same_data")["data"] == [payload["data"]["downstream"]["path"]]


def test_tables_and_figures_are_written(micro):
    payload, out, _ = micro
    table = (out / "results.md").read_text()
    assert "## Test next-frame VRMSE at each checkpoint (mean ± std over 2 seeds" in table
    assert "| configuration | step 1 | step 2 |" in table
    for name in ("scratch", "in-domain, frozen", "in-domain, finetuned", "cross-domain, frozen",
                 "cross-domain, finetuned", "same-data, finetuned"):
        assert f"| {name} |" in table
    assert "| scratch, compute-matched" in table and "Leakage check:" in table
    assert "## Compute (seed 0)" in table and "## Learning-rate sweep" in table
    assert table.count("| persistence (last input frame, no training) |") == 4  # test, rollout, spectra, valid
    assert table.count("| linear extrapolation (last change continued, no training) |") == 4
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_data_is_cached_per_seed(micro):
    payload, _, cache = micro
    data = payload["data"]
    assert data["downstream"]["path"] == str(cache_path(MICRO.downstream, cache))
    assert (cache_path(MICRO.downstream.for_seed(1), cache) / "stats.yaml").is_file()
    cross = {spec.system for spec in MICRO.cross_domain}
    assert "shear_flow" not in cross and len(cross) == 3
    assert {d["system"] for d in payload["tokenisers"]["cross_domain"]["data"]} == cross


def test_rerun_reuses_finished_runs(micro, capsys):
    payload, out, cache = micro
    assert main(["--preset", "micro", "--out", str(out), "--cache_dir", str(cache), "--quiet"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["test"]["scratch"] == payload["test"]["scratch"]
    swept = len(CONFIGURATIONS) - 1
    per_seed = 3 + 1  # the tokenisers, compute-matched scratch
    n_runs = swept * len(MICRO.learning_rates) + swept * (MICRO.n_seeds - 1) + per_seed * MICRO.n_seeds
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
    with pytest.raises(ValueError, match="--n_seeds"):
        run_experiment("micro", tmp_path, n_seeds=0)
    with pytest.raises(ValueError, match="--system: got 'ocean'"):
        run_experiment("micro", tmp_path, system="ocean")
    with pytest.raises(ValueError, match="argument --system: invalid choice"):
        main(["--preset", "micro", "--out", str(tmp_path), "--system", "ocean"])
    with pytest.raises(ValueError, match="required: --out"):
        main(["--preset", "micro"])


def test_references_are_scored_on_valid_and_test_like_the_models(micro):
    payload, _, _ = micro
    for forecaster in ("persistence", "linear_extrapolation"):
        reference = payload["references"][forecaster]
        assert set(SERIES[1:-1]) <= set(reference) and set(SERIES[1:-1]) <= set(reference["test"])
        assert set(reference["rollout_vrmse"]) == set(payload["runs"]["scratch"]["rollout_vrmse"])
        assert reference["test"]["vrmse"] == reference["test_vrmse_per_seed"][0]


def test_a_duplicated_trajectory_makes_the_experiment_refuse(tmp_path):
    """With The Well's deterministic start and every parameter fixed, valid and test trajectories are copies of
    train ones: the experiment stops before any training and names the pair."""
    same = {"width": 2.0, "perturbation": 0.0, "reynolds": 1e4, "schmidt": 1.0, "n_shear": 2, "n_blobs": 2}
    preset = MICRO.replace(downstream=MICRO.downstream.__class__(**{**MICRO.downstream.cache_key(), "params": same}),
                           configurations=("scratch",))
    with pytest.raises(LeakageError, match=r"held-out trajectory .*:(valid|test)#\d is a near-copy of .*refuses"):
        run_experiment(preset, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "run" / "runs").exists()


def test_pretraining_data_that_copies_the_downstream_data_makes_the_experiment_refuse(tmp_path):
    preset = MICRO.replace(in_domain=MICRO.downstream, configurations=("scratch",))
    with pytest.raises(LeakageError, match=r"near-copy of .*:(train|valid|test)#\d"):
        run_experiment(preset, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.parametrize(("changes", "message"), [
    ({"dt_stride": 5}, r"--dt_stride: 5 makes a 3-frame clip span 11 stored frames, but the downstream trajectories "
                       r"have 9; expected dt_stride <= 4"),
    ({"downstream": MICRO.downstream.__class__(**{**MICRO.downstream.cache_key(), "split_fractions": (0.5, 0.5, 0.0)})},
     r"the protocol needs train, valid and test trajectories"),
    ({"dynamics_config": {**MICRO.dynamics_config, "n_steps_input": 1}}, r"n_steps_input: got 1, expected >= 2"),
])
def test_protocol_errors_come_before_any_simulation(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        run_experiment(MICRO.replace(**changes), tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_a_translated_copy_is_a_copy_on_periodic_axes():
    torch.manual_seed(1)
    clip = torch.randn(3, 8, 16, 2)
    shifted = torch.roll(clip, (3, 5), (1, 2))
    assert measure_leakage([Clip("held#0", clip, (True, True))], [Clip("seen#0", shifted)])["min_vrmse"] < 1e-6
    assert measure_leakage([Clip("held#0", clip, (False, False))], [Clip("seen#0", shifted)])["min_vrmse"] > 1.0
    # Minimised over shifts, exactly as a brute-force search over every roll finds it.
    other = torch.randn(3, 8, 16, 2)
    brute = min(measure_leakage([Clip("h", clip)], [Clip("s", torch.roll(other, (i, j), (1, 2)))])["min_vrmse"]
                for i in range(8) for j in range(16))
    fast = measure_leakage([Clip("h", clip, (True, True))], [Clip("s", other)])["min_vrmse"]
    assert fast == pytest.approx(brute, rel=1e-9)


def test_leakage_distance_is_vrmse_over_the_clip():
    torch.manual_seed(0)
    target = torch.randn(3, 8, 8, 2)
    other = target + 0.5 * torch.randn(3, 8, 8, 2)
    held_out = [Clip("held#0", target)]
    report = measure_leakage(held_out, [Clip("seen#0", other), Clip("seen#1", target.clone())])
    assert report["min_vrmse"] == pytest.approx(0.0, abs=1e-6) and report["closest"]["nearest_seen"] == "seen#1"
    with pytest.raises(LeakageError, match="held#0 is a near-copy of seen#1"):
        check_leakage(report)
    # Physical units or normalised ones: the distance ignores each field's scale and offset (up to VRMSE's 1e-7).
    scale, shift = torch.tensor([3.0, 0.1]), torch.tensor([10.0, -2.0])
    far = measure_leakage(held_out, [Clip("seen#0", other)])["min_vrmse"]
    scaled = measure_leakage([Clip("held#0", target * scale + shift)], [Clip("seen#0", other * scale + shift)])
    assert scaled["min_vrmse"] == pytest.approx(far, rel=1e-4) and far > LEAKAGE_THRESHOLD
    with pytest.raises(ValueError, match="cannot be compared"):
        measure_leakage(held_out, [Clip("seen#2", target[:2])])


def test_another_downstream_system_runs_the_same_protocol(tmp_path):
    preset = get_preset("micro", system="euler_multi_quadrants")
    assert preset.system == preset.in_domain.system == "euler_multi_quadrants"
    assert preset.downstream.resolution == (16, 16) and preset.downstream.params == {}
    assert {spec.system for spec in preset.cross_domain} == {"shear_flow", "gray_scott_reaction_diffusion",
                                                            "acoustic_wave"}
    shear = next(spec for spec in preset.cross_domain if spec.system == "shear_flow")
    assert shear.params == MICRO.downstream.params and shear.resolution == (16, 32)  # its resolved width moves too
    assert get_preset("micro", system="shear_flow") == MICRO
    assert main(["--preset", "micro", "--system", "euler_multi_quadrants", "--out", str(tmp_path / "run"),
                 "--cache_dir", str(tmp_path / "cache"), "--quiet", "--n_seeds", "1",
                 "--configurations", "scratch"]) == 0
    payload = json.loads((tmp_path / "run" / "results.json").read_text())
    assert payload["settings"]["system"] == "euler_multi_quadrants"
    assert payload["leakage"]["min_vrmse"] >= LEAKAGE_THRESHOLD
    assert "Downstream: `euler_multi_quadrants` (16, 16)" in (tmp_path / "run" / "results.md").read_text()


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
                 "--field_residual", "--configurations", "scratch", "--n_seeds", "1"]) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["settings"]["dynamics_config"]["field_residual"] is True
    config = json.loads((tmp_path / "runs" / "seed0" / "scratch@lr0.001" / "config.json").read_text())
    assert config["field_residual"] is True
    assert "Dynamics formulation: field residual" in (tmp_path / "results.md").read_text()
