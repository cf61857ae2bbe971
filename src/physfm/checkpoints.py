"""Where a checkpoint comes from: a local folder or a Hub repo, with every failure made clear.

- :func:`check_checkpoint_reference` decides local folder or Hub id before any network call: a typo in a local
  path (``--tokeniser runs/tokk``) must not be sent to the Hub, retried for half a minute and reported as a
  connection problem. A string that is not an existing folder is taken as a Hub id only if it has the Hub's
  ``namespace/name`` form and no local folder nearby has a similar name.
- :func:`hub_errors` translates huggingface_hub's and the transport's errors into one :class:`HubError`.
- :func:`load_pretrained` is ``AutoModel.from_pretrained`` with both.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import constants

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


class HubError(ValueError):
    """A Hub request that cannot succeed as asked: missing repo or revision, or no cached copy offline."""


class HubConnectionError(HubError, ConnectionError):
    """The Hub could not be reached or a transfer failed midway; nothing partial was left in the cache."""


def _endpoint() -> str:
    # Read at call time: huggingface_hub resolves HF_ENDPOINT once, at import.
    return constants.ENDPOINT


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None = None, token: str | bool | None = None,
               action: str = "download") -> Iterator[None]:
    """Translate huggingface_hub / transport errors into one clear :class:`HubError`.

    ``action`` ("download" or "upload") says what failed, and what a failure leaves behind."""
    direction, kept = ("to", "nothing was committed") if action == "upload" else ("from", "nothing partial was kept "
                                                                                  "in the cache")
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{_endpoint()}"
    try:
        yield
    except RevisionNotFoundError:
        refs = _available_refs(repo_id, token)
        raise HubError(
            f"revision: {revision!r} does not exist in {repo_id!r} on {where}; expected a branch, tag or commit id"
            + (f" (available: {refs})." if refs else ".")
        ) from None
    except GatedRepoError:
        raise HubError(f"repo_id: {repo_id!r} on {where} is gated; request access and pass a token.") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"repo_id: {repo_id!r} does not exist on {where} (or it is private and no valid token was given); "
            "expected an existing model repo such as 'physfm/tokeniser-shear-flow'."
        ) from None
    except RemoteEntryNotFoundError as error:
        raise HubError(f"repo_id: {repo_id!r}@{revision or 'main'} lacks a file it needs: {error}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        if constants.is_offline_mode():
            raise HubError(
                f"repo_id: {repo_id!r}@{revision or 'main'} is not in the local cache and HF_HUB_OFFLINE=1 forbids "
                "downloading it; download it once online (physfm hub pull) or unset HF_HUB_OFFLINE."
            ) from None
        raise HubConnectionError(
            f"could not {action} {repo_id!r}@{revision or 'main'} {direction} {where}: {_root_cause(error)}. "
            f"Check the connection (and HF_ENDPOINT) and retry; {kept}."
        ) from None
    except (httpx2.TransportError, HfHubHTTPError, OSError) as error:
        if isinstance(error, HfHubHTTPError) and getattr(error.response, "status_code", 500) < 500:
            raise HubError(f"the Hub at {where} refused the request for {repo_id!r}: {error}") from None
        if isinstance(error, OSError) and not isinstance(error, ConnectionError) and "Consistency check" not in str(error):
            raise
        raise HubConnectionError(
            f"could not {action} {repo_id!r}@{revision or 'main'} {direction} {where}: the connection failed"
            f"{' midway' if action == 'download' else ''} ({type(error).__name__}: {error}). Check the connection (and "
            f"HF_ENDPOINT) and retry; {kept}."
        ) from None


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def _available_refs(repo_id: str, token: str | bool | None) -> str:
    from huggingface_hub import HfApi

    try:
        refs = HfApi(endpoint=_endpoint(), token=token).list_repo_refs(repo_id)
    except Exception:  # best effort: the message is still clear without the list
        return ""
    return ", ".join([f"branch {b.name!r}" for b in refs.branches] + [f"tag {t.name!r}" for t in refs.tags])


def load_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None, **kwargs: Any):
    """``AutoModel.from_pretrained`` in float32 with physfm registered and Hub errors made clear.

    Accepts a local checkpoint folder or a Hub id; ``kwargs`` go to ``from_pretrained``.
    """
    import torch
    from transformers import AutoModel

    import physfm  # noqa: F401 - registers the physfm Auto classes

    kwargs.setdefault("dtype", torch.float32)
    reference = check_checkpoint_reference(name_or_path, "checkpoint")
    if isinstance(reference, Path):
        if not (reference / "config.json").is_file():
            raise FileNotFoundError(f"checkpoint: {str(reference)!r} has no config.json; expected a save_pretrained "
                                    "folder.")
        return AutoModel.from_pretrained(reference, **kwargs)
    repo_id = reference
    with hub_errors(repo_id, revision):
        try:
            return AutoModel.from_pretrained(repo_id, revision=revision, **kwargs)
        except OSError as error:  # transformers wraps Hub errors in OSError; find the original
            cause = error.__cause__ or error.__context__
            if cause is not None and cause is not error:
                raise cause from None
            raise


__all__ = ["HubConnectionError", "HubError", "check_checkpoint_reference", "hub_errors", "load_pretrained"]
