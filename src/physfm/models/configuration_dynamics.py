"""Configuration of the physfm latent dynamics model.

The dynamics config nests the config of the tokeniser it wraps (``tokeniser_config``), so one
``config.json`` describes the whole model and ``save_pretrained`` / ``from_pretrained`` round-trip
both parts. Compression ratios, field names and boundary conditions left as ``None`` are resolved
from the tokeniser config, so a dynamics config only has to name what differs.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from .configuration_tokeniser import PhysfmTokeniserConfig, check_config_keys


class PhysfmDynamicsConfig(PreTrainedConfig):
    r"""
    Configuration of [`PhysfmDynamicsModel`]: a space-time transformer that predicts the next latent
    frame of a (pretrained or scratch) [`PhysfmTokeniserModel`].

    Args:
        tokeniser_config (`dict` or `PhysfmTokeniserConfig`, *optional*):
            Config of the wrapped tokeniser. `None` gives a default (scratch) tokeniser.
        n_steps_input (`int`, *optional*, defaults to 4):
            Number of input field frames. With temporal compression `t` it must be `1 + k*t`, which the
            tokeniser encodes into `1 + k` latent frames.
        spatial_compression (`int`, *optional*):
            Spatial ratio the tokeniser is run at; one of `tokeniser_config.spatial_compressions`.
            Defaults to the tokeniser's `default_spatial_compression`.
        temporal_compression (`int`, *optional*):
            Temporal ratio `t`; one of `tokeniser_config.temporal_compressions`. Defaults to the tokeniser's
            `default_temporal_compression`. One predicted latent frame decodes to `t` field frames, so the model
            predicts `t` frames per step (see [`PhysfmDynamicsModel`]).
        field_names (`list[str]`, *optional*):
            Fields of the downstream system, in channel order; a subset of the tokeniser vocabulary. Used when a
            call passes no `field_names`. Defaults to the whole tokeniser vocabulary.
        periodic (`list[bool]`, *optional*):
            Periodicity per spatial axis used when a call passes none. Defaults to the tokeniser's.
        patch_size (`int` or `list[int]`, *optional*, defaults to 2):
            Extent of the latent patches that become transformer tokens: an int for square (2-D) or cubic (3-D)
            patches, or one int per spatial axis. Latent grids that are not a multiple are zero-padded before
            patchifying and cropped back afterwards.
        hidden_size (`int`, *optional*, defaults to 64):
            Transformer width.
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Number of space-time blocks (alias `num_layers`).
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads; must divide `hidden_size`.
        mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP width as a multiple of `hidden_size`.
        hidden_dropout (`float`, *optional*, defaults to 0.0):
            Dropout after the attention output projections and inside the MLP.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the attention weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation of the transformer's linear layers.
        freeze_tokeniser (`bool`, *optional*, defaults to `False`):
            Keep the tokeniser frozen (no gradients, eval mode). Stored so that a saved frozen model loads frozen.
        field_residual (`bool`, *optional*, defaults to `True`):
            Predict the next frame as the last input frame plus the decoded change,
            `x[T] + decode(z[T+1]) - decode(z[T])`, rather than as `decode(z[T+1])` alone. Consecutive frames share
            most of their reconstruction error, so the difference cancels it: the tokeniser's error floor applies
            to the (small) change between frames instead of to the frame itself.
        tokeniser_name_or_path (`str`, *optional*):
            Where the pretrained tokeniser came from (provenance only; the weights live in the dynamics checkpoint).

    Example:

    ```python
    >>> from physfm.models import PhysfmDynamicsConfig, PhysfmDynamicsModel
    >>> config = PhysfmDynamicsConfig(n_steps_input=4, hidden_size=64, num_hidden_layers=2)
    >>> model = PhysfmDynamicsModel(config)  # scratch tokeniser
    ```
    """

    model_type = "physfm_dynamics"
    sub_configs_defaults = {"tokeniser_config": PhysfmTokeniserConfig}
    attribute_map = {"num_layers": "num_hidden_layers"}

    tokeniser_config: dict | PreTrainedConfig | None = None
    n_steps_input: int = 4
    spatial_compression: int | None = None
    temporal_compression: int | None = None
    field_names: list[str] | None = None
    periodic: list[bool] | None = None
    patch_size: int | list[int] = 2
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    mlp_ratio: float = 4.0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    freeze_tokeniser: bool = False
    field_residual: bool = True
    tokeniser_name_or_path: str | None = None

    def __post_init__(self, **kwargs):
        check_config_keys(self, kwargs)
        super().__post_init__(**kwargs)  # builds self.tokeniser_config from a dict / None (transformers >= 5.24)
        if not isinstance(self.tokeniser_config, PhysfmTokeniserConfig):  # older 5.x leave the dict as is
            self.tokeniser_config = PhysfmTokeniserConfig(**(self.tokeniser_config or {}))
        tok = self.tokeniser_config
        if self.spatial_compression is None:
            self.spatial_compression = tok.default_spatial_compression
        if self.temporal_compression is None:
            self.temporal_compression = tok.default_temporal_compression
        if self.field_names is not None:
            self.field_names = list(self.field_names)
        if self.periodic is not None:
            self.periodic = [bool(p) for p in self.periodic]
        if isinstance(self.patch_size, tuple):  # JSON gives lists: store lists so saved configs round-trip
            self.patch_size = list(self.patch_size)
        self._validate()

    def _validate(self) -> None:
        """Raise one `ValueError` per inconsistent setting, naming it, its value and what is allowed."""
        tok = self.tokeniser_config
        s, t = self.spatial_compression, self.temporal_compression
        if s not in tok.spatial_compressions:
            raise ValueError(
                f"spatial_compression: got {s!r}; the tokeniser supports {list(tok.spatial_compressions)}."
            )
        if t not in tok.temporal_compressions:
            raise ValueError(
                f"temporal_compression: got {t!r}; the tokeniser supports {list(tok.temporal_compressions)}."
            )
        n = self.n_steps_input
        if not isinstance(n, int) or n < 1 or (n - 1) % t != 0:
            valid = [1 + k * t for k in range(4)]
            raise ValueError(
                f"n_steps_input: got {n!r}; with temporal_compression={t} it must be 1 + k*{t} "
                f"(e.g. {valid}) so that the tokeniser encodes it into whole latent frames."
            )
        n_space = tok.n_spatial_dims
        if len(self.patch_sizes) != n_space or not all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in self.patch_sizes
        ):
            raise ValueError(
                f"patch_size: got {self.patch_size!r}; expected a positive integer or {n_space} positive integers, "
                "one per spatial axis."
            )
        if (
            self.hidden_size < 1
            or self.num_attention_heads < 1
            or self.hidden_size % self.num_attention_heads
        ):
            raise ValueError(
                f"hidden_size / num_attention_heads: got {self.hidden_size} / {self.num_attention_heads}; "
                "hidden_size must be a positive multiple of num_attention_heads."
            )
        if self.field_names is not None:
            unknown = [f for f in self.field_names if f not in tok.field_names]
            if unknown or not self.field_names or len(set(self.field_names)) != len(self.field_names):
                raise ValueError(
                    f"field_names: got {self.field_names}; expected distinct names from the tokeniser vocabulary "
                    f"{list(tok.field_names)} (unknown: {unknown}). Grow the vocabulary with "
                    "tokeniser.add_fields(...) first."
                )
        if self.periodic is not None and len(self.periodic) != tok.n_spatial_dims:
            raise ValueError(
                f"periodic: got {self.periodic}; expected one bool per spatial axis ({tok.n_spatial_dims})."
            )

    @property
    def patch_sizes(self) -> tuple[int, ...]:
        """Patch extent along each spatial axis."""
        if isinstance(self.patch_size, list):
            return tuple(self.patch_size)
        return (self.patch_size,) * self.tokeniser_config.n_spatial_dims

    @property
    def n_latent_frames(self) -> int:
        """Latent frames the tokeniser makes of `n_steps_input` field frames: `1 + (n_steps_input - 1) // t`."""
        return 1 + (self.n_steps_input - 1) // self.temporal_compression


__all__ = ["PhysfmDynamicsConfig"]
