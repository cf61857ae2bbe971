"""Writing files and folders so that a reader never sees half of one.

Everything physfm writes goes through here: text, JSON and YAML files, figures, and whole folders (a dataset).
Each is written under a hidden temporary sibling named after the writing process
(``.<name>.tmp-<pid>-<random>``) and renamed into place only when complete, so ``kill -9`` at any moment leaves
the old version or the new one, never a mix. A temporary left behind by a killed process is removed by the
next write of the same path; one whose process still runs (another experiment worker) is left alone. New files
get the mode the umask gives, like any other file (``tempfile.mkstemp`` would give 0600).

Figures are drawn with matplotlib's non-interactive Agg backend (:func:`pyplot`): physfm runs headless.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def umask_file_mode() -> int:
    """The mode a newly created file gets under the current umask (``open`` gives 0666 minus it)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that carries this process's id (see :func:`remove_abandoned`)."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_abandoned(path: Path) -> None:
    """Delete the temporaries of earlier writes of ``path`` whose process is gone (a killed run)."""
    if not path.parent.is_dir():
        return
    for leftover in path.parent.glob(f".{path.name}.tmp-*-*"):
        pid = leftover.name.removeprefix(f".{path.name}.tmp-").split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write ``path``'s new content to; renamed into place when the block succeeds."""
    path = Path(path)
    remove_abandoned(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, payload: Any, **dumps: Any) -> Path:
    """``payload`` as indented JSON (``dumps`` go to ``json.dumps``, e.g. ``default=``), written atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=2, **dumps) + "\n")


def atomic_write_yaml(path: str | os.PathLike, payload: Any) -> Path:
    """``payload`` as YAML in its own key order, written atomically."""
    return atomic_write_text(path, yaml.safe_dump(payload, sort_keys=False))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder to fill; it becomes ``path`` when the block succeeds.

    An existing ``path`` is replaced only then (moved aside, the new folder renamed in, the old one deleted), so a
    failure or a kill at any moment leaves the old folder whole. On an error the temporary folder is deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (physfm runs headless)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (its format from ``path``'s suffix), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None)
    finally:
        pyplot().close(fig)
    return path


__all__ = ["atomic_directory", "atomic_file", "atomic_write_json", "atomic_write_text", "atomic_write_yaml",
           "pyplot", "remove_abandoned", "save_figure", "umask_file_mode"]
