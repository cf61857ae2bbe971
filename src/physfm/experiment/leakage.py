"""Leakage between what the models saw and what they are scored on, measured on the data itself.

Splitting by file or by parameter set is not enough: The Well's shear_flow starts from a deterministic function
of its parameters, so two trajectories with equal parameters are the same flow. The experiment therefore
compares every held-out trajectory (downstream valid and test) with every trajectory a model trained on
(downstream train, and every split of the in-domain pretraining data) over their first frames, and refuses to
report when the closest pair is nearer than :data:`LEAKAGE_THRESHOLD`.

Test trajectories are also compared with valid ones, on which the learning rates are chosen. Cross-domain
pretraining data is not compared: other systems have other fields and grids, so none of it can copy a held-out
trajectory. Only each trajectory's first clip is compared, since every simulator here starts a trajectory from
its own initial condition and evolves it deterministically.

The distance is The Well's VRMSE with the held-out trajectory as the target, taken over the clip's frames and
grid together (a frame that is constant in space, such as shear_flow's initial pressure, would otherwise divide
by zero) and averaged over fields, minimised over every shift along the periodic axes: a translated copy of a
training flow is the same flow to a shift-equivariant model. VRMSE is invariant to each field's scale and offset,
so physical units and normalised ones give the same number.
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
    periodic: tuple[bool, ...] = ()  # one flag per spatial axis; shifts along periodic axes are compared too


def first_clips(path: str | os.PathLike, splits: Sequence[str], n_frames: int, dt_stride: int,
                missing_ok: bool = False) -> list[Clip]:
    """The first ``n_frames`` frames (at ``dt_stride``) of every trajectory of ``splits`` in a dataset.

    A split the dataset lacks is an error unless ``missing_ok`` (pretraining data has no test split)."""
    from physfm.data import WellWindowDataset
    from physfm.data.dataset import n_windows

    clips = []
    for split in splits:
        try:
            dataset = WellWindowDataset(path, split=split, n_steps_input=n_frames, n_steps_output=0,
                                        dt_stride=dt_stride)
        except FileNotFoundError:
            if missing_ok:
                continue
            raise ValueError(f"leakage: {path} has no {split!r} split to check; the experiment needs one") from None
        first, number = 0, 0
        for header in dataset.headers:
            per_trajectory = n_windows(header.n_steps, n_frames, 0, dt_stride)
            for traj in range(header.n_trajectories):
                item = dataset[first + traj * per_trajectory]
                clips.append(Clip(f"{path}:{split}#{number}", dataset.normalizer.denormalize(item["input_fields"]),
                                  tuple(dataset.periodic)))
                number += 1
            first += per_trajectory * header.n_trajectories
    return clips


def clip_distance(target: torch.Tensor, other: torch.Tensor, periodic: Sequence[bool] = ()) -> float:
    """VRMSE of ``other`` against ``target`` (both ``[time, *space, field]``) over time and space, field-averaged,
    minimised over all shifts of ``other`` along the ``periodic`` spatial axes."""
    if target.shape != other.shape:
        raise ValueError(f"leakage: clips of shapes {tuple(target.shape)} and {tuple(other.shape)} cannot be compared; "
                         "held-out and seen data must share the grid, clip length and fields")
    target, other = target.double(), other.double()
    axes = [1 + axis for axis, wraps in enumerate(periodic) if wraps]
    if axes:
        # sum((a - shift(b))^2) = sum(a^2) + sum(b^2) - 2 corr(a, b)(shift): the correlation for every shift by FFT.
        spectrum = torch.fft.rfftn(target, dim=axes) * torch.fft.rfftn(other, dim=axes).conj()
        correlation = torch.fft.irfftn(spectrum, s=[target.shape[a] for a in axes], dim=axes)
        fixed = [d for d in range(target.ndim - 1) if d not in axes]  # time and the walled axes are summed over
        correlation = correlation.sum(fixed) if fixed else correlation
        energy = (target.pow(2) + other.pow(2)).flatten(0, -2).sum(0)
        squared_error = (energy - 2 * correlation.flatten(0, -2)).clamp(min=0)  # [shifts, field]
    else:
        squared_error = (target - other).pow(2).flatten(0, -2).sum(0, keepdim=True)
    n_cells = target[..., 0].numel()
    vrmse = (squared_error / n_cells / (target.flatten(0, -2).var(0) + 1e-7)).sqrt().mean(-1)
    return float(vrmse.min())


def measure_leakage(held_out: Sequence[Clip], seen: Sequence[Clip]) -> dict[str, object]:
    """For every held-out clip, its nearest seen clip; ``min_vrmse`` is the smallest of those distances."""
    if not held_out or not seen:
        raise ValueError(f"leakage: nothing to compare ({len(held_out)} held-out and {len(seen)} seen trajectories)")
    nearest = []
    for clip in held_out:
        distance, source = min((clip_distance(clip.fields, other.fields, clip.periodic), other.source)
                               for other in seen)
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
