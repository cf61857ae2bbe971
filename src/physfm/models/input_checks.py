"""The models' checks of their input tensors: layout and dtype, and the refusal of NaN/Inf values with the
switch that turns it off where it costs more than it saves.

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


def check_field_tensor(x: torch.Tensor, argument: str, n_spatial_dims: int, channels: str = "n_fields") -> None:
    """Raise a ``ValueError`` unless ``x`` is a non-empty, finite, floating-point ``[batch, time, *space, channels]``
    tensor with ``n_spatial_dims`` spatial axes; the message names ``argument``, what it got and what is expected."""
    layout = f"[batch, time, {', '.join('xyz'[:n_spatial_dims])}, {channels}]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{argument}: got {type(x).__name__}; expected a torch.Tensor {layout}.")
    if x.ndim != n_spatial_dims + 3:
        raise ValueError(f"{argument}: got shape {tuple(x.shape)} ({x.ndim} dimensions); expected {n_spatial_dims + 3} "
                         f"dimensions {layout} for this {n_spatial_dims}-D model (n_spatial_dims={n_spatial_dims}).")
    if not x.is_floating_point():
        raise ValueError(f"{argument}: got dtype {x.dtype}; expected a floating-point tensor.")
    if x.numel() == 0:
        raise ValueError(f"{argument}: got an empty axis (shape {tuple(x.shape)}); expected at least one batch item, "
                         "frame, cell per spatial axis and field.")
    check_finite(x, argument)


__all__ = ["NonFiniteError", "check_field_tensor", "check_finite", "finite_checks"]
