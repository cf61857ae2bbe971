"""Layers shared by physfm's models: factorised causal space-time convolutions on channels-last tensors, and
the loading, saving and gradient checkpointing both models add to ``PreTrainedModel`` (:class:`PhysfmModelMixin`).

Tensors inside the tokeniser keep The Well's layout, ``[batch, time, *space, channels]``. A spatial convolution
folds time into the batch and runs ``conv2d`` (``conv3d`` in 3-D space) on a channels-last view, which is
oneDNN's fast path on CPUs and cuDNN's on GPUs; a temporal convolution runs as a ``(k, 1)`` ``conv2d`` on the same
memory, every spatial cell one column. Factorising space and time costs ``k^d + k_t`` instead of ``k^d * k_t`` per
channel pair, and a single frame (``T = 1``) costs no more than a purely spatial autoencoder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu}


# Out-of-place forms of each activation, so one can write straight into a padded buffer, and its backward.
_ACTIVATION_KERNELS = {
    "silu": (torch.ops.aten.silu.out, torch.ops.aten.silu_backward),
    "gelu": (torch.ops.aten.gelu.out, torch.ops.aten.gelu_backward),
}


def _write_activated(x: torch.Tensor, out: torch.Tensor, activation: str | None) -> None:
    if activation is None:
        out.copy_(x)
    else:
        _ACTIVATION_KERNELS[activation][0](x, out=out)


def _through_activation(ctx, grad: torch.Tensor) -> torch.Tensor:
    """``grad`` times the derivative of ``ctx.activation`` at the input the forward saved (if it had one)."""
    if ctx.activation is None:
        return grad
    (x,) = ctx.saved_tensors
    return _ACTIVATION_KERNELS[ctx.activation][1](grad, x)


class _PadSpace(torch.autograd.Function):
    """Halo padding of ``act(x) [n, *space, c]``: wrap on periodic axes, repeat the edge elsewhere.

    Written by hand because padding runs before every convolution, and there it is memory traffic, not FLOPs:
    the activation (if any) writes straight into the padded buffer, so the activated tensor is never stored on
    its own, and the backward folds the halo's gradient back onto the cells it was copied from, then applies the
    activation's derivative in the same pass. ``private_grad`` says the padded tensor feeds one convolution and
    nothing else, so its gradient is a fresh tensor no one else reads and is folded in place, without a copy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int, periodic: tuple[bool, ...], activation: str | None,
                private_grad: bool) -> torch.Tensor:
        ctx.pad, ctx.periodic, ctx.activation, ctx.private_grad = pad, periodic, activation, private_grad
        if activation is not None:
            ctx.save_for_backward(x)
        shape = list(x.shape)
        for axis in range(len(periodic)):
            shape[1 + axis] += 2 * pad
        y = x.new_empty(shape)
        centre = y
        for axis in range(len(periodic)):
            centre = centre.narrow(1 + axis, pad, x.shape[1 + axis])
        _write_activated(x, centre, activation)
        for axis, circular in enumerate(periodic):  # later axes copy whole slabs, so corners come out right
            dim, n = 1 + axis, x.shape[1 + axis]
            left, right = y.narrow(dim, 0, pad), y.narrow(dim, pad + n, pad)
            if circular:
                left.copy_(y.narrow(dim, n, pad))
                right.copy_(y.narrow(dim, pad, pad))
            else:
                left.copy_(y.narrow(dim, pad, 1).expand_as(left))
                right.copy_(y.narrow(dim, pad + n - 1, 1).expand_as(right))
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        pad = ctx.pad
        if not ctx.private_grad:
            grad = grad.clone()
        for axis in reversed(range(len(ctx.periodic))):
            dim = 1 + axis
            n = grad.shape[dim] - 2 * pad
            left, right = grad.narrow(dim, 0, pad), grad.narrow(dim, pad + n, pad)
            if ctx.periodic[axis]:
                grad.narrow(dim, n, pad).add_(left)
                grad.narrow(dim, pad, pad).add_(right)
            else:
                grad.narrow(dim, pad, 1).add_(left.sum(dim, keepdim=True))
                grad.narrow(dim, pad + n - 1, 1).add_(right.sum(dim, keepdim=True))
            grad = grad.narrow(dim, pad, n)
        return _through_activation(ctx, grad), None, None, None, None


def pad_space(x: torch.Tensor, pad: int, periodic: Sequence[bool], activation: str | None = None,
              private_grad: bool = False) -> torch.Tensor:
    """Pads the spatial axes of ``act(x) [n, *space, c]`` by ``pad`` cells on each side.

    Periodic axes wrap around, which makes every convolution exactly shift-equivariant there; other axes repeat
    their edge cell. ``activation`` (a key of :data:`ACTIVATIONS`) is applied first, fused into the padding. A
    halo wider than its axis (a large kernel on a tiny grid) falls back to indexing.
    """
    if pad == 0 or not all(pad <= n for n in x.shape[1:-1]):
        x = ACTIVATIONS[activation](x) if activation is not None else x
        if pad == 0:
            return x
        for axis, circular in enumerate(periodic):
            dim = 1 + axis
            n = x.shape[dim]
            index = torch.arange(-pad, n + pad, device=x.device)
            x = x.index_select(dim, index % n if circular else index.clamp(0, n - 1))
        return x
    return _PadSpace.apply(x, pad, tuple(bool(p) for p in periodic), activation, private_grad)


def spatial_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, periodic: Sequence[bool], stride: int = 1,
    activation: str | None = None,
) -> torch.Tensor:
    """Convolves every frame of ``act(x) [b, t, *space, c_in]`` with ``weight [c_out, c_in, *k]``, boundary-aware.

    ``stride`` is a run-time argument: the same kernel serves every compression ratio. ``activation`` is fused
    into the halo padding.
    """
    n_space = weight.ndim - 2
    if n_space not in (2, 3):
        raise NotImplementedError(f"spatial_conv supports 2 or 3 spatial dimensions, got {n_space}.")
    batch, frames = x.shape[:2]
    frames_as_batch = pad_space(x.flatten(0, 1), (weight.shape[-1] - 1) // 2, periodic, activation, private_grad=True)
    conv = F.conv2d if n_space == 2 else F.conv3d
    y = conv(frames_as_batch.movedim(-1, 1), weight, bias, stride=stride)  # channels-last memory throughout
    return y.movedim(1, -1).unflatten(0, (batch, frames))


def _nearest_taps(kernel_size: int, reference: torch.Tensor) -> torch.Tensor:
    """``A [k + 1, k]``: which taps of a ``k``-kernel on a 2x nearest-up-sampled grid land on each of the ``k + 1``
    offsets of a stride-2 transposed kernel on the original grid."""
    half = (kernel_size - 1) // 2
    taps = torch.zeros(kernel_size + 1, kernel_size, dtype=reference.dtype, device=reference.device)
    for j in range(kernel_size):
        taps[2 * half - j, j] = taps[2 * half + 1 - j, j] = 1
    return taps


def upsampling_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, periodic: Sequence[bool],
    activation: str | None = None,
) -> torch.Tensor:
    """Exactly ``spatial_conv(nearest_upsample_2x(x), weight, bias, periodic, activation=activation)``, without
    building the big grid.

    Nearest up-sampling repeats each cell, so a ``k``-tap kernel on the fine grid reads only ``k + 1`` distinct
    offsets of the coarse one: the same map is a stride-2 transposed convolution with a ``(k + 1)``-tap kernel
    folded from ``weight``. It costs ``((k + 1) / (2k))^d`` of the fine-grid convolution (0.44x for 3x3) and
    never materialises the up-sampled input.
    """
    n_space = weight.ndim - 2
    kernel, half = weight.shape[-1], (weight.shape[-1] - 1) // 2
    taps = _nearest_taps(kernel, weight)
    folded = weight
    for axis in range(n_space):  # fold every spatial axis of the kernel: [out, in, *k] -> [out, in, *(k + 1)]
        folded = torch.tensordot(folded, taps, dims=([2 + axis], [1])).movedim(-1, 2 + axis)
    halo = (half + 2) // 2  # coarse cells each side that the fine grid's halo reaches
    batch, frames = x.shape[:2]
    padded = pad_space(x.flatten(0, 1), halo, periodic, activation, private_grad=True).movedim(-1, 1)
    transpose = F.conv_transpose2d if n_space == 2 else F.conv_transpose3d
    # The fine cells the halo adds are 2 * halo + half on each side, so the transposed convolution's own padding
    # crops them. Slicing its output instead costs a zero-filled, transposing copy in the backward pass.
    return transpose(padded, folded.transpose(0, 1), bias, stride=2, padding=2 * halo + half) \
        .movedim(1, -1).unflatten(0, (batch, frames))


class _CausalFrames(torch.autograd.Function):
    """The clip a causal time kernel reads: ``act(x [b, t, ..., c])`` after ``pad`` copies of its first frame, with
    every later frame repeated ``repeat`` times (the decoder's causal up-sampling), ``[b, pad + 1 + (t - 1) *
    repeat, ..., c]``.

    Written by hand for the reason :class:`_PadSpace` is: the activation writes straight into the padded clip and
    each frame is written once; the backward sums each frame's copies (in place, when nothing repeats: the clip
    feeds one convolution, so its gradient is a fresh tensor no one else reads) and applies the activation's
    derivative in the same pass.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int, repeat: int, activation: str | None) -> torch.Tensor:
        ctx.pad, ctx.repeat, ctx.activation = pad, repeat, activation
        if activation is not None:
            ctx.save_for_backward(x)
        frames = x.shape[1]
        y = x.new_empty(x.shape[0], pad + 1 + (frames - 1) * repeat, *x.shape[2:])
        if repeat == 1:
            _write_activated(x, y.narrow(1, pad, frames), activation)
        else:
            _write_activated(x[:, :1], y.narrow(1, pad, 1), activation)
            copies = y.narrow(1, pad + 1, (frames - 1) * repeat).unflatten(1, (frames - 1, repeat))
            _write_activated(x[:, 1:], copies[:, :, 0], activation)
            copies[:, :, 1:].copy_(copies[:, :, :1].expand_as(copies[:, :, 1:]))
        y.narrow(1, 0, pad).copy_(y.narrow(1, pad, 1).expand_as(y.narrow(1, 0, pad)))
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        pad, repeat = ctx.pad, ctx.repeat
        first = grad.narrow(1, 0, pad + 1).sum(1)
        if repeat == 1:
            grad_x = grad.narrow(1, pad, grad.shape[1] - pad)
            grad_x[:, 0] = first
        else:
            frames = 1 + (grad.shape[1] - pad - 1) // repeat
            grad_x = grad.new_empty(grad.shape[0], frames, *grad.shape[2:])
            grad_x[:, 0] = first
            torch.sum(grad.narrow(1, pad + 1, (frames - 1) * repeat).unflatten(1, (frames - 1, repeat)), 2,
                      out=grad_x[:, 1:])
        return _through_activation(ctx, grad_x), None, None, None


def _time_kernel(clip: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """Valid convolution over the time axis of an already padded ``clip [b, t, ..., c_in]``.

    It runs as a ``(k, 1)`` ``conv2d`` on a channels-last ``[b, c, t, cells]`` view (every spatial cell one column):
    oneDNN's and cuDNN's convolution kernels read the clip where it lies, where a matrix product would need the
    ``k`` taps stacked along channels first, and run faster than BLAS does on such skinny products.
    """
    frames = clip.flatten(2, -2).permute(0, 3, 1, 2)
    y = F.conv2d(frames, weight.unsqueeze(-1), bias, stride=(stride, 1))
    return y.permute(0, 2, 3, 1).unflatten(2, clip.shape[2:-1])


def temporal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1,
                  repeat: int = 1, activation: str | None = None) -> torch.Tensor:
    """Causal convolution over the time axis (dim 1) of ``act(x) [b, t, ..., c_in]`` with ``weight [c_out, c_in, k]``.

    Time is padded on the left only, by repeating the first frame, so output frame ``j`` sees input frames up to
    ``j * stride`` and a single frame behaves as a steady state. ``T = 1 + k * stride`` frames give ``1 + k``.
    ``repeat`` convolves the causally up-sampled clip ``upsample(x, repeat, 1)`` without building it first;
    ``activation`` (a key of :data:`ACTIVATIONS`) is fused into the padding.
    """
    if x.shape[1] == 1:  # every tap sees the first frame: the kernel collapses to one exact matrix
        return F.linear(ACTIVATIONS[activation](x) if activation else x, weight.sum(-1), bias)
    clip = _CausalFrames.apply(x, weight.shape[-1] - 1, repeat, activation)
    return _time_kernel(clip, weight, bias, stride)


class TemporalCache:
    """What a stream encoded or decoded chunk by chunk must remember: for each causal time kernel, the last
    ``k - 1`` frames of its input and how many frames it has seen.

    Video VAEs encode long clips frame-wise this way. Every operation other than a time kernel acts on each frame
    alone, so carrying these few frames per time kernel makes a chunked pass equal to the whole-clip pass, and a
    new chunk costs only its own frames. Pass one cache to every call of one stream (``encode(..., cache=c)``);
    a fresh cache starts a new stream, whose past is its first frame replicated, as in the whole-clip pass.

    The state is replaced, never modified in place, so :meth:`copy` forks a stream cheaply: decode a guess from
    the fork and the original is untouched.
    """

    def __init__(self):
        self._state: dict[nn.Module, tuple[torch.Tensor, int]] = {}
        self.frames = 0  # frames (or latent frames) consumed by the model call that owns this cache
        self.signature: tuple | None = None  # what the stream is (direction, ratios, fields, grid); set on first use

    def copy(self) -> TemporalCache:
        fork = TemporalCache()
        fork._state, fork.frames, fork.signature = dict(self._state), self.frames, self.signature
        return fork

    def check(self, signature: tuple) -> None:
        """Refuses to continue a stream with different ratios, fields, boundaries, batch or grid."""
        if self.signature is None:
            self.signature = signature
        elif signature != self.signature:
            raise ValueError(
                f"cache: this TemporalCache holds a stream of {self.signature}, but the call is {signature}; "
                "use a fresh TemporalCache() for a new stream."
            )

    def temporal_conv(self, key: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      stride: int = 1) -> torch.Tensor:
        """:func:`temporal_conv` of the next chunk of this stream: the same outputs as on the whole clip."""
        kernel = weight.shape[-1]
        past, seen = self._state.get(key, (None, 0))
        if past is None:  # stream start: the frames before it are copies of its first frame
            past = x[:, :1].expand(-1, kernel - 1, *x.shape[2:])
        clip = torch.cat([past, x], dim=1)
        self._state[key] = (clip[:, clip.shape[1] - (kernel - 1):], seen + x.shape[1])
        # Outputs sit at stream indices that are multiples of the stride; the first in this chunk is -seen % stride.
        return _time_kernel(clip[:, -seen % stride:], weight, bias, stride)


def upsample(x: torch.Tensor, factor_time: int, factor_space: int, stream_start: bool = True) -> torch.Tensor:
    """Nearest-neighbour up-sampling of ``x [b, t, *space, c]``, causal in time.

    Each frame is repeated ``factor_time`` times and the first ``factor_time - 1`` copies are dropped, so
    ``1 + k`` frames become ``1 + k * factor_time`` and no frame comes from a later latent frame than its own.
    Only a stream's first chunk drops copies (``stream_start=False`` for later chunks of a cached stream).
    """
    if factor_time > 1:
        x = x.repeat_interleave(factor_time, dim=1)[:, factor_time - 1 if stream_start else 0 :]
    if factor_space > 1:
        for dim in range(2, x.ndim - 1):
            x = x.repeat_interleave(factor_space, dim=dim)
    return x


class SpatialConv(nn.Module):
    """A learned ``[c_out, c_in, *k]`` kernel applied frame by frame by :func:`spatial_conv`.

    Args:
        init_scale: multiplies the fan-in initialisation; residual branches end in a down-scaled kernel so a deep
            stack starts close to the identity without the dead start of a zero kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, n_spatial_dims: int = 2,
                 init_scale: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *[kernel_size] * n_spatial_dims))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.init_scale = init_scale

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], stride: int = 1, upsample: int = 1,
                activation: str | None = None) -> torch.Tensor:
        """``stride`` (2 or 1) down-samples; ``upsample=2`` convolves the 2x nearest up-sampled input;
        ``activation`` applies to the input first (fused into the padding)."""
        if upsample == 2:
            return upsampling_conv(x, self.weight, self.bias, periodic, activation)
        return spatial_conv(x, self.weight, self.bias, periodic, stride, activation)


class TemporalConv(nn.Module):
    """A learned causal ``[c_out, c_in, k_t]`` kernel over time (see :func:`temporal_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.init_scale = 1.0

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()

    def forward(self, x: torch.Tensor, stride: int = 1, cache: TemporalCache | None = None,
                repeat: int = 1, activation: str | None = None) -> torch.Tensor:
        """``repeat`` convolves the causally up-sampled clip (see :func:`temporal_conv`); a cached stream passes
        its chunk already up-sampled. ``activation`` applies to the input first (fused into the padding)."""
        if cache is None:
            return temporal_conv(x, self.weight, self.bias, stride, repeat, activation)
        if repeat != 1:
            raise ValueError("TemporalConv: a cached stream passes its chunk already up-sampled (repeat=1).")
        x = ACTIVATIONS[activation](x) if activation is not None else x
        return cache.temporal_conv(self, x, self.weight, self.bias, stride)


class CausalResBlock(GradientCheckpointingLayer):
    """``x + conv_s(act(conv_t(act(conv_s(act(x))))))``: space, then causal time, then space again.

    No normalisation layer: per-position norms slowed learning several-fold in measurements (see the README's
    tokeniser notes); the down-scaled last kernel keeps deep stacks stable instead.
    """

    def __init__(self, channels: int, kernel_size: int, temporal_kernel_size: int, n_spatial_dims: int,
                 activation: str, residual_init_scale: float = 0.5):
        super().__init__()
        self.activation = activation
        self.conv1 = SpatialConv(channels, channels, kernel_size, n_spatial_dims)
        self.conv_time = TemporalConv(channels, channels, temporal_kernel_size)
        self.conv2 = SpatialConv(channels, channels, kernel_size, n_spatial_dims, init_scale=residual_init_scale)

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], cache: TemporalCache | None = None) -> torch.Tensor:
        h = self.conv1(x, periodic, activation=self.activation)
        h = self.conv_time(h, cache=cache, activation=self.activation)
        return x + self.conv2(h, periodic, activation=self.activation)


class FieldConv(nn.Module):
    """A spatial convolution with one kernel row per field of a vocabulary; a call picks the rows it needs.

    ``direction="in"`` maps the fields present to ``channels`` features (one ``[channels, *k]`` row per field,
    shared bias); ``direction="out"`` maps ``channels`` features to the fields asked for (one row and one bias per
    field). Selecting rows lets one model serve systems with different field sets, in any order.

    Every field owns separate parameters (``weight_{i}``, and ``bias_{i}`` on the way out), so one field can train
    while the others stay frozen: how a frozen pretrained tokeniser learns a field it never saw, like new token
    embeddings in a frozen language model. :meth:`grow` adds fields like ``resize_token_embeddings``.
    """

    def __init__(self, vocab_size: int, channels: int, direction: str, kernel_size: int = 3, n_spatial_dims: int = 2):
        super().__init__()
        if direction not in ("in", "out"):
            raise ValueError(f"direction={direction!r} must be 'in' or 'out'.")
        self.direction = direction
        self.row_shape = (channels, *[kernel_size] * n_spatial_dims)
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
    def fan_in(self) -> int:
        """An input row sees one field but the fields of a call add up; an output row sees every channel."""
        kernel_volume = math.prod(self.row_shape[1:])
        return kernel_volume * (self.vocab_size if self.direction == "in" else self.row_shape[0])

    def row(self, index: int) -> nn.Parameter:
        return getattr(self, f"weight_{index}")

    def row_bias(self, index: int) -> nn.Parameter:
        return getattr(self, f"bias_{index}")

    def field_parameters(self, index: int) -> list[nn.Parameter]:
        """The parameters that belong to field ``index`` alone."""
        return [self.row(index)] + ([self.row_bias(index)] if self.direction == "out" else [])

    def forward(self, x: torch.Tensor, field_index: Sequence[int], periodic: Sequence[bool],
                activation: str | None = None) -> torch.Tensor:
        rows = torch.stack([self.row(i) for i in field_index])  # [fields, channels, *k]
        if self.direction == "in":
            return spatial_conv(x, rows.transpose(0, 1), self.bias, periodic, activation=activation)
        bias = torch.cat([self.row_bias(i) for i in field_index])
        return spatial_conv(x, rows, bias, periodic, activation=activation)

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


def exit_level(spatial_compression: int, temporal_compression: int) -> int:
    """The pyramid level whose latent head serves a ratio: one level per halving of space or of time."""
    return max(spatial_compression.bit_length(), temporal_compression.bit_length()) - 1


def compression_schedule(spatial_compression: int, temporal_compression: int) -> list[tuple[int, int]]:
    """Run-time ``(stride_time, stride_space)`` of each transition down to the ratio's exit level.

    Space halves at the first ``log2(s)`` transitions and time at the first ``log2(t)``; the pyramid stops at the
    exit level, so no level runs at a resolution the ratio does not need.
    """
    n_space = spatial_compression.bit_length() - 1
    n_time = temporal_compression.bit_length() - 1
    return [(2 if i < n_time else 1, 2 if i < n_space else 1) for i in range(max(n_space, n_time))]



def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class PhysfmModelMixin:
    """What both physfm models add to ``PreTrainedModel`` (list it first among the bases).

    Gradient checkpointing: their blocks are ``GradientCheckpointingLayer`` s. Loading and saving as users expect
    from files: weights that cannot be read are one message naming the checkpoint (safetensors names neither the
    file nor a remedy), and saved files follow the umask like any other file (transformers writes the weights with
    mode 0600).
    """

    supports_gradient_checkpointing = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, output_loading_info: bool = False, **kwargs):
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True,
                                                  **kwargs)
        except SafetensorError as error:
            raise ValueError(
                f"{pretrained_model_name_or_path}: model.safetensors is corrupt or truncated ({error}); expected a "
                "complete safetensors file. Save or download the checkpoint again."
            ) from None
        missing = sorted(info.get("missing_keys") or [])
        if missing:  # transformers would only print a table and go on with random weights
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise ValueError(
                f"{pretrained_model_name_or_path}: config.json describes weights that model.safetensors lacks "
                f"({shown}); expected a checkpoint whose config and weights were saved together. If you edited "
                "field_names, use add_fields([...]) and save again instead."
            )
        return (model, info) if output_loading_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        mode = 0o666 & ~_umask()
        for file in Path(save_directory).iterdir():
            if file.is_file() and file.stat().st_mode & 0o777 == 0o600:
                file.chmod(mode)
        return result


__all__ = [
    "ACTIVATIONS",
    "CausalResBlock",
    "FieldConv",
    "PhysfmModelMixin",
    "SpatialConv",
    "TemporalCache",
    "TemporalConv",
    "compression_schedule",
    "exit_level",
    "pad_space",
    "spatial_conv",
    "temporal_conv",
    "upsample",
    "upsampling_conv",
]
