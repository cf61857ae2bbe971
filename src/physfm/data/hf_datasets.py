"""Bridge between Well datasets and Hugging Face ``datasets``.

Row layout (one row per trajectory)::

    file: str, trajectory: int32, parameters: str (JSON), <flat field name>: float32 [time, *space] ...

The dataset's metadata (name, dt, spatial axes, coordinates, boundary types, field names) is stored
as JSON in ``ds.info.description`` so that ``from_hf_dataset`` can rebuild the Well files, and so the
metadata travels with ``save_to_disk`` / ``push_to_hub``.

``HFWindowDataset`` (map-style) and ``HFStreamingWindowDataset`` (iterable, for
``load_dataset(..., streaming=True)``) give training windows straight from a HF dataset, in the same
sample layout as :class:`physfm.data.WellWindowDataset`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .convert import _group_vector_fields
from .dataset import n_windows
from .stats import Normalizer
from .well_format import (
    SPLITS,
    list_split_files,
    open_well_file,
    read_field,
    read_file_header,
    read_well_metadata,
    write_well_dataset,
)

_ARRAY_TYPES = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D, 5: datasets.Array5D}
METADATA_KEY = "physfm_well_metadata"


def _metadata_json(path: Path) -> dict:
    meta = read_well_metadata(path)
    header = read_file_header(list_split_files(path, next(iter(meta.splits)))[0])
    return {
        METADATA_KEY: 1,
        "dataset_name": meta.dataset_name,
        "grid_type": meta.grid_type,
        "dt": meta.dt,
        "spatial_dims": list(meta.spatial_dims),
        "spatial_shape": list(meta.spatial_shape),
        "coords": {d: np.asarray(header.coords[d]).reshape(-1).tolist() for d in meta.spatial_dims},
        "boundary_types": {d: list(v) for d, v in meta.boundary_types.items()},
        "field_names": meta.field_names,
    }


def _features(field_names: Sequence[str], spatial_shape: Sequence[int]) -> datasets.Features:
    array_type = _ARRAY_TYPES[1 + len(spatial_shape)]
    columns = {"file": datasets.Value("string"), "trajectory": datasets.Value("int32"),
               "parameters": datasets.Value("string")}
    columns |= {name: array_type(shape=(None, *spatial_shape), dtype="float32") for name in field_names}
    return datasets.Features(columns)


def _rows(files: list[str]) -> Iterator[dict]:
    for file in files:
        with open_well_file(file) as f:
            header = read_file_header(f)
            params = json.dumps({k: (v.item() if isinstance(v, np.generic) else v) for k, v in header.parameters.items()},
                                default=str)
            for traj in range(header.n_trajectories):
                row = {"file": Path(file).name, "trajectory": traj, "parameters": params}
                for field in header.variable_fields:
                    data = read_field(f, field, header, traj)
                    for i, name in enumerate(field.flat_names):
                        row[name] = data[..., i]
                yield row


def to_hf_dataset(path: str | os.PathLike, split: str = "train", cache_dir: str | os.PathLike | None = None
                  ) -> datasets.Dataset:
    """One split of a Well dataset as a ``datasets.Dataset`` (one row per trajectory).

    Rows are produced by a generator, so memory stays at one trajectory; ``cache_dir`` sets where
    ``datasets`` writes its Arrow cache.
    """
    path = Path(path)
    metadata = _metadata_json(path)
    files = [str(p) for p in list_split_files(path, split)]
    ds = datasets.Dataset.from_generator(
        _rows, features=_features(metadata["field_names"], metadata["spatial_shape"]),
        gen_kwargs={"files": files}, cache_dir=None if cache_dir is None else str(cache_dir), split=split)
    ds.info.description = json.dumps(metadata)
    return ds


def to_hf_dataset_dict(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """Every split present under ``path/data`` as a ``datasets.DatasetDict``."""
    meta = read_well_metadata(path)
    return datasets.DatasetDict({s: to_hf_dataset(path, s, cache_dir) for s in meta.splits})


def read_hf_metadata(ds) -> dict:
    """The Well metadata stored by :func:`to_hf_dataset` in ``ds.info.description`` (``{}`` if none)."""
    try:
        meta = json.loads(ds.info.description or "")
    except (json.JSONDecodeError, AttributeError, TypeError):
        return {}
    return meta if isinstance(meta, dict) and meta.get(METADATA_KEY) else {}


def _field_columns(ds, field_names: Sequence[str] | None) -> list[str]:
    if field_names is not None:
        missing = [f for f in field_names if f not in ds.column_names]
        if missing:
            raise ValueError(f"field_names: columns {missing} not in the HF dataset's columns {ds.column_names}")
        return list(field_names)
    meta = read_hf_metadata(ds)
    if meta:
        return list(meta["field_names"])
    columns = [c for c in ds.column_names if c not in ("file", "trajectory", "parameters")]
    if not columns:
        raise ValueError(f"HF dataset has no field columns (columns: {ds.column_names}); pass field_names")
    return columns


def from_hf_dataset(
    ds: datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset,
    out: str | os.PathLike,
    dataset_name: str | None = None,
    dt: float | None = None,
    periodic: Sequence[str] | Mapping[str, bool] | None = None,
    coords: Mapping[str, np.ndarray] | None = None,
    field_names: Sequence[str] | None = None,
    spatial_dims: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a HF dataset (one row per trajectory, columns ``field: [time, *space]``) as Well files.

    Metadata written by :func:`to_hf_dataset` is used by default; for other datasets pass ``dt``,
    ``periodic`` (periodic axis names), and optionally ``field_names``, ``spatial_dims`` (default
    ``x, y, z``), ``coords`` and ``dataset_name``. A ``Dataset`` becomes the train split; a
    ``DatasetDict`` keeps its train/valid/test splits (``validation`` is mapped to ``valid``).
    """
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        parts = {("valid" if k == "validation" else k): v for k, v in ds.items()}
    else:
        parts = {"train": ds}
    unknown = [k for k in parts if k not in SPLITS]
    if unknown:
        raise ValueError(f"HF dataset splits {unknown} are not train/valid/test")
    first = next(iter(parts.values()))
    meta = read_hf_metadata(first)
    columns = _field_columns(first, field_names)
    dt = dt if dt is not None else meta.get("dt")
    if dt is None:
        raise ValueError("dt: the HF dataset carries no physfm metadata; pass dt= (time between frames)")
    split_arrays: dict[str, dict[str, np.ndarray]] = {}
    split_params: dict[str, list[dict]] = {}
    for split, part in parts.items():
        stacks: dict[str, list[np.ndarray]] = {c: [] for c in columns}
        params: list[dict] = []
        for row in part.with_format("numpy") if hasattr(part, "with_format") else part:
            for c in columns:
                stacks[c].append(np.asarray(row[c], dtype=np.float32))
            params.append(json.loads(row["parameters"]) if row.get("parameters") else {})
        if not params:
            continue
        try:
            split_arrays[split] = {c: np.stack(v) for c, v in stacks.items()}
        except ValueError:
            shapes = sorted({v.shape for vs in stacks.values() for v in vs})
            raise ValueError(f"HF dataset split {split!r}: trajectories have different shapes {shapes}; "
                             "expected one [time, *space] shape per field") from None
        split_params[split] = params
    if not split_arrays:
        raise ValueError("HF dataset has no rows")
    n_space = next(iter(next(iter(split_arrays.values())).values())).ndim - 2
    dims = list(spatial_dims or meta.get("spatial_dims") or ["x", "y", "z"][:n_space])
    if len(dims) != n_space:
        raise ValueError(f"spatial_dims: got {dims}, but the field arrays have {n_space} spatial axes")
    if periodic is None:
        bt = meta.get("boundary_types")
        if bt is None:
            raise ValueError("periodic: the HF dataset carries no physfm metadata; pass periodic=[axis names]")
        boundary = {d: bt[d][0].lower() for d in dims}
    elif isinstance(periodic, Mapping):
        boundary = {d: bool(periodic[d]) for d in dims}
    else:
        boundary = {d: d in periodic for d in dims}
    shape = next(iter(next(iter(split_arrays.values())).values())).shape[2:]
    if coords is None:
        coords = meta.get("coords") or {d: (np.arange(n) / n if boundary[d] in (True, "periodic") else np.linspace(0, 1, n))
                                        for d, n in zip(dims, shape, strict=True)}
    groups = _group_vector_fields(columns, dims)
    splits = {s: {base: np.stack([arrays[columns[i]] for i in idx], axis=-1) if len(idx) > 1 else arrays[columns[idx[0]]]
                  for base, idx in groups} for s, arrays in split_arrays.items()}
    out = Path(out)
    return write_well_dataset(out, dataset_name=dataset_name or meta.get("dataset_name") or out.name, splits=splits,
                              dt=dt, coords={d: np.asarray(coords[d]) for d in dims}, periodic=boundary,
                              grid_type=meta.get("grid_type", "cartesian"), simulation_parameters=split_params,
                              overwrite=overwrite)


def _window(row: Mapping, columns: Sequence[str], start: int, n: int, stride: int) -> np.ndarray:
    return np.stack([np.asarray(row[c][start:start + n * stride:stride], dtype=np.float32) for c in columns], axis=-1)


def _split_item(data: np.ndarray, n_in: int, normalizer: Normalizer | None) -> dict[str, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(data))
    if normalizer is not None:
        x = normalizer.normalize(x)
    return {"input_fields": x[:n_in], "output_fields": x[n_in:]}


def _row_lengths(ds: datasets.Dataset, column: str) -> list[int]:
    """Time length of every row, from Arrow list offsets (no field data is decoded)."""
    if getattr(ds, "_indices", None) is not None:  # select()/shuffle() views: materialise row order
        ds = ds.flatten_indices()
    chunks = ds.data.column(column).chunks
    return [n for c in chunks for n in pc.list_value_length(c.storage if isinstance(c, pa.ExtensionArray) else c)
            .to_pylist()]


class HFWindowDataset(torch.utils.data.Dataset):
    """Windows ``{"input_fields", "output_fields"}`` over a map-style HF dataset of trajectories.

    Same windows, in the same order, as :class:`WellWindowDataset` over the Well files it came from.
    ``normalizer`` (e.g. ``WellWindowDataset(...).normalizer`` or ``Normalizer(mean, std)``) is optional.
    """

    def __init__(self, ds: datasets.Dataset, n_steps_input: int = 4, n_steps_output: int = 1, dt_stride: int = 1,
                 field_names: Sequence[str] | None = None, normalizer: Normalizer | None = None):
        self.ds = ds.with_format("numpy")
        self.field_names = _field_columns(ds, field_names)
        self.n_steps_input, self.n_steps_output, self.dt_stride = n_steps_input, n_steps_output, dt_stride
        self.normalizer = normalizer
        lengths = _row_lengths(ds, self.field_names[0])
        self._windows = np.asarray([n_windows(t, n_steps_input, n_steps_output, dt_stride) for t in lengths], np.int64)
        short = np.flatnonzero(self._windows == 0)
        if len(short):
            need = 1 + dt_stride * (n_steps_input + n_steps_output - 1)
            raise ValueError(f"HF dataset row {int(short[0])} has {lengths[short[0]]} time steps, shorter than a "
                             f"window of {need} steps")
        self._offsets = np.concatenate([[0], np.cumsum(self._windows)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        row_index = int(np.searchsorted(self._offsets, index, side="right") - 1)
        start = index - int(self._offsets[row_index])
        row = self.ds[row_index]
        data = _window(row, self.field_names, start, self.n_steps_input + self.n_steps_output, self.dt_stride)
        return _split_item(data, self.n_steps_input, self.normalizer)


class HFStreamingWindowDataset(torch.utils.data.IterableDataset):
    """Every window of every row of an iterable (streaming) HF dataset, in row order.

    With DataLoader workers, rows are divided between workers round-robin.
    """

    def __init__(self, ds, n_steps_input: int = 4, n_steps_output: int = 1, dt_stride: int = 1,
                 field_names: Sequence[str] | None = None, normalizer: Normalizer | None = None):
        self.ds = ds
        self.field_names = _field_columns(ds, field_names) if field_names is None and hasattr(ds, "column_names") \
            and ds.column_names else list(field_names or [])
        if not self.field_names:
            raise ValueError("field_names: could not infer the field columns of this streaming dataset; pass them")
        self.n_steps_input, self.n_steps_output, self.dt_stride = n_steps_input, n_steps_output, dt_stride
        self.normalizer = normalizer

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        n = self.n_steps_input + self.n_steps_output
        for i, row in enumerate(self.ds):
            if info is not None and i % info.num_workers != info.id:
                continue
            length = len(row[self.field_names[0]])
            for start in range(n_windows(length, self.n_steps_input, self.n_steps_output, self.dt_stride)):
                yield _split_item(_window(row, self.field_names, start, n, self.dt_stride), self.n_steps_input,
                                  self.normalizer)
