"""The Well's HDF5 format: writing, reading headers, and validation.

A dataset is a directory ``<name>/data/{train,valid,test}/*.hdf5`` plus ``<name>/stats.yaml``.
Each file holds (attributes marked ``@``)::

    @dataset_name @grid_type @n_spatial_dims @n_trajectories @simulation_parameters (+ one @ per parameter)
    dimensions/          @spatial_dims; time [T], x [Nx], y [Ny] (@sample_varying, @time_varying)
    boundary_conditions/<name>/  @bc_type @associated_dims @associated_fields @sample_varying
                                 @time_varying; mask [N] (True on the boundary)
    scalars/             @field_names; one dataset per scalar (@sample_varying, @time_varying)
    t0_fields/ t1_fields/ t2_fields/   @field_names; [traj, time, *space, (d, (d))]
                                       (@dim_varying, @sample_varying, @time_varying)

Field arrays may drop the ``traj`` axis (``sample_varying=False``), the ``time`` axis
(``time_varying=False``, a *constant* field) or spatial axes (``dim_varying``); readers broadcast.

Readers take a local path or a Hub dataset folder, ``hf://datasets/<org>/<name>[@<revision>]``
(:mod:`physfm.data.hub_files`: byte-range reads through an on-disk block cache).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .._io import atomic_directory
from .hub_files import HubFile, HubFolder, HubReadError, is_hub_url
from .stats import StatsAccumulator, write_stats

SPLITS = ("train", "valid", "test")
ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories")
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
FIELD_ATTRS = ("dim_varying", "sample_varying", "time_varying")
BC_TYPES = ("PERIODIC", "OPEN", "WALL")
HDF5_SUFFIXES = (".hdf5", ".h5")


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_str_list(value) -> list[str]:
    """HDF5 string-list attributes come back as arrays of str/bytes, or a bare string (the peer's
    dummy writer stores ``associated_dims = "x"``)."""
    if isinstance(value, (str, bytes)):
        return [_as_str(value)]
    return [_as_str(v) for v in np.asarray(value).reshape(-1)]


def flat_field_names(name: str, order: int, spatial_dims: Sequence[str]) -> list[str]:
    """``velocity`` of order 1 over ``(x, y)`` -> ``velocity_x, velocity_y`` (The Well's flattening)."""
    if order == 0:
        return [name]
    return [f"{name}_{''.join(c)}" for c in itertools.product(spatial_dims, repeat=order)]


DatasetLocation = Path | HubFolder
"""Where a dataset lives: a local path, or a folder of a Hub dataset repository."""


def dataset_location(path: str | os.PathLike | HubFolder, cache_dir: str | os.PathLike | None = None
                     ) -> DatasetLocation:
    """``hf://datasets/...`` -> its :class:`HubFolder` (blocks cached under ``cache_dir``); anything else -> a Path."""
    if isinstance(path, HubFolder):
        return path
    if is_hub_url(path):
        return HubFolder(path, cache_dir=cache_dir)
    if cache_dir is not None:
        raise ValueError(f"cache_dir: only used for hf:// paths, but {str(path)!r} is a local path")
    return Path(path)


def hdf5_files(root: DatasetLocation, folder: str) -> list[Path | HubFile]:
    """The HDF5 files directly inside ``root/folder``, sorted (none if there is no such folder)."""
    if isinstance(root, HubFolder):
        return [f for f in root.iterdir(folder) if f.suffix in HDF5_SUFFIXES]
    directory = root / folder
    return sorted(p for p in directory.glob("*") if p.suffix in HDF5_SUFFIXES and p.is_file()) \
        if directory.is_dir() else []


def list_split_files(path: str | os.PathLike | HubFolder, split: str) -> list[Path | HubFile]:
    """Sorted HDF5 files of ``split`` under a dataset directory (``path/data/split``) or Hub folder.

    ``path`` may also be the split directory itself, or a single file.
    """
    root = dataset_location(path)
    if isinstance(root, Path) and root.is_file():
        return [root]
    if isinstance(root, Path) and not root.exists():
        raise FileNotFoundError(f"dataset {root} does not exist")
    for folder in (f"data/{split}", split, ""):
        files = hdf5_files(root, folder)
        if files:
            return files
    raise FileNotFoundError(
        f"no HDF5 files for split {split!r} under {root}; expected {root}/data/{split}/*.hdf5 "
        "(The Well's layout)"
    )


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _file_ref(file: str | os.PathLike | HubFile) -> Path | HubFile:
    return file if isinstance(file, HubFile) else Path(file)


def open_well_file(path: str | os.PathLike | HubFile) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's low-level errors into one clear message."""
    path = _file_ref(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return path.open_hdf5() if isinstance(path, HubFile) else h5py.File(path, "r")
    except (HubReadError, FileNotFoundError):  # the Hub could not serve it (or not offline): not a broken file
        raise
    except OSError as error:
        raise ValueError(
            f"{path}: cannot be opened as HDF5 ({error}); the file is truncated or corrupt — "
            "rewrite or re-download it"
        ) from None


@dataclass(frozen=True)
class FieldSpec:
    """One dataset under ``t{order}_fields``."""

    name: str
    order: int
    flat_names: tuple[str, ...]
    dim_varying: tuple[bool, ...]
    sample_varying: bool
    time_varying: bool

    @property
    def group(self) -> str:
        return f"t{self.order}_fields"


@dataclass
class FileHeader:
    """Everything about a Well file except its field values."""

    path: Path | HubFile
    dataset_name: str
    grid_type: str
    n_spatial_dims: int
    n_trajectories: int
    n_steps: int
    spatial_dims: tuple[str, ...]
    spatial_shape: tuple[int, ...]
    fields: list[FieldSpec]
    boundary_conditions: dict[str, dict]  # name -> {bc_type, associated_dims}
    scalars: dict[str, float | np.ndarray]
    parameters: dict[str, object]
    time: np.ndarray
    coords: dict[str, np.ndarray]

    @property
    def variable_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.time_varying]

    @property
    def constant_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if not f.time_varying]

    @property
    def field_names(self) -> list[str]:
        """Flattened names of the time-varying fields, in channel order."""
        return [n for f in self.variable_fields for n in f.flat_names]

    @property
    def constant_field_names(self) -> list[str]:
        return [n for f in self.constant_fields for n in f.flat_names]

    @property
    def dt(self) -> float | None:
        t = np.asarray(self.time, dtype=np.float64).reshape(-1, self.time.shape[-1])[0]
        return float(t[1] - t[0]) if t.size > 1 else None

    @property
    def boundary_types(self) -> dict[str, tuple[str, str]]:
        """Per spatial axis, the boundary type at its (low, high) end; OPEN unless a BC says otherwise."""
        out = {d: ["OPEN", "OPEN"] for d in self.spatial_dims}
        for bc in self.boundary_conditions.values():
            for dim in bc["associated_dims"]:
                if dim in out and bc["mask_ends"] is not None:
                    low, high = bc["mask_ends"][dim]
                    if low:
                        out[dim][0] = bc["bc_type"]
                    if high:
                        out[dim][1] = bc["bc_type"]
        return {d: (lo, hi) for d, (lo, hi) in out.items()}

    @property
    def periodic(self) -> tuple[bool, ...]:
        return tuple(lo == hi == "PERIODIC" for lo, hi in self.boundary_types.values())


def _require(mapping, key: str, where: str, path: Path):
    if key not in mapping:
        raise ValueError(f"{path}: missing {where}{key!r}; expected a Well-format file with it "
                         "(see physfm.data.well_format for the layout)")
    return mapping[key]


def read_file_header(source: str | os.PathLike | HubFile | h5py.File) -> FileHeader:
    """Read and validate the structure of one Well file (attributes, groups, dataset shapes)."""
    if isinstance(source, h5py.File):
        return _read_header(source, Path(source.filename))
    with open_well_file(source) as f:
        return _read_header(f, _file_ref(source))


def _read_header(f: h5py.File, path: Path | HubFile) -> FileHeader:
    for key in ROOT_ATTRS:
        _require(f.attrs, key, "root attribute ", path)
    for key in ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS):
        _require(f, key, "group ", path)
    n_spatial_dims = int(f.attrs["n_spatial_dims"])
    n_traj = int(f.attrs["n_trajectories"])
    dims = f["dimensions"]
    spatial_dims = tuple(_as_str_list(_require(dims.attrs, "spatial_dims", "attribute dimensions/@", path)))
    if len(spatial_dims) != n_spatial_dims:
        raise ValueError(f"{path}: dimensions/@spatial_dims {list(spatial_dims)} has {len(spatial_dims)} "
                         f"entries but @n_spatial_dims is {n_spatial_dims}")
    time = np.asarray(_require(dims, "time", "dataset dimensions/", path)[()])
    n_steps = int(time.shape[-1]) if time.ndim else 1
    coords = {d: np.asarray(_require(dims, d, "dataset dimensions/", path)[()]) for d in spatial_dims}
    spatial_shape = tuple(int(coords[d].shape[-1]) for d in spatial_dims)

    fields: list[FieldSpec] = []
    for order, group_name in enumerate(FIELD_GROUPS):
        group = f[group_name]
        names = _as_str_list(group.attrs.get("field_names", []))
        for name in names:
            ds = _require(group, name, f"dataset {group_name}/", path)
            for attr in FIELD_ATTRS:
                _require(ds.attrs, attr, f"attribute {group_name}/{name}/@", path)
            dim_varying = tuple(bool(v) for v in np.asarray(ds.attrs["dim_varying"]).reshape(-1))
            if len(dim_varying) != n_spatial_dims:
                raise ValueError(f"{path}: {group_name}/{name}/@dim_varying {list(dim_varying)} has "
                                 f"{len(dim_varying)} entries, expected {n_spatial_dims} (one per spatial dim)")
            field = FieldSpec(name, order, tuple(flat_field_names(name, order, spatial_dims)), dim_varying,
                             bool(ds.attrs["sample_varying"]), bool(ds.attrs["time_varying"]))
            expected = ((n_traj,) if field.sample_varying else ()) + ((n_steps,) if field.time_varying else ()) \
                + tuple(s for s, v in zip(spatial_shape, dim_varying, strict=True) if v) + (n_spatial_dims,) * order
            if tuple(ds.shape) != expected:
                raise ValueError(
                    f"{path}: {group_name}/{name} has shape {tuple(ds.shape)}, expected {expected} "
                    f"([traj]={n_traj}, [time]={n_steps}, space={spatial_shape}, tensor order {order})"
                )
            fields.append(field)
    if not any(s.time_varying for s in fields):
        raise ValueError(f"{path}: no time-varying field in t0_fields/t1_fields/t2_fields")

    bcs: dict[str, dict] = {}
    for bc_name, bc in f["boundary_conditions"].items():
        bc_type = _as_str(_require(bc.attrs, "bc_type", f"attribute boundary_conditions/{bc_name}/@", path)).upper()
        if bc_type not in BC_TYPES:
            raise ValueError(f"{path}: boundary_conditions/{bc_name} has bc_type {bc_type!r}, "
                             f"expected one of {list(BC_TYPES)}")
        assoc = _as_str_list(_require(bc.attrs, "associated_dims",
                                      f"attribute boundary_conditions/{bc_name}/@", path))
        unknown = [d for d in assoc if d not in spatial_dims]
        if unknown:
            raise ValueError(f"{path}: boundary_conditions/{bc_name} refers to unknown dims {unknown}; "
                             f"spatial dims are {list(spatial_dims)}")
        mask_ends = None
        if "mask" in bc:
            mask = np.asarray(bc["mask"][()], dtype=bool)
            mask = mask.reshape(mask.shape[-len(assoc):]) if mask.ndim > len(assoc) else mask
            # Same rule as the peer: WALL needs the whole face, PERIODIC/OPEN any point of it.
            agg = np.all if bc_type == "WALL" else np.any
            mask_ends = {}
            for i, dim in enumerate(assoc):
                moved = np.moveaxis(mask, i, 0) if mask.ndim == len(assoc) else mask
                mask_ends[dim] = (bool(agg(moved[0])), bool(agg(moved[-1])))
        bcs[bc_name] = {"bc_type": bc_type, "associated_dims": assoc, "mask_ends": mask_ends}

    scalars: dict[str, float | np.ndarray] = {}
    for name in _as_str_list(f["scalars"].attrs.get("field_names", [])):
        value = np.asarray(_require(f["scalars"], name, "dataset scalars/", path)[()])
        scalars[name] = value.item() if value.size == 1 else value
    parameters = {}
    for name in _as_str_list(f.attrs.get("simulation_parameters", [])):
        value = f.attrs.get(name, scalars.get(name))
        parameters[name] = value.item() if isinstance(value, np.generic) else value

    return FileHeader(path=path, dataset_name=_as_str(f.attrs["dataset_name"]),
                      grid_type=_as_str(f.attrs["grid_type"]), n_spatial_dims=n_spatial_dims,
                      n_trajectories=n_traj, n_steps=n_steps, spatial_dims=spatial_dims,
                      spatial_shape=spatial_shape, fields=fields, boundary_conditions=bcs,
                      scalars=scalars, parameters=parameters, time=time, coords=coords)


def read_field(f: h5py.File, field: FieldSpec, header: FileHeader, traj: int,
               time: slice | None = None, dataset: h5py.Dataset | None = None) -> np.ndarray:
    """Read one field for one trajectory as ``[time, *space, n_flat]`` float32 (``[*space, n_flat]`` if
    constant), broadcasting axes the file does not store. ``dataset`` skips the group lookup."""
    ds = dataset if dataset is not None else f[field.group][field.name]
    index: tuple = ()
    if field.sample_varying:
        index += (traj,)
    if field.time_varying:
        index += (time if time is not None else slice(None),)
    data = np.asarray(ds[index] if index else ds[()], dtype=np.float32)
    lead = data.shape[:1] if field.time_varying else ()
    if not all(field.dim_varying):
        shape = lead + tuple(s if v else 1 for s, v in zip(header.spatial_shape, field.dim_varying, strict=True)) \
            + data.shape[len(lead) + sum(field.dim_varying):]
        full = lead + header.spatial_shape + shape[len(lead) + len(header.spatial_shape):]
        # A real copy: callers may normalise in place, which a stride-0 broadcast view cannot take.
        data = np.ascontiguousarray(np.broadcast_to(data.reshape(shape), full))
    return data.reshape(*lead, *header.spatial_shape, len(field.flat_names))


def read_trajectory(path: str | os.PathLike | HubFile, traj: int, include_constant: bool = False
                    ) -> dict[str, np.ndarray]:
    """All time-varying fields of one trajectory, as ``{flat name: [time, *space]}``."""
    with open_well_file(path) as f:
        header = _read_header(f, _file_ref(path))
        out = {}
        for field in header.fields if include_constant else header.variable_fields:
            data = read_field(f, field, header, traj)
            for i, name in enumerate(field.flat_names):
                out[name] = data[..., i]
        return out


def iter_field_chunks(path: DatasetLocation, split: str) -> Iterator[tuple[str, np.ndarray, int, bool]]:
    """Yield ``(core name, [1, time, *space, (d...)], order, time_varying)`` per field and trajectory."""
    for file in list_split_files(path, split):
        with open_well_file(file) as f:
            header = _read_header(f, file)
            for field in header.fields:
                for traj in range(header.n_trajectories if field.sample_varying else 1):
                    data = read_field(f, field, header, traj)
                    data = data.reshape(data.shape[:-1] + (header.n_spatial_dims,) * field.order)
                    lead = data[None] if field.time_varying else data[None, None]
                    yield field.name, lead, field.order, field.time_varying


def check_finite(data: np.ndarray, path: Path | HubFile, traj: int, time_start: int, time_stride: int,
                 field_names: Sequence[str]) -> None:
    """Raise a ValueError naming the file, trajectory, time index and field of the first NaN/Inf.

    ``data`` is ``[time, *space, C]``.  The common case (all finite) costs one vectorised pass.
    """
    if np.isfinite(data).all():
        return
    bad = ~np.isfinite(data.reshape(data.shape[0], -1, data.shape[-1]))
    t, c = np.argwhere(bad.any(axis=1))[0]
    raise ValueError(
        f"{path}: non-finite values (NaN or Inf) in field {field_names[c]!r} of trajectory {traj} at time "
        f"index {time_start + t * time_stride}; expected finite floats (clean or drop this trajectory)"
    )


@dataclass
class DatasetMetadata:
    """Summary of a Well dataset directory or Hub folder (``read_well_metadata``)."""

    path: DatasetLocation
    dataset_name: str
    grid_type: str
    n_spatial_dims: int
    spatial_dims: tuple[str, ...]
    spatial_shape: tuple[int, ...]
    field_names: list[str]
    constant_field_names: list[str]
    fields: list[FieldSpec]
    boundary_types: dict[str, tuple[str, str]]
    periodic: tuple[bool, ...]
    dt: float | None
    splits: dict[str, dict] = field(default_factory=dict)  # split -> {files, trajectories, steps}
    parameters: dict[str, dict] = field(default_factory=dict)  # file name -> parameters
    scalars: list[str] = field(default_factory=list)
    has_stats: bool = False

    def summary(self) -> str:
        """Human-readable multi-line summary (what ``physfm inspect`` prints)."""
        vec = {f.name: f"t{f.order}" for f in self.fields}
        lines = [
            f"dataset      {self.dataset_name}  ({self.path})",
            f"grid         {self.grid_type}, {self.n_spatial_dims}-D, dims {list(self.spatial_dims)}, "
            f"shape {list(self.spatial_shape)}",
            f"fields       {', '.join(self.field_names)}  ({len(self.field_names)} channels; "
            + ", ".join(f"{k}:{v}" for k, v in vec.items()) + ")",
        ]
        if self.constant_field_names:
            lines.append(f"constant     {', '.join(self.constant_field_names)}")
        lines.append(f"time step    dt = {self.dt:g}" if self.dt is not None else "time step    (single frame)")
        lines.append("boundaries   " + ", ".join(f"{d}: {lo.lower()}/{hi.lower()}" if lo != hi else f"{d}: {lo.lower()}"
                                                 for d, (lo, hi) in self.boundary_types.items()))
        for split, info in self.splits.items():
            steps = sorted(set(info["steps"]))
            lines.append(f"{split:<12} {info['trajectories']} trajectories in {info['files']} file(s), "
                         f"{'/'.join(map(str, steps))} steps each")
        if self.scalars:
            lines.append(f"scalars      {', '.join(self.scalars)}")
        for name, params in self.parameters.items():
            if params:
                lines.append(f"parameters   {name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        if self.path.is_dir():
            lines.append(f"stats.yaml   {'present' if self.has_stats else 'MISSING'}")
        return "\n".join(lines)


def check_consistent(reference: FileHeader, header: FileHeader) -> None:
    """Raise if ``header`` describes a different dataset than ``reference`` (name, fields, grid)."""
    for what, a, b in (
        ("field names", reference.field_names, header.field_names),
        ("constant field names", reference.constant_field_names, header.constant_field_names),
        ("spatial dims", reference.spatial_dims, header.spatial_dims),
        ("spatial shape", reference.spatial_shape, header.spatial_shape),
        ("dataset_name", reference.dataset_name, header.dataset_name),
    ):
        if list(a) != list(b):
            raise ValueError(f"{header.path}: {what} {list(b) if not isinstance(b, str) else b!r} differ from "
                             f"{reference.path}'s {list(a) if not isinstance(a, str) else a!r}; all files of a "
                             "dataset must share them")


def read_well_metadata(path: str | os.PathLike | HubFolder, splits: Sequence[str] = SPLITS) -> DatasetMetadata:
    """Read and validate the headers of every file of a dataset directory or Hub folder (or of a single file).

    Checks required attributes/groups, dataset shapes and that every file shares field names, grid and
    dataset name. Field values are not read (``physfm inspect`` also scans them for NaN/Inf).
    """
    path = dataset_location(path)
    if isinstance(path, Path) and not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist")
    if path.is_file() and path.suffix not in HDF5_SUFFIXES:
        raise ValueError(f"{path} is a {path.suffix or 'suffix-less'} file; expected a dataset folder "
                         "(<dataset>/data/<split>/*.hdf5) or one HDF5 file")
    if path.is_file():
        files_by_split = {"file": [path]}
    else:
        files_by_split = {split: files for split in splits if (files := hdf5_files(path, f"data/{split}"))}
        if not files_by_split:
            raise FileNotFoundError(f"no HDF5 files under {path}/data/{{{','.join(splits)}}}/; expected The "
                                    "Well's layout <dataset>/data/<split>/*.hdf5")
    reference: FileHeader | None = None
    split_info: dict[str, dict] = {}
    parameters: dict[str, dict] = {}
    for split, files in files_by_split.items():
        info = split_info.setdefault(split, {"files": 0, "trajectories": 0, "steps": []})
        for file in files:
            header = read_file_header(file)
            if reference is None:
                reference = header
            else:
                check_consistent(reference, header)
            info["files"] += 1
            info["trajectories"] += header.n_trajectories
            info["steps"].append(header.n_steps)
            parameters[f"{split}/{file.name}" if split != "file" else file.name] = header.parameters
    assert reference is not None
    return DatasetMetadata(
        path=path, dataset_name=reference.dataset_name, grid_type=reference.grid_type,
        n_spatial_dims=reference.n_spatial_dims, spatial_dims=reference.spatial_dims,
        spatial_shape=reference.spatial_shape, field_names=reference.field_names,
        constant_field_names=reference.constant_field_names, fields=reference.fields,
        boundary_types=reference.boundary_types, periodic=reference.periodic, dt=reference.dt,
        splits=split_info, parameters=parameters, scalars=list(reference.scalars),
        has_stats=path.is_dir() and (path / "stats.yaml").is_file(),
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _tensor_order(name: str, array: np.ndarray, n_spatial_dims: int, split: str) -> int:
    order = array.ndim - 2 - n_spatial_dims
    if order not in (0, 1, 2) or any(s != n_spatial_dims for s in array.shape[array.ndim - order:]):
        raise ValueError(
            f"splits[{split!r}][{name!r}]: shape {array.shape} is not [traj, time, *space] (t0), "
            f"[traj, time, *space, {n_spatial_dims}] (t1) or [traj, time, *space, {n_spatial_dims}, "
            f"{n_spatial_dims}] (t2) for {n_spatial_dims} spatial dims"
        )
    return order


def _normalise_parameters(simulation_parameters, splits: Mapping[str, Mapping[str, np.ndarray]],
                          n_traj: dict[str, int]) -> dict[str, list[dict]]:
    """Accept ``None``, one dict for everything, ``{split: dict}`` or ``{split: [dict per trajectory]}``;
    return ``{split: [dict per trajectory]}``."""
    if simulation_parameters is None:
        return {s: [{} for _ in range(n)] for s, n in n_traj.items()}
    if not isinstance(simulation_parameters, Mapping):
        raise ValueError("simulation_parameters: expected a dict, got "
                         f"{type(simulation_parameters).__name__}")
    per_split = simulation_parameters and all(
        k in splits and isinstance(v, (Mapping, list, tuple)) for k, v in simulation_parameters.items())
    out = {}
    for split, n in n_traj.items():
        value = simulation_parameters.get(split, {}) if per_split else simulation_parameters
        if isinstance(value, Mapping):
            out[split] = [dict(value) for _ in range(n)]
        else:
            if len(value) != n:
                raise ValueError(f"simulation_parameters[{split!r}]: {len(value)} entries for {n} trajectories; "
                                 "expected one dict per trajectory")
            out[split] = [dict(v) for v in value]
    return out


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        text = f"{float(value):g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def _file_name(dataset_name: str, params: Mapping) -> str:
    parts = [dataset_name] + [f"{k}_{_format_value(v)}" for k, v in params.items()]
    return "_".join(parts) + ".hdf5"


def _boundary_type(value, dim: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "PERIODIC" if value else "OPEN"
    text = str(value).upper()
    if text not in BC_TYPES:
        raise ValueError(f"periodic[{dim!r}]: got {value!r}, expected True/False or one of "
                         f"{[t.lower() for t in BC_TYPES]}")
    return text


def _write_file(path: Path, *, dataset_name: str, grid_type: str, fields: Mapping[str, np.ndarray],
                orders: Mapping[str, int], time: np.ndarray, coords: Mapping[str, np.ndarray],
                boundaries: Mapping[str, str], params: Mapping, scalars: Mapping[str, float]) -> None:
    spatial_dims = list(coords)
    n_traj = next(iter(fields.values())).shape[0]
    with h5py.File(path, "w") as f:
        f.attrs["dataset_name"] = dataset_name
        f.attrs["grid_type"] = grid_type
        f.attrs["n_spatial_dims"] = len(spatial_dims)
        f.attrs["n_trajectories"] = n_traj
        f.attrs["simulation_parameters"] = list(params)
        for key, value in params.items():
            f.attrs[key] = value

        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = spatial_dims
        t = dims.create_dataset("time", data=np.asarray(time, dtype=np.float32))
        t.attrs["sample_varying"] = False
        t.attrs["time_varying"] = True
        for d in spatial_dims:
            ds = dims.create_dataset(d, data=np.asarray(coords[d], dtype=np.float32))
            ds.attrs["sample_varying"] = False
            ds.attrs["time_varying"] = False

        bcs = f.create_group("boundary_conditions")
        for d in spatial_dims:
            bc_type = boundaries[d]
            group = bcs.create_group(f"{d}_{bc_type.lower()}")
            group.attrs["associated_dims"] = [d]
            group.attrs["associated_fields"] = np.array([], dtype=h5py.string_dtype())
            group.attrs["bc_type"] = bc_type
            group.attrs["sample_varying"] = False
            group.attrs["time_varying"] = False
            mask = np.zeros(len(coords[d]), dtype=bool)
            mask[[0, -1]] = True  # the boundary is both ends of the axis
            group.create_dataset("mask", data=mask)

        scalar_group = f.create_group("scalars")
        all_scalars = {k: v for k, v in params.items() if isinstance(v, (int, float, np.number, bool, np.bool_))}
        all_scalars.update(scalars)
        scalar_group.attrs["field_names"] = list(all_scalars)
        for key, value in all_scalars.items():
            ds = scalar_group.create_dataset(key, data=np.asarray(value))
            ds.attrs["sample_varying"] = False
            ds.attrs["time_varying"] = False

        for order, group_name in enumerate(FIELD_GROUPS):
            group = f.create_group(group_name)
            names = [n for n in fields if orders[n] == order]
            group.attrs["field_names"] = names
            for name in names:
                ds = group.create_dataset(name, data=np.asarray(fields[name], dtype=np.float32))
                ds.attrs["dim_varying"] = np.ones(len(spatial_dims), dtype=bool)
                ds.attrs["sample_varying"] = True
                ds.attrs["time_varying"] = True
                if order == 2:
                    ds.attrs["symmetric"] = False
                    ds.attrs["antisymmetric"] = False


def compute_stats(source: str | os.PathLike | Mapping[str, np.ndarray], n_spatial_dims: int = 2,
                  split: str = "train") -> dict[str, dict[str, float | list]]:
    """Compute The Well's normalisation statistics.

    Args:
        source: either a Well dataset directory (statistics over the files of ``split``, read one
            trajectory at a time), or a mapping ``field name -> array [traj, time, *space, (d, (d))]``.
        n_spatial_dims: number of spatial axes (only used for a mapping; read from files otherwise).
        split: split whose files are reduced when ``source`` is a directory.

    Returns:
        ``{"mean": {field: value}, "std": ..., "mean_delta": ..., "std_delta": ..., "rms": ...,
        "rms_delta": ...}`` with floats for scalar fields and lists for vector/tensor fields.
    """
    acc = StatsAccumulator()
    if isinstance(source, Mapping):
        for name, array in source.items():
            order = np.ndim(array) - 2 - n_spatial_dims
            if order not in (0, 1, 2):
                raise ValueError(
                    f"field {name!r}: expected an array [traj, time, *space(, d(, d))] with {n_spatial_dims} "
                    f"spatial axes, got shape {tuple(np.shape(array))}"
                )
            for traj in range(np.shape(array)[0]):
                acc.add(name, np.asarray(array[traj : traj + 1]), order)
        return acc.result()

    for name, chunk, order, time_varying in iter_field_chunks(dataset_location(source), split):
        acc.add(name, chunk, order, time_varying=time_varying)
    return acc.result()


MARKER = ".physfm-dataset"
"""A file physfm writes into every dataset folder it creates: ``--overwrite`` replaces only folders holding it."""


def check_replaceable(out_dir: str | os.PathLike) -> None:
    """Refuse to replace ``out_dir`` unless it is a dataset physfm wrote, with nothing else inside.

    ``--overwrite`` must never delete a user's folder or file: only a directory holding physfm's marker, a
    ``stats.yaml``, and ``data/<split>/*.hdf5`` qualifies.
    """
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise ValueError(f"out: {out_dir} exists and is not a dataset folder; --overwrite replaces only a dataset "
                         "that physfm wrote. Choose another --out or remove it yourself")
    if not (out_dir / MARKER).is_file():
        raise ValueError(f"out: {out_dir} was not written by physfm (no {MARKER} file); --overwrite replaces only "
                         "datasets physfm wrote. Choose another --out or remove it yourself")
    foreign = [p.name for p in out_dir.iterdir() if p.name not in (MARKER, "stats.yaml", "data")]
    data = out_dir / "data"
    if data.is_dir():
        for split in data.iterdir():
            if split.name not in SPLITS or not split.is_dir():
                foreign.append(f"data/{split.name}")
                continue
            foreign += [f"data/{split.name}/{f.name}" for f in split.iterdir() if f.suffix != ".hdf5" or not f.is_file()]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ValueError(f"out: {out_dir} holds files physfm did not write ({shown}); --overwrite would delete "
                         "them. Move them away or choose another --out")


def write_well_dataset(
    out_dir: str | os.PathLike,
    dataset_name: str,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    dt: float,
    coords: Mapping[str, np.ndarray],
    periodic: Mapping[str, bool | str],
    grid_type: str = "cartesian",
    simulation_parameters: Mapping | None = None,
    scalars: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Well-format dataset: ``out_dir/data/<split>/<name>[_<param>_<value>...].hdf5`` + ``stats.yaml``.

    Args:
        out_dir: dataset directory to create. Written under a hidden temporary sibling directory and
            renamed into place at the end, so an interrupted write never leaves a dataset that looks
            complete.
        dataset_name: stored as ``@dataset_name`` and used as file-name prefix.
        splits: ``{"train": fields, "valid": fields, "test": fields}`` (any non-empty subset). ``fields``
            maps a field name to ``[traj, time, *space]`` (scalar field, ``t0_fields``),
            ``[traj, time, *space, d]`` (vector, ``t1_fields``, flattened on read as ``name_x, name_y``)
            or ``[traj, time, *space, d, d]`` (tensor, ``t2_fields``). Splits with 0 trajectories are skipped.
        dt: time between stored frames; the time grid is ``dt * arange(T)``.
        coords: 1-D coordinates per spatial axis, in array axis order (e.g. ``{"x": ..., "y": ...}``).
        periodic: per axis, ``True`` (periodic), ``False`` (open), or a Well bc type
            (``"periodic"``, ``"open"``, ``"wall"``).
        grid_type: ``"cartesian"`` (or ``"spherical"``).
        simulation_parameters: ``None``; one dict for all trajectories (``{"Reynolds": 1e4}``);
            ``{split: dict}``; or ``{split: [dict per trajectory]}``. As in The Well, each file holds one
            parameter set (stored as root attributes listed in ``@simulation_parameters`` and as constant
            scalars), so trajectories are grouped into one file per distinct parameter set.
        scalars: extra constant scalars for every file.
        overwrite: replace an existing ``out_dir`` (only after the new one is fully written), and only if it is
            a dataset physfm wrote with nothing else inside (:func:`check_replaceable`).

    Returns:
        ``Path(out_dir)``.  ``stats.yaml`` holds The Well's statistics over the train split (or over all
        splits written when there is no train split).
    """
    out_dir = Path(out_dir)
    _check_destination(out_dir, dataset_name, overwrite)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"splits: unknown split names {unknown}, expected a subset of {list(SPLITS)}")
    if not (isinstance(dt, (int, float, np.number)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: got {dt!r}, expected a positive finite number")
    coords, boundaries = _check_grid(coords, periodic)
    splits, orders, n_steps = _check_fields(splits, coords)  # every array, before touching the disk
    n_traj = {split: next(iter(fields.values())).shape[0] for split, fields in splits.items()}
    params_per_split = _normalise_parameters(simulation_parameters, splits, n_traj)
    file_attributes = {"dataset_name": dataset_name, "grid_type": grid_type, "orders": orders, "coords": coords,
                       "time": dt * np.arange(n_steps, dtype=np.float64), "boundaries": boundaries,
                       "scalars": dict(scalars or {})}

    with writing_dataset(out_dir) as tmp:
        for split, fields in splits.items():
            _write_split(tmp / "data" / split, fields, params_per_split[split], **file_attributes)
        # The Well's statistics are over the train split, or over every split written when there is none.
        stats_splits = [split for split in splits if split == "train" or "train" not in splits]
        write_stats(_statistics([splits[split] for split in stats_splits], orders), tmp / "stats.yaml")
    return out_dir


def _check_destination(out_dir: Path, dataset_name: str, overwrite: bool) -> None:
    if not dataset_name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", dataset_name):
        raise ValueError(f"dataset_name: got {dataset_name!r}, expected a non-empty name of letters, digits, _.+-")
    if out_dir.exists() and not overwrite:
        raise ValueError(f"out_dir {out_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    check_replaceable(out_dir)


def _check_grid(coords: Mapping[str, np.ndarray], periodic: Mapping[str, bool | str]
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The coordinates as 1-D float64 arrays, and each axis' Well boundary type."""
    coords = {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in coords.items()}
    if not coords:
        raise ValueError("coords: expected one 1-D coordinate array per spatial axis, got none")
    if set(periodic) != set(coords):
        raise ValueError(f"periodic: keys {sorted(periodic)} must equal the coords axes {list(coords)}")
    boundaries = {d: _boundary_type(periodic[d], d) for d in coords}
    spatial_shape = tuple(len(c) for c in coords.values())
    if 0 in spatial_shape:
        raise ValueError(f"coords: spatial shape {spatial_shape} ({list(coords)}) has an empty axis; expected at "
                         "least one cell per spatial axis")
    return coords, boundaries


def _check_fields(splits: Mapping[str, Mapping[str, np.ndarray]], coords: Mapping[str, np.ndarray]
                  ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int], int]:
    """The non-empty splits as arrays, each field's tensor order and the number of stored frames; every split must
    hold the same fields, on the coordinates' grid, with as many frames and (within a split) trajectories."""
    n_spatial_dims, spatial_shape = len(coords), tuple(len(c) for c in coords.values())
    splits = {s: {k: np.asarray(v) for k, v in fields.items()} for s, fields in splits.items()}
    splits = {s: fields for s, fields in splits.items() if fields and next(iter(fields.values())).shape[0] > 0}
    if not splits:
        raise ValueError("splits: no split has any trajectory; expected at least one non-empty split")
    reference_names: list[str] | None = None
    orders: dict[str, int] = {}
    n_steps: int | None = None
    for split, fields in splits.items():
        if reference_names is None:
            reference_names = list(fields)
        elif list(fields) != reference_names:
            raise ValueError(f"splits[{split!r}]: fields {list(fields)} differ from {reference_names}; "
                             "every split must have the same fields in the same order")
        for name, array in fields.items():
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", str(name)):
                raise ValueError(f"splits[{split!r}]: field name {name!r} has characters HDF5 or The Well cannot "
                                 "store as a name ('/' makes a nested group); expected letters, digits and _.+-")
            order = _tensor_order(name, array, n_spatial_dims, split)
            orders[name] = order
            space = array.shape[2:2 + n_spatial_dims]
            if space != spatial_shape:
                raise ValueError(f"splits[{split!r}][{name!r}]: spatial shape {space} does not match the coords "
                                 f"lengths {spatial_shape} ({list(coords)})")
            if array.shape[0] != next(iter(fields.values())).shape[0]:
                raise ValueError(f"splits[{split!r}][{name!r}]: {array.shape[0]} trajectories, other fields have "
                                 f"{next(iter(fields.values())).shape[0]}")
            if n_steps is None:
                n_steps = array.shape[1]
            elif array.shape[1] != n_steps:
                raise ValueError(f"splits[{split!r}][{name!r}]: {array.shape[1]} time steps, expected {n_steps} "
                                 "like the other fields")
            if not np.issubdtype(array.dtype, np.number):
                raise ValueError(f"splits[{split!r}][{name!r}]: dtype {array.dtype}, expected a numeric array")
    return splits, orders, n_steps


def _write_split(folder: Path, fields: Mapping[str, np.ndarray], params_per_trajectory: Sequence[Mapping],
                 dataset_name: str, **file_attributes) -> None:
    """One split's files: trajectories grouped by identical parameter set, one file per set, as The Well does."""
    folder.mkdir(parents=True)
    groups: dict[str, list[int]] = {}
    for i, params in enumerate(params_per_trajectory):
        groups.setdefault(repr(sorted(params.items(), key=lambda kv: kv[0])), []).append(i)
    for indices in groups.values():
        params = params_per_trajectory[indices[0]]
        _write_file(folder / _file_name(dataset_name, params), dataset_name=dataset_name,
                    fields={k: v[indices] for k, v in fields.items()}, params=params, **file_attributes)


def _statistics(splits: Sequence[Mapping[str, np.ndarray]], orders: Mapping[str, int]) -> dict:
    """The Well's normalisation statistics over the trajectories of ``splits``, one trajectory at a time."""
    stats = StatsAccumulator()
    for fields in splits:
        for name, array in fields.items():
            for i in range(array.shape[0]):
                stats.add(name, array[i:i + 1], orders[name])
    return stats.result()


@contextlib.contextmanager
def writing_dataset(out_dir: Path) -> Iterator[Path]:
    """Write a dataset folder all at once (:func:`physfm._io.atomic_directory`): yields an empty temporary folder,
    which replaces ``out_dir``, with physfm's :data:`MARKER` inside, when the block exits cleanly; on any error
    ``out_dir`` is left as it was. A failed local write is one message naming the folder; a failed source (a
    ``ConnectionError``) passes through. The caller checks first that ``out_dir`` may be replaced
    (:func:`check_replaceable`)."""
    try:
        with atomic_directory(out_dir) as tmp:
            yield tmp
            (tmp / MARKER).write_text("written by physfm; `--overwrite` may replace this folder\n")
    except ConnectionError:
        raise
    except OSError as error:
        raise ValueError(write_error_message(out_dir, error)) from None


def write_error_message(path: Path, error: OSError) -> str:
    """What a failed write means for the user (h5py and torch bury ENOSPC in their own messages)."""
    text = str(error)
    if error.errno == errno.ENOSPC or "No space left" in text or "errno = 28" in text:
        return f"no space left on the device holding {path}; nothing was written there. Free space or choose another path"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in text:
        return f"cannot write {path}: permission denied (or a read-only file system); nothing was written there"
    return f"cannot write {path} ({error}); nothing was written there"
