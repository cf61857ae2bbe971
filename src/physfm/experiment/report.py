"""The experiment's outputs: ``results.json``, ``results.md`` and the figures.

Tables and figures report the test split, as mean and spread over the seeds; choices were made on valid.

- ``learning_curves.png`` (like the paper's Figure 2): test next-frame VRMSE and the low / mid / high
  binned spectral errors against dynamics step, one line per configuration;
- ``rollout_horizons.png`` (like Figure 3): rollout VRMSE against horizon;
- ``compute.png``: VRMSE against total FLOPs, tokeniser pretraining included, so one sees whether
  pretraining pays for itself;
- ``rollout_example.png``: one test trajectory, truth / prediction / error, scratch against in-domain.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, atomic_write_text, pyplot, save_figure
from ..training.evaluation import plot_rollout
from .presets import CONFIGURATIONS, TOKENISERS, ExperimentPreset
from .runner import sweep_name, swept_configurations

METRICS = ("vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high")
LABELS = {
    "scratch": "scratch",
    "in_domain_frozen": "in-domain, frozen",
    "in_domain_finetuned": "in-domain, finetuned",
    "cross_domain_frozen": "cross-domain, frozen",
    "cross_domain_finetuned": "cross-domain, finetuned",
    "same_data_finetuned": "same-data, finetuned",
    "scratch_compute_matched": "scratch, compute-matched",
}
STYLES = {
    "scratch": ("black", "-"),
    "in_domain_frozen": ("tab:blue", "-"),
    "in_domain_finetuned": ("tab:blue", "--"),
    "cross_domain_frozen": ("tab:orange", "-"),
    "cross_domain_finetuned": ("tab:orange", "--"),
    "same_data_finetuned": ("tab:purple", "--"),
    "scratch_compute_matched": ("grey", ":"),
}
REFERENCES = {"persistence": "persistence (last input frame, no training)",
              "linear_extrapolation": "linear extrapolation (last change continued, no training)"}
REFERENCE_STYLES = {"persistence": {"color": "tab:green", "ls": "-.", "lw": 1, "label": "persistence"},
                    "linear_extrapolation": {"color": "tab:olive", "ls": "-.", "lw": 1,
                                             "label": "linear extrapolation"}}


def pct_change(value: float, reference: float) -> float:
    """``100 * (value - reference) / reference`` (NaN when undefined)."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / reference


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of seeds' numbers (NaN spread for one seed: none was measured)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ----------------------------------------------------------------------------------------------- json
def _over_seeds(per_seed: list[dict[str, float]], keys: list[str]) -> dict[str, Any]:
    stats = {key: mean_std([seed[key] for seed in per_seed if key in seed]) for key in keys}
    return {"mean": {k: v[0] for k, v in stats.items()}, "std": {k: v[1] for k, v in stats.items()}}


def collect(preset: ExperimentPreset, results: dict[str, Any], wall_time_s: float,
            environment: dict[str, Any]) -> dict[str, Any]:
    """The ``results.json`` payload (see :func:`physfm.experiment.run_experiment`)."""
    seeds = range(preset.n_seeds)
    chosen = results["learning_rates"]
    names = [name for name in CONFIGURATIONS if f"{name}@0" in results]
    runs = {name: _seed0_run(results[f"{name}@0"], chosen[name], name) for name in names}
    test = {name: _test_table(results, name, seeds) for name in names}
    references = {forecaster: _reference(results, forecaster, seeds) for forecaster in REFERENCES}
    sources = {"in_domain": ["in_domain"], "cross_domain": [data.system for data in preset.cross_domain],
               "same_data": ["downstream"]}
    tokenisers = {key: _tokeniser(results, key, data_names, seeds) for key, data_names in sources.items()
                  if f"tokeniser:{key}@0" in results}
    sweep = {name: {f"{lr:g}": {"step": [h["step"] for h in results[sweep_name(name, lr)]["history"]],
                                "vrmse": [float(h["vrmse"]) for h in results[sweep_name(name, lr)]["history"]]}
                    for lr in preset.learning_rates} for name in swept_configurations(preset)}
    leakage = [results[f"leakage@{k}"] for k in seeds]
    closest = min(leakage, key=lambda report: report["min_vrmse"])
    return {
        "preset": preset.name,
        "settings": preset.to_dict(),
        "test": test,
        "runs": runs,
        "lr_sweep": {"learning_rates": [float(lr) for lr in preset.learning_rates], "runs": sweep,
                     "selected": {name: float(lr) for name, lr in chosen.items()},
                     "criterion": "lowest valid next-frame VRMSE at the final step, seed 0, every configuration alike"},
        "tokenisers": tokenisers,
        "references": references,
        "leakage": {"min_vrmse": closest["min_vrmse"], "per_seed": [r["min_vrmse"] for r in leakage],
                    **{key: closest[key] for key in ("closest", "threshold", "n_frames", "dt_stride", "n_held_out",
                                                     "n_seen")}},
        "compute": {name: _compute(preset, results, tokenisers, name) for name in names},
        "summary": _summary(preset, test, references),
        "data": {k.removeprefix("data:").removesuffix("@0"): v for k, v in results.items()
                 if k.startswith("data:") and k.endswith("@0")},
        "wall_time_s": wall_time_s,
        "reused_runs": results["reused_runs"],
        "environment": environment,
    }


def _seed0_run(summary: dict[str, Any], learning_rate: float, name: str) -> dict[str, Any]:
    """Seed 0's run as ``runs`` lists it: valid and test series, test rollouts, where it came from."""
    history = summary["history"]
    entry: dict[str, Any] = {"step": [h["step"] for h in history]}
    for metric in METRICS:
        entry[metric] = [float(h[metric]) for h in history]
        entry[f"test_{metric}"] = [float(h[f"test_{metric}"]) for h in history]
    entry.update(rollout_vrmse={str(k): float(v) for k, v in summary["rollout_vrmse"].items()},
                 learning_rate=float(learning_rate), max_steps=summary["steps"], pretraining=TOKENISERS.get(name),
                 model_dir=summary["model_dir"])
    return entry


def _test_table(results: dict[str, Any], name: str, seeds: range) -> dict[str, Any]:
    """A configuration's test VRMSE at each evaluation and its rollouts, mean and spread over the seeds."""
    per_seed = [[float(h["test_vrmse"]) for h in results[f"{name}@{k}"]["history"]] for k in seeds]
    stats = [mean_std(list(values)) for values in zip(*per_seed, strict=True)]
    rollouts = [results[f"{name}@{k}"]["rollout_vrmse"] for k in seeds]
    over_seeds = _over_seeds(rollouts, sorted(rollouts[0], key=int))
    return {"step": [h["step"] for h in results[f"{name}@0"]["history"]], "vrmse_mean": [m for m, _ in stats],
            "vrmse_std": [d for _, d in stats], "vrmse_per_seed": per_seed,
            "rollout_vrmse_mean": over_seeds["mean"], "rollout_vrmse_std": over_seeds["std"]}


def _reference(results: dict[str, Any], forecaster: str, seeds: range) -> dict[str, Any]:
    """Seed 0's valid and test metrics of a trivial forecaster, and its test numbers over the seeds."""
    per_seed = [results[f"reference:{forecaster}@{k}"]["metrics"] for k in seeds]
    mean, std = mean_std([m["test"]["vrmse"] for m in per_seed])
    rollouts = _over_seeds([m["test"]["rollout_vrmse"] for m in per_seed],
                           sorted(per_seed[0]["test"]["rollout_vrmse"], key=int))
    return {**per_seed[0]["valid"], "test": per_seed[0]["test"], "test_vrmse": mean, "test_vrmse_std": std,
            "test_vrmse_per_seed": [m["test"]["vrmse"] for m in per_seed],
            "test_rollout_vrmse_mean": rollouts["mean"], "test_rollout_vrmse_std": rollouts["std"]}


def _tokeniser(results: dict[str, Any], key: str, data_names: list[str], seeds: range) -> dict[str, Any]:
    """A pretrained tokeniser: its data, its own valid reconstruction, and the floor it puts under the dynamics."""
    summary = results[f"tokeniser:{key}@0"]
    floors = [results[f"reconstruction:{key}@{k}"] for k in seeds]
    floor_mean, floor_std = mean_std([f["vrmse"] for f in floors])
    data = [results[f"data:{name}@0"] for name in data_names]
    return {
        "data": [{"system": d["system"], "path": d["path"], "seed": d["seed"]} for d in data],
        "steps": summary["steps"],
        "reconstruction_vrmse": {k: float(v) for k, v in summary["history"][-1].items() if k.startswith("vrmse")},
        "downstream_reconstruction": floors[0],
        "downstream_reconstruction_mean": floor_mean,
        "downstream_reconstruction_std": floor_std,
        "compute": summary["compute"],
        "data_generation_s": sum(d["wall_time_s"] for d in data),
        "model_dir": summary["model_dir"],
    }


def _compute(preset: ExperimentPreset, results: dict[str, Any], tokenisers: dict[str, Any],
             name: str) -> dict[str, Any]:
    """What seed 0's run of ``name`` cost: pretraining (FLOPs and data simulation), the sweep, the dynamics."""
    chosen = results["learning_rates"]
    dyn = results[f"{name}@0"]["compute"]
    swept_as = "scratch" if name == "scratch_compute_matched" else name
    sweep_flops = sum(results[sweep_name(swept_as, lr)]["compute"]["total_flops"]
                      for lr in preset.learning_rates if lr != chosen[swept_as])
    tokeniser = tokenisers.get(TOKENISERS.get(name, ""), {})
    pre = tokeniser.get("compute", {})
    return {
        "pretraining_steps": int(pre.get("steps", 0)),
        "pretraining_flops": float(pre.get("total_flops", 0.0)),
        # The same-data tokeniser's data is the downstream data, which every run pays for.
        "pretraining_data_generation_s": 0.0 if TOKENISERS.get(name) == "same_data"
        else float(tokeniser.get("data_generation_s", 0.0)),
        "sweep_flops": float(sweep_flops),
        "dynamics_steps": int(dyn["steps"]),
        "dynamics_flops_per_step": float(dyn["flops_per_step"]),
        "dynamics_flops": float(dyn["total_flops"]),
        "total_flops": float(pre.get("total_flops", 0.0)) + float(dyn["total_flops"]),
        "dynamics_train_time_s": float(dyn.get("train_time_s", 0.0)),
        "pretraining_train_time_s": float(pre.get("train_time_s", 0.0)),
    }


def _summary(preset: ExperimentPreset, test: dict[str, Any], references: dict[str, Any]) -> dict[str, Any]:
    """Change against scratch on test at the mid-training and last checkpoints, as the change of the means and as
    mean ± std of each seed's own change (seeds share their data, so the paired spread is the one to read); who
    beats persistence mid-way (compute-matched scratch is left out: mid-way it is early in a longer schedule)."""
    mid, final = preset.mid_step, preset.max_steps
    persistence = references["persistence"]["test_vrmse"]
    scratch = test["scratch"]

    def paired(entry: dict[str, Any], step: int) -> dict[str, float]:
        if step not in entry["step"] or step not in scratch["step"]:
            return {"mean": math.nan, "std": math.nan}
        i, j = entry["step"].index(step), scratch["step"].index(step)
        mean, std = mean_std([pct_change(ours[i], theirs[j])
                              for ours, theirs in zip(entry["vrmse_per_seed"], scratch["vrmse_per_seed"], strict=True)])
        return {"mean": mean, "std": std}

    others = {name: entry for name, entry in test.items() if name != "scratch"}
    return {"mid_step": mid, "final_step": final, "split": "test",
            "vrmse_change_vs_scratch_pct": {
                name: {str(step): pct_change(_at(entry, step), _at(scratch, step)) for step in (mid, final)}
                for name, entry in others.items()},
            "vrmse_change_vs_scratch_pct_paired": {
                name: {str(step): paired(entry, step) for step in (mid, final)} for name, entry in others.items()},
            "beats_persistence_at_mid_step": {name: _at(entry, mid) < persistence for name, entry in test.items()
                                              if name != "scratch_compute_matched"}}


def _at(entry: dict[str, Any], step: int, key: str = "vrmse_mean") -> float:
    """The series ``key`` of a run at ``step`` (NaN when it was not evaluated there)."""
    try:
        return entry[key][entry["step"].index(step)]
    except ValueError:
        return math.nan


def write_json(payload: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, payload, default=_json_default)


def _json_default(value):
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ------------------------------------------------------------------------------------------- markdown
def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if math.isfinite(value) else "–"


def _fmt_pct(value: float) -> str:
    return f"{value:+.0f} %".replace("-", "−") if math.isfinite(value) else "–"


def _flops(value: float) -> str:
    return f"{value / 1e12:.3g}" if value else "0"


def _pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{_fmt(mean, digits)} ± {_fmt(std, 2)}" if math.isfinite(std) else _fmt(mean, digits)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def markdown(payload: dict[str, Any]) -> str:
    """``results.md``: test VRMSE (mean ± std over seeds) at each checkpoint with the change against scratch,
    rollouts, compute, the sweep, the tokenisers, and seed 0's valid numbers."""
    sections = (_setup_section, _test_section, _rollout_section, _spectral_section, _compute_section,
                _sweep_section, _tokeniser_section, _valid_section)
    lines = [line for section in sections for line in section(payload)]
    lines += ["Figures: `learning_curves.png`, `rollout_horizons.png`, `compute.png`, `rollout_example.png`.", ""]
    return "\n".join(lines)


def _steps(payload: dict[str, Any]) -> list[int]:
    """The checkpoints every table reports: scratch's evaluation steps."""
    return list(payload["test"]["scratch"]["step"])


def _setup_section(payload: dict[str, Any]) -> list[str]:
    """The title, the data and budget, the dynamics formulation, the leakage check and the headline."""
    settings = payload["settings"]
    n_seeds = settings["n_seeds"]
    data = payload["data"]["downstream"]
    env = payload.get("environment", {})
    leakage = payload["leakage"]
    lines = [f"# physfm experiment: preset `{payload['preset']}`", ""]
    lines += [f"Downstream: `{settings['system']}` {tuple(settings['downstream']['resolution'])}, "
              f"{settings['downstream']['n_trajectories']} trajectories (split {tuple(settings['downstream']['split_fractions'])}), "
              f"frame stride {settings['dt_stride']}, {settings['max_steps']} dynamics steps (batch {settings['batch_size']}), "
              f"spatial compression {settings['spatial_compression']}, {_seeds(n_seeds)} (new data and initial weights "
              f"each). Wall time {payload['wall_time_s'] / 60:.1f} min on {env.get('hardware', 'this machine')}"
              + (f" ({len(payload['reused_runs'])} training runs reused from an earlier invocation)."
                 if payload.get("reused_runs") else "."), ""]
    residual = settings["dynamics_config"].get("field_residual", True)
    lines += ["Dynamics formulation: " + (
        "field residual (the last frame plus the decoded change, physfm's default)." if residual else
        "the paper's (the predicted next latent is decoded; `--field_residual` adds the decoded change to the "
        "last frame instead)."), ""]
    lines += [f"Leakage check: the closest held-out trajectory (of {leakage['n_held_out']} per seed) is VRMSE "
              f"{_fmt(leakage['min_vrmse'], 3)} from any of the {leakage['n_seen']} trajectories models train on (test "
              f"also against valid), over its first {leakage['n_frames']} frames at stride {leakage['dt_stride']} and "
              f"every shift along the periodic axes (the experiment refuses below {leakage['threshold']}). Learning rates were chosen on seed 0's valid split for every configuration "
              f"alike; every table is on the test split. Data: `{data['path']}`.", ""]

    mid = payload["summary"]["mid_step"]
    changes = payload["summary"]["vrmse_change_vs_scratch_pct_paired"]
    headline = [f"{LABELS[name]} {_fmt_pct(changes[name][str(mid)]['mean'])}"
                + (f" ± {changes[name][str(mid)]['std']:.0f}" if math.isfinite(changes[name][str(mid)]["std"]) else "")
                for name in LABELS if name in changes and name != "scratch_compute_matched"]
    if headline:
        lines += [f"**Mid-training (step {mid}) test VRMSE against scratch (each seed's own change, mean ± std over "
                  f"{_seeds(n_seeds)}):** " + ", ".join(headline) + ".", ""]
    return lines


def _test_section(payload: dict[str, Any]) -> list[str]:
    """Test next-frame VRMSE at each checkpoint, against scratch, with the references."""
    test, steps, n_seeds = payload["test"], _steps(payload), payload["settings"]["n_seeds"]
    scratch = test["scratch"]
    lines = [f"## Test next-frame VRMSE at each checkpoint (mean ± std over {_seeds(n_seeds)}; change of the mean "
             "against scratch)", ""]
    lines += ["| configuration | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for name, entry in test.items():
        cells = []
        for step in steps:
            value, spread = _at(entry, step), _at(entry, step, "vrmse_std")
            change = "" if name == "scratch" else f" ({_fmt_pct(pct_change(value, _at(scratch, step)))})"
            cells.append(_pm(value, spread) + change)
        label = LABELS[name]
        if name == "scratch_compute_matched":
            final, spread = entry["vrmse_mean"][-1], entry["vrmse_std"][-1]
            label += (f" (a cosine schedule over {entry['step'][-1]} steps, so these columns are early in it; its "
                      f"final step: {_pm(final, spread)}, {_fmt_pct(pct_change(final, scratch['vrmse_mean'][-1]))} "
                      "against scratch's final)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for forecaster, label in REFERENCES.items():
        ref = payload["references"][forecaster]
        lines.append(f"| {label} | " + " | ".join(
            f"{_pm(ref['test_vrmse'], ref['test_vrmse_std'])} ({_fmt_pct(pct_change(ref['test_vrmse'], _at(scratch, s)))})"
            for s in steps) + " |")
    lines.append("")
    return lines


def _rollout_section(payload: dict[str, Any]) -> list[str]:
    """Test rollout VRMSE by horizon."""
    test, settings = payload["test"], payload["settings"]
    horizons = sorted({int(h) for entry in test.values() for h in entry["rollout_vrmse_mean"]})
    lines = [f"## Rollout VRMSE on test, by horizon (frames at stride {settings['dt_stride']}; mean ± std over seeds)", "",
             "| configuration | " + " | ".join(str(h) for h in horizons) + " |", "|---|" + "---:|" * len(horizons)]
    rows = [(LABELS[name], entry["rollout_vrmse_mean"], entry["rollout_vrmse_std"]) for name, entry in test.items()]
    rows += [(label, payload["references"][f]["test_rollout_vrmse_mean"], payload["references"][f]["test_rollout_vrmse_std"])
             for f, label in REFERENCES.items()]
    for label, means, stds in rows:
        lines.append(f"| {label} | " + " | ".join(_pm(means.get(str(h), math.nan), stds.get(str(h), math.nan))
                                                for h in horizons) + " |")
    lines.append("")
    return lines


def _spectral_section(payload: dict[str, Any]) -> list[str]:
    """Seed 0's binned spectral error on test at the last checkpoint."""
    runs, steps = payload["runs"], _steps(payload)
    lines = [f"## Binned spectral error on test at the last checkpoint (step {steps[-1]}, seed 0)", "",
             "| configuration | low | mid | high |", "|---|---:|---:|---:|"]
    for name, entry in runs.items():
        index = entry["step"].index(steps[-1]) if steps[-1] in entry["step"] else None  # not scored at that step
        cells = []
        for band in ("low", "mid", "high"):
            value = math.nan if index is None else entry[f"test_spectral_mse_{band}"][index]
            ref = runs["scratch"][f"test_spectral_mse_{band}"][-1]
            cells.append(_fmt(value, 3) if name == "scratch" else f"{_fmt(value, 3)} ({_fmt_pct(pct_change(value, ref))})")
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    for forecaster, label in REFERENCES.items():
        ref = payload["references"][forecaster]["test"]
        lines.append(f"| {label} | " + " | ".join(_fmt(ref[f"spectral_mse_{band}"], 3) for band in ("low", "mid", "high")) + " |")
    lines.append("")
    return lines


def _compute_section(payload: dict[str, Any]) -> list[str]:
    """Seed 0's training compute per configuration: pretraining, sweep and dynamics."""
    lines = ["## Compute (seed 0)", "",
             "FLOPs are torch's FlopCounterMode count of one optimisation step (forward + backward) times the "
             "steps run; evaluation is not counted. A pretrained tokeniser is paid once and can serve many downstream "
             "runs; here it is charged in full to each run. The sweep column is what choosing the learning rate cost "
             "(the runs at the other rates); every configuration has the same number of sweep runs. Simulating the pretraining data "
             "is counted in wall seconds of one core (0 when the data came from the cache; the solvers' FFT FLOPs are not counted).", "",
             "| configuration | pretraining steps | pretraining TFLOPs | pretraining data (s) | sweep TFLOPs | "
             "dynamics steps | dynamics TFLOPs | total TFLOPs (sweep excluded) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {LABELS[name]} | {cost['pretraining_steps']} | {_flops(cost['pretraining_flops'])} | "
              f"{cost['pretraining_data_generation_s']:.1f} | {_flops(cost['sweep_flops'])} | "
              f"{cost['dynamics_steps']} | {_flops(cost['dynamics_flops'])} | {_flops(cost['total_flops'])} |"
              for name, cost in payload["compute"].items()]
    lines.append("")
    return lines


def _sweep_section(payload: dict[str, Any]) -> list[str]:
    """The learning-rate sweep on seed 0's valid split, and the rates chosen."""
    sweep = payload["lr_sweep"]
    rates = [f"{lr:g}" for lr in sweep["learning_rates"]]
    edge = [LABELS[name] for name, lr in sweep["selected"].items() if name in sweep["runs"]
            and len(rates) > 1 and lr in (min(sweep["learning_rates"]), max(sweep["learning_rates"]))]
    note = (f" The choice sits at an edge of the grid for {', '.join(edge)}: a wider sweep may choose differently."
            if edge else "")
    lines = ["## Learning-rate sweep (seed 0, final valid VRMSE)", "", f"Selected by {sweep['criterion']}.{note}", "",
             "| configuration | " + " | ".join(f"lr {r}" for r in rates) + " | selected |",
             "|---|" + "---:|" * (len(rates) + 1)]
    for name, by_rate in sweep["runs"].items():
        lines.append(f"| {LABELS[name]} | " + " | ".join(_fmt(by_rate[r]["vrmse"][-1]) for r in rates)
                     + f" | {sweep['selected'][name]:g} |")
    lines.append("")
    return lines


def _tokeniser_section(payload: dict[str, Any]) -> list[str]:
    """The pretrained tokenisers' reconstruction on their own and on the downstream valid split."""
    if not payload["tokenisers"]:
        return []
    settings = payload["settings"]
    lines = ["## Tokeniser pretraining", "",
             f"Reconstruction VRMSE on the tokeniser's own valid split (seed 0), and on the downstream valid split "
             f"(mean ± std over seeds: the floor under a frozen tokeniser's dynamics error; as `physfm "
             f"select-tokeniser` scores it, on clips at stride {settings['dt_stride']}: fields it never learnt and "
             "spatially constant frames, such as shear_flow's initial pressure, left out).", "",
             "| tokeniser | data | steps | own valid | downstream valid (fields) |", "|---|---|---:|---:|---:|"]
    for key, entry in payload["tokenisers"].items():
        systems = ", ".join(f"`{d['system']}`" for d in entry["data"])
        if key == "same_data":
            systems += " (downstream train split)"
        fields = ", ".join((entry.get("downstream_reconstruction") or {}).get("fields", []))
        lines.append(f"| {key.replace('_', '-')} | {systems} | {entry['steps']} | "
                     f"{_fmt(entry['reconstruction_vrmse'].get('vrmse', math.nan), 3)} | "
                     f"{_pm(entry['downstream_reconstruction_mean'], entry['downstream_reconstruction_std'])} ({fields}) |")
    lines.append("")
    return lines


def _valid_section(payload: dict[str, Any]) -> list[str]:
    """Seed 0's valid next-frame VRMSE at each checkpoint: the split the choices were made on."""
    runs, steps = payload["runs"], _steps(payload)
    lines = ["## Valid next-frame VRMSE at each checkpoint (seed 0, the split the choices were made on)", "",
             "| configuration | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for name, entry in runs.items():
        lines.append(f"| {LABELS[name]} | " + " | ".join(
            _fmt(entry["vrmse"][entry["step"].index(s)]) if s in entry["step"] else "–" for s in steps) + " |")
    for forecaster, label in REFERENCES.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(payload["references"][forecaster]["vrmse"]) for _ in steps)
                     + " |")
    lines.append("")
    return lines


# -------------------------------------------------------------------------------------------- figures
def _references_hline(ax, payload: dict[str, Any]) -> None:
    for forecaster, style in REFERENCE_STYLES.items():
        ax.axhline(payload["references"][forecaster]["test_vrmse"], **style)


def plot_learning_curves(payload: dict[str, Any], path: Path) -> Path:
    """Figure 2: test VRMSE (mean and spread over seeds) and seed 0's three spectral bins against step."""
    plt = pyplot()
    titles = {"vrmse": "test next-frame VRMSE (mean ± std over seeds)", "spectral_mse_low": "spectral MSE, low k",
              "spectral_mse_mid": "spectral MSE, mid k", "spectral_mse_high": "spectral MSE, high k"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), constrained_layout=True)
    for ax, metric in zip(axes.flat, METRICS, strict=True):
        for name, entry in payload["runs"].items():
            color, style = STYLES[name]
            if metric == "vrmse":
                stats = payload["test"][name]
                mean, std = stats["vrmse_mean"], stats["vrmse_std"]
                ax.plot(stats["step"], mean, style, color=color, marker="o", markersize=3, label=LABELS[name])
                ax.fill_between(stats["step"], [m - d for m, d in zip(mean, std, strict=True)],
                                [m + d for m, d in zip(mean, std, strict=True)], color=color, alpha=0.12, lw=0)
            else:
                ax.plot(entry["step"], entry[f"test_{metric}"], style, color=color, marker="o", markersize=3,
                        label=LABELS[name])
        if metric == "vrmse":
            _references_hline(ax, payload)
        ax.set_yscale("log")
        ax.set_xlabel("dynamics step")
        ax.set_title(titles[metric] if metric == "vrmse" else titles[metric] + " (test, seed 0)")
        ax.axvline(payload["summary"]["mid_step"], color="0.85", lw=0.8, zorder=0)  # the headline checkpoint
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"physfm experiment `{payload['preset']}`: test error during dynamics training")
    return save_figure(fig, path)


def plot_rollout_horizons(payload: dict[str, Any], path: Path) -> Path:
    """Figure 3: test rollout VRMSE (mean and spread over seeds) against horizon."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    curves = [(LABELS[name], STYLES[name], entry["rollout_vrmse_mean"], entry["rollout_vrmse_std"])
              for name, entry in payload["test"].items()]
    for forecaster, style in REFERENCE_STYLES.items():
        ref = payload["references"][forecaster]
        curves.append((style["label"], (style["color"], style["ls"]), ref["test_rollout_vrmse_mean"],
                       ref["test_rollout_vrmse_std"]))
    for label, (color, style), means, stds in curves:
        horizons = sorted(int(h) for h in means)
        ax.errorbar(horizons, [means[str(h)] for h in horizons], yerr=[stds[str(h)] for h in horizons], fmt=style,
                    color=color, marker="o", markersize=3, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"rollout horizon (frames at stride {payload['settings']['dt_stride']})")
    ax.set_ylabel("test VRMSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"autoregressive rollout, preset `{payload['preset']}`")
    return save_figure(fig, path)


def plot_compute(payload: dict[str, Any], path: Path) -> Path:
    """Test VRMSE (mean over seeds) against total FLOPs: pretrained curves start at their pretraining cost."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for name, entry in payload["test"].items():
        cost = payload["compute"][name]
        per_step = cost["dynamics_flops_per_step"]
        x = [(cost["pretraining_flops"] + step * per_step) / 1e12 for step in entry["step"]]
        color, style = STYLES[name]
        ax.plot(x, entry["vrmse_mean"], style, color=color, marker="o", markersize=3, label=LABELS[name])
    _references_hline(ax, payload)
    ax.set_yscale("log")
    ax.set_xlabel("total training TFLOPs (tokeniser pretraining included)")
    ax.set_ylabel("test next-frame VRMSE (mean over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("does pretraining pay for itself?")
    return save_figure(fig, path)


def plot_rollout_example(payload: dict[str, Any], data_dir: str, path: Path,
                         names: tuple[str, ...] = ("scratch", "in_domain_finetuned"), n_columns: int = 5,
                         field: int = 0) -> Path:
    """Truth, then prediction and |error| of each configuration in ``names``, on one test trajectory (seed 0)."""
    import torch

    from physfm.checkpoints import load_pretrained
    from physfm.data import WellWindowDataset
    from physfm.data.dataset import n_windows

    names = tuple(n for n in names if n in payload["runs"])
    models = {n: load_pretrained(payload["runs"][n]["model_dir"], kind="dynamics") for n in names}
    n_in = next(iter(models.values())).config.n_steps_input
    stride = payload["settings"]["dt_stride"]
    horizon = max(int(h) for n in names for h in payload["runs"][n]["rollout_vrmse"])
    dataset = WellWindowDataset(data_dir, split="test", n_steps_input=n_in, n_steps_output=horizon, dt_stride=stride)
    header = dataset.headers[0]
    item = dataset[n_windows(header.n_steps, n_in, horizon, stride) - 1]  # as rollout_metrics: the latest start
    fields, periodic = list(dataset.field_names), list(dataset.periodic)
    truth = dataset.normalizer.denormalize(item["output_fields"])
    predictions = {}
    with torch.no_grad():
        for name, model in models.items():
            out = model.rollout(item["input_fields"][None], n_steps=horizon, field_names=fields, periodic=periodic)
            predictions[LABELS[name]] = dataset.normalizer.denormalize(out[0])
    return plot_rollout(truth, predictions, path, field_names=fields, field=field, n_columns=n_columns,
                        title=f"test rollout of `{fields[field]}` (preset `{payload['preset']}`, seed 0)")


def write_report(payload: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and the figures into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    write_json(payload, paths["json"])
    atomic_write_text(paths["markdown"], markdown(payload))
    paths["learning_curves"] = plot_learning_curves(payload, out / "learning_curves.png")
    paths["rollout_horizons"] = plot_rollout_horizons(payload, out / "rollout_horizons.png")
    paths["compute"] = plot_compute(payload, out / "compute.png")
    example = ("scratch", "in_domain_finetuned" if "in_domain_finetuned" in payload["runs"] else "in_domain_frozen")
    paths["rollout_example"] = plot_rollout_example(payload, payload["data"]["downstream"]["path"],
                                                    out / "rollout_example.png", names=example)
    return paths


__all__ = ["collect", "markdown", "pct_change", "plot_compute", "plot_learning_curves", "plot_rollout_example",
           "plot_rollout_horizons", "write_report"]
