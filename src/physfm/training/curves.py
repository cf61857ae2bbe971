"""Learning curves: ``learning_curve.csv`` and ``learning_curve.png`` in the output directory."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .._io import atomic_write_text, pyplot, save_figure

CSV_NAME = "learning_curve.csv"
PNG_NAME = "learning_curve.png"


def write_learning_curve(output_dir: str | os.PathLike, train_log: list[dict], eval_log: list[dict],
                         plot: bool = True) -> None:
    """One CSV row per logged step (train loss, learning rate, and eval metrics where evaluated),
    and (with ``plot``) a two-panel PNG: training loss and valid metrics against step."""
    output_dir = Path(output_dir)
    rows: dict[int, dict] = {}
    for entry in train_log:
        rows.setdefault(entry["step"], {"step": entry["step"]}).update(entry)
    for entry in eval_log:
        rows.setdefault(entry["step"], {"step": entry["step"]}).update(
            {f"eval_{k}": v for k, v in entry.items() if k != "step" and not isinstance(v, dict)}
        )
    columns = ["step"] + sorted({key for row in rows.values() for key in row} - {"step"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for step in sorted(rows):
        writer.writerow(rows[step])
    atomic_write_text(output_dir / CSV_NAME, buffer.getvalue())
    if plot:
        _plot(output_dir / PNG_NAME, train_log, eval_log)


def _plot(path: Path, train_log: list[dict], eval_log: list[dict]) -> None:
    fig, (ax_loss, ax_eval) = pyplot().subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    if train_log:
        ax_loss.plot([e["step"] for e in train_log], [e["loss"] for e in train_log], lw=1)
    ax_loss.set(xlabel="step", ylabel="training loss (normalised)", yscale="log", title="train")
    if eval_log:
        steps = [e["step"] for e in eval_log]
        # Dynamics logs spectral MSE in physical units; the tokeniser's reconstruction score, spectral NMSE.
        spectral = "spectral_mse" if "spectral_mse_low" in eval_log[0] else "spectral_nmse"
        for key in ("vrmse", *(f"{spectral}_{band}" for band in ("low", "mid", "high"))):
            if key in eval_log[0]:
                ax_eval.plot(steps, [e[key] for e in eval_log], marker="o", ms=3, label=key)
        ax_eval.legend(fontsize=7)
    ax_eval.set(xlabel="step", yscale="log", title="valid")
    save_figure(fig, path)
