"""``physfm download <org>/<name>``: some files of a Hub-hosted Well dataset as a local Well-format folder.

The folder gets the repository's ``stats.yaml`` (statistics of the whole train split, as The Well
computes them) and the first ``--n_files`` HDF5 files of each ``--split``, in The Well's layout
``DIR/data/<split>/*.hdf5``, so ``WellWindowDataset(DIR)`` and ``physfm train --data DIR`` read it.
Everything is written into a temporary sibling folder that becomes ``DIR`` only once complete:
an interrupted download leaves ``DIR`` as it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants

from .._cli_parsing import Parser
from .hub_files import HubFolder, HubReadError, is_hub_url, transport_errors
from .well_format import SPLITS, check_replaceable, hdf5_files, read_well_metadata, writing_dataset


def _hub_url(repo: str, revision: str | None) -> str:
    if is_hub_url(repo):
        if revision is not None:
            raise ValueError(f"--revision: {repo!r} already names its revision (or main); give one or the other")
        return repo
    return f"hf://datasets/{repo}" + (f"@{revision}" if revision else "")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        return  # an empty folder holds nothing to lose
    if out_dir.exists() and not overwrite:
        raise ValueError(f"--out: {out_dir} already exists; pass --overwrite to replace it (only a dataset physfm "
                         "wrote is replaced)")
    check_replaceable(out_dir)


def download_dataset(repo: str, out_dir: str | os.PathLike, splits: Sequence[str] = SPLITS,
                     n_files: int | None = None, revision: str | None = None, overwrite: bool = False,
                     progress: bool = True) -> Path:
    """Copy ``stats.yaml`` and the first ``n_files`` files (all when None) of each split to ``out_dir``.

    Args:
        repo: ``<org>/<name>`` of a Hub dataset repository (e.g. The Well's ``polymathic-ai/shear_flow``), or
            ``hf://datasets/<org>/<name>[@<revision>][/<folder>]``.
        splits: which of ``data/{train,valid,test}`` to copy; a split the repository lacks is an error.
        revision: branch, tag or commit (default ``main``); every file comes from the one commit it points at.
        overwrite: replace ``out_dir`` if it is a dataset physfm wrote (never anything else).
    """
    out_dir = Path(out_dir)
    if n_files is not None and n_files < 1:
        raise ValueError(f"--n_files: got {n_files}, expected a positive number of files per split")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"--split: got {list(splits)}, expected some of {list(SPLITS)}")
    if constants.is_offline_mode():
        raise ValueError("physfm download fetches files from the Hub, but HF_HUB_OFFLINE=1 is set; unset it, or "
                         "read a dataset cached earlier directly with its hf:// path")
    _check_out_dir(out_dir, overwrite)
    folder = HubFolder(_hub_url(repo, revision))
    wanted = [folder / "stats.yaml"]
    if not wanted[0].is_file():
        raise FileNotFoundError(f"{folder}: no stats.yaml at its root; expected The Well's layout (stats.yaml beside "
                                "data/<split>/*.hdf5)")
    for split in splits:
        files = hdf5_files(folder, f"data/{split}")
        if not files:
            present = [s for s in SPLITS if hdf5_files(folder, f"data/{s}")]
            raise FileNotFoundError(f"{folder}: no HDF5 files under data/{split}/; it has the splits {present}")
        wanted += files[:n_files]

    from fsspec.callbacks import NoOpCallback, TqdmCallback
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(endpoint=folder.endpoint)
    with writing_dataset(out_dir) as tmp:
        for file in wanted:
            target = tmp / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            callback = TqdmCallback(tqdm_kwargs={"desc": file.name, "unit": "B", "unit_scale": True,
                                                 "leave": False}) if progress else NoOpCallback()
            remote = f"datasets/{folder.url.repo_id}@{folder.commit}/{file.repo_path}"
            try:
                fs.get_file(remote, str(target), callback=callback)
            except (*transport_errors(), OSError) as error:
                if isinstance(error, OSError) and not isinstance(error, ConnectionError) and \
                        "Consistency check" not in str(error):
                    raise  # the local disk failed: writing_dataset names it
                raise HubReadError(f"downloading {file} from {folder.where()} failed ({type(error).__name__}: "
                                   f"{error}); nothing was written to {out_dir}. Check the connection and retry"
                                   ) from None
            if target.stat().st_size != file.size:
                raise HubReadError(f"downloading {file} from {folder.where()} gave {target.stat().st_size} bytes, "
                                   f"expected {file.size}; nothing was written to {out_dir}. Retry")
    return out_dir


def build_parser() -> Parser:
    parser = Parser(
        prog="physfm download",
        description="Copy stats.yaml and some HDF5 files of a Hub-hosted Well dataset (e.g. The Well's "
                    "polymathic-ai/<dataset_name>) into a local Well-format folder.")
    parser.add_argument("repo", help="<org>/<name> of a Hub dataset repository, e.g. polymathic-ai/shear_flow, or "
                                     "hf://datasets/<org>/<name>[@<revision>]")
    parser.add_argument("--out", required=True, help="dataset folder to create")
    parser.add_argument("--split", nargs="+", default=list(SPLITS), choices=SPLITS,
                        help="splits to copy (default: all three)")
    parser.add_argument("--n_files", type=int, default=None, help="HDF5 files per split, the first in name order "
                                                                   "(default: all)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is a dataset physfm wrote")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = download_dataset(args.repo, args.out, splits=args.split, n_files=args.n_files, revision=args.revision,
                           overwrite=args.overwrite, progress=not args.no_progress)
    print(read_well_metadata(out).summary())
    return 0
