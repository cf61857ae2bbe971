"""Reconstruction quality per compute of the physfm tokeniser, side by side with peers, in one run.

Two comparisons on simulated shear_flow (32 x 64, 4 fields, z-scored; or ``--system navier_stokes_3d``, 16^3,
5 fields), both on 1 thread with CPU-time clocks:

- ``plain-ae``: physfm's default tokeniser at s = 4, t = 1 (16 latent channels) against a plain convolutional
  autoencoder with the same latent (a 3x3 conv to 32 channels, two stride-2 4x4 convs to 64, a 1x1 conv to the
  latent; the decoder mirrors it with nearest up-sampling and 3x3 convs; GELU; circular padding). Both train on
  single frames with Adam (lr 1e-3, batch 8) on the same batches. physfm runs ``--steps`` steps; the peer runs
  the same number of steps, and again for the same CPU time. ``--schedule constant`` keeps the learning rate
  fixed (the recipe the comparison was first measured with); ``cosine`` decays it to zero over each run's own
  budget (steps, or CPU seconds for the equal-time run), which makes the final numbers far less noisy.
- ``flexible``: one default tokeniser trained over every listed spatial ratio (cycled, one per step) against one
  dedicated checkpoint per ratio, for the same total steps (each dedicated one gets ``steps / n_ratios``). Both
  train with physfm's objective, the log of the MSE (``physfm.training.ratio_balanced_objective``); add
  ``--objective mse`` to see what a plain MSE does to the flexible checkpoint.

VRMSE is the_well's (per frame and field, over space), averaged over valid frames and fields; a field's
spatially constant frames (shear_flow's initial pressure) are left out, as physfm's reconstruction scorer does.
Every number is the mean over ``--seeds`` seeds (initialisation and batch order).

    python scripts/benchmark_tokeniser_quality.py                    # both comparisons, ~8 min on 1 core
    python scripts/benchmark_tokeniser_quality.py --compare plain-ae --seeds 1
    python scripts/benchmark_tokeniser_quality.py --system navier_stokes_3d --compare plain-ae \
        --model_config '{"hidden_channels": 16, "spatial_compressions": [2, 4, 8]}'   # the 3-D card's config
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from plain_autoencoder import PlainAutoencoder  # scripts/, beside this file
from torch import nn

from physfm._cli_parsing import Parser
from physfm.data import WellWindowDataset
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.reconstruction import ReconstructionScore
from physfm.simulate import generate
from physfm.training import ratio_balanced_objective

# What each system is simulated as: a grid the CPU trains on in minutes.
SYSTEMS = {
    "shear_flow": dict(resolution=(32, 64), width=1.0),
    "navier_stokes_3d": dict(resolution=(16, 16, 16)),
}


Forward = Callable[[torch.Tensor, int], torch.Tensor]  # (frames, spatial compression) -> reconstruction


def physfm_forward(model: PhysfmTokeniserModel) -> Forward:
    return lambda x, s: model(x, spatial_compression=s, temporal_compression=1, return_loss=False).reconstruction


def plain_forward(model: PlainAutoencoder) -> Forward:
    return lambda x, _: model(x)


def load_frames(path: Path, split: str) -> torch.Tensor:
    dataset = WellWindowDataset(path, split=split, n_steps_input=1, n_steps_output=0)
    return torch.stack([dataset[i]["input_fields"] for i in range(len(dataset))])


@torch.no_grad()
def valid_vrmse(forward: Forward, module: nn.Module, frames: torch.Tensor, spatial: int = 4) -> float:
    module.eval()
    recon = torch.cat([forward(batch, spatial) for batch in frames.split(64)])
    module.train()
    channels = list(range(frames.shape[-1]))
    score = ReconstructionScore(channels)  # the score physfm reports everywhere: constant frames left out
    score.add(recon, frames, channels, n_spatial_dims=frames.ndim - 3)
    return score.result(spatial, 1).vrmse


def train(forward: Forward, module: nn.Module, frames: torch.Tensor, *, seed: int,
          ratios: list[int], schedule: str, steps: int | None = None, cpu_seconds: float | None = None,
          lr: float = 1e-3, batch_size: int = 8, objective: str = "mse") -> tuple[int, float]:
    """Adam on batches drawn by ``seed``, one ratio per step (cycled); stops after ``steps`` or ``cpu_seconds``.

    Returns ``(steps, cpu_seconds)``; the clock runs only around the training step, not the batch draw.
    """
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    done, spent = 0, 0.0
    while (steps is None or done < steps) and (cpu_seconds is None or spent < cpu_seconds):
        batch = frames[torch.randint(len(frames), (batch_size,), generator=generator)]
        if schedule == "cosine":
            progress = done / steps if steps is not None else spent / cpu_seconds
            optimizer.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress))
        start = time.process_time()
        loss = F.mse_loss(forward(batch, ratios[done % len(ratios)]), batch)
        if objective == "log-mse":
            loss = ratio_balanced_objective(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        spent += time.process_time() - start
        done += 1
    return done, spent


def default_tokeniser(seed: int, frames: torch.Tensor, args, **overrides) -> PhysfmTokeniserModel:
    """physfm's default tokeniser (with ``--model_config``'s changes) for ``frames`` ``[n, 1, *space, fields]``."""
    torch.manual_seed(seed)
    config = PhysfmTokeniserConfig(field_names=[f"field_{i}" for i in range(frames.shape[-1])],
                                   n_spatial_dims=frames.ndim - 3, **{**args.model_config, **overrides})
    return PhysfmTokeniserModel(config).train()


def plain_autoencoder(frames: torch.Tensor) -> PlainAutoencoder:
    return PlainAutoencoder(frames.shape[-1], n_spatial_dims=frames.ndim - 3).train()


def compare_plain(train_frames, valid_frames, args) -> None:
    rows = {"physfm": [], "plain, equal steps": [], "plain, equal CPU time": []}
    for seed in range(args.seeds):
        ours = default_tokeniser(seed, train_frames, args)
        steps, seconds = train(physfm_forward(ours), ours, train_frames, seed=seed, ratios=[4],
                               schedule=args.schedule, steps=args.steps)
        rows["physfm"].append((valid_vrmse(physfm_forward(ours), ours, valid_frames), steps, seconds))
        for name, budget in (("plain, equal steps", dict(steps=steps)), ("plain, equal CPU time",
                                                                          dict(cpu_seconds=seconds))):
            torch.manual_seed(seed)
            peer = plain_autoencoder(train_frames)
            n, spent = train(plain_forward(peer), peer, train_frames, seed=seed, ratios=[4], schedule=args.schedule,
                             **budget)
            rows[name].append((valid_vrmse(plain_forward(peer), peer, valid_frames), n, spent))
        print(f"  seed {seed}: " + ", ".join(f"{k} {v[-1][0]:.4f}" for k, v in rows.items()), flush=True)
    params = {"physfm": sum(p.numel() for p in ours.parameters()),
              "plain": sum(p.numel() for p in plain_autoencoder(train_frames).parameters())}
    print(f"\nphysfm default tokeniser ({params['physfm'] / 1e6:.2f} M params) vs plain autoencoder "
          f"({params['plain'] / 1e6:.2f} M), s=4 t=1, {args.schedule} learning rate, {args.seeds} seed(s):")
    print(f"{'model':<24} {'steps':>7} {'CPU s':>8} {'ms/step':>8} {'valid VRMSE':>12}")
    for name, values in rows.items():
        error = statistics.mean(v[0] for v in values)
        steps = statistics.mean(v[1] for v in values)
        seconds = statistics.mean(v[2] for v in values)
        print(f"{name:<24} {steps:>7.0f} {seconds:>8.1f} {seconds / steps * 1e3:>8.1f} {error:>12.4f}")
    ours_error = statistics.mean(v[0] for v in rows["physfm"])
    for name in ("plain, equal steps", "plain, equal CPU time"):
        print(f"ratio {name} / physfm: {statistics.mean(v[0] for v in rows[name]) / ours_error:.2f}x "
              "(above 1: physfm reconstructs better)")


def compare_flexible(train_frames, valid_frames, args) -> None:
    ratios = default_tokeniser(0, train_frames, args).config.spatial_compressions
    ratios = [s for s in ratios if all(n % s == 0 for n in train_frames.shape[2:-1])]
    flexible, dedicated = {s: [] for s in ratios}, {s: [] for s in ratios}
    for seed in range(args.seeds):
        model = default_tokeniser(seed, train_frames, args)
        train(physfm_forward(model), model, train_frames, seed=seed, ratios=ratios, schedule=args.schedule,
              steps=args.steps, objective=args.objective)
        for s in ratios:
            flexible[s].append(valid_vrmse(physfm_forward(model), model, valid_frames, s))
            single = default_tokeniser(seed, train_frames, args, spatial_compressions=[s],
                                       default_spatial_compression=s, temporal_compressions=[1])
            train(physfm_forward(single), single, train_frames, seed=seed, ratios=[s],
                  schedule=args.schedule, steps=args.steps // len(ratios), objective=args.objective)
            dedicated[s].append(valid_vrmse(physfm_forward(single), single, valid_frames, s))
        print(f"  seed {seed}: " + ", ".join(f"s={s} {flexible[s][-1]:.4f}/{dedicated[s][-1]:.4f}" for s in ratios),
              flush=True)
    print(f"\none flexible checkpoint ({args.steps} steps over s in {ratios}) vs dedicated checkpoints "
          f"({args.steps // len(ratios)} steps each), t=1, {args.objective} objective, {args.schedule} learning rate, "
          f"{args.seeds} seed(s):")
    print(f"{'s':>3} {'flexible':>10} {'dedicated':>10} {'flexible / dedicated':>21}")
    for s in ratios:
        f, d = statistics.mean(flexible[s]), statistics.mean(dedicated[s])
        print(f"{s:>3} {f:>10.4f} {d:>10.4f} {f / d:>20.2f}x")


def build_parser() -> Parser:
    parser = Parser(prog="benchmark_tokeniser_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=["plain-ae", "flexible", "all"], default="all")
    parser.add_argument("--steps", type=int, default=300, help="physfm's training steps (default 300)")
    parser.add_argument("--flexible_steps", type=int, default=600, help="total steps of the flexible comparison")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning-rate schedule of every run (default constant, the original recipe)")
    parser.add_argument("--objective", choices=["log-mse", "mse"], default="log-mse",
                        help="training objective of the flexible comparison (default log-mse, physfm's)")
    parser.add_argument("--system", choices=sorted(SYSTEMS), default="shear_flow",
                        help="the simulated system (default shear_flow, 32 x 64; navier_stokes_3d is 16^3)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a Well dataset with train and valid splits (default: simulate --system, ~20 s)")
    parser.add_argument("--model_config", type=json.loads, default={},
                        help="physfm tokeniser config overrides as inline JSON (default: the default config)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            data = generate(args.system, Path(scratch) / args.system, n_trajectories=10,
                            split_fractions=(0.8, 0.2, 0.0), progress=False, **SYSTEMS[args.system])
        train_frames, valid_frames = load_frames(data, "train"), load_frames(data, "valid")
    grid = "x".join(map(str, train_frames.shape[2:-1]))
    print(f"{data if args.data else args.system} {grid}, {train_frames.shape[-1]} fields: {len(train_frames)} train "
          f"frames, {len(valid_frames)} valid frames; 1 thread, CPU-time clock")
    if args.compare in ("plain-ae", "all"):
        compare_plain(train_frames, valid_frames, args)
    if args.compare in ("flexible", "all"):
        args.steps = args.flexible_steps
        compare_flexible(train_frames, valid_frames, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
