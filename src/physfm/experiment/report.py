"""The experiment's outputs: ``results.json``, ``results.md`` and the figures.

- ``learning_curves.png`` (like the paper's Figure 2): valid next-frame VRMSE and the low / mid / high
  binned spectral errors against dynamics step, one line per configuration;
- ``rollout_horizons.png`` (like Figure 3): rollout VRMSE against horizon;
- ``compute.png``: VRMSE against total FLOPs, tokeniser pretraining included, so one sees whether
  pretraining pays for itself;
- ``rollout_example.png``: one valid trajectory, truth / prediction / error, scratch against in-domain.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..training.checkpointing import atomic_write_text
from ..training.curves import pyplot, save_figure
from ..training.evaluation import plot_rollout
from .presets import CONFIGURATIONS, ExperimentPreset

METRICS = ("vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high")
LABELS = {
    "scratch": "scratch",
    "in_domain_frozen": "in-domain, frozen",
    "in_domain_finetuned": "in-domain, finetuned",
    "cross_domain_frozen": "cross-domain, frozen",
    "cross_domain_finetuned": "cross-domain, finetuned",
    "scratch_compute_matched": "scratch, compute-matched",
}
STYLES = {
    "scratch": ("black", "-"),
    "in_domain_frozen": ("tab:blue", "-"),
    "in_domain_finetuned": ("tab:blue", "--"),
    "cross_domain_frozen": ("tab:orange", "-"),
    "cross_domain_finetuned": ("tab:orange", "--"),
    "scratch_compute_matched": ("grey", ":"),
}
REFERENCE_LABEL = "persistence (last input frame, no training)"
PERSISTENCE_STYLE = {"color": "tab:green", "ls": "-.", "lw": 1, "label": "persistence"}
PRETRAINING = {"in_domain_frozen": "in_domain", "in_domain_finetuned": "in_domain",
               "cross_domain_frozen": "cross_domain", "cross_domain_finetuned": "cross_domain"}


def _persistence(payload: dict[str, Any]) -> dict[str, Any] | None:
    return payload.get("references", {}).get("persistence")


def pct_change(value: float, reference: float) -> float:
    """``100 * (value - reference) / reference`` (NaN when undefined)."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / reference


# ----------------------------------------------------------------------------------------------- json
def collect(preset: ExperimentPreset, results: dict[str, Any], wall_time_s: float,
            environment: dict[str, Any]) -> dict[str, Any]:
    """The ``results.json`` payload (see :func:`physfm.experiment.run_experiment`)."""
    runs: dict[str, Any] = {}
    for name in CONFIGURATIONS:
        if name not in results:
            continue
        summary = results[name]
        entry: dict[str, Any] = {"step": [h["step"] for h in summary["history"]]}
        for metric in METRICS:
            entry[metric] = [float(h[metric]) for h in summary["history"]]
        entry["rollout_vrmse"] = {str(k): float(v) for k, v in summary["rollout_vrmse"].items()}
        entry["learning_rate"] = summary.get("learning_rate", _learning_rate(preset, results, name))
        entry["max_steps"] = summary["steps"]
        entry["pretraining"] = PRETRAINING.get(name)
        entry["model_dir"] = summary["model_dir"]
        runs[name] = entry

    tokenisers = {}
    for key in ("in_domain", "cross_domain"):
        summary = results.get(f"tokeniser:{key}")
        if summary is None:
            continue
        data = [results["data:in_domain"]] if key == "in_domain" else [
            results[f"data:{spec.system}"] for spec in preset.cross_domain]
        final = summary["history"][-1]
        tokenisers[key] = {
            "data": [{"system": d["system"], "path": d["path"], "seed": d["seed"]} for d in data],
            "steps": summary["steps"],
            "reconstruction_vrmse": {k: float(v) for k, v in final.items() if k.startswith("vrmse")},
            "downstream_reconstruction": results.get(f"reconstruction:{key}"),
            "compute": summary["compute"],
            "model_dir": summary["model_dir"],
        }

    compute = {}
    for name in runs:
        dyn = results[name]["compute"]
        pre = tokenisers.get(PRETRAINING.get(name, ""), {}).get("compute", {})
        compute[name] = {
            "pretraining_steps": int(pre.get("steps", 0)),
            "pretraining_flops": float(pre.get("total_flops", 0.0)),
            "dynamics_steps": int(dyn["steps"]),
            "dynamics_flops_per_step": float(dyn["flops_per_step"]),
            "dynamics_flops": float(dyn["total_flops"]),
            "total_flops": float(pre.get("total_flops", 0.0)) + float(dyn["total_flops"]),
            "dynamics_train_time_s": float(dyn.get("train_time_s", 0.0)),
            "pretraining_train_time_s": float(pre.get("train_time_s", 0.0)),
        }

    sweep = {}
    for lr in preset.scratch_learning_rates:
        summary = results[f"scratch_lr{lr:g}"]
        sweep[f"{lr:g}"] = {"step": [h["step"] for h in summary["history"]],
                            "vrmse": [float(h["vrmse"]) for h in summary["history"]]}

    mid = preset.mid_step
    summary = {"mid_step": mid, "final_step": preset.max_steps, "vrmse_change_vs_scratch_pct": {}}
    scratch = runs.get("scratch")
    for name, entry in runs.items():
        if scratch is None or name == "scratch":
            continue
        summary["vrmse_change_vs_scratch_pct"][name] = {
            str(step): pct_change(_at(entry, step), _at(scratch, step)) for step in (mid, preset.max_steps)}
    return {
        "preset": preset.name,
        "settings": preset.to_dict(),
        "runs": runs,
        "lr_sweep": {"learning_rates": [float(lr) for lr in preset.scratch_learning_rates], "runs": sweep,
                     "selected": float(results["scratch"]["learning_rate"]),
                     "criterion": "lowest valid next-frame VRMSE at the final step"},
        "tokenisers": tokenisers,
        "references": {name.removeprefix("reference:"): value["metrics"] for name, value in results.items()
                       if name.startswith("reference:")},
        "compute": compute,
        "summary": summary,
        "data": {k.removeprefix("data:"): v for k, v in results.items() if k.startswith("data:")},
        "wall_time_s": wall_time_s,
        "reused_runs": sorted(name for name, value in results.items()
                              if name != "scratch" and isinstance(value, dict) and value.get("reused")),
        "environment": environment,
    }


def _learning_rate(preset: ExperimentPreset, results: dict[str, Any], name: str) -> float:
    if name == "scratch_compute_matched":
        return float(results["scratch"]["learning_rate"])
    return float(preset.learning_rate)


def _at(entry: dict[str, Any], step: int) -> float:
    """The run's VRMSE at ``step`` (NaN when it was not evaluated there)."""
    try:
        return entry["vrmse"][entry["step"].index(step)]
    except ValueError:
        return math.nan


def write_json(payload: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


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


def markdown(payload: dict[str, Any]) -> str:
    """``results.md``: VRMSE at each checkpoint with the change against scratch, rollouts, compute, sweep."""
    runs, settings = payload["runs"], payload["settings"]
    scratch = runs["scratch"]
    steps = [s for s in scratch["step"]]
    lines = [f"# physfm experiment: preset `{payload['preset']}`", ""]
    env = payload.get("environment", {})
    lines += [f"Downstream: `{settings['downstream']['system']}` {tuple(settings['downstream']['resolution'])}, "
              f"{settings['max_steps']} dynamics steps (batch {settings['batch_size']}), spatial compression "
              f"{settings['spatial_compression']}, seed {settings['seed']}. Wall time "
              f"{payload['wall_time_s'] / 60:.1f} min on {env.get('hardware', 'this machine')}"
              + (f" ({len(payload['reused_runs'])} training runs reused from an earlier invocation)."
                 if payload.get("reused_runs") else "."), ""]
    residual = settings["dynamics_config"].get("field_residual", True)
    lines += ["Dynamics formulation: " + (
        "field residual (the last frame plus the decoded change, physfm's default)." if residual else
        "the paper's (the predicted next latent is decoded; `--field_residual` adds the decoded change to the "
        "last frame instead)."), ""]

    mid = payload["summary"]["mid_step"]
    changes = payload["summary"]["vrmse_change_vs_scratch_pct"]
    headline = [f"{LABELS[name]} {_fmt_pct(changes[name][str(mid)])}" for name in
                ("in_domain_frozen", "in_domain_finetuned", "cross_domain_frozen", "cross_domain_finetuned")
                if name in changes]
    if headline:
        lines += [f"**Mid-training (step {mid}) valid VRMSE against scratch:** " + ", ".join(headline) + ".", ""]

    lines += ["## Valid next-frame VRMSE at each checkpoint (change against scratch)", ""]
    lines += ["| configuration | " + " | ".join(f"step {s}" for s in steps) + " |",
              "|---|" + "---:|" * len(steps)]
    for name, entry in runs.items():
        cells = []
        for step in steps:
            value = _at(entry, step)
            cells.append(_fmt(value) if name == "scratch" else f"{_fmt(value)} ({_fmt_pct(pct_change(value, _at(scratch, step)))})")
        label = LABELS[name]
        if name == "scratch_compute_matched":
            final = entry["vrmse"][-1]
            label += f" (its final step {entry['step'][-1]}: {_fmt(final)}, {_fmt_pct(pct_change(final, scratch['vrmse'][-1]))} against scratch's final)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    persistence = _persistence(payload)
    if persistence:
        value = persistence["vrmse"]
        lines.append(f"| {REFERENCE_LABEL} | " + " | ".join(
            f"{_fmt(value)} ({_fmt_pct(pct_change(value, _at(scratch, step)))})" for step in steps) + " |")
    lines.append("")

    lines += [f"## Binned spectral error at the last checkpoint (step {steps[-1]})", "",
              "| configuration | low | mid | high |", "|---|---:|---:|---:|"]
    for name, entry in runs.items():
        index = entry["step"].index(steps[-1]) if steps[-1] in entry["step"] else len(entry["step"]) - 1
        cells = []
        for band in ("low", "mid", "high"):
            value = entry[f"spectral_mse_{band}"][index]
            ref = scratch[f"spectral_mse_{band}"][-1]
            cells.append(_fmt(value, 3) if name == "scratch" else f"{_fmt(value, 3)} ({_fmt_pct(pct_change(value, ref))})")
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    if persistence:
        lines.append(f"| {REFERENCE_LABEL} | " + " | ".join(
            f"{_fmt(persistence[f'spectral_mse_{band}'], 3)} "
            f"({_fmt_pct(pct_change(persistence[f'spectral_mse_{band}'], scratch[f'spectral_mse_{band}'][-1]))})"
            for band in ("low", "mid", "high")) + " |")
    lines.append("")

    horizons = sorted({int(h) for entry in runs.values() for h in entry["rollout_vrmse"]})
    lines += ["## Rollout VRMSE on valid, by horizon (frames)", "",
              "| configuration | " + " | ".join(str(h) for h in horizons) + " |", "|---|" + "---:|" * len(horizons)]
    rows = [(LABELS[name], entry["rollout_vrmse"]) for name, entry in runs.items()]
    if persistence:
        rows.append((REFERENCE_LABEL, persistence["rollout_vrmse"]))
    for label, rollout in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(rollout.get(str(h), math.nan), 3) for h in horizons) + " |")
    lines.append("")

    lines += ["## Compute", "",
              "FLOPs are torch's FlopCounterMode count of one optimisation step (forward + backward) times the "
              "steps run; evaluation is not counted. A frozen tokeniser's pretraining is paid once and can serve "
              "many downstream runs; here it is charged in full to each run.", "",
              "| configuration | pretraining steps | pretraining TFLOPs | dynamics steps | dynamics TFLOPs | "
              "total TFLOPs | final valid VRMSE |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, entry in payload["compute"].items():
        lines.append(f"| {LABELS[name]} | {entry['pretraining_steps']} | {_flops(entry['pretraining_flops'])} | "
                     f"{entry['dynamics_steps']} | {_flops(entry['dynamics_flops'])} | {_flops(entry['total_flops'])} | "
                     f"{_fmt(runs[name]['vrmse'][-1])} |")
    lines.append("")

    sweep = payload["lr_sweep"]
    lines += ["## Scratch learning-rate sweep", "",
              f"Selected by {sweep['criterion']}; the pretrained runs use the preset's learning rate "
              f"{settings['learning_rate']:g} without a sweep.", "",
              "| learning rate | " + " | ".join(f"step {s}" for s in steps) + " | selected |",
              "|---|" + "---:|" * (len(steps) + 1)]
    for lr, entry in sweep["runs"].items():
        mark = "✓" if float(lr) == sweep["selected"] else ""
        lines.append(f"| {lr} | " + " | ".join(_fmt(v) for v in entry["vrmse"]) + f" | {mark} |")
    lines.append("")

    if payload["tokenisers"]:
        lines += ["## Tokeniser pretraining", "",
                  "Reconstruction VRMSE on the tokeniser's own valid split, and on the downstream valid split (the "
                  "floor under a frozen tokeniser's dynamics error; as `physfm select-tokeniser` scores it: fields it never "
                  "learnt and spatially constant frames, such as shear_flow's initial pressure, left out).", "",
                  "| tokeniser | data | steps | own valid | downstream valid (fields) |", "|---|---|---:|---:|---:|"]
        for key, entry in payload["tokenisers"].items():
            systems = ", ".join(f"`{d['system']}`" for d in entry["data"])
            downstream = entry.get("downstream_reconstruction") or {}
            fields = ", ".join(downstream.get("fields", []))
            lines.append(f"| {key.replace('_', '-')} | {systems} | {entry['steps']} | "
                         f"{_fmt(entry['reconstruction_vrmse'].get('vrmse', math.nan), 3)} | "
                         f"{_fmt(downstream.get('vrmse', math.nan), 3)} ({fields}) |")
        lines.append("")
    lines += ["Figures: `learning_curves.png`, `rollout_horizons.png`, `compute.png`, `rollout_example.png`.", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- figures
def plot_learning_curves(payload: dict[str, Any], path: Path) -> Path:
    """Figure 2: VRMSE and the three spectral bins against step, one line per configuration."""
    plt = pyplot()
    titles = {"vrmse": "next-frame VRMSE", "spectral_mse_low": "spectral MSE, low k",
              "spectral_mse_mid": "spectral MSE, mid k", "spectral_mse_high": "spectral MSE, high k"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), constrained_layout=True)
    persistence = _persistence(payload)
    for ax, metric in zip(axes.flat, METRICS, strict=True):
        for name, entry in payload["runs"].items():
            color, style = STYLES[name]
            ax.plot(entry["step"], entry[metric], style, color=color, marker="o", markersize=3, label=LABELS[name])
        if persistence:
            ax.axhline(persistence[metric], **PERSISTENCE_STYLE)
        ax.set_yscale("log")
        ax.set_xlabel("dynamics step")
        ax.set_title(titles[metric])
        ax.axvline(payload["summary"]["final_step"], color="0.85", lw=0.8, zorder=0)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"physfm experiment `{payload['preset']}`: valid error during dynamics training")
    return save_figure(fig, path)


def plot_rollout_horizons(payload: dict[str, Any], path: Path) -> Path:
    """Figure 3: rollout VRMSE against horizon, one line per configuration."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for name, entry in payload["runs"].items():
        horizons = sorted(int(h) for h in entry["rollout_vrmse"])
        color, style = STYLES[name]
        ax.plot(horizons, [entry["rollout_vrmse"][str(h)] for h in horizons], style, color=color, marker="o",
                markersize=3, label=LABELS[name])
    persistence = _persistence(payload)
    if persistence:
        horizons = sorted(int(h) for h in persistence["rollout_vrmse"])
        ax.plot(horizons, [persistence["rollout_vrmse"][str(h)] for h in horizons], **PERSISTENCE_STYLE)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rollout horizon (frames)")
    ax.set_ylabel("valid VRMSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"autoregressive rollout, preset `{payload['preset']}`")
    return save_figure(fig, path)


def plot_compute(payload: dict[str, Any], path: Path) -> Path:
    """VRMSE against total FLOPs: pretrained curves start at their pretraining cost."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for name, entry in payload["runs"].items():
        cost = payload["compute"][name]
        per_step = cost["dynamics_flops_per_step"]
        x = [(cost["pretraining_flops"] + step * per_step) / 1e12 for step in entry["step"]]
        color, style = STYLES[name]
        ax.plot(x, entry["vrmse"], style, color=color, marker="o", markersize=3, label=LABELS[name])
    persistence = _persistence(payload)
    if persistence:
        ax.axhline(persistence["vrmse"], **PERSISTENCE_STYLE)
    ax.set_yscale("log")
    ax.set_xlabel("total training TFLOPs (tokeniser pretraining included)")
    ax.set_ylabel("valid next-frame VRMSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("does pretraining pay for itself?")
    return save_figure(fig, path)


def plot_rollout_example(payload: dict[str, Any], data_dir: str, path: Path,
                         names: tuple[str, ...] = ("scratch", "in_domain_finetuned"), n_columns: int = 5,
                         field: int = 0) -> Path:
    """Truth, then prediction and |error| of each configuration in ``names``, on one valid trajectory."""
    import torch

    from physfm.data import WellWindowDataset
    from physfm.data.dataset import n_windows
    from physfm.models import PhysfmDynamicsModel

    names = tuple(n for n in names if n in payload["runs"])
    models = {n: PhysfmDynamicsModel.from_pretrained(payload["runs"][n]["model_dir"], dtype=torch.float32).eval()
              for n in names}
    n_in = next(iter(models.values())).config.n_steps_input
    horizon = max(int(h) for n in names for h in payload["runs"][n]["rollout_vrmse"])
    dataset = WellWindowDataset(data_dir, split="valid", n_steps_input=n_in, n_steps_output=horizon)
    header = dataset.headers[0]
    item = dataset[n_windows(header.n_steps, n_in, horizon, 1) - 1]  # as rollout_metrics: the latest start
    fields, periodic = list(dataset.field_names), list(dataset.periodic)
    truth = dataset.normalizer.denormalize(item["output_fields"])
    predictions = {}
    with torch.no_grad():
        for name, model in models.items():
            out = model.rollout(item["input_fields"][None], n_steps=horizon, field_names=fields, periodic=periodic)
            predictions[LABELS[name]] = dataset.normalizer.denormalize(out[0])
    return plot_rollout(truth, predictions, path, field_names=fields, field=field, n_columns=n_columns,
                        title=f"valid rollout of `{fields[field]}` (preset `{payload['preset']}`)")


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
