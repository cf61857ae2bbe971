"""``physfm convert``: users' NumPy / HDF5 arrays -> a Well-format dataset.

The user declares the array layout as an einops pattern (``"traj time x y field"``), the field names
(in the order of the ``field`` axis), ``dt`` and the periodic axes; everything else is open.
Fields named ``<base>_<axis>`` for every spatial axis (``velocity_x, velocity_y``) are stored as one
vector field ``<base>`` in ``t1_fields``, so they read back under the same flattened names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import einops
import h5py
import numpy as np

from .._cli_parsing import Parser
from .splits import split_counts
from .well_format import SPLITS, write_well_dataset

RESERVED_AXES = ("traj", "time", "field")


def load_array(file: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Load ``.npy``, ``.npz`` (``key`` = array name) or HDF5 (``key`` = dataset path) as an array."""
    file = Path(file)
    if file.is_dir():
        raise ValueError(f"{file} is a folder; expected a .npy, .npz, .h5 or .hdf5 file")
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    suffix = file.suffix.lower()
    if suffix == ".npy" and key is not None:
        raise ValueError(f"--key {key!r}: a .npy file holds one array; --key chooses an array in .npz or HDF5")
    if suffix == ".npy":
        try:
            return np.load(file, mmap_mode="r")
        except ValueError as error:
            raise ValueError(f"{file}: not a valid .npy file ({error})") from None
    if suffix == ".npz":
        with np.load(file) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(f"{file}: holds arrays {names}; pass --key NAME to choose one")
                key = names[0]
            if key not in names:
                raise ValueError(f"{file}: no array {key!r}; it holds {names}")
            return archive[key]
    if suffix in (".h5", ".hdf5", ".hdf"):
        try:
            f = h5py.File(file, "r")
        except OSError as error:
            raise ValueError(f"{file}: cannot be opened as HDF5 ({error}); truncated or corrupt?") from None
        with f:
            datasets: list[str] = []
            f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
            if key is None:
                if len(datasets) != 1:
                    raise ValueError(f"{file}: holds datasets {datasets}; pass --key PATH to choose one")
                key = datasets[0]
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise ValueError(f"{file}: no dataset {key!r}; it holds {datasets}")
            return f[key][()]
    raise ValueError(f"{file}: unsupported extension {suffix!r}; expected .npy, .npz, .h5 or .hdf5")


def _group_vector_fields(fields: Sequence[str], spatial_dims: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Group channel indices into Well fields: ``[("tracer", [0]), ("velocity", [1, 2])]``."""
    out: list[tuple[str, list[int]]] = []
    used: set[int] = set()
    index = {name: i for i, name in enumerate(fields)}
    for i, name in enumerate(fields):
        if i in used:
            continue
        for dim in spatial_dims:
            suffix = f"_{dim}"
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                members = [index.get(f"{base}_{d}") for d in spatial_dims]
                if all(m is not None for m in members) and not used.intersection(members):
                    out.append((base, members))
                    used.update(members)
                break
        if i not in used:
            out.append((name, [i]))
            used.add(i)
    return out


def convert_arrays(
    array: np.ndarray | str | os.PathLike,
    out: str | os.PathLike,
    fields: Sequence[str],
    layout: str,
    dt: float,
    periodic: Sequence[str] = (),
    split: Sequence[float] = (0.8, 0.1, 0.1),
    dataset_name: str | None = None,
    key: str | None = None,
    coords: Mapping[str, np.ndarray] | None = None,
    simulation_parameters: Mapping | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an array (or a ``.npy``/``.npz``/HDF5 file) as a Well-format dataset.

    Args:
        array: the data, or a path to load it from (``key`` chooses the array in .npz/HDF5).
        out: dataset directory to create.
        fields: channel names, in order along the ``field`` axis.
        layout: einops pattern naming the array's axes, e.g. ``"traj time x y field"``. Must contain
            ``time`` and ``field``; ``traj`` is optional (one trajectory if absent); every other name
            is a spatial axis. Axes named from ``x, y, z`` are stored in that order, as The Well does;
            other names keep their order in the pattern.
        dt: time between frames.
        periodic: names of periodic spatial axes; the others are open.
        split: train/valid/test fractions of the trajectories (taken in order, not shuffled); valid and test get
            at least one trajectory each when asked for and there are 3 or more (:func:`~physfm.data.splits.split_counts`).
        dataset_name: defaults to the output directory's name.
        coords: optional 1-D coordinates per spatial axis; default ``arange(N) / N`` on periodic axes and
            ``linspace(0, 1, N)`` on open ones.
    """
    source = str(array) if isinstance(array, (str, os.PathLike)) else "array"
    if isinstance(array, (str, os.PathLike)):
        array = load_array(array, key)
    array = np.asarray(array)
    axes = layout.split()
    if not axes or any(not a.isidentifier() for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"layout: got {layout!r}, expected distinct space-separated axis names such as "
                         "'traj time x y field' (grouped axes are not supported)")
    for required in ("time", "field"):
        if required not in axes:
            raise ValueError(f"layout {layout!r} has no {required!r} axis; expected e.g. 'traj time x y field'")
    spatial_dims = [a for a in axes if a not in RESERVED_AXES]
    if set(spatial_dims) <= {"x", "y", "z"}:
        spatial_dims.sort()  # The Well stores arrays as [x, y, (z)] whatever the user's order
    if not spatial_dims:
        raise ValueError(f"layout {layout!r} names no spatial axis; expected e.g. 'traj time x y field'")
    if array.ndim != len(axes):
        raise ValueError(f"{source}: array of shape {array.shape} ({array.ndim} axes) does not match layout "
                         f"{layout!r} ({len(axes)} axes)")
    fields = [f.strip() for f in fields if f.strip()]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ValueError(f"--fields names {twice} more than once; expected one distinct name per channel")
    n_field = array.shape[axes.index("field")]
    if len(fields) != n_field:
        raise ValueError(f"{source}: the 'field' axis of shape {array.shape} (layout {layout!r}) has {n_field} "
                         f"channels but --fields lists {len(fields)} names {fields}")
    unknown = [p for p in periodic if p not in spatial_dims]
    if unknown:
        raise ValueError(f"periodic: unknown axes {unknown}; the layout's spatial axes are {spatial_dims}")
    if np.iscomplexobj(array):
        raise ValueError(f"{source}: complex dtype {array.dtype}; expected real fields (store the real and imaginary "
                         "parts as two fields, e.g. psi_re,psi_im)")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{source}: dtype {array.dtype}, expected a numeric array")
    target = " ".join(["traj" if "traj" in axes else "", "time", *spatial_dims, "field"]).strip()
    try:
        data = einops.rearrange(array, f"{layout} -> {target}")
    except einops.EinopsError as error:
        raise ValueError(f"{source}: layout {layout!r} does not fit the array of shape {array.shape}: {error}") from None
    if "traj" not in axes:
        data = data[None]
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        traj, t = np.argwhere(~np.isfinite(data).reshape(*data.shape[:2], -1).all(-1))[0]
        raise ValueError(f"{source}: non-finite values (NaN/Inf) in trajectory {traj} at time index {t}; "
                         "expected finite floats")

    n_traj = data.shape[0]
    counts = split_counts(n_traj, split, "split")
    bounds = np.concatenate([[0], np.cumsum([counts[name] for name in SPLITS])])
    groups = _group_vector_fields(fields, spatial_dims)
    splits = {}
    for name, (lo, hi) in zip(SPLITS, zip(bounds[:-1], bounds[1:], strict=True), strict=True):
        if hi > lo:
            part = data[lo:hi]
            splits[name] = {base: part[..., idx[0]] if len(idx) == 1 else part[..., idx] for base, idx in groups}
    spatial_shape = data.shape[2:-1]
    if coords is None:
        coords = {d: (np.arange(n) / n if d in periodic else np.linspace(0.0, 1.0, n))
                  for d, n in zip(spatial_dims, spatial_shape, strict=True)}
    else:
        missing = [d for d in spatial_dims if d not in coords]
        if missing:
            raise ValueError(f"coords: missing axes {missing}; expected one array per spatial axis {spatial_dims}")
        coords = {d: coords[d] for d in spatial_dims}
    out = Path(out)
    return write_well_dataset(
        out, dataset_name=dataset_name or out.name, splits=splits, dt=dt, coords=coords,
        periodic={d: d in periodic for d in spatial_dims}, simulation_parameters=simulation_parameters,
        overwrite=overwrite)


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> Parser:
    parser = Parser(
        prog="physfm convert",
        description="Turn a NumPy (.npy/.npz) or HDF5 array into a Well-format dataset "
                    "(data/{train,valid,test}/*.hdf5 + stats.yaml).")
    parser.add_argument("file", help="input .npy, .npz, .h5 or .hdf5 file")
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--fields", required=True, type=_comma_list,
                        help="comma-separated channel names in 'field' axis order, e.g. tracer,velocity_x,velocity_y")
    parser.add_argument("--layout", required=True, help="einops axis names, e.g. 'traj time x y field'")
    parser.add_argument("--dt", required=True, type=float, help="time between stored frames")
    parser.add_argument("--periodic", default="", type=_comma_list, help="comma-separated periodic axes, e.g. x,y")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test fractions of trajectories")
    parser.add_argument("--dataset_name", default=None, help="dataset name (default: the --out directory name)")
    parser.add_argument("--key", default=None, help="array name in a .npz, or dataset path in an HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fractions = [float(v) for v in args.split.split(",")]
    except ValueError:
        raise ValueError(f"--split: got {args.split!r}, expected three comma-separated fractions like 0.8,0.1,0.1") from None
    out = convert_arrays(args.file, args.out, fields=args.fields, layout=args.layout, dt=args.dt,
                         periodic=args.periodic, split=fractions, dataset_name=args.dataset_name, key=args.key,
                         overwrite=args.overwrite)
    from .well_format import read_well_metadata

    print(read_well_metadata(out).summary())
    return 0
