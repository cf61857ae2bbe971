"""physfm tokeniser: a MAGVIT-style causal (2+1)-D / (3+1)-D convolutional autoencoder with run-time compression.

Tensors keep The Well's layout ``[batch, time, *space, channels]`` inside as well as at the boundary: spatial
convolutions see channels-last frames and time kernels a channels-last ``[batch, channels, time, cells]`` view of
the same memory (oneDNN's and cuDNN's fast path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_tokeniser import PhysfmTokeniserConfig
from .input_checks import check_field_tensor
from .layers import (
    CausalResBlock,
    FieldConv,
    PhysfmModelMixin,
    SpatialConv,
    TemporalCache,
    TemporalConv,
    compression_schedule,
    upsample,
)


@dataclass
class PhysfmTokeniserOutput(ModelOutput):
    """Output of [`PhysfmTokeniserModel.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Mean squared reconstruction error (in the units of the input, normally z-scored fields); returned when
            `return_loss=True`.
        reconstruction (`torch.FloatTensor` of shape `[batch, time, *space, fields]`):
            The decoded fields, same shape as the input.
        latents (`torch.FloatTensor` of shape `[batch, 1 + (time - 1) / t, *ceil(space / s), latent_channels]`):
            The continuous latents.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None


def _pad_to_multiple(x: torch.Tensor, multiple: int, periodic: Sequence[bool]) -> torch.Tensor:
    """Pads the spatial axes of ``x [b, t, *space, c]`` at their end up to a multiple of ``multiple``.

    Periodic axes are continued periodically (wrapped), others by repeating the edge; indexing instead of
    ``F.pad`` allows any amount, even more than the axis length.
    """
    for axis, circular in enumerate(periodic):
        dim = 2 + axis
        n = x.shape[dim]
        if n % multiple == 0:
            continue
        index = torch.arange(n + (-n % multiple), device=x.device)
        index = index % n if circular else index.clamp(max=n - 1)
        x = x.index_select(dim, index)
    return x


def _res_blocks(config: PhysfmTokeniserConfig, level: int) -> nn.ModuleList:
    return nn.ModuleList(
        CausalResBlock(config.level_widths[level], config.kernel_size, config.temporal_kernel_size,
                       config.n_spatial_dims, config.activation)
        for _ in range(config.layers_per_level[level])
    )


class PhysfmTokeniserEncoderLevel(nn.Module):
    """Residual blocks at one resolution, then (above the deepest level) the transition one level down: a
    spatial convolution with a run-time stride and, where the ratio halves time, a strided causal time kernel."""

    def __init__(self, config: PhysfmTokeniserConfig, level: int):
        super().__init__()
        widths, d = config.level_widths, config.n_spatial_dims
        self.activation = config.activation
        self.blocks = _res_blocks(config, level)
        if level + 1 < config.n_levels:
            self.downsample = SpatialConv(widths[level], widths[level + 1], config.kernel_size, d)
            self.downsample_time = TemporalConv(widths[level + 1], widths[level + 1], config.temporal_kernel_size)

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], strides: tuple[int, int] | None,
                cache: TemporalCache | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, periodic, cache)
        if strides is None:
            return x
        stride_time, stride_space = strides
        x = self.downsample(x, periodic, stride_space, activation=self.activation)
        return self.downsample_time(x, stride=2, cache=cache) if stride_time == 2 else x


class PhysfmTokeniserDecoderLevel(nn.Module):
    """Mirror of an encoder level: residual blocks, then (below the top level) the transition one level up: where
    the ratio halved time, a causal time kernel on the repeated frames (still on the small grid, where channels
    are wide and positions few), then a spatial convolution to the upper width on the 2x nearest up-sampled grid."""

    def __init__(self, config: PhysfmTokeniserConfig, level: int):
        super().__init__()
        widths, d = config.level_widths, config.n_spatial_dims
        self.activation = config.activation
        self.blocks = _res_blocks(config, level)
        if level > 0:
            self.upsample_time = TemporalConv(widths[level], widths[level], config.temporal_kernel_size)
            self.upsample = SpatialConv(widths[level], widths[level - 1], config.kernel_size, d)

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], factors: tuple[int, int] | None,
                cache: TemporalCache | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, periodic, cache)
        if factors is None:
            return x
        factor_time, factor_space = factors
        activation = self.activation
        if factor_time > 1:
            if cache is None:
                x = self.upsample_time(x, repeat=factor_time, activation=activation)
            else:
                x = self.upsample_time(upsample(x, factor_time, 1, stream_start=cache.frames == 0), cache=cache,
                                       activation=activation)
            activation = None
        return self.upsample(x, periodic, upsample=factor_space, activation=activation)


class PhysfmTokeniserEncoder(nn.Module):
    """Fields ``[b, T, *space, C]`` (C fields picked from the vocabulary) -> latents ``[b, T', *space', D]``."""

    def __init__(self, config: PhysfmTokeniserConfig):
        super().__init__()
        widths, d = config.level_widths, config.n_spatial_dims
        self.activation = config.activation
        self.field_in = FieldConv(len(config.field_names), widths[0], "in", config.kernel_size, d)
        self.levels = nn.ModuleList(PhysfmTokeniserEncoderLevel(config, level) for level in range(config.n_levels))
        # One latent head per level some ratio exits at: the ratios share everything above their own level.
        self.latent_heads = nn.ModuleDict(
            {str(level): SpatialConv(widths[level], config.latent_channels, 1, d) for level in config.exit_levels}
        )

    def forward(
        self, x: torch.Tensor, field_index: list[int], periodic: Sequence[bool], schedule: list[tuple[int, int]],
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        x = self.field_in(x, field_index, periodic)
        for level, strides in enumerate([*schedule, None]):
            x = self.levels[level](x, periodic, strides, cache)
        return self.latent_heads[str(len(schedule))](x, periodic, activation=self.activation)


class PhysfmTokeniserDecoder(nn.Module):
    """Latents ``[b, T', *space', D]`` -> fields ``[b, T, *space, C]`` for the C fields asked for."""

    def __init__(self, config: PhysfmTokeniserConfig):
        super().__init__()
        widths, d = config.level_widths, config.n_spatial_dims
        self.activation = config.activation
        self.latent_heads = nn.ModuleDict(
            {str(level): SpatialConv(config.latent_channels, widths[level], config.kernel_size, d)
             for level in config.exit_levels}
        )
        self.levels = nn.ModuleList(PhysfmTokeniserDecoderLevel(config, level) for level in range(config.n_levels))
        self.field_out = FieldConv(len(config.field_names), widths[0], "out", config.kernel_size, d)

    def forward(
        self, z: torch.Tensor, field_index: list[int], periodic: Sequence[bool], schedule: list[tuple[int, int]],
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        x = self.latent_heads[str(len(schedule))](z, periodic)
        for level in range(len(schedule), -1, -1):
            x = self.levels[level](x, periodic, schedule[level - 1] if level > 0 else None, cache)
        return self.field_out(x, field_index, periodic, activation=self.activation)


class PhysfmTokeniserPreTrainedModel(PhysfmModelMixin, PreTrainedModel):
    """Holds the configuration class, weight initialisation and Auto-class plumbing of the tokeniser."""

    config_class = PhysfmTokeniserConfig
    config: PhysfmTokeniserConfig
    base_model_prefix = "tokeniser"
    main_input_name = "fields"
    _no_split_modules = ["CausalResBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Fan-in normal kernels and zero biases; a residual branch's last kernel is scaled down (``init_scale``)."""
        if isinstance(module, (SpatialConv, TemporalConv)):
            init.normal_(module.weight, std=module.init_scale * module.fan_in**-0.5)
            init.zeros_(module.bias)
        elif isinstance(module, FieldConv):
            for name, parameter in module.named_parameters(recurse=False):
                if name.startswith("weight_"):
                    init.normal_(parameter, std=module.fan_in**-0.5)
                else:
                    init.zeros_(parameter)


class PhysfmTokeniserModel(PhysfmTokeniserPreTrainedModel):
    """Causal convolutional autoencoder for physical fields whose compression is chosen at run time.

    - **Compression.** ``spatial_compression`` / ``temporal_compression`` may be any pair the config lists. The
      encoder runs its pyramid down to level ``max(log2 s, log2 t)`` and leaves through that level's latent head;
      the decoder enters there and climbs back. Every ratio shares the levels above its own.
    - **Causality.** Time is padded on the left only, by repeating the first frame. Latent frame ``j`` sees input
      frames ``<= j * t`` and decodes to frames ``(j - 1) * t + 1 ... j * t`` (frame 0 for ``j = 0``), as in
      MAGVIT. So reconstructed frames up to ``tau`` never depend on input frames after ``tau`` whenever ``tau``
      ends a latent frame's clip (``tau = j * t``; with ``t = 1`` that is every frame).
    - **Boundaries.** ``periodic`` axes are padded circularly, others by replication; on periodic axes the model
      is exactly shift-equivariant for shifts that are multiples of ``s`` (when the size is a multiple of ``s``).
    - **Spatial sizes** that are not multiples of ``s`` are padded at the end (periodically continued on periodic
      axes, edge-replicated elsewhere) and cropped back after decoding; latents then have ``ceil(n / s)`` cells.
    - **Fields.** ``field_names`` picks rows of the input projection / output head: any subset of the
      vocabulary, in any order. :meth:`add_fields` grows the vocabulary.

    Example:

    ```python
    >>> import torch
    >>> from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
    >>> tok = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u", "v"], hidden_channels=8))
    >>> fields = torch.randn(2, 5, 32, 32, 2)          # [batch, time, x, y, fields]
    >>> z = tok.encode(fields, spatial_compression=8, temporal_compression=2)
    >>> z.shape
    torch.Size([2, 3, 4, 4, 16])
    >>> tok.decode(z, spatial_compression=8, temporal_compression=2).shape
    torch.Size([2, 5, 32, 32, 2])
    ```
    """

    def __init__(self, config: PhysfmTokeniserConfig):
        super().__init__(config)
        self.encoder = PhysfmTokeniserEncoder(config)
        self.decoder = PhysfmTokeniserDecoder(config)
        self.post_init()

    # ----------------------------------------------------------------------------------------- argument checks
    def _resolve_ratios(self, spatial_compression: int | None, temporal_compression: int | None) -> tuple[int, int]:
        s = self.config.default_spatial_compression if spatial_compression is None else spatial_compression
        t = self.config.default_temporal_compression if temporal_compression is None else temporal_compression
        if s not in self.config.spatial_compressions:
            raise ValueError(
                f"spatial_compression={s!r} is not supported; this tokeniser serves "
                f"spatial_compressions={self.config.spatial_compressions}."
            )
        if t not in self.config.temporal_compressions:
            raise ValueError(
                f"temporal_compression={t!r} is not supported; this tokeniser serves "
                f"temporal_compressions={self.config.temporal_compressions}."
            )
        return s, t

    def _field_index(self, field_names: Sequence[str] | None, n_fields: int, argument: str) -> list[int]:
        vocab = self.config.field_names
        if field_names is None:
            if n_fields != len(vocab):
                raise ValueError(
                    f"{argument} has {n_fields} fields in its last axis but field_names=None means all "
                    f"{len(vocab)} fields of the vocabulary {vocab}; pass field_names=[...] naming the "
                    f"{n_fields} fields present, in their order."
                )
            names = vocab
        else:
            if isinstance(field_names, str):
                raise ValueError(f"field_names={field_names!r} must be a list of names, not a string.")
            names = list(field_names)
            unknown = [n for n in names if n not in vocab]
            if unknown:
                raise ValueError(
                    f"field_names contains {unknown}, not in this tokeniser's vocabulary {vocab}; "
                    "add them with tok.add_fields([...]) and train."
                )
            if len(set(names)) != len(names):
                raise ValueError(f"field_names={names} names a field more than once.")
            if len(names) != n_fields:
                raise ValueError(
                    f"{argument} has {n_fields} fields in its last axis but field_names={names} names "
                    f"{len(names)}; they must match."
                )
        position = {name: i for i, name in enumerate(vocab)}
        return [position[n] for n in names]

    def _resolve_periodic(self, periodic: Sequence[bool] | None) -> tuple[bool, ...]:
        if periodic is None:
            return tuple(self.config.periodic)
        periodic = tuple(bool(p) for p in periodic)
        if len(periodic) != self.config.n_spatial_dims:
            raise ValueError(
                f"periodic={periodic} must hold one bool per spatial axis ({self.config.n_spatial_dims})."
            )
        return periodic

    def _check_tensor(self, x: torch.Tensor, argument: str, channels: str) -> None:
        check_field_tensor(x, argument, self.config.n_spatial_dims, channels)

    # ------------------------------------------------------------------------------------------------ public API
    def sample_compression(self, generator: torch.Generator | None = None,
                           ratios: Sequence[tuple[int, int]] | None = None) -> tuple[int, int]:
        """Draws a ``(spatial, temporal)`` compression pair uniformly from ``ratios`` (default: every pair the config
        lists) with ``generator``.

        Training with one pair drawn per batch is what lets one checkpoint serve every ratio. This is the one
        sampler: ``physfm.training.autoencoding_loss`` and the trainer's stage 1 draw through it.
        """
        pairs = list(ratios) if ratios is not None else [
            (s, t) for s in self.config.spatial_compressions for t in self.config.temporal_compressions]
        return tuple(pairs[int(torch.randint(len(pairs), (1,), generator=generator))])

    def encode(
        self,
        fields: torch.Tensor,
        spatial_compression: int | None = None,
        temporal_compression: int | None = None,
        field_names: Sequence[str] | None = None,
        periodic: Sequence[bool] | None = None,
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        """Encodes ``fields [B, T, *space, C]`` into latents ``[B, 1 + (T - 1) // t, *ceil(space / s), D]``.

        ``T`` must be ``1 + k * t``. A spatial size that is not a multiple of ``s`` is padded at the end (wrapped
        on periodic axes, replicated elsewhere) up to the next multiple; :meth:`decode` with ``spatial_shape=``
        crops it back (``forward`` does both). ``None`` arguments take the config's defaults; ``field_names``
        names the ``C`` fields present, a subset of the vocabulary in any order.

        ``cache`` (a :class:`~physfm.models.layers.TemporalCache`) encodes a long clip chunk by chunk: the first
        chunk has ``1 + k * t`` frames, every later one ``k * t`` (``k >= 1``) and gives ``k`` latent frames, and
        the concatenated latents equal those of the whole clip. Each chunk costs only its own frames.
        """
        self._check_tensor(fields, "fields", "fields")
        fields = fields.to(self.dtype)  # simulators return float64: compute in the model's dtype
        s, t = self._resolve_ratios(spatial_compression, temporal_compression)
        index = self._field_index(field_names, fields.shape[-1], "fields")
        periodic = self._resolve_periodic(periodic)
        n_frames = fields.shape[1]
        continuing = cache is not None and cache.frames > 0
        if continuing and n_frames % t:
            raise ValueError(
                f"fields has T={n_frames} frames (shape {tuple(fields.shape)}); a later chunk of a cached stream "
                f"with temporal_compression={t} must have a multiple of {t} frames."
            )
        if not continuing and (n_frames - 1) % t:
            below = 1 + (n_frames - 1) // t * t
            raise ValueError(
                f"fields has T={n_frames} frames (shape {tuple(fields.shape)}); with temporal_compression={t} "
                f"T must be 1 + k*{t}: the nearest valid lengths are {below} and {below + t}."
            )
        x = _pad_to_multiple(fields, s, periodic)
        if cache is not None:
            cache.check(("encode", s, t, tuple(index), periodic, fields.shape[0], *fields.shape[2:-1]))
        latents = self.encoder(x, index, periodic, compression_schedule(s, t), cache)
        if cache is not None:
            cache.frames += n_frames
        return latents

    def decode(
        self,
        latents: torch.Tensor,
        spatial_compression: int | None = None,
        temporal_compression: int | None = None,
        field_names: Sequence[str] | None = None,
        periodic: Sequence[bool] | None = None,
        spatial_shape: Sequence[int] | None = None,
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        """Decodes latents ``[B, T', *space', D]`` into fields ``[B, 1 + (T' - 1) * t, *space, C]``.

        ``space = space' * s`` unless ``spatial_shape`` is given, in which case the output is cropped to it (use
        the input's spatial shape when it was not a multiple of ``s``). ``field_names`` picks the fields to
        produce (default: the whole vocabulary).

        ``cache`` (a :class:`~physfm.models.layers.TemporalCache`) decodes a latent stream chunk by chunk: later
        chunks give ``T' * t`` frames, and the concatenation equals decoding the whole stream at once.
        """
        self._check_tensor(latents, "latents", "latent_channels")
        latents = latents.to(self.dtype)
        if latents.shape[-1] != self.config.latent_channels:
            raise ValueError(
                f"latents has {latents.shape[-1]} channels in its last axis (shape {tuple(latents.shape)}); this "
                f"tokeniser's latent_channels is {self.config.latent_channels}."
            )
        s, t = self._resolve_ratios(spatial_compression, temporal_compression)
        names = self.config.field_names if field_names is None else field_names
        index = self._field_index(names, len(names) if not isinstance(names, str) else 1, "field_names")
        periodic = self._resolve_periodic(periodic)
        full = tuple(n * s for n in latents.shape[2:-1])
        if spatial_shape is not None:
            spatial_shape = tuple(int(n) for n in spatial_shape)
            if len(spatial_shape) != len(full) or any(
                not (f - s < n <= f) for n, f in zip(spatial_shape, full, strict=True)
            ):
                raise ValueError(
                    f"spatial_shape={spatial_shape} does not match latents of spatial shape "
                    f"{tuple(latents.shape[2:-1])} at spatial_compression={s}: each size must lie in "
                    f"({tuple(f - s for f in full)}, {full}]."
                )
        if cache is not None:
            cache.check(("decode", s, t, tuple(index), periodic, latents.shape[0], *latents.shape[2:-1]))
        x = self.decoder(latents, index, periodic, compression_schedule(s, t), cache)
        if cache is not None:
            cache.frames += latents.shape[1]
        if spatial_shape is not None and spatial_shape != full:
            x = x[(slice(None), slice(None), *[slice(0, n) for n in spatial_shape])]
        return x

    def forward(
        self,
        fields: torch.Tensor,
        spatial_compression: int | None = None,
        temporal_compression: int | None = None,
        field_names: Sequence[str] | None = None,
        periodic: Sequence[bool] | None = None,
        return_loss: bool = True,
    ) -> PhysfmTokeniserOutput:
        """Encodes and decodes ``fields [B, T, *space, C]``; the reconstruction has the input's shape.

        With ``return_loss=True`` the output carries the mean squared reconstruction error.
        """
        latents = self.encode(fields, spatial_compression, temporal_compression, field_names, periodic)
        reconstruction = self.decode(
            latents,
            spatial_compression,
            temporal_compression,
            field_names,
            periodic,
            spatial_shape=fields.shape[2:-1],
        )
        loss = F.mse_loss(reconstruction, fields.to(reconstruction.dtype)) if return_loss else None
        return PhysfmTokeniserOutput(loss=loss, reconstruction=reconstruction, latents=latents)

    @property
    def untrained_field_names(self) -> list[str]:
        """Fields of the vocabulary outside `config.trained_field_names` (none when it is not recorded)."""
        trained = self.config.trained_field_names
        return [] if trained is None else [n for n in self.config.field_names if n not in trained]

    def field_parameters(self, field_names: Sequence[str]) -> list[nn.Parameter]:
        """The input and output rows that belong to `field_names` alone (nothing shared with other fields)."""
        index = self._field_index(field_names, len(field_names), "field_names")
        return [p for i in index for conv in (self.encoder.field_in, self.decoder.field_out)
                for p in conv.field_parameters(i)]

    def add_fields(self, field_names: Sequence[str]) -> None:
        """Grows the field vocabulary, like ``resize_token_embeddings``.

        Existing rows of the input projection and output head are unchanged; new output rows start at zero, so
        the model predicts a new field as its normalised mean until trained. ``config.field_names`` is updated
        (the new fields stay out of ``config.trained_field_names``, so a frozen tokeniser still trains them)
        and the result saves and loads like any checkpoint. Create the optimizer after calling this: the two
        projections get new parameter tensors.
        """
        if isinstance(field_names, str):
            raise ValueError(f"field_names={field_names!r} must be a list of names, not a string.")
        new = list(field_names)
        present = [n for n in new if n in self.config.field_names]
        if present or len(set(new)) != len(new):
            raise ValueError(
                f"field_names={new}: {present or 'duplicates'} "
                f"{'already in the vocabulary ' + str(self.config.field_names) if present else 'given twice'}."
            )
        self.encoder.field_in.grow(len(new))
        self.decoder.field_out.grow(len(new))
        if self.config.trained_field_names is None:  # record that the existing fields were trained, the new not
            self.config.trained_field_names = list(self.config.field_names)
        self.config.field_names = [*self.config.field_names, *new]


PhysfmTokeniserConfig.register_for_auto_class("AutoConfig")
PhysfmTokeniserModel.register_for_auto_class("AutoModel")

__all__ = ["PhysfmTokeniserModel", "PhysfmTokeniserOutput", "PhysfmTokeniserPreTrainedModel"]
