"""Configuration of the physfm tokeniser, a causal convolutional autoencoder for physical fields."""

from __future__ import annotations

import difflib
import math

from transformers import PreTrainedConfig


def default_field_names(n_spatial_dims: int) -> list[str]:
    """A tracer, the pressure and one velocity component per spatial axis, named as The Well flattens vectors."""
    return ["tracer", "pressure", *(f"velocity_{axis}" for axis in "xyz"[:n_spatial_dims])]


# Keys transformers itself writes into config.json or passes when loading; every other unknown key is a typo.
_TRANSFORMERS_KEYS = frozenset(PreTrainedConfig().to_dict()) | {"auto_map", "torch_dtype", "name_or_path"}


def check_config_keys(config: PreTrainedConfig, unknown: dict) -> None:
    """Refuse keys that are neither the config's own fields nor transformers' (a misspelt key would otherwise be
    stored and silently ignored), naming the nearest valid key."""
    base = set(PreTrainedConfig.__dataclass_fields__)
    own = [name for name in type(config).__dataclass_fields__ if not name.startswith("_") and name not in base]
    own += list(getattr(type(config), "attribute_map", {}))
    typos = sorted(k for k in unknown if not k.startswith("_") and k not in _TRANSFORMERS_KEYS | base and k not in own)
    if typos:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, own, n=1)) else repr(k)
                 for k in typos]
        raise ValueError(f"{type(config).__name__}: unknown key(s) {', '.join(hints)}; expected some of {sorted(own)}.")


def _is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n & (n - 1) == 0


class PhysfmTokeniserConfig(PreTrainedConfig):
    r"""
    Configuration of [`PhysfmTokeniserModel`], a MAGVIT-style causal (2+1)-D or (3+1)-D convolutional autoencoder
    whose compression ratio is chosen at run time.

    The encoder is a pyramid of `n_levels = log2(max(spatial_compressions)) + 1` levels; level 0 runs at the input
    resolution and each transition to the next level halves space (and, for the first `log2(t)` transitions, time)
    with a fixed learned kernel whose stride is picked at run time. A ratio `(s, t)` runs the pyramid down to level
    `max(log2 s, log2 t)` only and leaves through that level's latent head; the decoder enters at the same level
    and mirrors it. So one set of weights serves every listed ratio, the upper levels are shared by all of them,
    and no level runs at a resolution the ratio does not need. Convolutions are factorised: a `k^d` spatial
    kernel per frame (`d = n_spatial_dims`; torch has no 4-D convolution) and a causal `k_t` kernel over time.

    Args:
        field_names (`list[str]`, *optional*, defaults to `["tracer", "pressure", "velocity_x", "velocity_y"]`):
            The field vocabulary. Each name owns one row of the input projection and of the output head. In 3-D the
            default adds `"velocity_z"`.
        trained_field_names (`list[str]`, *optional*):
            The fields of the vocabulary whose rows have been trained; physfm's trainer records them. A tokeniser
            frozen inside [`PhysfmDynamicsModel`] still trains the rows of the other fields (a downstream field
            that pretraining never saw), like new token embeddings in a frozen language model. `None` counts
            every field as trained.
        n_spatial_dims (`int`, *optional*, defaults to 2):
            Number of spatial axes, 2 (`[batch, time, x, y, fields]`) or 3 (`[batch, time, x, y, z, fields]`).
        periodic (`list[bool]`, *optional*, defaults to all `True`):
            Default boundary per spatial axis: circular padding if `True`, replicate padding otherwise.
        spatial_compressions (`list[int]`, *optional*, defaults to `[2, 4, 8, 16]`):
            Spatial down-sampling factors (powers of two) that one checkpoint serves.
        temporal_compressions (`list[int]`, *optional*, defaults to `[1, 2, 4]`):
            Temporal down-sampling factors (powers of two) that one checkpoint serves.
        default_spatial_compression (`int`, *optional*, defaults to 4):
            Used when a call passes `spatial_compression=None`.
        default_temporal_compression (`int`, *optional*, defaults to 1):
            Used when a call passes `temporal_compression=None`.
        latent_channels (`int`, *optional*, defaults to 16):
            Channels of the continuous latent.
        hidden_channels (`int`, *optional*, defaults to 32):
            Width of level 0 (full resolution), where every channel is most expensive.
        channel_multipliers (`list[int]`, *optional*, defaults to `[1, 2, 2, ...]`):
            Width of level `l` is `hidden_channels * channel_multipliers[l]`; one entry per level.
        layers_per_level (`int` or `list[int]`, *optional*, defaults to `[0, 1, 1, ...]`):
            Residual blocks per level, in the encoder and in the decoder; an int applies to every level. The
            default puts no block at full resolution, where a block costs four times what it costs one level down.
        kernel_size (`int`, *optional*, defaults to 3):
            Odd spatial kernel size of every convolution (also the down-sampling kernel, so stride <= kernel).
        temporal_kernel_size (`int`, *optional*, defaults to 3):
            Temporal kernel size; time is padded on the left only.
        activation (`str`, *optional*, defaults to `"silu"`):
            `"silu"` or `"gelu"`.
        gradient_checkpointing (`bool`, *optional*, defaults to `False`):
            Recompute residual blocks in the backward pass to save memory.

    Example:

    ```python
    >>> from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
    >>> config = PhysfmTokeniserConfig(field_names=["density", "pressure"], hidden_channels=8)
    >>> model = PhysfmTokeniserModel(config)
    ```"""

    model_type = "physfm_tokeniser"

    field_names: list[str] | None = None
    trained_field_names: list[str] | None = None
    n_spatial_dims: int = 2
    periodic: list[bool] | None = None
    spatial_compressions: list[int] | None = None
    temporal_compressions: list[int] | None = None
    default_spatial_compression: int = 4
    default_temporal_compression: int = 1
    latent_channels: int = 16
    hidden_channels: int = 32
    channel_multipliers: list[int] | None = None
    layers_per_level: int | list[int] | None = None
    kernel_size: int = 3
    temporal_kernel_size: int = 3
    activation: str = "silu"
    gradient_checkpointing: bool = False

    def __post_init__(self, **kwargs):
        check_config_keys(self, kwargs)
        # JSON gives lists, users may give tuples: normalise to lists so saved configs round-trip identically.
        self.field_names = (
            list(self.field_names) if self.field_names is not None else default_field_names(self.n_spatial_dims)
        )
        if self.trained_field_names is not None:
            self.trained_field_names = list(self.trained_field_names)
        self.periodic = (
            [bool(p) for p in self.periodic] if self.periodic is not None else [True] * self.n_spatial_dims
        )
        self.spatial_compressions = sorted(
            int(s) for s in (self.spatial_compressions if self.spatial_compressions is not None else [2, 4, 8, 16])
        )
        self.temporal_compressions = sorted(
            int(t) for t in (self.temporal_compressions if self.temporal_compressions is not None else [1, 2, 4])
        )
        if self.channel_multipliers is None:
            self.channel_multipliers = [min(2**level, 2) for level in range(self.n_levels)]
        self.channel_multipliers = [int(m) for m in self.channel_multipliers]
        if self.layers_per_level is None:
            self.layers_per_level = [0] + [1] * (self.n_levels - 1)
        elif isinstance(self.layers_per_level, int):
            self.layers_per_level = [self.layers_per_level] * self.n_levels
        self.layers_per_level = [int(n) for n in self.layers_per_level]
        self._check()
        super().__post_init__(**kwargs)

    @classmethod
    def for_gpu(cls, **kwargs) -> PhysfmTokeniserConfig:
        """The larger configuration documented for GPU training: twice the width, up to 4x deeper down, and a
        block at full resolution plus two per level below it."""
        n_levels = cls(**kwargs).n_levels
        defaults = dict(hidden_channels=64, channel_multipliers=[min(2**level, 4) for level in range(n_levels)],
                        layers_per_level=[1] + [2] * (n_levels - 1))
        return cls(**{**defaults, **kwargs})

    @property
    def level_widths(self) -> list[int]:
        return [self.hidden_channels * m for m in self.channel_multipliers]

    @property
    def exit_levels(self) -> list[int]:
        """Pyramid levels whose latent head some listed ratio uses (one level per halving of space or time)."""
        return sorted({max(s.bit_length(), t.bit_length()) - 1
                       for s in self.spatial_compressions for t in self.temporal_compressions})

    @property
    def n_levels(self) -> int:
        """Levels of the encoder pyramid: one per possible halving of space, plus the full-resolution level."""
        return int(math.log2(max(self.spatial_compressions))) + 1

    def _check(self) -> None:
        if self.n_spatial_dims not in (2, 3):
            raise ValueError(f"n_spatial_dims={self.n_spatial_dims!r} must be 2 or 3 (spatial axes of the fields).")
        if len(self.periodic) != self.n_spatial_dims:
            raise ValueError(
                f"periodic={self.periodic!r} must hold one bool per spatial axis ({self.n_spatial_dims})."
            )
        if not self.field_names or len(set(self.field_names)) != len(self.field_names):
            raise ValueError(f"field_names={self.field_names!r} must be a non-empty list of distinct names.")
        if self.trained_field_names is not None:
            unknown = [n for n in self.trained_field_names if n not in self.field_names]
            if unknown:
                raise ValueError(
                    f"trained_field_names={self.trained_field_names!r} names {unknown}, not in field_names="
                    f"{self.field_names!r}."
                )
        for name, values in (
            ("spatial_compressions", self.spatial_compressions),
            ("temporal_compressions", self.temporal_compressions),
        ):
            if not values or not all(_is_power_of_two(v) for v in values) or len(set(values)) != len(values):
                raise ValueError(f"{name}={values!r} must be a non-empty list of distinct powers of two (1, 2, 4, ...).")
        if max(self.temporal_compressions) > max(self.spatial_compressions):
            raise ValueError(
                f"temporal_compressions={self.temporal_compressions!r}: the largest temporal factor must not exceed "
                f"the largest spatial factor ({max(self.spatial_compressions)}), since time is halved on the same "
                "pyramid levels as space."
            )
        if self.default_spatial_compression not in self.spatial_compressions:
            raise ValueError(
                f"default_spatial_compression={self.default_spatial_compression!r} is not one of "
                f"spatial_compressions={self.spatial_compressions}."
            )
        if self.default_temporal_compression not in self.temporal_compressions:
            raise ValueError(
                f"default_temporal_compression={self.default_temporal_compression!r} is not one of "
                f"temporal_compressions={self.temporal_compressions}."
            )
        if len(self.channel_multipliers) != self.n_levels or min(self.channel_multipliers) < 1:
            raise ValueError(
                f"channel_multipliers={self.channel_multipliers!r} must hold {self.n_levels} positive ints, one per "
                f"pyramid level (log2(max spatial compression {max(self.spatial_compressions)}) + 1)."
            )
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size={self.kernel_size!r} must be odd and >= 3 (centred spatial padding; a stride-2 "
                "kernel may not be smaller than its stride)."
            )
        if self.temporal_kernel_size < 2:
            raise ValueError(
                f"temporal_kernel_size={self.temporal_kernel_size!r} must be >= 2 (a stride-2 kernel may not be "
                "smaller than its stride)."
            )
        for name in ("latent_channels", "hidden_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive int.")
        if len(self.layers_per_level) != self.n_levels or min(self.layers_per_level) < 0:
            raise ValueError(
                f"layers_per_level={self.layers_per_level!r} must be an int >= 0 or {self.n_levels} ints >= 0, one "
                "per pyramid level."
            )
        if self.activation not in ("silu", "gelu"):
            raise ValueError(f"activation={self.activation!r} must be 'silu' or 'gelu'.")


__all__ = ["PhysfmTokeniserConfig", "check_config_keys"]
