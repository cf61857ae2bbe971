"""The models' refusal of NaN/Inf inputs, and the switch that turns it off where it costs more than it saves.

Both models check their input tensors for NaN/Inf values and raise :class:`NonFiniteError` naming the argument,
so a user's broken data is one clear message instead of a NaN loss many steps later. Each check reads the whole
tensor and waits for the device (one synchronisation per forward), which a training loop pays on every
micro-batch for data it has already checked on load; inside ``with finite_checks(False):`` the models skip it
(the trainer checks the loss instead).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

_ENABLED = contextvars.ContextVar("physfm_finite_checks", default=True)


class NonFiniteError(ValueError):
    """A tensor holds NaN or Inf values where finite ones are expected; the message names which and how many."""


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """Turn the models' NaN/Inf checks of their inputs on or off inside the block (they are on by default)."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def check_finite(x: torch.Tensor, argument: str) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN/Inf values, unless checks are off (:func:`finite_checks`)."""
    if _ENABLED.get() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(f"{argument}: got {n_bad} NaN/Inf values (shape {tuple(x.shape)}); expected finite values.")


__all__ = ["NonFiniteError", "check_finite", "finite_checks"]
