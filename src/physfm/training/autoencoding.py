"""The tokeniser's autoencoding objective, one ratio drawn per batch.

One checkpoint serves every compression ratio its config lists because each training batch is encoded and
decoded at a ratio drawn uniformly from them. The objective is the *logarithm* of the reconstruction MSE
(:func:`ratio_balanced_objective`).

:func:`autoencoding_loss` is the loss of one batch at a drawn ratio (the draw:
``PhysfmTokeniserModel.sample_compression``). The accelerate trainer's stage 1 computes every micro-batch's loss
with it, drawing from a generator seeded by ``(seed, step)`` so that every rank draws the same ratio and a resumed
run draws what the uninterrupted one drew. :func:`autoencoding_step` is one optimizer step on it, and
:func:`fit_autoencoder` the minimal loop for quick experiments and tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import torch
from accelerate.utils import extract_model_from_parallel
from tqdm.auto import tqdm

from ..models import PhysfmTokeniserModel


def _endless(fields_or_batches: torch.Tensor | Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """One tensor forever, or the batches of a re-iterable (list, DataLoader) pass after pass."""
    if isinstance(fields_or_batches, torch.Tensor):
        yield from itertools.repeat(fields_or_batches)
        return
    while True:
        empty = True
        for batch in fields_or_batches:
            empty = False
            yield batch
        if empty:
            raise ValueError(
                "fields_or_batches yielded no batch; pass a tensor [B, T, *space, C] or a re-iterable of them "
                "(a list or a DataLoader, not a one-shot iterator)."
            )


def crop_to_valid_length(fields: torch.Tensor, temporal_compression: int) -> torch.Tensor:
    """Keeps the first ``1 + k * t`` frames of ``fields [B, T, ...]``, the longest clip ``t`` accepts."""
    n_frames = fields.shape[1]
    return fields[:, : 1 + (n_frames - 1) // temporal_compression * temporal_compression]


def ratio_balanced_objective(mse: torch.Tensor) -> torch.Tensor:
    """``log(mse)``: the gradient of each batch is its MSE gradient divided by its own MSE.

    Coarse ratios reconstruct 10-40x worse than fine ones, so with a plain MSE their gradients dominate the
    weights all ratios share (and Adam's step-size statistics), and one flexible checkpoint fell 13-34 % behind
    dedicated ones at s = 2 and 4. Dividing by the error puts every ratio on an equal relative footing; it needs
    no running state, so training still resumes exactly. On one fixed ratio it changes little (Adam is nearly
    invariant to a slowly varying loss scale).
    """
    return mse.clamp_min(torch.finfo(mse.dtype).tiny).log()


def autoencoding_loss(
    model: PhysfmTokeniserModel,
    fields: torch.Tensor,
    generator: torch.Generator | None = None,
    field_names: Sequence[str] | None = None,
    periodic: Sequence[bool] | None = None,
    ratios: Sequence[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reconstruction MSE of ``fields [B, T, *space, C]`` at a ratio drawn with ``generator`` from ``ratios``
    (default: every pair the tokeniser's config lists).

    ``model`` may be wrapped for distributed training (DDP). The clip is cropped to the longest ``1 + k * t``
    frames the drawn temporal compression accepts. Returns ``(loss, (spatial_compression,
    temporal_compression))``; ``loss`` carries the graph.
    """
    s, t = extract_model_from_parallel(model).sample_compression(generator, ratios)
    out = model(
        crop_to_valid_length(fields, t),
        spatial_compression=s,
        temporal_compression=t,
        field_names=field_names,
        periodic=periodic,
        return_loss=True,
    )
    return out.loss, (s, t)


def autoencoding_step(
    model: PhysfmTokeniserModel,
    fields: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None = None,
    field_names: Sequence[str] | None = None,
    periodic: Sequence[bool] | None = None,
    max_grad_norm: float | None = 1.0,
) -> tuple[float, tuple[int, int]]:
    """One optimizer step of the autoencoding objective (:func:`ratio_balanced_objective`) at a ratio drawn per batch.

    Returns ``(mse, (spatial_compression, temporal_compression))`` with the reconstruction MSE as a float.
    """
    model.train()
    loss, ratio = autoencoding_loss(model, fields, generator, field_names, periodic)
    optimizer.zero_grad(set_to_none=True)
    ratio_balanced_objective(loss).backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach()), ratio


def fit_autoencoder(
    model: PhysfmTokeniserModel,
    fields_or_batches: torch.Tensor | Iterable[torch.Tensor],
    steps: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    field_names: Sequence[str] | None = None,
    periodic: Sequence[bool] | None = None,
    weight_decay: float = 0.0,
    progress: bool = False,
) -> list[float]:
    """Trains ``model`` for ``steps`` AdamW steps with a ratio drawn per batch; returns the MSE history.

    ``fields_or_batches`` is one batch ``[B, T, *space, C]`` (reused every step, e.g. to overfit) or an
    iterable of batches (cycled if shorter than ``steps``).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int.")
    if lr <= 0:
        raise ValueError(f"lr={lr!r} must be positive.")
    batches = _endless(fields_or_batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in tqdm(range(steps), desc="autoencoding", disable=not progress):
        loss, _ = autoencoding_step(model, next(batches), optimizer, generator, field_names, periodic)
        history.append(loss)
    return history


__all__ = ["autoencoding_loss", "autoencoding_step", "crop_to_valid_length", "fit_autoencoder",
           "ratio_balanced_objective"]
