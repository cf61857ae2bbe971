"""``physfm inspect DIR``: print a Well dataset's summary and validate it.

Validation reads every file's header (required attributes and groups, shapes, consistent field names
and grid across files), checks ``stats.yaml`` covers every field, and — unless ``--no_scan`` — scans
all field values for NaN/Inf one trajectory at a time. Any problem raises one ValueError, which the
``physfm`` dispatcher prints before exiting with status 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._cli_parsing import Parser
from .stats import check_statistic, load_stats
from .well_format import (
    DatasetMetadata,
    check_finite,
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
        directory = meta.path / "data" / split if meta.path.is_dir() else meta.path.parent
        files = [meta.path] if meta.path.is_file() else sorted(
            p for p in directory.iterdir() if p.suffix in (".hdf5", ".h5"))
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
    parser.add_argument("path", help="dataset directory (<dataset>/data/<split>/*.hdf5) or one HDF5 file")
    parser.add_argument("--no_scan", action="store_true", help="skip the NaN/Inf scan of all field values")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.path)
    meta = read_well_metadata(path)
    print(meta.summary())
    if path.is_dir():
        validate_stats(meta)
    if not args.no_scan:
        n = scan_values(meta)
        print(f"values       {n} trajectories scanned, all finite")
    print("valid        yes")
    return 0
