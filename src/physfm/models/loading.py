"""Where a pretrained model comes from: a local folder or a Hub repo, decided before any network call.

The models load one another (a dynamics model built on a pretrained tokeniser), also as Hub remote code where
the rest of physfm is not installed, so the rule lives here. :mod:`physfm.checkpoints` builds on it, adding
training checkpoints and the translation of Hub errors into clear messages.

A typo in a local path (``--tokeniser runs/tokk``) must not be sent to the Hub, retried for half a minute and
reported as a connection problem: a string that is not an existing folder is taken as a Hub id only if it has the
Hub's ``namespace/name`` form and no local folder nearby has a similar name.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import PretrainedConfig, PreTrainedModel

HUB_EXAMPLE = "physfm/tokeniser-shear-flow"
# What `from_pretrained` passes on to the Hub download, and so also to reading the config first.
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download")


def check_checkpoint_reference(name_or_path: str | os.PathLike, argument: str) -> Path | str:
    """``Path`` for an existing folder, ``str`` for a plausible Hub id; else one ``FileNotFoundError``."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{argument}: {text!r} is a file; expected a checkpoint folder or a Hub id "
                                f"such as {HUB_EXAMPLE!r}")
    parent = path.parent if str(path.parent) else Path(".")
    nearby = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    close = difflib.get_close_matches(path.name, nearby, n=1, cutoff=0.75)
    looks_local = (os.path.isabs(text) or text.startswith((".", "~")) or text.endswith(("/", os.sep))
                   or text.count("/") != 1)
    if looks_local or close:
        hint = f" (did you mean {str(parent / close[0])!r}?)" if close else ""
        raise FileNotFoundError(f"{argument}: no folder {text!r}{hint}; expected a checkpoint folder or a Hub id "
                                f"such as {HUB_EXAMPLE!r}")
    return text


def checkpoint_config(name_or_path: str | os.PathLike, argument: str, **hub_kwargs) -> tuple[Path | str, dict]:
    """The checked reference (see :func:`check_checkpoint_reference`) and the ``config.json`` it holds."""
    reference = check_checkpoint_reference(name_or_path, argument)
    if isinstance(reference, Path) and not (reference / "config.json").is_file():
        raise FileNotFoundError(f"{argument}: {str(name_or_path)!r} has no config.json; expected a folder written by "
                                "save_pretrained")
    hub_kwargs = {k: v for k, v in hub_kwargs.items() if k in HUB_KWARGS}
    config_dict, _ = PretrainedConfig.get_config_dict(str(reference), **hub_kwargs)
    return reference, config_dict


def model_class_for(config_dict: dict, classes: Mapping[str, type], name_or_path: str | os.PathLike,
                    argument: str) -> type:
    """The class in ``classes`` (by ``model_type``) that loads this checkpoint; else a ``ValueError`` naming both."""
    model_type = config_dict.get("model_type")
    if model_type not in classes:
        expected = " or ".join(repr(t) for t in classes)
        raise ValueError(f"{argument}: {str(name_or_path)!r} holds a {model_type!r} checkpoint; expected a {expected} one.")
    return classes[model_type]


def load_checkpoint(name_or_path: str | os.PathLike, classes: Mapping[str, type], argument: str,
                    **kwargs) -> PreTrainedModel:
    """A model of one of ``classes`` (keyed by ``model_type``) from a local folder or a Hub id, in float32.

    ``kwargs`` go to ``from_pretrained`` (``revision``, ``token``, ...)."""
    reference, config_dict = checkpoint_config(name_or_path, argument, **kwargs)
    model_class = model_class_for(config_dict, classes, name_or_path, argument)
    kwargs.setdefault("dtype", torch.float32)
    return model_class.from_pretrained(str(reference), **kwargs)


__all__ = ["HUB_EXAMPLE", "check_checkpoint_reference", "checkpoint_config", "load_checkpoint", "model_class_for"]
