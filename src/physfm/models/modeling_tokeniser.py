"""physfm tokeniser: a MAGVIT-style causal 3-D convolutional autoencoder with run-time compression.

Public tensors use The Well's layout ``[batch, time, *space, fields]`` (channels last); inside, everything is
channels-first ``[batch, channels, time, *space]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_tokeniser import PhysfmTokeniserConfig
from .layers import CausalConv, CausalResBlock, ChannelRMSNorm, FieldConv, compression_schedule, upsample


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
    """Pads the spatial axes of ``x [b, c, t, *space]`` at their end up to a multiple of ``multiple``.

    Periodic axes are continued periodically (wrapped), others by repeating the edge; indexing instead of
    ``F.pad`` allows any amount, even more than the axis length.
    """
    for axis, circular in enumerate(periodic):
        dim = 3 + axis
        n = x.shape[dim]
        if n % multiple == 0:
            continue
        index = torch.arange(n + (-n % multiple), device=x.device)
        index = index % n if circular else index.clamp(max=n - 1)
        x = x.index_select(dim, index)
    return x


def _levels(config: PhysfmTokeniserConfig) -> list[int]:
    return [config.hidden_channels * m for m in config.channel_multipliers]


def _conv_kwargs(config: PhysfmTokeniserConfig) -> dict:
    return dict(
        kernel_time=config.temporal_kernel_size,
        kernel_space=config.kernel_size,
        n_spatial_dims=config.n_spatial_dims,
    )


def _res_blocks(config: PhysfmTokeniserConfig, channels: int, n: int) -> nn.ModuleList:
    return nn.ModuleList(
        CausalResBlock(channels, channels, eps=config.norm_eps, **_conv_kwargs(config)) for _ in range(n)
    )


class PhysfmTokeniserEncoderLevel(nn.Module):
    """Residual blocks at one resolution, then (except at the deepest level) a run-time-stride down-sampling."""

    def __init__(self, config: PhysfmTokeniserConfig, channels: int, next_channels: int | None):
        super().__init__()
        self.blocks = _res_blocks(config, channels, config.layers_per_level)
        self.downsample = (
            CausalConv(channels, next_channels, **_conv_kwargs(config)) if next_channels is not None else None
        )

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], strides: tuple[int, int] | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, periodic)
        if self.downsample is not None:
            x = self.downsample(x, periodic, *strides)
        return x


class PhysfmTokeniserDecoderLevel(nn.Module):
    """Mirror of an encoder level: (except at the deepest level) up-sample by run-time factors and convolve to
    this level's width, then residual blocks."""

    def __init__(self, config: PhysfmTokeniserConfig, channels: int, deeper_channels: int | None):
        super().__init__()
        self.upsample = (
            CausalConv(deeper_channels, channels, **_conv_kwargs(config)) if deeper_channels is not None else None
        )
        self.blocks = _res_blocks(config, channels, config.layers_per_level)

    def forward(self, x: torch.Tensor, periodic: Sequence[bool], factors: tuple[int, int] | None) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(upsample(x, *factors), periodic)
        for block in self.blocks:
            x = block(x, periodic)
        return x


class PhysfmTokeniserEncoder(nn.Module):
    """Fields ``[b, C, T, *space]`` (C fields picked from the vocabulary) -> latents ``[b, D, T', *space']``."""

    def __init__(self, config: PhysfmTokeniserConfig):
        super().__init__()
        widths = _levels(config)
        self.field_in = FieldConv(len(config.field_names), widths[0], "in", **_conv_kwargs(config))
        self.levels = nn.ModuleList(
            PhysfmTokeniserEncoderLevel(config, w, widths[i + 1] if i + 1 < len(widths) else None)
            for i, w in enumerate(widths)
        )
        self.mid = _res_blocks(config, widths[-1], config.mid_layers)
        self.norm_out = ChannelRMSNorm(widths[-1], config.norm_eps)
        self.conv_out = CausalConv(widths[-1], config.latent_channels, **_conv_kwargs(config))

    def forward(
        self, x: torch.Tensor, field_index: list[int], periodic: Sequence[bool], schedule: list[tuple[int, int]]
    ) -> torch.Tensor:
        x = self.field_in(x, field_index, periodic)
        for level, strides in zip(self.levels, [*schedule, None], strict=True):
            x = level(x, periodic, strides)
        for block in self.mid:
            x = block(x, periodic)
        return self.conv_out(F.silu(self.norm_out(x)), periodic)


class PhysfmTokeniserDecoder(nn.Module):
    """Latents ``[b, D, T', *space']`` -> fields ``[b, C, T, *space]`` for the C fields asked for."""

    def __init__(self, config: PhysfmTokeniserConfig):
        super().__init__()
        widths = _levels(config)
        self.conv_in = CausalConv(config.latent_channels, widths[-1], **_conv_kwargs(config))
        self.mid = _res_blocks(config, widths[-1], config.mid_layers)
        # levels[i] mirrors encoder level i; they run deepest first.
        self.levels = nn.ModuleList(
            PhysfmTokeniserDecoderLevel(config, w, widths[i + 1] if i + 1 < len(widths) else None)
            for i, w in enumerate(widths)
        )
        self.norm_out = ChannelRMSNorm(widths[0], config.norm_eps)
        self.field_out = FieldConv(len(config.field_names), widths[0], "out", **_conv_kwargs(config))

    def forward(
        self, z: torch.Tensor, field_index: list[int], periodic: Sequence[bool], schedule: list[tuple[int, int]]
    ) -> torch.Tensor:
        x = self.conv_in(z, periodic)
        for block in self.mid:
            x = block(x, periodic)
        for level, factors in zip(reversed(self.levels), reversed([*schedule, None]), strict=True):
            x = level(x, periodic, factors)
        return self.field_out(F.silu(self.norm_out(x)), field_index, periodic)


class PhysfmTokeniserPreTrainedModel(PreTrainedModel):
    """Holds the configuration class, weight initialisation and Auto-class plumbing of the tokeniser."""

    config_class = PhysfmTokeniserConfig
    config: PhysfmTokeniserConfig
    base_model_prefix = "tokeniser"
    main_input_name = "fields"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CausalResBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Fan-in normal kernels, zero biases; residual branches end in a zero kernel so blocks start as identity."""
        if isinstance(module, CausalConv):
            if module.zero_init:
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, std=module.fan_in**-0.5)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, FieldConv):
            # An input row sees one field; the fields of a call add up, so scale by the vocabulary size.
            fan_in = module.kernel_volume * (module.vocab_size if module.direction == "in" else module.row_shape[0])
            for name, parameter in module.named_parameters(recurse=False):
                if name.startswith("weight_"):
                    init.normal_(parameter, std=fan_in**-0.5)
                else:
                    init.zeros_(parameter)
        elif isinstance(module, ChannelRMSNorm):
            init.ones_(module.weight)


class PhysfmTokeniserModel(PhysfmTokeniserPreTrainedModel):
    """Causal convolutional autoencoder for physical fields whose compression is chosen at run time.

    - **Compression.** ``spatial_compression`` / ``temporal_compression`` may be any pair the config lists; the
      same kernels run with run-time strides (2 or 1) in the encoder and run-time up-sampling factors in the
      decoder.
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

    def _check_tensor(self, x: torch.Tensor, argument: str, layout: str) -> None:
        ndim = self.config.n_spatial_dims + 3
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{argument} must be a torch.Tensor {layout}, got {type(x).__name__}.")
        if x.ndim != ndim:
            raise ValueError(
                f"{argument} must have {ndim} dimensions {layout}, got shape {tuple(x.shape)} "
                f"({x.ndim} dimensions)."
            )
        if not x.is_floating_point():
            raise ValueError(f"{argument} must be a floating-point tensor, got dtype {x.dtype}.")
        if not bool(torch.isfinite(x).all()):
            n_bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{argument} contains {n_bad} NaN/Inf values (shape {tuple(x.shape)}).")

    # ------------------------------------------------------------------------------------------------ public API
    def sample_compression(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """Draws a ``(spatial, temporal)`` compression pair uniformly from all pairs the config lists.

        Training with one pair drawn per batch is what lets one checkpoint serve every ratio.
        """
        pairs = [(s, t) for s in self.config.spatial_compressions for t in self.config.temporal_compressions]
        return pairs[int(torch.randint(len(pairs), (1,), generator=generator))]

    def encode(
        self,
        fields: torch.Tensor,
        spatial_compression: int | None = None,
        temporal_compression: int | None = None,
        field_names: Sequence[str] | None = None,
        periodic: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """Encodes ``fields [B, T, *space, C]`` into latents ``[B, 1 + (T - 1) // t, *ceil(space / s), D]``.

        ``T`` must be ``1 + k * t``. A spatial size that is not a multiple of ``s`` is padded at the end (wrapped
        on periodic axes, replicated elsewhere) up to the next multiple; :meth:`decode` with ``spatial_shape=``
        crops it back (``forward`` does both). ``None`` arguments take the config's defaults; ``field_names``
        names the ``C`` fields present, a subset of the vocabulary in any order.
        """
        self._check_tensor(fields, "fields", "[batch, time, *space, fields]")
        s, t = self._resolve_ratios(spatial_compression, temporal_compression)
        index = self._field_index(field_names, fields.shape[-1], "fields")
        periodic = self._resolve_periodic(periodic)
        n_frames = fields.shape[1]
        if (n_frames - 1) % t:
            below = 1 + (n_frames - 1) // t * t
            raise ValueError(
                f"fields has T={n_frames} frames (shape {tuple(fields.shape)}); with temporal_compression={t} "
                f"T must be 1 + k*{t}: the nearest valid lengths are {below} and {below + t}."
            )
        x = rearrange(fields, "b t ... c -> b c t ...")
        x = _pad_to_multiple(x, s, periodic)
        schedule = compression_schedule(s, t, len(self.encoder.levels) - 1)
        z = self.encoder(x, index, periodic, schedule)
        return rearrange(z, "b c t ... -> b t ... c")

    def decode(
        self,
        latents: torch.Tensor,
        spatial_compression: int | None = None,
        temporal_compression: int | None = None,
        field_names: Sequence[str] | None = None,
        periodic: Sequence[bool] | None = None,
        spatial_shape: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Decodes latents ``[B, T', *space', D]`` into fields ``[B, 1 + (T' - 1) * t, *space, C]``.

        ``space = space' * s`` unless ``spatial_shape`` is given, in which case the output is cropped to it (use
        the input's spatial shape when it was not a multiple of ``s``). ``field_names`` picks the fields to
        produce (default: the whole vocabulary).
        """
        self._check_tensor(latents, "latents", "[batch, time, *space, latent_channels]")
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
        schedule = compression_schedule(s, t, len(self.decoder.levels) - 1)
        x = self.decoder(rearrange(latents, "b t ... c -> b c t ..."), index, periodic, schedule)
        if spatial_shape is not None and spatial_shape != full:
            x = x[(..., *[slice(0, n) for n in spatial_shape])]
        return rearrange(x, "b c t ... -> b t ... c")

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
        loss = F.mse_loss(reconstruction, fields) if return_loss else None
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
