"""Validation metrics for both training stages and ``physfm evaluate``.

Each process evaluates a strided share of the windows (:func:`physfm.reconstruction.evaluation_windows`) and the
sums are reduced across processes.

- Dynamics: next-frame VRMSE and the low/mid/high binned spectral errors, and rollout VRMSE by horizon, in
  physical units (after ``normalizer.denormalize``), so numbers are comparable with The Well's benchmarks.
- Tokeniser: the reconstruction score of :mod:`physfm.reconstruction` at every compression ratio, the same
  numbers ``physfm select-tokeniser`` and the model cards report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .._io import pyplot, save_figure
from ..metrics import binned_spectral_mse, vrmse
from ..reconstruction import batched, evaluation_windows, reconstruction_metrics, score_reconstruction, shard

BINS = ("low", "mid", "high")


def _stack(dataset, indices: Sequence[int], key: str) -> torch.Tensor:
    return torch.stack([dataset[i][key] for i in indices])


def _sample_metrics(pred: torch.Tensor, target: torch.Tensor, n_spatial_dims: int) -> dict[str, torch.Tensor]:
    """Per-sample metrics ``[B]`` of ``[B, T, *space, C]`` tensors, averaged over time and fields."""
    out = {"vrmse": vrmse(pred, target, n_spatial_dims=n_spatial_dims).mean(dim=(1, 2))}
    spectral = binned_spectral_mse(pred, target, n_spatial_dims=n_spatial_dims)
    for name in BINS:
        out[f"spectral_mse_{name}"] = spectral[f"mse_{name}"].mean(dim=(1, 2))
        out[f"spectral_nmse_{name}"] = spectral[f"nmse_{name}"].mean(dim=(1, 2))
    return out


def _reduce_means(sums: dict[str, torch.Tensor], count: torch.Tensor, accelerator=None) -> dict[str, float]:
    keys = sorted(sums)
    packed = torch.stack([sums[k].double() for k in keys] + [count.double()])
    if accelerator is not None and accelerator.num_processes > 1:
        packed = accelerator.reduce(packed.to(accelerator.device), reduction="sum").cpu()
    total = max(float(packed[-1]), 1.0)
    return {k: float(packed[i]) / total for i, k in enumerate(keys)}


@torch.no_grad()
def evaluate_dynamics(model, dataset, batch_size: int = 8, max_samples: int = 64, accelerator=None,
                      device: torch.device | str = "cpu") -> dict[str, float]:
    """Next-frame metrics of a :class:`PhysfmDynamicsModel` on ``dataset`` (a normalising
    :class:`WellWindowDataset`), in physical units: ``vrmse``, ``spectral_mse_{low,mid,high}``,
    ``spectral_nmse_{...}``, and ``loss`` (MSE in normalised space, as trained)."""
    was_training = model.training
    model.eval()
    device = accelerator.device if accelerator is not None else torch.device(device)
    n_space = dataset.n_spatial_dims
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros(())
    try:
        for chunk in batched(evaluation_windows(len(dataset), max_samples, accelerator), batch_size):
            inputs = _stack(dataset, chunk, "input_fields").to(device)
            targets = _stack(dataset, chunk, "output_fields").to(device)
            out = model(input_fields=inputs, output_fields=targets, field_names=dataset.field_names,
                        periodic=list(dataset.periodic))
            pred = out.prediction.float()
            targets = targets[:, : pred.shape[1]]
            metrics = _sample_metrics(dataset.normalizer.denormalize(pred).cpu(),
                                      dataset.normalizer.denormalize(targets).cpu(), n_space)
            metrics["loss"] = ((pred - targets) ** 2).flatten(1).mean(1).cpu()
            for key, value in metrics.items():
                sums[key] = sums.get(key, torch.zeros((), dtype=torch.float64)) + value.double().sum()
            count += len(chunk)
    finally:
        model.train(was_training)
    return _reduce_means(sums, count, accelerator)


def max_rollout_steps(dataset) -> int:
    """Frames available after the first ``n_steps_input`` in the shortest trajectory of ``dataset``."""
    shortest = min(header.n_steps for header in dataset.headers)
    return (shortest - 1) // dataset.dt_stride + 1 - dataset.n_steps_input


@torch.no_grad()
def rollout_metrics(model, data_dir: str | os.PathLike, horizons: Sequence[int], split: str = "valid",
                    max_samples: int = 8, dt_stride: int = 1, batch_size: int = 4, accelerator=None,
                    device: torch.device | str = "cpu", return_example: bool = False):
    """Autoregressive rollout VRMSE (physical units) at each horizon (in frames) on ``split``.

    One window per trajectory, the latest that fits the longest horizon. Horizons longer than the trajectories
    allow are dropped (with the longest available one kept). Returns ``{horizon: vrmse}``, and with
    ``return_example`` also ``(truth, prediction, field_names)`` of the first sample (physical units).
    """
    from ..data import WellWindowDataset
    from ..data.dataset import n_windows

    n_in = model.config.n_steps_input
    probe = WellWindowDataset(data_dir, split=split, n_steps_input=n_in, n_steps_output=0, dt_stride=dt_stride)
    available = max_rollout_steps(probe)
    if available < 1:
        raise ValueError(
            f"{data_dir}: {split} trajectories are too short for a rollout after n_steps_input={n_in} frames"
        )
    kept = sorted({h for h in horizons if h <= available}) or [available]
    longest = kept[-1]
    dataset = WellWindowDataset(data_dir, split=split, n_steps_input=n_in, n_steps_output=longest,
                                dt_stride=dt_stride)
    # The last window of each trajectory that fits the longest horizon (windows are ordered file, trajectory,
    # time): starting late skips initial transients (shear_flow's pressure starts at zero), so horizon 1 is
    # not scored on a frame unlike any other.
    starts, base = [], 0
    for header in dataset.headers:
        per_traj = n_windows(header.n_steps, n_in, longest, dt_stride)
        starts += [base + traj * per_traj + per_traj - 1 for traj in range(header.n_trajectories)]
        base += per_traj * header.n_trajectories
    starts = starts[:max_samples] if max_samples > 0 else starts
    device = accelerator.device if accelerator is not None else torch.device(device)
    sums = {h: torch.zeros((), dtype=torch.float64) for h in kept}
    count = torch.zeros(())
    example = None
    for chunk in batched(shard(starts, accelerator), batch_size):
        inputs = _stack(dataset, chunk, "input_fields").to(device)
        truth = _stack(dataset, chunk, "output_fields")
        pred = model.rollout(inputs, n_steps=longest, field_names=dataset.field_names,
                             periodic=list(dataset.periodic)).float().cpu()
        truth, pred = dataset.normalizer.denormalize(truth), dataset.normalizer.denormalize(pred)
        per_step = vrmse(pred, truth, n_spatial_dims=dataset.n_spatial_dims).mean(dim=-1)  # [B, T]
        for h in kept:
            sums[h] += per_step[:, h - 1].double().sum()
        count += len(chunk)
        if example is None:
            example = (truth[0], pred[0], list(dataset.field_names))
    reduced = _reduce_means({str(h): v for h, v in sums.items()}, count, accelerator)
    result = {h: reduced[str(h)] for h in kept}
    return (result, example) if return_example else result


def evaluate_tokeniser(model, datasets: Sequence, ratios: Sequence[tuple[int, int]], batch_size: int = 8,
                       max_samples: int = 64, accelerator=None,
                       device: torch.device | str = "cpu") -> dict[str, float]:
    """Stage 1's valid metrics: :func:`~physfm.reconstruction.reconstruction_metrics` of the reconstruction score
    at each ``(spatial, temporal)`` ratio (``vrmse@s{S}t{T}``, their mean ``vrmse``, ``spectral_nmse_*``, ``loss``)."""
    return reconstruction_metrics(score_reconstruction(model, datasets, ratios, max_samples=max_samples,
                                                       batch_size=batch_size, accelerator=accelerator, device=device))


class Persistence(torch.nn.Module):
    """The trivial forecaster: every future frame equals the last input frame.

    Slowly evolving systems make it a strong reference (on 32 x 64 shear flow it scores a next-frame VRMSE of 0.10
    at consecutive frames, 0.27 at the tiny preset's stride of 4), so a learned model is only useful once it beats it. It has the interface
    :func:`evaluate_dynamics` and :func:`rollout_metrics` use: ``config.n_steps_input``, ``forward`` and
    ``rollout``.
    """

    def __init__(self, n_steps_input: int = 1):
        super().__init__()
        self.config = SimpleNamespace(n_steps_input=n_steps_input)

    def forward(self, input_fields: torch.Tensor, output_fields: torch.Tensor | None = None,
                field_names: Sequence[str] | None = None, periodic: Sequence[bool] | None = None) -> SimpleNamespace:
        return SimpleNamespace(prediction=input_fields[:, -1:])

    def rollout(self, fields: torch.Tensor, n_steps: int, field_names: Sequence[str] | None = None,
                periodic: Sequence[bool] | None = None) -> torch.Tensor:
        return fields[:, -1:].expand(-1, n_steps, *fields.shape[2:])


class LinearExtrapolation(Persistence):
    """The next trivial forecaster: the last change between input frames continues, ``x[T] + h (x[T] - x[T-1])``.

    It beats persistence on smooth, slowly accelerating motion and loses to it on noisy data; a learned model
    should beat both.
    """

    def __init__(self, n_steps_input: int = 2):
        if n_steps_input < 2:
            raise ValueError(f"n_steps_input: got {n_steps_input}, linear extrapolation needs at least 2 input frames")
        super().__init__(n_steps_input)

    def forward(self, input_fields: torch.Tensor, output_fields: torch.Tensor | None = None,
                field_names: Sequence[str] | None = None, periodic: Sequence[bool] | None = None) -> SimpleNamespace:
        return SimpleNamespace(prediction=self.rollout(input_fields, 1))

    def rollout(self, fields: torch.Tensor, n_steps: int, field_names: Sequence[str] | None = None,
                periodic: Sequence[bool] | None = None) -> torch.Tensor:
        last, change = fields[:, -1:], fields[:, -1:] - fields[:, -2:-1]
        steps = torch.arange(1, n_steps + 1, dtype=fields.dtype, device=fields.device)
        return last + steps.view(1, -1, *[1] * (fields.ndim - 2)) * change


REFERENCE_FORECASTERS = {"persistence": Persistence, "linear_extrapolation": LinearExtrapolation}


def reference_metrics(data_dir: str | os.PathLike, n_steps_input: int, horizons: Sequence[int],
                      split: str = "valid", max_samples: int = 64, max_rollout_samples: int = 8,
                      dt_stride: int = 1, forecaster: str = "persistence") -> dict[str, object]:
    """A trivial ``forecaster`` (a key of :data:`REFERENCE_FORECASTERS`) scored exactly like a trained model: the
    next-frame metrics of :func:`evaluate_dynamics` plus ``rollout_vrmse`` ``{horizon: vrmse}``."""
    from ..data import WellWindowDataset

    if forecaster not in REFERENCE_FORECASTERS:
        raise ValueError(f"forecaster: got {forecaster!r}, expected one of {', '.join(REFERENCE_FORECASTERS)}")
    model = REFERENCE_FORECASTERS[forecaster](n_steps_input)
    dataset = WellWindowDataset(data_dir, split=split, n_steps_input=n_steps_input, n_steps_output=1,
                                dt_stride=dt_stride)
    metrics: dict[str, object] = dict(evaluate_dynamics(model, dataset, max_samples=max_samples))
    metrics["rollout_vrmse"] = rollout_metrics(model, data_dir, horizons, split=split,
                                               max_samples=max_rollout_samples, dt_stride=dt_stride)
    return metrics


def plot_rollout(truth: torch.Tensor, prediction: torch.Tensor | Mapping[str, torch.Tensor],
                 path: str | os.PathLike, field_names: Sequence[str] | None = None, field: int | str = 0,
                 n_columns: int = 5, title: str | None = None) -> Path:
    """Truth, then prediction and |error| rows, at up to ``n_columns`` rollout steps, for one 2-D field.

    ``truth`` and each prediction: ``[T, H, W, C]`` (physical units). ``prediction`` may be a mapping
    ``{label: tensor}`` to compare several models on one figure; all predictions share the truth's colour
    scale and all errors share one. 3-D data shows the middle slice."""
    if isinstance(field, str):
        field = list(field_names or []).index(field)
    name = field_names[field] if field_names else f"field {field}"
    predictions = dict(prediction) if isinstance(prediction, Mapping) else {"": prediction}

    def select(x: torch.Tensor) -> torch.Tensor:
        x = x[..., field].float()
        while x.ndim > 3:  # [T, H, W, D...] -> middle slice
            x = x[..., x.shape[-1] // 2]
        return x

    truth = select(truth)
    errors = {label: (select(p) - truth).abs() for label, p in predictions.items()}
    rows = [("truth", truth, "viridis")]
    for label, p in predictions.items():
        prefix = f"{label}\n" if label else ""
        rows += [(f"{prefix}prediction", select(p), "viridis"), (f"{prefix}|error|", errors[label], "magma")]
    n_steps = truth.shape[0]
    columns = sorted({int(round(x)) for x in np.linspace(0, n_steps - 1, min(n_columns, n_steps))})
    limits = {"viridis": (float(truth.min()), float(truth.max())),
              "magma": (0.0, max(float(e.max()) for e in errors.values()) or 1.0)}
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.1 * len(columns) + 0.5, 2.1 * len(rows)),
                             squeeze=False, constrained_layout=True)
    for r, (label, data, cmap) in enumerate(rows):
        lo, hi = limits[cmap]
        for c, step in enumerate(columns):
            ax = axes[r][c]
            image = ax.imshow(data[step].T.numpy(), origin="lower", cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step {step + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
        fig.colorbar(image, ax=list(axes[r]), shrink=0.8)
    fig.suptitle(title or f"rollout: {name}")
    return save_figure(fig, path, dpi=100)


def summarise(metrics: dict[str, float], keys: Callable[[str], bool] = lambda k: True) -> str:
    """A two-column text table of ``metrics``."""
    rows = [(k, v) for k, v in metrics.items() if keys(k)]
    width = max((len(k) for k, _ in rows), default=6)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{k.ljust(width)}  {v:.6g}" if isinstance(v, float) and math.isfinite(v) else f"{k.ljust(width)}  {v}"
              for k, v in rows]
    return "\n".join(lines)
