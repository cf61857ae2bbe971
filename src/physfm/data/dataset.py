"""Windowed torch datasets over Well-format files.

``WellWindowDataset`` yields ``{"input_fields": [T_in, *space, C], "output_fields": [T_out, *space, C]}``
windows in the same order as ``the_well.data.WellDataset`` (files sorted, then trajectory, then start
time), so indices are interchangeable with the peer's.

HDF5 handles are opened lazily on first access *in the process that reads*, and re-opened after a
fork, so the dataset can be handed to ``DataLoader(num_workers=N)``: each worker opens each file once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .hub_files import HubFolder
from .stats import MIN_STD, Normalizer, load_stats
from .well_format import (
    FileHeader,
    check_consistent,
    check_finite,
    dataset_location,
    list_split_files,
    open_well_file,
    read_field,
    read_file_header,
)


def n_windows(n_steps: int, n_steps_input: int, n_steps_output: int, dt_stride: int) -> int:
    """Number of window start times in a trajectory of ``n_steps`` frames (same rule as The Well)."""
    span = 1 + dt_stride * (n_steps_input + n_steps_output - 1)
    return max(0, n_steps - span + 1)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: got {value!r}, expected an integer >= {minimum}")
    return int(value)


class WellWindowDataset(Dataset):
    """Windows of ``n_steps_input + n_steps_output`` frames, ``dt_stride`` frames apart.

    Args:
        path: dataset directory (``<path>/data/<split>/*.hdf5`` + ``<path>/stats.yaml``), a split
            directory, a single HDF5 file, or the same layout in a Hub dataset repository:
            ``"hf://datasets/<org>/<name>[@<revision>]"`` (e.g. The Well's ``hf://datasets/polymathic-ai/shear_flow``)
            or a :class:`~physfm.data.hub_files.HubFolder`. Hub files are read in byte ranges through an
            on-disk block cache; nothing is downloaded whole.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        n_steps_input / n_steps_output: frames in ``input_fields`` / ``output_fields``.
        dt_stride: stride between consecutive frames of a window, in stored frames.
        normalize: z-score the fields with ``stats.yaml`` (``self.normalizer.denormalize`` inverts it).
        stats_path: override the location of ``stats.yaml``.
        check_finite: raise a ValueError naming file/trajectory/time on NaN/Inf in a window (one cheap
            vectorised check per item).
        cache_dir: for an ``hf://`` path, where its blocks are cached (default
            :func:`~physfm.data.hub_files.default_cache_dir`, under ``HF_HOME``).

    The dataset describes its data in ``field_names``, ``periodic``, ``boundary_types``, ``spatial_shape``,
    ``spatial_dims``, ``n_spatial_dims``, ``dataset_name``, ``dt``, ``coords``, ``time_grid``, ``normalizer``,
    ``files`` and ``headers`` (per-file :class:`FileHeader`: scalars, parameters).
    """

    def __init__(self, path: str | os.PathLike | HubFolder, split: str = "train", n_steps_input: int = 4,
                 n_steps_output: int = 1, dt_stride: int = 1, normalize: bool = True,
                 stats_path: str | os.PathLike | None = None, check_finite: bool = True,
                 cache_dir: str | os.PathLike | None = None):
        super().__init__()
        self.path = dataset_location(path, cache_dir)
        self.split = split
        self.n_steps_input = _positive_int("n_steps_input", n_steps_input)
        self.n_steps_output = _positive_int("n_steps_output", n_steps_output, minimum=0)
        self.dt_stride = _positive_int("dt_stride", dt_stride)
        self.check_finite = check_finite
        self.files = list_split_files(self.path, split)
        self.headers: list[FileHeader] = []
        for file in self.files:
            header = read_file_header(file)
            if self.headers:
                check_consistent(self.headers[0], header)
            self.headers.append(header)
        first = self.headers[0]
        counts = []
        for header in self.headers:
            windows = n_windows(header.n_steps, self.n_steps_input, self.n_steps_output, self.dt_stride)
            if windows == 0:
                need = 1 + self.dt_stride * (self.n_steps_input + self.n_steps_output - 1)
                raise ValueError(
                    f"{header.path}: trajectories have {header.n_steps} time steps, shorter than one window "
                    f"of {need} steps (n_steps_input={self.n_steps_input}, n_steps_output={self.n_steps_output}, "
                    f"dt_stride={self.dt_stride}); use fewer steps or a smaller stride"
                )
            counts.append(windows)
        self._windows_per_traj = np.asarray(counts, dtype=np.int64)
        sizes = self._windows_per_traj * np.asarray([h.n_trajectories for h in self.headers], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])

        self.dataset_name = first.dataset_name
        self.field_names = first.field_names
        self.constant_field_names = first.constant_field_names
        self.spatial_dims = first.spatial_dims
        self.spatial_shape = first.spatial_shape
        self.n_spatial_dims = first.n_spatial_dims
        self.periodic = first.periodic
        self.boundary_types = first.boundary_types
        self.dt = first.dt
        self.coords = first.coords  # {axis: 1-D coordinates}
        self.time_grid = first.time
        self.normalize = normalize
        self.normalizer: Normalizer | None = None
        if normalize:
            root = self.path if self.path.is_dir() else self.path.parent
            stats_file = Path(stats_path) if stats_path is not None else root / "stats.yaml"
            stats = load_stats(stats_file)
            self.normalizer = Normalizer.from_stats(
                stats, [(f.name, f.order) for f in first.variable_fields], self.n_spatial_dims,
                field_names=self.field_names, source=str(stats_file))
            self._constant_normalizer = Normalizer.from_stats(
                stats, [(f.name, f.order) for f in first.constant_fields], self.n_spatial_dims,
                field_names=self.constant_field_names, source=str(stats_file)) if first.constant_fields else None
        self._handles: dict[int, h5py.File] = {}
        self._datasets: dict[int, list[h5py.Dataset]] = {}
        self._pid: int | None = None
        if self.normalizer is not None and split == "train":  # stats.yaml describes the train split
            self._check_zero_std(stats_file)

    def _check_zero_std(self, stats_file: Path) -> None:
        """A zero std is right only for a field that never varies; normalising a varying one by it scales it by
        1e4 (losses of ~1e7, no other symptom). One window is checked: cheap, and a wrong std shows at once."""
        zero = torch.nonzero(self.normalizer.std <= MIN_STD).flatten().tolist()
        if not zero or len(self) == 0:
            return
        window = self.read_window(*self.locate(0), self.n_steps_input + self.n_steps_output)
        for channel in zero:
            values = window[..., channel]
            if float(values.max() - values.min()) > 0:
                raise ValueError(f"{stats_file}: std of {self.field_names[channel]!r} is 0 but its values vary "
                                 f"({float(values.min()):.4g} .. {float(values.max()):.4g}); recompute it with "
                                 "physfm.data.compute_stats")

    # -- lazy, fork-safe file handles ----------------------------------------------------------------
    def _file(self, index: int) -> h5py.File:
        if self._pid != os.getpid():
            # After a fork the parent's HDF5 handles must not be used; start afresh in this process.
            self._handles, self._datasets = {}, {}
            self._pid = os.getpid()
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = open_well_file(self.files[index])
            # h5py group lookups cost more than reading a small window; resolve them once per file.
            self._datasets[index] = [handle[s.group][s.name] for s in self.headers[index].variable_fields]
        return handle

    def close(self) -> None:
        """Close open HDF5 handles (they reopen on next access)."""
        if self._pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles, self._datasets = {}, {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_datasets"], state["_pid"] = {}, {}, None
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- indexing ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int, int]:
        """``index`` -> ``(file index, trajectory, start time)``."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"window index {index!r}: expected an int, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        index = index % len(self)
        file_index = int(np.searchsorted(self._offsets, index, side="right") - 1)
        local = index - int(self._offsets[file_index])
        traj, start = divmod(local, int(self._windows_per_traj[file_index]))
        return file_index, traj, start

    def read_window(self, file_index: int, traj: int, start: int, n_steps: int) -> torch.Tensor:
        """Raw (not normalised) ``[n_steps, *space, C]`` float32 tensor of one trajectory."""
        header = self.headers[file_index]
        f = self._file(file_index)
        window = slice(start, start + n_steps * self.dt_stride, self.dt_stride)
        parts = [torch.from_numpy(read_field(f, field, header, traj, window, dataset))
                 for field, dataset in zip(header.variable_fields, self._datasets[file_index], strict=True)]
        # torch.cat interleaves channels faster than NumPy's concatenate / strided assignment.
        data = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        # NaN/Inf propagate through a sum: one cheap reduction, the exact search only on suspicion.
        if self.check_finite and not math.isfinite(float(data.sum())):
            check_finite(data.numpy(), header.path, traj, start, self.dt_stride, self.field_names)
        return data

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        file_index, traj, start = self.locate(index)
        data = self.read_window(file_index, traj, start, self.n_steps_input + self.n_steps_output)
        if self.normalizer is not None:
            data = self.normalizer.normalize_(data)
        item = {"input_fields": data[: self.n_steps_input], "output_fields": data[self.n_steps_input:]}
        header = self.headers[file_index]
        if header.constant_fields:
            f = self._file(file_index)
            const = np.concatenate([read_field(f, s, header, traj) for s in header.constant_fields], axis=-1)
            const = torch.from_numpy(np.ascontiguousarray(const))
            if self.normalizer is not None and self._constant_normalizer is not None:
                const = self._constant_normalizer.normalize(const)
            item["constant_fields"] = const
        return item

    def __repr__(self) -> str:
        return (f"WellWindowDataset({self.dataset_name!r}, split={self.split!r}, windows={len(self)}, "
                f"fields={self.field_names}, shape={self.spatial_shape}, periodic={self.periodic})")
