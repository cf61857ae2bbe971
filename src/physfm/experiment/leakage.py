"""Leakage between what the models saw and what they are scored on, measured on the data itself.

Splitting by file or by parameter set is not enough: The Well's shear_flow starts from a deterministic function
of its parameters, so two trajectories with equal parameters are the same flow. The experiment therefore
compares every held-out trajectory (downstream valid and test) with every trajectory a model trained on
(downstream train, and every split of the in-domain pretraining data) over their first frames, and refuses to
report when the closest pair is nearer than :data:`LEAKAGE_THRESHOLD`.

The distance is The Well's VRMSE with the held-out trajectory as the target, taken over the clip's frames and
grid together (a frame that is constant in space, such as shear_flow's initial pressure, would otherwise divide
by zero) and averaged over fields. VRMSE is invariant to each field's scale and offset, so physical units and
normalised ones give the same number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LEAKAGE_THRESHOLD = 0.1
"""Smallest allowed VRMSE between a held-out trajectory's first frames and any trajectory trained on."""


class LeakageError(ValueError):
    """A held-out trajectory is (nearly) a copy of one the models trained on."""


@dataclass(frozen=True)
class Clip:
    """The first frames of one trajectory, in physical units, and where they come from."""

    source: str  # "<dataset dir>:<split>#<trajectory>"
    fields: torch.Tensor  # [time, *space, field]


def first_clips(path: str | os.PathLike, splits: Sequence[str], n_frames: int, dt_stride: int) -> list[Clip]:
    """The first ``n_frames`` frames (at ``dt_stride``) of every trajectory of ``splits`` in a dataset."""
    from physfm.data import WellWindowDataset
    from physfm.data.dataset import n_windows

    clips = []
    for split in splits:
        try:
            dataset = WellWindowDataset(path, split=split, n_steps_input=n_frames, n_steps_output=0,
                                        dt_stride=dt_stride)
        except FileNotFoundError:  # a dataset without that split (pretraining data has no test split)
            continue
        first, number = 0, 0
        for header in dataset.headers:
            per_trajectory = n_windows(header.n_steps, n_frames, 0, dt_stride)
            for traj in range(header.n_trajectories):
                item = dataset[first + traj * per_trajectory]
                clips.append(Clip(f"{path}:{split}#{number}", dataset.normalizer.denormalize(item["input_fields"])))
                number += 1
            first += per_trajectory * header.n_trajectories
    return clips


def clip_distance(target: torch.Tensor, other: torch.Tensor) -> float:
    """VRMSE of ``other`` against ``target`` (both ``[time, *space, field]``) over time and space, field-averaged."""
    if target.shape != other.shape:
        raise ValueError(f"leakage: clips of shapes {tuple(target.shape)} and {tuple(other.shape)} cannot be compared; "
                         "held-out and seen data must share the grid, clip length and fields")
    target, other = target.double().flatten(0, -2), other.double().flatten(0, -2)
    mse = (target - other).pow(2).mean(0)
    return float((mse / (target.var(0) + 1e-7)).sqrt().mean())


def measure_leakage(held_out: Sequence[Clip], seen: Sequence[Clip]) -> dict[str, object]:
    """For every held-out clip, its nearest seen clip; ``min_vrmse`` is the smallest of those distances."""
    if not held_out or not seen:
        raise ValueError(f"leakage: nothing to compare ({len(held_out)} held-out and {len(seen)} seen trajectories)")
    nearest = []
    for clip in held_out:
        distance, source = min((clip_distance(clip.fields, other.fields), other.source) for other in seen)
        nearest.append({"held_out": clip.source, "nearest_seen": source, "vrmse": distance})
    closest = min(nearest, key=lambda entry: entry["vrmse"])
    return {"min_vrmse": closest["vrmse"], "closest": closest, "per_trajectory": nearest,
            "n_held_out": len(held_out), "n_seen": len(seen), "threshold": LEAKAGE_THRESHOLD}


def check_leakage(report: dict[str, object]) -> None:
    """Refuse (:class:`LeakageError`) when a held-out trajectory is closer than the threshold to a seen one."""
    if report["min_vrmse"] < LEAKAGE_THRESHOLD:
        closest = report["closest"]
        raise LeakageError(
            f"leakage: held-out trajectory {closest['held_out']} is a near-copy of {closest['nearest_seen']}, which a "
            f"model trains on (VRMSE {closest['vrmse']:.3g} over the first frames, below {LEAKAGE_THRESHOLD}); the "
            "experiment refuses to report. Give every trajectory its own initial condition (for shear_flow, "
            "perturbation > 0) and every dataset its own seed")


__all__ = ["LEAKAGE_THRESHOLD", "Clip", "LeakageError", "check_leakage", "clip_distance", "first_clips",
           "measure_leakage"]
