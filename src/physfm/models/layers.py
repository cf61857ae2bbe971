"""Layers shared by physfm's models: causal space-time convolutions whose strides are chosen at run time.

Tensors inside the models are channels-first, ``[batch, channels, time, *space]``. Every helper here takes the
number of spatial axes from the tensor or the kernel, so a 3-D spatial variant only has to add a factorised
space/time convolution in :func:`causal_conv`; padding, norms and resampling are already written per axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


def pad_time_causal(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Pads ``amount`` frames on the left of the time axis (dim 2) by repeating the first frame.

    Padding only on the left keeps every output frame a function of present and past inputs; repeating the
    first frame (instead of zeros) makes a single frame look like a steady state, so ``T = 1`` needs no special
    case.
    """
    if amount == 0:
        return x
    first = x[:, :, :1].expand(-1, -1, amount, *x.shape[3:])
    return torch.cat([first, x], dim=2)


def pad_space(x: torch.Tensor, pads: Sequence[tuple[int, int]], periodic: Sequence[bool]) -> torch.Tensor:
    """Pads the trailing spatial axes of ``x``: circularly where ``periodic`` else by replication.

    ``pads[i] = (before, after)`` for spatial axis ``i``. Circular padding on a periodic axis is what makes the
    convolutions exactly shift-equivariant there.
    """
    n_space = len(pads)
    if x.ndim == 5 and not any(periodic):
        # Fast path: F.pad replicates the last three axes of a 5-D tensor in one call (time is left alone).
        # (Circular F.pad is not used: its backward measured 2x slower than the torch.cat below.)
        flat = [p for pair in reversed(pads) for p in pair] + [0, 0]
        return F.pad(x, flat, mode="replicate") if any(flat) else x
    for axis, ((before, after), circular) in enumerate(zip(pads, periodic, strict=True)):
        if before == after == 0:
            continue
        dim = x.ndim - n_space + axis
        size = x.shape[dim]
        if circular:
            parts = [x.narrow(dim, size - before, before), x, x.narrow(dim, 0, after)]
        else:
            shape = list(x.shape)
            parts = []
            if before:
                shape[dim] = before
                parts.append(x.narrow(dim, 0, 1).expand(shape))
            parts.append(x)
            if after:
                shape[dim] = after
                parts.append(x.narrow(dim, size - 1, 1).expand(shape))
        x = torch.cat(parts, dim=dim)
    return x


def causal_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    periodic: Sequence[bool],
    stride_time: int = 1,
    stride_space: int = 1,
) -> torch.Tensor:
    """Causal-in-time, boundary-aware convolution of ``x [b, c_in, t, *space]`` with ``weight [c_out, c_in, kt, *ks]``.

    Time is padded ``kt - 1`` frames on the left, space ``(k - 1) // 2`` on each side. The strides are run-time
    arguments (the kernel is fixed and learned), so one set of weights serves several compression ratios. With
    ``T = 1 + k * stride_time`` input frames the output has ``1 + k`` frames, output frame ``j`` seeing inputs
    up to ``j * stride_time``.
    """
    kernel_time, *kernel_space = weight.shape[2:]
    if stride_time > kernel_time or any(stride_space > k for k in kernel_space):
        raise ValueError(
            f"stride (time {stride_time}, space {stride_space}) exceeds kernel {tuple(weight.shape[2:])}: "
            "run-time strides must not exceed the kernel they modulate."
        )
    space_pads = [((k - 1) // 2, (k - 1) // 2) for k in kernel_space]
    if x.ndim == 5 and not any(periodic):
        # Replicating the first frame is replicate padding of the time axis: one F.pad call does it all.
        x = F.pad(x, [p for pair in reversed(space_pads) for p in pair] + [kernel_time - 1, 0], mode="replicate")
    else:
        x = pad_space(pad_time_causal(x, kernel_time - 1), space_pads, periodic)
    if len(kernel_space) == 2:
        return F.conv3d(x, weight, bias, stride=(stride_time, stride_space, stride_space))
    raise NotImplementedError(
        f"causal_conv supports 2 spatial dimensions, got {len(kernel_space)}; a factorised space/time "
        "convolution is needed for 3-D space."
    )


def upsample(x: torch.Tensor, factor_time: int, factor_space: int) -> torch.Tensor:
    """Nearest-neighbour up-sampling of ``x [b, c, t, *space]`` by run-time factors, causal in time.

    Each latent frame is repeated ``factor_time`` times and the first ``factor_time - 1`` frames are dropped, so
    ``1 + k`` frames become ``1 + k * factor_time``: the first latent frame gives one frame, each later one gives
    ``factor_time`` frames, and no frame is produced from a later latent frame than the one covering it.
    """
    if factor_time == 1 and factor_space == 1:
        return x
    n_space = x.ndim - 3
    x = F.interpolate(x, scale_factor=(factor_time, *[factor_space] * n_space), mode="nearest")
    return x[:, :, factor_time - 1 :]


class CausalConv(nn.Module):
    """A convolution with a fixed learned kernel ``[c_out, c_in, kt, *ks]`` applied by :func:`causal_conv`.

    Args:
        zero_init: initialise the kernel to zero, so a residual branch that ends here starts as the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_time: int = 3,
        kernel_space: int = 3,
        n_spatial_dims: int = 2,
        bias: bool = True,
        zero_init: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_time, *[kernel_space] * n_spatial_dims))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.zero_init = zero_init

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()

    def forward(
        self, x: torch.Tensor, periodic: Sequence[bool], stride_time: int = 1, stride_space: int = 1
    ) -> torch.Tensor:
        return causal_conv(x, self.weight, self.bias, periodic, stride_time, stride_space)


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each position and frame.

    Per-position statistics (instead of GroupNorm over time and space) keep the model causal in time, local in
    space and independent of the grid size, which shift-equivariance and padding-then-cropping rely on.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * scale * self.weight.view(1, -1, *[1] * (x.ndim - 2))


class CausalResBlock(GradientCheckpointingLayer):
    """Pre-norm residual block of two causal convolutions: ``x + conv(silu(norm(conv(silu(norm(x))))))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_time: int = 3,
        kernel_space: int = 3,
        n_spatial_dims: int = 2,
        eps: float = 1e-6,
    ):
        super().__init__()
        conv = dict(kernel_time=kernel_time, kernel_space=kernel_space, n_spatial_dims=n_spatial_dims)
        self.norm1 = ChannelRMSNorm(in_channels, eps)
        self.conv1 = CausalConv(in_channels, out_channels, **conv)
        self.norm2 = ChannelRMSNorm(out_channels, eps)
        self.conv2 = CausalConv(out_channels, out_channels, zero_init=True, **conv)
        self.shortcut = (
            CausalConv(in_channels, out_channels, 1, 1, n_spatial_dims) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, periodic: Sequence[bool]) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), periodic)
        h = self.conv2(F.silu(self.norm2(h)), periodic)
        skip = x if self.shortcut is None else self.shortcut(x, periodic)
        return skip + h


class FieldConv(nn.Module):
    """A causal convolution with one kernel row per field of a vocabulary; a call picks the rows it needs.

    ``direction="in"`` maps the fields present to ``channels`` features (one ``[channels, kt, *ks]`` row per
    field, shared bias); ``direction="out"`` maps ``channels`` features to the fields asked for (one row and one
    bias per field). Selecting rows lets one model serve systems with different field sets, in any order.

    Every field owns separate parameters (``weight_{i}``, and ``bias_{i}`` on the way out), so one field can
    train while the others stay frozen: how a frozen pretrained tokeniser learns a field it never saw, like new
    token embeddings in a frozen language model. :meth:`grow` adds fields like ``resize_token_embeddings``.
    """

    def __init__(
        self,
        vocab_size: int,
        channels: int,
        direction: str,
        kernel_time: int = 3,
        kernel_space: int = 3,
        n_spatial_dims: int = 2,
    ):
        super().__init__()
        if direction not in ("in", "out"):
            raise ValueError(f"direction={direction!r} must be 'in' or 'out'.")
        self.direction = direction
        self.row_shape = (channels, kernel_time, *[kernel_space] * n_spatial_dims)
        self.vocab_size = 0
        if direction == "in":
            self.bias = nn.Parameter(torch.empty(channels))
        for _ in range(vocab_size):
            self._append(torch.empty(self.row_shape))

    def _append(self, row: torch.Tensor) -> None:
        self.register_parameter(f"weight_{self.vocab_size}", nn.Parameter(row))
        if self.direction == "out":
            self.register_parameter(f"bias_{self.vocab_size}", nn.Parameter(row.new_zeros(1)))
        self.vocab_size += 1

    @property
    def kernel_volume(self) -> int:
        return math.prod(self.row_shape[1:])

    def row(self, index: int) -> nn.Parameter:
        return getattr(self, f"weight_{index}")

    def row_bias(self, index: int) -> nn.Parameter:
        return getattr(self, f"bias_{index}")

    def field_parameters(self, index: int) -> list[nn.Parameter]:
        """The parameters that belong to field ``index`` alone."""
        return [self.row(index)] + ([self.row_bias(index)] if self.direction == "out" else [])

    def forward(self, x: torch.Tensor, field_index: Sequence[int], periodic: Sequence[bool]) -> torch.Tensor:
        rows = torch.stack([self.row(i) for i in field_index])  # [fields, channels, kt, *ks]
        if self.direction == "in":
            return causal_conv(x, rows.transpose(0, 1), self.bias, periodic)
        return causal_conv(x, rows, torch.cat([self.row_bias(i) for i in field_index]), periodic)

    @torch.no_grad()
    def grow(self, n_new: int) -> None:
        """Appends ``n_new`` fields; existing rows are left untouched.

        New input rows are drawn with the spread of the existing rows. New output rows start at zero, so a new
        field is predicted as its (normalised) mean until it is trained, without disturbing the others.
        """
        existing = torch.stack([self.row(i) for i in range(self.vocab_size)])
        for _ in range(max(n_new, 0)):
            row = existing.new_zeros(self.row_shape)
            if self.direction == "in":
                row.normal_(0.0, float(existing.std()) if existing.numel() > 1 else 1.0)
            self._append(row)


def compression_schedule(
    spatial_compression: int, temporal_compression: int, n_transitions: int
) -> list[tuple[int, int]]:
    """Run-time ``(stride_time, stride_space)`` of each down-sampling transition of the pyramid.

    The first ``log2(s)`` transitions halve space and the first ``log2(t)`` halve time: resolution drops as
    early as possible, so the wide deep levels always run on the smallest grid a ratio allows.
    """
    n_space = spatial_compression.bit_length() - 1
    n_time = temporal_compression.bit_length() - 1
    return [(2 if i < n_time else 1, 2 if i < n_space else 1) for i in range(n_transitions)]


__all__ = [
    "CausalConv",
    "CausalResBlock",
    "ChannelRMSNorm",
    "FieldConv",
    "causal_conv",
    "compression_schedule",
    "pad_space",
    "pad_time_causal",
    "upsample",
]
