"""Whether a checkpoint argument names a local folder or a Hub repo, decided before any network call.

A typo in a local path (``--tokeniser runs/tokk``) must not be sent to the Hub, retried for half a minute and
reported as a connection problem. A string that is not an existing folder is taken as a Hub id only if it
has the Hub's ``namespace/name`` form and no local folder nearby has a similar name.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

HUB_EXAMPLE = "physfm/tokeniser-shear-flow"


def check_checkpoint_reference(spec: str | os.PathLike, argument: str) -> Path | str:
    """``Path`` for an existing folder, ``str`` for a plausible Hub id; else one ``FileNotFoundError``."""
    text = str(spec)
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


__all__ = ["check_checkpoint_reference"]
