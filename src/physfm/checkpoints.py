"""Loading a checkpoint, wherever it is: a saved model folder, a training checkpoint, or a Hub repo.

- :func:`load_pretrained` is the one loader: local folder or Hub id (with ``revision``, and the Hub cache when
  ``HF_HUB_OFFLINE=1``), a tokeniser or a dynamics model, in float32. Training, ``physfm evaluate``, ``physfm
  forecast``, ``physfm select-tokeniser``, the cards and the experiment all load through it.
- :func:`load_processor` is the field processor (``preprocessor_config.json``) saved beside the weights.
- :func:`check_checkpoint_reference` decides local folder or Hub id before any network call; it lives in
  :mod:`physfm.models.loading` so that the models, which also load each other as Hub remote code, obey it too.
- :func:`hub_errors` translates huggingface_hub's and the transport's errors into one :class:`HubError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import constants

from .models import PhysfmDynamicsModel, PhysfmFieldProcessor, PhysfmTokeniserModel
from .models.loading import (
    HUB_EXAMPLE,
    check_checkpoint_reference,
    checkpoint_config,
    load_checkpoint,
    model_class_for,
)

MODEL_CLASSES = {"tokeniser": PhysfmTokeniserModel, "dynamics": PhysfmDynamicsModel}
# A training checkpoint (``output_dir/checkpoint-<step>``) holds accelerate's state and this file.
STATE_NAME = "trainer_state.json"


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


def load_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None, kind: str | None = None,
                    argument: str = "checkpoint", **kwargs: Any):
    """A physfm model in float32 from a saved folder, a training checkpoint ``checkpoint-<step>`` or a Hub id.

    ``kind`` (``"tokeniser"`` or ``"dynamics"``) refuses a checkpoint of the other kind; ``argument`` names the
    input in error messages (``"--tokeniser"``); ``kwargs`` go to ``from_pretrained``. A missing folder, a Hub
    id that does not exist, a missing revision and an uncached checkpoint offline are each one clear error.
    """
    if kind is not None and kind not in MODEL_CLASSES:
        raise ValueError(f"kind: got {kind!r}; expected one of {sorted(MODEL_CLASSES)}")
    classes = {cls.config_class.model_type: cls for name, cls in MODEL_CLASSES.items() if kind in (None, name)}
    reference = check_checkpoint_reference(name_or_path, argument)
    if isinstance(reference, Path):
        if (reference / STATE_NAME).is_file():
            return _load_training_checkpoint(reference, classes, argument)
        return load_checkpoint(reference, classes, argument, **kwargs)
    with hub_errors(reference, revision, kwargs.get("token")), _hub_cause():
        return load_checkpoint(reference, classes, argument, revision=revision, **kwargs)


def load_processor(name_or_path: str | os.PathLike, *, revision: str | None = None,
                   argument: str = "checkpoint") -> PhysfmFieldProcessor | None:
    """The field processor saved with a checkpoint; ``None`` for a checkpoint saved without one."""
    from transformers.utils import FEATURE_EXTRACTOR_NAME

    reference = check_checkpoint_reference(name_or_path, argument)
    if isinstance(reference, Path) and not (reference / FEATURE_EXTRACTOR_NAME).is_file():
        return None
    try:
        return PhysfmFieldProcessor.from_pretrained(str(reference), revision=revision)
    except OSError:  # a Hub checkpoint without one (its weights, fetched first, show that the Hub answers)
        return None


def _load_training_checkpoint(folder: Path, classes: dict[str, type], argument: str):
    """accelerate's weights of a ``checkpoint-<step>`` (DDP may prefix keys with ``module.``) and its config.json."""
    from safetensors.torch import load_file

    _, config_dict = checkpoint_config(folder, argument)
    model_class = model_class_for(config_dict, classes, folder, argument)
    model = model_class(model_class.config_class.from_dict(config_dict))
    model.load_state_dict({k.removeprefix("module."): v for k, v in load_file(folder / "model.safetensors").items()})
    return model.float().eval()


@contextlib.contextmanager
def _hub_cause() -> Iterator[None]:
    """transformers wraps the Hub's errors in an ``OSError``; re-raise the original for :func:`hub_errors`."""
    try:
        yield
    except OSError as error:
        cause = error.__cause__ or error.__context__
        if cause is not None and cause is not error:
            raise cause from None
        raise


__all__ = ["HUB_EXAMPLE", "MODEL_CLASSES", "STATE_NAME", "HubConnectionError", "HubError", "check_checkpoint_reference",
           "hub_errors", "load_pretrained", "load_processor"]
