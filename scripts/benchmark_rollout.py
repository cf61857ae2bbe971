"""Rollout throughput with and without the causal encode cache, side by side in one run.

For each temporal compression ``t`` the same dynamics model (default tokeniser config, a small transformer, random
weights: throughput does not depend on training) rolls out ``--steps`` frames three ways:

- ``window``: ``rollout(stream=False)``, the sliding window that re-encodes ``n_steps_input`` frames and
  re-decodes ``n_latent_frames + 1`` latents at every step;
- ``stream, no cache``: ``rollout(stream=True, use_cache=False)``, the exact reference of the cached stream,
  which re-encodes the whole history; its cost grows with the rollout, so it runs ``--reference_steps`` frames;
- ``stream, cache``: ``rollout(stream=True)``, which encodes only the ``t`` new frames and decodes one latent
  per step, carrying each causal time kernel's past in a ``TemporalCache``.

Each is timed best-of-``--repeats`` after a warm-up; the cached stream is also checked against its reference.

    OMP_NUM_THREADS=1 python scripts/benchmark_rollout.py            # ~1 min on one CPU core
    python scripts/benchmark_rollout.py --device cuda --grid 128
"""

from __future__ import annotations

import functools
import time

import torch

from physfm._cli_parsing import Parser
from physfm.models import (
    PhysfmDynamicsModel,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
)

MODES = {"window": dict(stream=False), "stream, cache": dict(stream=True, use_cache=True),
         "stream, no cache": dict(stream=True, use_cache=False)}


def build(t: int, device: torch.device) -> PhysfmDynamicsModel:
    torch.manual_seed(0)
    tokeniser = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u", "v"]))
    config = dict(n_steps_input=1 + 3 * t, temporal_compression=t, spatial_compression=4, hidden_size=64,
                  num_hidden_layers=2, num_attention_heads=4, patch_size=2)
    return PhysfmDynamicsModel.from_tokeniser(tokeniser, config).to(device).eval()


def rollout(model, x, steps, kwargs, outputs, mode) -> None:
    outputs[mode] = model.rollout(x, steps, **kwargs)


def best_time(run, repeats: int, device: torch.device) -> float:
    run()  # warm-up: allocator, oneDNN/cuDNN kernel choice
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def build_parser() -> Parser:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64, help="frames each rollout predicts")
    parser.add_argument("--reference_steps", type=int, default=16, help="frames of the uncached stream")
    parser.add_argument("--grid", type=int, default=64, help="square grid size")
    parser.add_argument("--temporal_compressions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"rollout of {args.steps} frames, batch 1, {args.grid}x{args.grid}, 2 fields, spatial compression 4, "
          f"{device} ({torch.get_num_threads()} threads)")
    print(f"{'t':>2} {'mode':<18} {'frames':>6} {'frames/s':>10} {'vs window':>10}")
    for t in args.temporal_compressions:
        model = build(t, device)
        x = torch.randn(1, model.config.n_steps_input, args.grid, args.grid, 2, device=device)
        outputs, rates = {}, {}
        for mode, kwargs in MODES.items():
            steps = args.reference_steps if mode == "stream, no cache" else args.steps
            run = functools.partial(rollout, model, x, steps, kwargs, outputs, mode)
            rates[mode] = steps / best_time(run, args.repeats, device)
            print(f"{t:>2} {mode:<18} {steps:>6} {rates[mode]:>10.1f} {rates[mode] / rates['window']:>9.2f}x")
        reference = outputs["stream, no cache"]
        error = (outputs["stream, cache"][:, : reference.shape[1]] - reference).abs().max().item()
        print(f"{t:>2} cache speed-up: {rates['stream, cache'] / rates['stream, no cache']:.1f}x over the uncached "
              f"stream, {rates['stream, cache'] / rates['window']:.1f}x over the window; max |cached - uncached| "
              f"= {error:.1e}")


if __name__ == "__main__":
    main()
