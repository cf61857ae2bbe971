"""Training throughput of the physfm tokeniser beside diffusers' AutoencoderKLCogVideoX, in one run.

Both autoencoders get the same input (a clip of physical fields, ``1 + 8k`` frames, which CogVideoX's frame
batching expects) and run forward + backward of a reconstruction MSE. The peer is sized to the physfm
tokeniser's parameter count and runs at its fixed compression (8x space, 4x time); physfm runs at the same
ratio, chosen at run time. The script also measures this machine's fp32 matmul throughput and reports each
model's FLOP utilisation against it (FLOPs counted with ``torch.utils.flop_counter``).

    python scripts/benchmark_tokeniser.py            # defaults: ~2-3 min on 2 CPU cores
    python scripts/benchmark_tokeniser.py --threads 1 --clock cpu   # on a machine shared with other jobs
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, size: int, repeats: int, clock: Callable[[], float]) -> float:
    """Best-of-``repeats`` fp32 ``size x size`` matmul throughput, the machine's practical peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = clock()
        a @ b
        sync(device)
        best = min(best, clock() - start)
    return 2 * size**3 / best / 1e9


def count_flops(step: Callable[[torch.Tensor], None], batch: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    return counter.get_total_flops()


def time_steps(
    steps: dict[str, Callable[[torch.Tensor], None]],
    batch: torch.Tensor,
    repeats: int,
    device: torch.device,
    clock: Callable[[], float],
) -> dict[str, list[float]]:
    """Times each step ``repeats`` times, interleaving the models so machine load drifts hit both alike."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = clock()
            step(batch)
            sync(device)
            times[name].append(clock() - start)
    return times


def cogvideox_matched(n_target: int, n_fields: int, latent_channels: int):
    """An AutoencoderKLCogVideoX (8x space, 4x time) whose parameter count is closest to ``n_target``."""
    from diffusers import AutoencoderKLCogVideoX

    best = None
    for layers in (1, 2, 3):
        for width in range(8, 257, 8):
            channels = (width, 2 * width, 2 * width, 4 * width)
            groups = 8 if width % 8 == 0 else 4
            model = AutoencoderKLCogVideoX(
                in_channels=n_fields, out_channels=n_fields, block_out_channels=channels,
                layers_per_block=layers, latent_channels=latent_channels, norm_num_groups=groups,
                temporal_compression_ratio=4,
            )
            gap = abs(n_params(model) - n_target)
            if best is None or gap < best[0]:
                best = (gap, model, dict(block_out_channels=channels, layers_per_block=layers))
            if n_params(model) > n_target:
                break
    return best[1], best[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark_tokeniser", description=__doc__.split("\n\n")[0])
    # Batch 2, not 1: for a single sample PyTorch's CPU heuristic sends small 3-D convolutions (forward and
    # backward) to its reference kernel, 2-3x slower than oneDNN, for both models alike.
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=9, help="1 + 8k (CogVideoX batches frames by 8)")
    parser.add_argument("--size", type=int, default=64, help="square grid side")
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peer", choices=["cogvideox", "none"], default="cogvideox",
                        help="none: time physfm alone (where diffusers is not installed)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="cpu: this process's CPU time, for a shared machine with --threads 1 (other jobs' load then "
        "does not count against either model)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        raise ValueError(f"--clock cpu times CPU work; it cannot time --device {args.device}.")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    # Plain fp32 everywhere (cuDNN would otherwise use TF32 for convolutions but not for the matmul peak).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)

    field_names = [f"field_{i}" for i in range(args.fields)]
    ours = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=field_names)).to(device).train()
    fields = torch.randn(args.batch, args.frames, args.size, args.size, args.fields, device=device)

    def ours_step(x: torch.Tensor) -> None:
        ours.zero_grad(set_to_none=True)
        ours(x, spatial_compression=8, temporal_compression=4).loss.backward()

    def peer_step(x: torch.Tensor) -> None:
        peer.zero_grad(set_to_none=True)
        x = x.permute(0, 4, 1, 2, 3).contiguous()  # CogVideoX's [b, c, t, h, w]
        F.mse_loss(peer(x).sample, x).backward()

    steps = {"physfm": ours_step}
    if args.peer == "cogvideox":
        peer, peer_shape = cogvideox_matched(n_params(ours), args.fields, ours.config.latent_channels)
        peer = peer.to(device).train()
        steps["cogvideox"] = peer_step
    print(f"input [batch, time, x, y, fields] = {tuple(fields.shape)}, compression 8x space, 4x time, "
          f"device {device}, {torch.get_num_threads()} threads, {args.clock} clock")
    print(f"physfm tokeniser   : {n_params(ours) / 1e6:.2f} M params (default config)")
    if "cogvideox" in steps:
        print(f"CogVideoX VAE      : {n_params(peer) / 1e6:.2f} M params {peer_shape}")

    flops = {name: count_flops(step, fields) for name, step in steps.items()}  # also the warm-up
    peak_before = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5, clock)
    times = time_steps(steps, fields, args.repeats, device, clock)
    peak_after = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5, clock)
    peak = max(peak_before, peak_after)

    print(f"fp32 matmul        : {peak:.1f} GFLOP/s (best of before {peak_before:.1f} / after {peak_after:.1f})")
    print(f"{'model':<10} {'samples/s':>10} {'step ms':>9} {'GFLOP/step':>11} {'GFLOP/s':>9} {'utilisation':>12}")
    rate = {}
    for name in steps:
        seconds = statistics.median(times[name])
        rate[name] = args.batch / seconds
        achieved = flops[name] / seconds / 1e9
        print(f"{name:<10} {rate[name]:>10.3f} {seconds * 1e3:>9.1f} {flops[name] / 1e9:>11.2f} {achieved:>9.1f} "
              f"{achieved / peak:>11.1%}")
    if "cogvideox" in rate:
        print(f"throughput ratio physfm / CogVideoX (forward+backward samples/s): "
              f"{rate['physfm'] / rate['cogvideox']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
