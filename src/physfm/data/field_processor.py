"""A checkpoint's :class:`~physfm.models.PhysfmFieldProcessor` from the Well-format data it is trained on.

The processor class lives in ``physfm.models`` (it travels as remote code, so it cannot read datasets); this module
fills it from what :class:`WellWindowDataset` already reads: its ``stats.yaml`` normaliser (the exact float32 mean
and floored std the loader normalises with), field names, boundary conditions, time step and grid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..models.processing_physfm import PhysfmFieldProcessor
from .dataset import WellWindowDataset


def _grid_spacing(dataset: WellWindowDataset) -> list[float] | None:
    spacing = []
    for axis in dataset.spatial_dims:
        coords = np.asarray(dataset.coords.get(axis, ()), dtype=np.float64).reshape(-1)
        if coords.size < 2:
            return None  # no coordinates to measure a spacing from
        spacing.append(float(np.mean(np.abs(np.diff(coords)))))  # The Well's grids are uniform
    return spacing


def processor_from_dataset(dataset: WellWindowDataset | str | os.PathLike, split: str = "train",
                           dt_stride: int | None = None) -> PhysfmFieldProcessor:
    """The field processor of a Well-format dataset: its statistics, fields, periodicity, frame interval and grid.

    ``dataset`` is a dataset directory (its ``split`` split is opened) or an open :class:`WellWindowDataset`.
    ``dt`` is the time between the frames a model sees: the stored interval times ``dt_stride`` (by default the
    open dataset's, else 1).
    """
    if not isinstance(dataset, WellWindowDataset):
        dataset = WellWindowDataset(dataset, split=split, n_steps_input=1, n_steps_output=0, dt_stride=dt_stride or 1)
    if dataset.normalizer is None:
        raise ValueError(f"dataset {dataset.dataset_name!r} ({dataset.path}) was opened with normalize=False; a field "
                         "processor needs its stats.yaml statistics")
    stride = dt_stride if dt_stride is not None else dataset.dt_stride
    return PhysfmFieldProcessor(
        field_names=list(dataset.field_names),
        mean=dataset.normalizer.mean.tolist(),
        std=dataset.normalizer.std.tolist(),
        periodic=list(dataset.periodic),
        dt=None if dataset.dt is None else float(dataset.dt) * stride,
        grid_spacing=_grid_spacing(dataset),
        dataset_name=dataset.dataset_name,
    )


def processor_for_datasets(datasets: Sequence[WellWindowDataset]) -> PhysfmFieldProcessor:
    """One processor for a training mixture: the union of the fields (see :meth:`PhysfmFieldProcessor.union`:
    a shared field name keeps the first dataset's statistics, with a warning when they differ)."""
    processors = [processor_from_dataset(dataset) for dataset in datasets]
    return processors[0] if len(processors) == 1 else PhysfmFieldProcessor.union(processors)


__all__ = ["processor_for_datasets", "processor_from_dataset"]
