"""``physfm inspect DIR``: print a Well dataset's summary and validate it.

Validation reads every file's header (required attributes and groups, shapes, consistent field names
and grid across files), checks ``stats.yaml`` covers every field, and scans all field values for NaN/Inf
one trajectory at a time (local datasets unless ``--no_scan``, ``hf://`` ones only with ``--scan``: there
the scan reads every byte). Any problem raises one ValueError, which the ``physfm`` dispatcher prints before
exiting with status 1.
"""

from __future__ import annotations

import numpy as np

from .._cli_parsing import Parser
from .hub_files import HubFolder
from .stats import check_statistic, load_stats
from .well_format import (
    DatasetMetadata,
    check_finite,
    dataset_location,
    hdf5_files,
    iter_field_chunks,
    open_well_file,
    read_field,
    read_file_header,
    read_well_metadata,
)


def scan_values(meta: DatasetMetadata) -> int:
    """Check every field value of every file is finite; returns the number of trajectories scanned."""
    n = 0
    for split in meta.splits:
        files = [meta.path] if meta.path.is_file() else hdf5_files(meta.path, f"data/{split}")
        for file in files:
            with open_well_file(file) as f:
                header = read_file_header(f)
                for traj in range(header.n_trajectories):
                    for field in header.fields:
                        data = read_field(f, field, header, traj)
                        if not field.time_varying:
                            data = data[None]
                        check_finite(data, file, traj, 0, 1, list(field.flat_names))
                    n += 1
    return n


def validate_stats(meta: DatasetMetadata) -> None:
    """``stats.yaml`` must exist and hold a finite mean and a positive std for every core field."""
    stats = load_stats(meta.path / "stats.yaml")
    for field in meta.fields:
        for key in ("mean", "std"):
            if field.name not in stats.get(key, {}):
                raise ValueError(f"{meta.path / 'stats.yaml'}: no {key!r} for field {field.name!r}; "
                                 "recompute it with physfm.data.compute_stats")
            check_statistic(np.asarray(stats[key][field.name], dtype=np.float64), key, field.name,
                             str(meta.path / "stats.yaml"))
    # A zero std is right only for a field that never varies: normalising a varying one by it scales it by 1e4
    # and gives losses of ~1e7, with no other symptom.
    zero = {name for name, std in stats["std"].items() if np.any(np.asarray(std, dtype=np.float64) == 0)}
    split = "train" if "train" in meta.splits else next(iter(meta.splits))
    for name, chunk, _, _ in iter_field_chunks(meta.path, split) if zero else ():
        if name in zero and np.ptp(chunk) > 0:
            raise ValueError(f"{meta.path / 'stats.yaml'}: std of field {name!r} is 0 but its {split} values vary "
                             f"({chunk.min():.4g} .. {chunk.max():.4g}); recompute it with physfm.data.compute_stats")


def build_parser() -> Parser:
    parser = Parser(prog="physfm inspect", description="Summarise and validate a Well-format dataset.")
    parser.add_argument("path", help="dataset directory (<dataset>/data/<split>/*.hdf5), one HDF5 file, or a Hub "
                                     "dataset: hf://datasets/<org>/<name>[@<revision>]")
    # Two flags rather than BooleanOptionalAction, whose generated --no-scan has no underscore spelling.
    parser.add_argument("--scan", dest="scan", action="store_const", const=True, default=None,
                        help="scan all field values for NaN/Inf (the default for local data; hf:// paths are not "
                             "scanned unless asked, since the scan reads every byte)")
    parser.add_argument("--no_scan", dest="scan", action="store_const", const=False, help="skip the scan")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = dataset_location(args.path)
    meta = read_well_metadata(path)
    print(meta.summary())
    if path.is_dir():
        validate_stats(meta)
    if args.scan if args.scan is not None else not isinstance(path, HubFolder):
        n = scan_values(meta)
        print(f"values       {n} trajectories scanned, all finite")
    else:
        print("values       not scanned (--scan reads and checks every value)")
    print("valid        yes")
    return 0
