"""physfm latent dynamics model: a space-time transformer over tokeniser latents.

Pipeline of one step (tensors at the public boundary are channels-last, The Well's layout; ``*space`` is
``H, W`` in 2-D and ``H, W, L`` in 3-D)::

    input_fields [B, T_in, *space, C]
      -> tokeniser.encode                  latents [B, T', *latent_space, D],  T' = 1 + (T_in - 1) // t
      -> patchify (p per axis)             tokens  [B, T', N, prod(p) * D],  N = prod(latent_space / p)
      -> space-time transformer            (spatial attention within a frame, causal temporal attention
                                            per patch position)
      -> head on the LAST frame            delta   [B, 1, *latent_space, D]
      -> next latent = last latent + delta
      -> tokeniser.decode(context latents + next latent), keep the last t frames
    prediction [B, t, *space, C]           (normalised field space; loss = MSE against output_fields[:, :t])

Temporal compression ``t > 1``: the tokeniser turns ``1 + k*t`` frames into ``1 + k`` latent frames (the first
latent holds frame 0 alone, every later latent holds ``t`` frames). A predicted latent frame therefore stands for
the next ``t`` field frames, so one step predicts ``t`` frames and ``n_steps_input`` must be ``1 + k*t``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_dynamics import PhysfmDynamicsConfig
from .configuration_tokeniser import PhysfmTokeniserConfig
from .input_checks import check_field_tensor
from .layers import PhysfmModelMixin, TemporalCache
from .loading import load_checkpoint
from .modeling_tokeniser import PhysfmTokeniserModel

# Keys a training batch may carry that are not model inputs (see `PhysfmDynamicsModel.forward`).
_IGNORED_BATCH_KEYS = frozenset({"dataset_index", "num_items_in_batch"})


@dataclass
class PhysfmDynamicsOutput(ModelOutput):
    """
    Output of [`PhysfmDynamicsModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            MSE in normalised field space between `prediction` and the first `t` frames of `output_fields`;
            returned when `output_fields` is given (and `return_loss` is not `False`).
        prediction (`torch.FloatTensor` of shape `[batch, t, *space, n_fields]`):
            The predicted next field frame(s), `t` = temporal compression (1 by default).
        latents (`torch.FloatTensor` of shape `[batch, 1, *latent_space, latent_channels]`):
            The predicted next latent frame, before decoding.
    """

    loss: torch.FloatTensor | None = None
    prediction: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None


def sincos_embedding(grid: tuple[int, ...], dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed sine-cosine position embedding `[prod(grid), dim]` of a 2-D or 3-D token grid (row-major).

    Each axis gets an equal share of the channels (half sines, half cosines); channels left over when `dim` is not
    a multiple of `2 * len(grid)` are zero. Being a function of the grid rather than a learned table, it serves
    any latent grid size, so one model handles every resolution the tokeniser accepts.
    """
    share = dim // (2 * len(grid))
    omega = 1.0 / (10000 ** (torch.arange(share, device=device, dtype=torch.float32) / max(share, 1)))
    coords = torch.meshgrid(*(torch.arange(n, device=device, dtype=torch.float32) for n in grid), indexing="ij")
    angles = [c.reshape(-1, 1) * omega for c in coords]  # [N, share] per axis
    emb = torch.cat([part for a in angles for part in (a.sin(), a.cos())], dim=-1)
    return F.pad(emb, (0, dim - emb.shape[-1])).to(dtype=dtype)


class PhysfmDynamicsAttention(nn.Module):
    """Multi-head self-attention over `[batch, length, hidden]` with `F.scaled_dot_product_attention`."""

    def __init__(self, config: PhysfmDynamicsConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.attention_dropout = config.attention_dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attention_dropout if self.training else 0.0, is_causal=is_causal
        )
        return self.proj_dropout(self.proj(rearrange(out, "b h l d -> b l (h d)")))


class PhysfmDynamicsMLP(nn.Module):
    def __init__(self, config: PhysfmDynamicsConfig):
        super().__init__()
        inner = int(round(config.hidden_size * config.mlp_ratio))
        self.fc1 = nn.Linear(config.hidden_size, inner)
        self.fc2 = nn.Linear(inner, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class PhysfmDynamicsBlock(GradientCheckpointingLayer):
    """Factorised space-time block (pre-norm): spatial attention within each frame, then causal temporal
    attention along time at each patch position, then an MLP.

    Factorising keeps the cost at `T*N^2 + N*T^2` instead of `(T*N)^2`, and makes causality in time structural:
    the only operation that mixes frames is the temporal attention, and it is causal.
    """

    def __init__(self, config: PhysfmDynamicsConfig):
        super().__init__()
        self.norm_space = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn_space = PhysfmDynamicsAttention(config)
        self.norm_time = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn_time = PhysfmDynamicsAttention(config)
        self.norm_mlp = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PhysfmDynamicsMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, t, n, c]
        b = x.shape[0]
        y = rearrange(self.norm_space(x), "b t n c -> (b t) n c")
        x = x + rearrange(self.attn_space(y), "(b t) n c -> b t n c", b=b)
        y = rearrange(self.norm_time(x), "b t n c -> (b n) t c")
        x = x + rearrange(self.attn_time(y, is_causal=True), "(b n) t c -> b t n c", b=b)
        return x + self.mlp(self.norm_mlp(x))


class PhysfmDynamicsTransformer(nn.Module):
    """The processor: latent frames `[B, T', *latent_space, D]` -> per-frame deltas of the same shape.

    Output frame `i` is the predicted change from latent `i` to latent `i + 1`, computed from latents `<= i` only.
    """

    def __init__(self, config: PhysfmDynamicsConfig):
        super().__init__()
        self.patch_size = config.patch_sizes
        latent_channels = config.tokeniser_config.latent_channels
        patch_dim = math.prod(self.patch_size) * latent_channels
        self.patch_embed = nn.Linear(patch_dim, config.hidden_size)
        # Time positions are learned: the window length is fixed by the config (n_latent_frames).
        self.time_embed = nn.Parameter(torch.zeros(config.n_latent_frames, config.hidden_size))
        self.blocks = nn.ModuleList([PhysfmDynamicsBlock(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.hidden_size, patch_dim)
        # einops patterns for the config's number of axes: "b t (g0 p0) (g1 p1) d <-> b t (g0 g1) (p0 p1 d)".
        axes = range(len(self.patch_size))
        self._grid = "b t " + " ".join(f"(g{i} p{i})" for i in axes) + " d"
        self._tokens = f"b t ({' '.join(f'g{i}' for i in axes)}) ({' '.join(f'p{i}' for i in axes)} d)"

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        space = latents.shape[2:-1]
        # Zero-pad the latent grid up to a multiple of the patch size on every axis; cropped back below.
        pad = [(0, -n % p) for n, p in zip(space, self.patch_size, strict=True)]
        x = F.pad(latents, [0, 0, *(side for axis in reversed(pad) for side in axis)])
        patches = {f"p{i}": p for i, p in enumerate(self.patch_size)}
        grid = {f"g{i}": n // p for i, (n, p) in enumerate(zip(x.shape[2:-1], self.patch_size, strict=True))}
        x = rearrange(x, f"{self._grid} -> {self._tokens}", **patches)
        pos = sincos_embedding(tuple(grid.values()), self.patch_embed.out_features, x.device, x.dtype)
        x = self.patch_embed(x) + pos[None, None] + self.time_embed[None, : x.shape[1], None]
        for block in self.blocks:
            x = block(x)
        x = self.head(self.norm(x))
        x = rearrange(x, f"{self._tokens} -> {self._grid}", **grid, **patches)
        return x[(slice(None), slice(None), *(slice(0, n) for n in space))]


class PhysfmDynamicsPreTrainedModel(PhysfmModelMixin, PreTrainedModel):
    """Weight initialisation and loading for the physfm dynamics model."""

    config_class = PhysfmDynamicsConfig
    base_model_prefix = "physfm_dynamics"
    main_input_name = "input_fields"
    _no_split_modules = ["PhysfmDynamicsBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only the transformer's modules reach this method: `initialize_weights` dispatches the tokeniser's own
        # `_init_weights` to its submodules (it is a PreTrainedModel) and skips modules flagged as initialised,
        # which is how a pretrained tokeniser keeps its weights.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, PhysfmDynamicsTransformer):
            init.trunc_normal_(module.time_embed, std=std)


class PhysfmDynamicsModel(PhysfmDynamicsPreTrainedModel):
    """
    Latent next-frame predictor: a [`PhysfmTokeniserModel`] (submodule `tokeniser`) encodes `n_steps_input` frames,
    a space-time transformer causal in time (submodule `processor`) predicts the next latent frame as a delta from
    the last one, and the tokeniser decodes it.

    Three constructions, one per configuration of the paper:

    - `PhysfmDynamicsModel(config)`: tokeniser from scratch, trained with the dynamics;
    - `PhysfmDynamicsModel.from_tokeniser(tok, freeze_tokeniser=True)`: pretrained and frozen;
    - `PhysfmDynamicsModel.from_tokeniser(tok, freeze_tokeniser=False)`: pretrained and finetuned.

    Args:
        config ([`PhysfmDynamicsConfig`]): model configuration.
        tokeniser ([`PhysfmTokeniserModel`], *optional*): an already-built tokeniser to wrap as is (its weights are
            not re-initialised). Prefer [`~PhysfmDynamicsModel.from_tokeniser`], which also reconciles the configs.
    """

    def __init__(self, config: PhysfmDynamicsConfig, tokeniser: PhysfmTokeniserModel | None = None):
        super().__init__(config)
        if tokeniser is None:
            tokeniser = PhysfmTokeniserModel(config.tokeniser_config)
        else:
            # Flag every pretrained tensor/module so that post_init's weight initialisation leaves it alone.
            for tensor in (*tokeniser.parameters(), *tokeniser.buffers()):
                tensor._is_hf_initialized = True
            for module in tokeniser.modules():
                module._is_hf_initialized = True
            # One config object for both: `tokeniser.add_fields` updates it, and save_pretrained must see that.
            config.tokeniser_config = tokeniser.config
        self.tokeniser = tokeniser
        self.processor = PhysfmDynamicsTransformer(config)
        self.post_init()
        if config.freeze_tokeniser:
            self.freeze_tokeniser()

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_tokeniser(
        cls,
        tokeniser: PhysfmTokeniserModel | str | os.PathLike,
        config: PhysfmDynamicsConfig | dict | None = None,
        freeze_tokeniser: bool = True,
        **from_pretrained_kwargs,
    ) -> PhysfmDynamicsModel:
        """Build a dynamics model around a pretrained tokeniser.

        Args:
            tokeniser: a `PhysfmTokeniserModel`, a local checkpoint directory or a Hub repo id (loaded in float32
                by `models.loading.load_checkpoint`, which refuses a mistyped local path before any Hub request). A
                model object is deep-copied, so finetuning never mutates the caller's tokeniser.
            config: `None` (defaults), a `dict` of `PhysfmDynamicsConfig` overrides, or a `PhysfmDynamicsConfig`.
                Its `tokeniser_config` is replaced by the pretrained tokeniser's.
            freeze_tokeniser: `True` (pretrained + frozen: no gradients, eval mode) or `False` (finetuned).
                Stored in `config.freeze_tokeniser` so that save/load preserves it.
            **from_pretrained_kwargs: passed to `PhysfmTokeniserModel.from_pretrained` (e.g. `revision`).

        Returns:
            `PhysfmDynamicsModel` with the transformer freshly initialised and the tokeniser's weights untouched.
        """
        name_or_path = None
        if isinstance(tokeniser, (str, os.PathLike)):
            name_or_path = str(tokeniser)
            tokeniser = load_checkpoint(name_or_path, {PhysfmTokeniserConfig.model_type: PhysfmTokeniserModel},
                                        "tokeniser", **from_pretrained_kwargs)
        elif isinstance(tokeniser, PreTrainedModel) and getattr(tokeniser.config, "model_type", None) == (
            PhysfmTokeniserConfig.model_type
        ):
            name_or_path = tokeniser.config.name_or_path or None
            tokeniser = copy.deepcopy(tokeniser)
        else:
            raise ValueError(
                f"tokeniser: got {type(tokeniser).__name__}; expected a PhysfmTokeniserModel, a checkpoint "
                "directory or a Hub repo id."
            )

        tokeniser_config = tokeniser.config  # shared with the (copied) tokeniser, see __init__
        if config is None:
            overrides = {}
        elif isinstance(config, dict):
            overrides = dict(config)
            if "tokeniser_config" in overrides:
                raise ValueError(
                    "config: got a 'tokeniser_config' override; with a pretrained tokeniser its config comes from "
                    "the tokeniser. Pass only dynamics settings."
                )
        elif isinstance(config, PhysfmDynamicsConfig):
            overrides = config.to_dict()
            for key in (
                "model_type",
                "transformers_version",
                "tokeniser_config",
                "architectures",
                "auto_map",
            ):
                overrides.pop(key, None)
        else:
            raise ValueError(
                f"config: got {type(config).__name__}; expected None, a dict of overrides or a PhysfmDynamicsConfig."
            )
        overrides["freeze_tokeniser"] = bool(freeze_tokeniser)
        overrides.setdefault("tokeniser_name_or_path", name_or_path)
        dynamics_config = cls.config_class(tokeniser_config=tokeniser_config, **overrides)
        return cls(dynamics_config, tokeniser=tokeniser)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> PhysfmDynamicsModel:
        """`PreTrainedModel.from_pretrained`, then re-applies `config.freeze_tokeniser`.

        Loading swaps in freshly created parameters (which require grad), so the freeze applied in `__init__`
        has to be applied again to the loaded weights.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # a tuple with output_loading_info=True
        if model.config.freeze_tokeniser:
            model.freeze_tokeniser()
        return loaded

    def freeze_tokeniser(self) -> None:
        """Freeze the tokeniser: no gradients, eval mode (kept across `.train()`), recorded in the config.

        The rows of fields the tokeniser was never trained on (`tokeniser.untrained_field_names`, e.g. a
        downstream field its pretraining data lacked) stay trainable: frozen, they would stay random.
        """
        self.config.freeze_tokeniser = True
        self.tokeniser.requires_grad_(False)
        self.tokeniser.eval()
        for parameter in self.tokeniser.field_parameters(self.tokeniser.untrained_field_names):
            parameter.requires_grad_(True)

    def unfreeze_tokeniser(self) -> None:
        """Make the tokeniser trainable again (finetuning); recorded in the config."""
        self.config.freeze_tokeniser = False
        self.tokeniser.requires_grad_(True)
        self.tokeniser.train(self.training)

    def train(self, mode: bool = True) -> PhysfmDynamicsModel:
        super().train(mode)
        if self.config.freeze_tokeniser:
            # A frozen tokeniser behaves as at the end of its pretraining, whatever mode the dynamics is in.
            self.tokeniser.eval()
        return self

    # --------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_fields: torch.Tensor,
        output_fields: torch.Tensor | None = None,
        field_names: list[str] | None = None,
        periodic: list[bool] | None = None,
        return_loss: bool | None = None,
        **kwargs,
    ) -> PhysfmDynamicsOutput:
        """Predict the next field frame(s).

        Args:
            input_fields: `[batch, n_steps_input, *space, n_fields]` in normalised field space.
            output_fields: optional targets `[batch, T_out >= t, *space, n_fields]`; the loss uses the first `t`.
            field_names: fields in channel order (a subset of the tokeniser vocabulary). Default:
                `config.field_names`, else the whole vocabulary.
            periodic: one bool per spatial axis. Default: `config.periodic`, else the tokeniser's.
            return_loss: compute the loss; default `True` when `output_fields` is given.
            **kwargs: batch keys that carry no model input and are ignored: `dataset_index` (mixture datasets) and
                `num_items_in_batch` (transformers' Trainer). Anything else is refused, so a misspelt argument
                cannot pass silently.

        Returns:
            [`PhysfmDynamicsOutput`] with `prediction` `[batch, t, *space, n_fields]`, `latents` (the predicted
            next latent frame) and `loss` (MSE in normalised field space).
        """
        unknown = sorted(set(kwargs) - _IGNORED_BATCH_KEYS)
        if unknown:
            raise ValueError(
                f"forward: got unexpected arguments {unknown}; expected input_fields, output_fields, field_names, "
                f"periodic, return_loss (and the ignored batch keys {sorted(_IGNORED_BATCH_KEYS)})."
            )
        field_names, periodic = self._resolve_fields(field_names, periodic)
        self._check_fields(input_fields, "input_fields", field_names, n_steps=self.config.n_steps_input)
        if return_loss is None:
            return_loss = output_fields is not None
        if return_loss:
            if output_fields is None:
                raise ValueError(
                    "output_fields: got None with return_loss=True; the loss needs target frames."
                )
            self._check_fields(output_fields, "output_fields", field_names, like=input_fields)
            output_fields = output_fields.to(self.dtype)
        input_fields = input_fields.to(self.dtype)  # simulators return float64: compute in the model's dtype

        prediction, next_latent = self._step(input_fields, field_names, periodic)
        loss = None
        if return_loss:
            target = output_fields[:, : prediction.shape[1]].to(prediction.dtype)
            loss = F.mse_loss(prediction, target)
        return PhysfmDynamicsOutput(loss=loss, prediction=prediction, latents=next_latent)

    def encode(
        self,
        fields: torch.Tensor,
        field_names: list[str] | None = None,
        periodic: list[bool] | None = None,
        cache: TemporalCache | None = None,
    ) -> torch.Tensor:
        """Tokeniser latents `[B, T', *latent_space, D]` of `fields` at the configured compression (no grad when
        frozen); `cache` continues a stream (see `PhysfmTokeniserModel.encode`)."""
        field_names, periodic = self._resolve_fields(field_names, periodic)
        frozen = self.config.freeze_tokeniser and not self.tokeniser.untrained_field_names
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.tokeniser.encode(fields, **self._ratios, field_names=field_names, periodic=periodic,
                                         cache=cache)

    @property
    def _ratios(self) -> dict[str, int]:
        """The compression this model runs its tokeniser at, as `encode` / `decode` keyword arguments."""
        return dict(spatial_compression=self.config.spatial_compression,
                    temporal_compression=self.config.temporal_compression)

    def _decode(self, latents: torch.Tensor, field_names: list[str], periodic: list[bool],
                spatial_shape: tuple[int, ...], cache: TemporalCache | None = None) -> torch.Tensor:
        return self.tokeniser.decode(latents, **self._ratios, field_names=field_names, periodic=periodic,
                                     spatial_shape=spatial_shape, cache=cache)

    def _next_latent(self, latents: torch.Tensor) -> torch.Tensor:
        """The predicted latent after `latents`, from the last `n_latent_frames` of them (the trained window)."""
        context = latents[:, -self.config.n_latent_frames :]
        return context[:, -1:] + self.predict_deltas(context)[:, -1:]

    def _finish(self, decoded: torch.Tensor, last_frame: torch.Tensor, last_reconstruction: torch.Tensor):
        """The predicted frames from the decoded ones: with `field_residual`, the decoded change added to the last
        true frame (`last_reconstruction` is the decoder's version of it, from the same latent history)."""
        if not self.config.field_residual:
            return decoded
        return last_frame.to(decoded.dtype) + (decoded - last_reconstruction)

    def predict_deltas(self, latents: torch.Tensor) -> torch.Tensor:
        """Transformer output for every latent frame: entry `i` is the predicted `latent[i+1] - latent[i]`,
        a function of latents `<= i` only (causal in time)."""
        return self.processor(latents)

    def _step(
        self, input_fields: torch.Tensor, field_names: list[str], periodic: list[bool]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.encode(input_fields, field_names, periodic)
        next_latent = self._next_latent(latents)
        # Decode the context latents together with the predicted one and keep the last t frames. The decoder is
        # causal in time, so the kept frames see exactly the latent history they saw in tokeniser pretraining
        # (real previous latents in their temporal receptive field, not a replicated first frame), and the
        # earlier frames cannot depend on the prediction. Decoding the predicted latent alone would be wrong
        # twice: the decoder would treat it as a first latent (which decodes to ONE frame, not t) and would pad
        # its past with copies of itself.
        decoded = self._decode(torch.cat([latents, next_latent], dim=1), field_names, periodic,
                               tuple(input_fields.shape[2:-1]))
        t = self.config.temporal_compression
        # decoded[:, -t - 1] reconstructs the last input frame from the same latent history.
        prediction = self._finish(decoded[:, -t:], input_fields[:, -1:], decoded[:, -t - 1 : -t])
        return prediction, next_latent

    @torch.no_grad()
    def rollout(
        self,
        fields: torch.Tensor,
        n_steps: int,
        field_names: list[str] | None = None,
        periodic: list[bool] | None = None,
        stream: bool = False,
        use_cache: bool = True,
        progress=None,
    ) -> torch.Tensor:
        """Autoregressive rollout from the last `n_steps_input` frames of `fields`.

        Two ways to see the past, both causal in time:

        - `stream=False` (default): a sliding window. Every step re-encodes the last `n_steps_input` frames as
          a clip of their own (its past padded with its first frame), exactly as the model saw windows in
          training.
        - `stream=True`: the tokeniser sees the whole trajectory so far as one causal stream, as video VAEs
          encode long clips, and the transformer the last `n_latent_frames` latents of it. With
          `use_cache=True` a `TemporalCache` carries every causal time kernel's past, so a step encodes only
          its `t` new frames and decodes one latent: it equals `use_cache=False` (which re-encodes the whole
          history, a cost growing with the rollout) to float precision, at a fraction of the cost of either
          mode uncached. Its latents see more history than a training window did; a window's first frames are
          no longer padded with copies.

        The transformer's input is the trained window of `n_latent_frames` latents in both modes: its learned
        time positions move with the window, so its activations cannot be carried from step to step.

        Args:
            fields: initial frames `[batch, T >= n_steps_input, *space, n_fields]` (normalised).
            n_steps: number of future frames to predict.
            field_names, periodic: as in `forward`.
            stream, use_cache: see above (`use_cache` applies to `stream=True`).
            progress: optional callable called with the number of frames each step adds (e.g. `tqdm.update`).

        Returns:
            `[batch, n_steps, *space, n_fields]`. The model runs in eval mode (no dropout) and is put back
            in its previous mode afterwards.
        """
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"n_steps: got {n_steps!r}; expected a positive integer.")
        field_names, periodic = self._resolve_fields(field_names, periodic)
        n_in = self.config.n_steps_input
        self._check_fields(fields, "fields", field_names, min_steps=n_in)
        fields = fields.to(self.dtype)
        steps = self._stream_steps if stream else self._window_steps
        was_training = self.training
        self.eval()
        try:
            predictions, produced = [], 0
            for prediction in steps(fields[:, -n_in:], field_names, periodic, use_cache):
                predictions.append(prediction)
                produced += prediction.shape[1]
                if progress is not None:
                    progress(prediction.shape[1])
                if produced >= n_steps:
                    break
        finally:
            self.train(was_training)
        return torch.cat(predictions, dim=1)[:, :n_steps]

    def _window_steps(self, window: torch.Tensor, field_names: list[str], periodic: list[bool], use_cache: bool):
        """Predictions of the sliding-window rollout, `t` frames at a time, without end."""
        n_in = window.shape[1]
        while True:
            prediction, _ = self._step(window, field_names, periodic)
            yield prediction
            window = torch.cat([window, prediction], dim=1)[:, -n_in:]

    def _stream_steps(self, window: torch.Tensor, field_names: list[str], periodic: list[bool], use_cache: bool):
        """Predictions of the streaming rollout, `t` frames at a time, without end.

        Cached, the encoder stream takes each step's `t` predicted frames and the decoder stream the latent they
        encode to; the predicted latent is decoded on a fork of the decoder stream, since the stream's own next
        latent is the re-encoded prediction. Uncached, the same latents and frames come from re-encoding and
        re-decoding the whole history.
        """
        t, space = self.config.temporal_compression, tuple(window.shape[2:-1])
        encoder = decoder = None
        if use_cache:
            encoder, decoder = TemporalCache(), TemporalCache()
        history = window
        latents = self.encode(window, field_names, periodic, cache=encoder)
        if use_cache:
            last_reconstruction = self._decode(latents, field_names, periodic, space, cache=decoder)[:, -1:]
        while True:
            next_latent = self._next_latent(latents)
            if use_cache:
                decoded = self._decode(next_latent, field_names, periodic, space, cache=decoder.copy())
            else:
                decoded = self._decode(torch.cat([latents, next_latent], dim=1), field_names, periodic, space)
                decoded, last_reconstruction = decoded[:, -t:], decoded[:, -t - 1 : -t]
            prediction = self._finish(decoded, history[:, -1:], last_reconstruction)
            yield prediction
            if use_cache:
                history = prediction  # the caches hold all the past the tokeniser needs
                new_latent = self.encode(prediction, field_names, periodic, cache=encoder)
                last_reconstruction = self._decode(new_latent, field_names, periodic, space, cache=decoder)[:, -1:]
                # Only the transformer's window of latents is kept: memory stays flat however long the rollout.
                latents = torch.cat([latents, new_latent], dim=1)[:, -self.config.n_latent_frames :]
            else:
                history = torch.cat([history, prediction], dim=1)
                latents = self.encode(history, field_names, periodic)

    # ---------------------------------------------------------------------------------------------- checks
    def _resolve_fields(
        self, field_names: list[str] | None, periodic: list[bool] | None
    ) -> tuple[list[str], list[bool]]:
        tok_config = self.tokeniser.config
        if field_names is None:
            field_names = self.config.field_names or list(tok_config.field_names)
        if periodic is None:
            periodic = self.config.periodic if self.config.periodic is not None else list(tok_config.periodic)
        return list(field_names), list(periodic)

    def _check_fields(
        self,
        x: torch.Tensor,
        name: str,
        field_names: list[str],
        n_steps: int | None = None,
        min_steps: int | None = None,
        like: torch.Tensor | None = None,
    ) -> None:
        """Raise a `ValueError` naming `name`, what it got and what is expected."""
        check_field_tensor(x, name, self.tokeniser.config.n_spatial_dims)
        if x.shape[-1] != len(field_names):
            raise ValueError(
                f"{name}: got {x.shape[-1]} fields (shape {tuple(x.shape)}); expected {len(field_names)} for "
                f"field_names={field_names}."
            )
        if n_steps is not None and x.shape[1] != n_steps:
            raise ValueError(
                f"{name}: got {x.shape[1]} time steps (shape {tuple(x.shape)}); expected n_steps_input={n_steps}."
            )
        if min_steps is not None and x.shape[1] < min_steps:
            raise ValueError(
                f"{name}: got {x.shape[1]} time steps (shape {tuple(x.shape)}); expected at least "
                f"n_steps_input={min_steps}."
            )
        if like is not None:
            t = self.config.temporal_compression
            if x.shape[0] != like.shape[0] or x.shape[2:] != like.shape[2:] or x.shape[1] < t:
                raise ValueError(
                    f"{name}: got shape {tuple(x.shape)}; expected [{like.shape[0]}, >= {t}, "
                    f"{', '.join(map(str, like.shape[2:]))}] to match input_fields {tuple(like.shape)}."
                )


PhysfmDynamicsConfig.register_for_auto_class("AutoConfig")
PhysfmDynamicsModel.register_for_auto_class("AutoModel")

__all__ = ["PhysfmDynamicsModel", "PhysfmDynamicsOutput", "PhysfmDynamicsPreTrainedModel"]
