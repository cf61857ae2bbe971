"""Atomic training checkpoints: ``output_dir/checkpoint-<step>``.

A checkpoint is written by :meth:`accelerate.Accelerator.save_state` (model, optimiser,
scheduler, every rank's RNG states) into a hidden temp directory beside its final name,
plus ``trainer_state.json`` (step, loss history), the model's ``config.json`` and the field processor
(``preprocessor_config.json``: the statistics the run normalises with). Only when
all of that is on disk is the directory renamed into place, so ``kill -9`` at any moment
leaves either a complete checkpoint or none, and ``--resume_from_checkpoint latest`` never
picks up a half-written one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .._io import atomic_write_json, umask_file_mode
from ..checkpoints import STATE_NAME
from ..data.well_format import write_error_message

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-checkpoint-"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def resolve_checkpoint(reference: str | None, output_dir: str | os.PathLike) -> Path | None:
    """``--resume_from_checkpoint``: a directory, ``"latest"`` (None when there is none yet), or None."""
    if not reference:
        return None
    if reference == "latest":
        return latest_checkpoint(output_dir)
    path = Path(reference)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint: {reference!r} is not a directory; expected a checkpoint-<step> "
            f"directory or 'latest'"
        )
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint: {reference!r} has no {STATE_NAME}; it is not a complete physfm checkpoint"
        )
    return path


def read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_NAME).read_text())


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, trainer_state: dict[str, Any],
                    model_config=None, save_total_limit: int | None = None, processor=None) -> Path:
    """Save the full training state at ``step``; every process must call this."""
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f"{TMP_PREFIX}{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed run
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every rank writes its own RNG file into the same directory (shared file system).
    try:
        accelerator.save_state(str(tmp))
    except (OSError, RuntimeError) as error:  # torch reports a full disk as "RuntimeError: ... unexpected pos"
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, RuntimeError) and "unexpected pos" not in str(error) and "No space" not in str(error):
            raise
        reason = error if isinstance(error, OSError) else OSError(errno.ENOSPC, str(error))
        raise ValueError(f"saving checkpoint {final.name}: {write_error_message(output_dir, reason)}. Earlier "
                         "checkpoints are untouched") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if model_config is not None:
            model_config.save_pretrained(tmp)  # lets `physfm evaluate` read a checkpoint directly
        if processor is not None:
            processor.save_pretrained(tmp)  # a checkpoint promoted to a model keeps its physical units
        atomic_write_json(tmp / STATE_NAME, trainer_state)
        mode = umask_file_mode()
        for file in tmp.iterdir():  # safetensors writes 0600; a checkpoint's files should follow the umask
            if file.is_file() and file.stat().st_mode & 0o777 == 0o600:
                file.chmod(mode)
        if final.exists():  # re-saving the same step (e.g. end of a resumed run)
            shutil.rmtree(final)
        os.replace(tmp, final)
        if save_total_limit is not None and save_total_limit > 0:
            for _, old in list_checkpoints(output_dir)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def remove_stale_temp_dirs(output_dir: str | os.PathLike) -> None:
    """Delete half-written checkpoints a killed run left behind."""
    output_dir = Path(output_dir)
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            if child.name.startswith(TMP_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
