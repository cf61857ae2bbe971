"""Streaming encode/decode with a TemporalCache, and the streaming rollout built on it."""

from __future__ import annotations

import pytest
import torch

from physfm.models import (
    PhysfmDynamicsModel,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
)
from physfm.models.layers import TemporalCache

TOL = dict(atol=1e-5, rtol=0)


def tokeniser(n_spatial_dims: int = 2, **overrides) -> PhysfmTokeniserModel:
    torch.manual_seed(0)
    config = dict(field_names=["u", "v"], hidden_channels=4, latent_channels=4, n_spatial_dims=n_spatial_dims,
                  spatial_compressions=[2, 4], temporal_compressions=[1, 2, 4], layers_per_level=1,
                  periodic=[True, False, True][:n_spatial_dims])
    return PhysfmTokeniserModel(PhysfmTokeniserConfig(**{**config, **overrides})).eval()


def dynamics(t: int, n_spatial_dims: int = 2, field_residual: bool = False) -> PhysfmDynamicsModel:
    tok = tokeniser(n_spatial_dims)
    config = dict(n_steps_input=1 + 2 * t, temporal_compression=t, spatial_compression=2, hidden_size=16,
                  num_hidden_layers=1, num_attention_heads=2, patch_size=2, field_residual=field_residual)
    return PhysfmDynamicsModel.from_tokeniser(tok, config)


def fields(frames: int, n_spatial_dims: int = 2, seed: int = 1) -> torch.Tensor:
    shape = (2, frames, 8, 6, 4)[: 2 + n_spatial_dims]
    return torch.randn(*shape, 2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("t, chunks", [(1, [1, 1, 3, 2]), (2, [3, 2, 4, 2]), (4, [5, 4, 8])])
@pytest.mark.parametrize("n_spatial_dims", [2, 3])
def test_chunked_encode_and_decode_equal_the_whole_clip(t, chunks, n_spatial_dims):
    tok = tokeniser(n_spatial_dims)
    x = fields(sum(chunks), n_spatial_dims)
    with torch.no_grad():
        whole = tok.encode(x, spatial_compression=2, temporal_compression=t)
        cache, parts, start = TemporalCache(), [], 0
        for n in chunks:
            parts.append(tok.encode(x[:, start : start + n], 2, t, cache=cache))
            start += n
        torch.testing.assert_close(torch.cat(parts, 1), whole, **TOL)
        decoded = tok.decode(whole, 2, t)
        cache = TemporalCache()
        pieces = [tok.decode(whole[:, i : i + 1], 2, t, cache=cache) for i in range(whole.shape[1])]
        torch.testing.assert_close(torch.cat(pieces, 1), decoded, **TOL)


@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("n_spatial_dims, field_residual", [(2, False), (2, True), (3, False)])
def test_cached_streaming_rollout_equals_the_uncached_one(t, n_spatial_dims, field_residual):
    model = dynamics(t, n_spatial_dims, field_residual)
    x = fields(model.config.n_steps_input + 1, n_spatial_dims)
    n_steps = 3 * t + 1  # not a multiple of t: the last step is cut
    uncached = model.rollout(x, n_steps, stream=True, use_cache=False)
    cached = model.rollout(x, n_steps, stream=True, use_cache=True)
    assert cached.shape == (2, n_steps, *x.shape[2:])
    torch.testing.assert_close(cached, uncached, **TOL)


def test_the_first_streaming_step_is_the_window_step():
    # Both start from the same window; they part only once the stream has history beyond it.
    model = dynamics(1)
    x = fields(model.config.n_steps_input)
    torch.testing.assert_close(model.rollout(x, 1, stream=True), model.rollout(x, 1), **TOL)


def test_no_state_leaks_across_calls():
    model = dynamics(2)
    a, b = fields(5, seed=1), fields(5, seed=2)
    first = model.rollout(a, 4, stream=True)
    model.rollout(b, 4, stream=True)
    torch.testing.assert_close(model.rollout(a, 4, stream=True), first, atol=0, rtol=0)
    model.train()  # the mode the caller had comes back
    model.rollout(a, 2, stream=True)
    assert model.training


def test_a_cache_refuses_a_different_stream():
    tok = tokeniser()
    cache = TemporalCache()
    with torch.no_grad():
        tok.encode(fields(3), 2, 2, cache=cache)
        with pytest.raises(ValueError, match="fresh TemporalCache"):
            tok.encode(fields(2)[:, :, :4], 2, 2, cache=cache)
        with pytest.raises(ValueError, match="multiple of 2 frames"):
            tok.encode(fields(3), 2, 2, cache=cache)
    # A fork continues independently: the original still gives the next chunk's true latents.
    x = fields(7)
    with torch.no_grad():
        cache = TemporalCache()
        tok.encode(x[:, :3], 2, 2, cache=cache)
        tok.encode(torch.zeros_like(x[:, 3:5]), 2, 2, cache=cache.copy())
        torch.testing.assert_close(tok.encode(x[:, 3:5], 2, 2, cache=cache), tok.encode(x, 2, 2)[:, 2:3], **TOL)
