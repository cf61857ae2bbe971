"""How well a tokeniser reconstructs data: the one score behind every number physfm reports for it.

Stage 1's valid metrics (training logs and ``metrics.json``), ``physfm evaluate``, ``physfm select-tokeniser``, the
model cards and the experiment all score reconstruction here, so one checkpoint has one reconstruction number.

The score is taken on normalised fields (z-scored with the dataset's statistics: what the model reads and is
trained on), at each compression ratio, on the same clips for every ratio:

- **VRMSE**, as the_well defines it per sample, frame and field (``sqrt(MSE / (var(target) + 1e-7))`` over space),
  averaged over the entries whose target is not spatially constant. A constant frame (a uniform medium's density,
  a velocity at rest, shear_flow's initial pressure) has no variance to scale by: its VRMSE is the error over
  ``sqrt(1e-7)``, and one such frame would swamp the mean with an error nobody can see. "Constant" is judged in
  normalised space, where it has a scale: a frame variance below 1e-6 of the dataset's. VRMSE itself is unit-free
  (physical units give the same number).
- **Spectral NMSE** in the low / mid / high wavenumber bins, pooled: the residual's power in a bin over the
  target's power in it, each summed over samples, frames and fields (a mean of per-entry ratios would again
  divide by near-zero powers).
- **MSE**, the quantity stage 1 minimises (``loss`` in the training logs).

:func:`score_reconstruction` scores open datasets (also split over processes, as training does);
:func:`evaluate_reconstruction` scores a dataset folder with the clip length and ratios a tokeniser serves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .checkpoints import load_pretrained
from .metrics import binned_spectral_mse, vrmse

SPECTRAL_BINS = ("low", "mid", "high")
# Below this frame variance (of a normalised field) a frame counts as spatially constant: it has no VRMSE.
CONSTANT_VARIANCE = 1e-6


@dataclass
class ReconstructionResult:
    """The reconstruction score of one tokeniser at one compression ratio."""

    spatial_compression: int
    temporal_compression: int
    vrmse: float  # mean over samples, frames and fields (spatially constant frames left out)
    vrmse_per_field: dict[str, float]  # fields constant in every sampled frame are absent
    spectral_nmse_low: float
    spectral_nmse_mid: float
    spectral_nmse_high: float
    n_samples: int
    dataset: str = ""  # the dataset's name (its HDF5 ``dataset_name``; several joined by "+")
    n_frames: int = 0  # frames per evaluated clip
    dt_stride: int = 1  # stored frames between the frames of a clip
    mse: float = math.nan  # normalised-space MSE, as trained


class ReconstructionScore:
    """Sums, over batches and processes, of what the score needs; :meth:`result` turns them into numbers."""

    def __init__(self, field_names: Sequence[str]):
        self.field_names = list(field_names)
        n = len(self.field_names)
        # vrmse sum and count per field, residual and target power per bin, squared error and its count, samples.
        self.sums = {"vrmse": torch.zeros(n, dtype=torch.float64), "defined": torch.zeros(n, dtype=torch.float64),
                     "residual_power": torch.zeros(3, dtype=torch.float64),
                     "target_power": torch.zeros(3, dtype=torch.float64),
                     "squared_error": torch.zeros(1, dtype=torch.float64), "values": torch.zeros(1, dtype=torch.float64),
                     "samples": torch.zeros(1, dtype=torch.float64)}

    @torch.no_grad()
    def add(self, reconstruction: torch.Tensor, target: torch.Tensor, field_names: Sequence[str],
            n_spatial_dims: int) -> None:
        """Add a batch: normalised ``[B, T, *space, C]`` tensors whose ``C`` fields are ``field_names``."""
        reconstruction, target = reconstruction.float().cpu(), target.float().cpu()
        index = torch.tensor([self.field_names.index(name) for name in field_names])
        error = vrmse(reconstruction, target, n_spatial_dims=n_spatial_dims)  # [B, T, C]
        defined = target.flatten(2, -2).var(dim=2) > CONSTANT_VARIANCE  # [B, T, C]
        self.sums["vrmse"].index_add_(0, index, torch.where(defined, error, 0.0).sum(dim=(0, 1)).double())
        self.sums["defined"].index_add_(0, index, defined.sum(dim=(0, 1)).double())
        residual = binned_spectral_mse(reconstruction, target, n_spatial_dims=n_spatial_dims)
        power = binned_spectral_mse(torch.zeros_like(target), target, n_spatial_dims=n_spatial_dims)
        self.sums["residual_power"] += torch.stack([residual[f"mse_{b}"].sum() for b in SPECTRAL_BINS]).double()
        self.sums["target_power"] += torch.stack([power[f"mse_{b}"].sum() for b in SPECTRAL_BINS]).double()
        self.sums["squared_error"] += ((reconstruction - target) ** 2).sum().double()
        self.sums["values"] += target.numel()
        self.sums["samples"] += target.shape[0]

    def reduce(self, accelerator=None) -> None:
        """Sum the scores of every process (each scored its own share of the windows)."""
        if accelerator is None or accelerator.num_processes == 1:
            return
        packed = torch.cat(list(self.sums.values()))
        packed = accelerator.reduce(packed.to(accelerator.device), reduction="sum").cpu()
        for key, part in zip(self.sums, packed.split([v.numel() for v in self.sums.values()]), strict=True):
            self.sums[key] = part

    def result(self, spatial_compression: int, temporal_compression: int, dataset: str = "", n_frames: int = 0,
               dt_stride: int = 1) -> ReconstructionResult:
        sums = self.sums
        if not sums["defined"].any():
            raise ValueError(f"data {dataset!r}: every sampled frame is spatially constant; reconstruction error "
                             "relative to the variance is undefined.")
        spectrum = sums["residual_power"] / (sums["target_power"] + 1e-12)
        return ReconstructionResult(
            spatial_compression=spatial_compression,
            temporal_compression=temporal_compression,
            vrmse=float(sums["vrmse"].sum() / sums["defined"].sum()),
            vrmse_per_field={f: float(sums["vrmse"][c] / sums["defined"][c])
                             for c, f in enumerate(self.field_names) if sums["defined"][c] > 0},
            **{f"spectral_nmse_{b}": float(spectrum[i]) for i, b in enumerate(SPECTRAL_BINS)},
            n_samples=int(sums["samples"]),
            dataset=dataset,
            n_frames=n_frames,
            dt_stride=dt_stride,
            mse=float(sums["squared_error"] / sums["values"].clamp_min(1)),
        )


# --------------------------------------------------------------------------------------------------
# Which windows are scored
# --------------------------------------------------------------------------------------------------


def evaluation_windows(n: int, max_samples: int, accelerator=None) -> list[int]:
    """Up to ``max_samples`` window indices spread evenly over ``n`` (all when ``max_samples <= 0``), and of those
    the strided share of this process when ``accelerator`` runs several."""
    if max_samples <= 0 or n <= max_samples:
        indices = list(range(n))
    else:
        step = (n - 1) / max(max_samples - 1, 1)
        indices = [round(i * step) for i in range(max_samples)]
    return shard(indices, accelerator)


def shard(indices: list[int], accelerator=None) -> list[int]:
    """This process's strided share of ``indices`` (all of them without ``accelerator``)."""
    if accelerator is None:
        return indices
    return indices[accelerator.process_index :: accelerator.num_processes]


def batched(indices: list[int], batch_size: int):
    """``indices`` in consecutive batches of ``batch_size`` (the last may be shorter)."""
    for start in range(0, len(indices), batch_size):
        yield indices[start:start + batch_size]


@torch.no_grad()
def score_reconstruction(tokeniser, datasets: Sequence, ratios: Sequence[tuple[int, int]], *,
                         field_names: Sequence[str] | None = None, max_samples: int = 64, batch_size: int = 8,
                         accelerator=None, device: torch.device | str = "cpu") -> list[ReconstructionResult]:
    """The score of ``tokeniser`` at each ``(spatial, temporal)`` ratio on the clips (``input_fields``) of
    ``datasets``: normalising :class:`~physfm.data.WellWindowDataset` objects (a mixture may have several).

    ``field_names`` restricts which of a dataset's fields are reconstructed (default: all). Every ratio sees the
    same windows (:func:`evaluation_windows`); with ``accelerator`` each process scores its share and the sums are
    reduced, so the result is the same on any number of processes."""
    names = list(field_names) if field_names is not None else list(
        dict.fromkeys(name for dataset in datasets for name in dataset.field_names))
    device = accelerator.device if accelerator is not None else torch.device(device)
    scores = {(int(s), int(t)): ReconstructionScore(names) for s, t in ratios}
    was_training = tokeniser.training
    tokeniser.eval()
    try:
        for dataset in datasets:
            fields = [name for name in dataset.field_names if name in names]
            channels = [dataset.field_names.index(name) for name in fields]
            for chunk in batched(evaluation_windows(len(dataset), max_samples, accelerator), batch_size):
                clip = torch.stack([dataset[i]["input_fields"] for i in chunk])[..., channels].to(device)
                for (s, t), score in scores.items():
                    out = tokeniser(clip, spatial_compression=s, temporal_compression=t, field_names=fields,
                                    periodic=list(dataset.periodic), return_loss=False)
                    score.add(out.reconstruction, clip, fields, dataset.n_spatial_dims)
    finally:
        tokeniser.train(was_training)
    name = "+".join(dict.fromkeys(dataset.dataset_name for dataset in datasets))
    results = []
    for (s, t), score in scores.items():
        score.reduce(accelerator)
        results.append(score.result(s, t, dataset=name, n_frames=datasets[0].n_steps_input,
                                    dt_stride=datasets[0].dt_stride))
    return results


def reconstruction_metrics(results: Sequence[ReconstructionResult]) -> dict[str, float]:
    """The flat table training logs and ``physfm evaluate`` print: ``vrmse@s{S}t{T}`` per ratio, and the mean over
    ratios of ``vrmse``, ``spectral_nmse_{low,mid,high}`` and ``loss`` (the normalised MSE)."""
    metrics = {f"vrmse@s{r.spatial_compression}t{r.temporal_compression}": r.vrmse for r in results}
    means = {"vrmse": "vrmse", **{f"spectral_nmse_{b}": f"spectral_nmse_{b}" for b in SPECTRAL_BINS}, "loss": "mse"}
    metrics.update({key: float(sum(getattr(r, field) for r in results) / len(results)) for key, field in means.items()})
    return metrics


# --------------------------------------------------------------------------------------------------
# A dataset folder, at the ratios a tokeniser serves
# --------------------------------------------------------------------------------------------------


def tokeniser_of(model: Any, revision: str | None = None):
    """The tokeniser of ``model``: a tokeniser, a dynamics model (its tokeniser), or a checkpoint folder or Hub id
    of either (loaded with :func:`physfm.checkpoints.load_pretrained`)."""
    if isinstance(model, (str, os.PathLike)):
        model = load_pretrained(model, revision=revision)
    tokeniser = getattr(model, "tokeniser", model)
    if not all(hasattr(tokeniser, name) for name in ("encode", "decode", "config")) or not hasattr(
        tokeniser.config, "field_names"
    ):
        raise ValueError(
            f"model: got {type(model).__name__}; expected a physfm tokeniser (or a model wrapping one)."
        )
    return tokeniser


def dims_mismatch(config, n_spatial_dims: int) -> str | None:
    """Why a tokeniser cannot encode data of ``n_spatial_dims`` (a 2-D tokeniser on 3-D data), or None."""
    if config.n_spatial_dims == n_spatial_dims:
        return None
    return (f"the data has {n_spatial_dims}-D fields but the tokeniser is {config.n_spatial_dims}-D "
            f"(n_spatial_dims={config.n_spatial_dims}); choose a {n_spatial_dims}-D tokeniser")


def map_fields(data_fields: Sequence[str], vocabulary: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the data's fields into those the vocabulary holds (exact names) and the rest, in data order."""
    vocab = set(vocabulary)
    mapped = [f for f in data_fields if f in vocab]
    return mapped, [f for f in data_fields if f not in vocab]


def trained_vocabulary(config) -> list[str]:
    """The vocabulary less the fields whose rows were never trained (added for a downstream system): a
    tokeniser cannot be judged on a field it has not learnt."""
    trained = getattr(config, "trained_field_names", None)
    return [f for f in config.field_names if trained is None or f in trained]


def _window_length(temporal_compressions: Sequence[int], n_steps: int, dt_stride: int = 1) -> tuple[int, list[int]]:
    """The clip ``1 + 2 * lcm(t)`` frames long, ``dt_stride`` apart, and the temporal ratios it serves.

    Two latent frames per clip at the largest ratio: with one, ``t`` would barely compress (the first frame is
    always its own latent), and every ratio would look alike. One clip length for every ratio keeps the
    comparison on identical frames. Ratios whose clip does not fit in the trajectories are dropped (largest
    first).
    """
    ratios = sorted(set(int(t) for t in temporal_compressions))
    while ratios:
        n_frames = 1 + 2 * math.lcm(*ratios)
        if 1 + (n_frames - 1) * dt_stride <= n_steps:
            return n_frames, ratios
        ratios.pop()
    raise ValueError(
        f"data: trajectories have {n_steps} time steps; at least {1 + 2 * dt_stride} are needed to evaluate "
        f"reconstruction on 3-frame clips at dt_stride={dt_stride}."
    )


def _fields_to_score(probe, config, field_names: Sequence[str] | None, dataset_dir) -> list[str]:
    """The data's fields the tokeniser has learnt (or the user's choice of them), checked to be some."""
    mapped, _ = map_fields(probe.field_names, trained_vocabulary(config))
    if field_names is not None:
        missing = [f for f in field_names if f not in mapped]
        if missing:
            raise ValueError(
                f"field_names: {missing} are not both in the data ({probe.field_names}) and the tokeniser "
                f"vocabulary ({list(config.field_names)})."
            )
        mapped = list(field_names)
    if not mapped:
        raise ValueError(
            f"data: none of the fields {probe.field_names} of {str(dataset_dir)!r} is in the tokeniser vocabulary "
            f"{list(config.field_names)}; add them with tokeniser.add_fields([...]) and finetune."
        )
    return mapped


def _ratios_and_clip(config, probe, compressions: Sequence[tuple[int, int]] | None, dt_stride: int,
                     dataset_dir) -> tuple[list[tuple[int, int]], int]:
    """The ratios to score (the user's, checked, or every served one that divides the grid and whose clip fits)
    and the clip length they share."""
    n_steps = min(h.n_steps for h in probe.headers)
    if compressions is None:
        n_frames, ratios_t = _window_length(config.temporal_compressions, n_steps, dt_stride)
        compressions = [(s, t) for s in config.spatial_compressions for t in ratios_t
                        if all(n % s == 0 for n in probe.spatial_shape)]
    else:
        compressions = [(int(s), int(t)) for s, t in compressions]
        for s, t in compressions:
            if s not in config.spatial_compressions or t not in config.temporal_compressions:
                raise ValueError(
                    f"compressions: ({s}, {t}) is not served by this tokeniser; expected spatial in "
                    f"{list(config.spatial_compressions)} and temporal in {list(config.temporal_compressions)}."
                )
        asked = sorted({t for _, t in compressions})
        n_frames, served = _window_length(asked, n_steps, dt_stride)
        if len(served) < len(asked):
            raise ValueError(
                f"compressions: temporal ratios {asked} need clips of 1 + 2*lcm frames; the trajectories of "
                f"{str(dataset_dir)!r} are too short (serve {served})."
            )
    if not compressions:
        raise ValueError(
            f"data: no compression ratio of the tokeniser (spatial {list(config.spatial_compressions)}) divides the "
            f"grid {tuple(probe.spatial_shape)}; resample the data to a multiple of a supported ratio."
        )
    return compressions, n_frames


def evaluate_reconstruction(
    model: Any,
    dataset_dir: str | os.PathLike,
    split: str = "valid",
    *,
    compressions: Sequence[tuple[int, int]] | None = None,
    max_samples: int = 16,
    batch_size: int = 4,
    field_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    dt_stride: int = 1,
    revision: str | None = None,
) -> list[ReconstructionResult]:
    """The reconstruction score of ``model`` on a Well-format dataset, per compression ratio.

    Args:
        model: A physfm tokeniser, a dynamics model (whose tokeniser is scored), or a checkpoint folder or Hub id
            of either (``revision`` picks the Hub revision).
        dataset_dir: A Well-format dataset folder (``data/<split>/*.hdf5`` + ``stats.yaml``).
        split: The split to sample windows from.
        compressions: ``(spatial, temporal)`` pairs; default every pair the tokeniser supports whose
            spatial ratio divides the grid and whose clip fits in the trajectories.
        max_samples: Windows scored, spread evenly over the split (deterministic).
        batch_size: Windows per forward pass.
        field_names: The data fields to score; default all that the tokeniser has learnt.
        dt_stride: Stored frames between the frames of a clip; use the stride the tokeniser will be used at.

    Every ratio is scored on the same clips of ``1 + 2 * lcm(t)`` frames (at least ``1 + 2t`` for each ``t``),
    with the data's own boundary conditions, as the module docstring defines.
    """
    from .data import WellWindowDataset

    tokeniser = tokeniser_of(model, revision)
    config = tokeniser.config
    if max_samples < 1 or batch_size < 1:
        raise ValueError(f"max_samples / batch_size: got {max_samples} / {batch_size}; expected positive integers.")
    probe = WellWindowDataset(dataset_dir, split=split, n_steps_input=1, n_steps_output=0, normalize=False)
    mismatch = dims_mismatch(config, probe.n_spatial_dims)
    if mismatch:
        raise ValueError(f"data {str(dataset_dir)!r}: {mismatch}.")
    fields = _fields_to_score(probe, config, field_names, dataset_dir)
    compressions, n_frames = _ratios_and_clip(config, probe, compressions, dt_stride, dataset_dir)
    dataset = WellWindowDataset(dataset_dir, split=split, n_steps_input=n_frames, n_steps_output=0,
                                dt_stride=dt_stride, normalize=True)
    return score_reconstruction(tokeniser, [dataset], compressions, field_names=fields, max_samples=max_samples,
                                batch_size=batch_size, device=device)


__all__ = ["CONSTANT_VARIANCE", "ReconstructionResult", "ReconstructionScore", "evaluate_reconstruction",
           "evaluation_windows", "map_fields", "reconstruction_metrics", "score_reconstruction", "trained_vocabulary"]
