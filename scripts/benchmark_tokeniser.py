"""Training throughput of the physfm tokeniser beside diffusers' AutoencoderKLCogVideoX, in one run.

Both autoencoders get the same input (a clip of physical fields, ``1 + 8k`` frames, which CogVideoX's frame
batching expects) and run forward + backward of a reconstruction MSE. The peer is sized to the physfm
tokeniser's parameter count and runs at its fixed compression (8x space, 4x time); physfm runs at the same
ratio, chosen at run time. The script also measures this machine's fp32 matmul throughput and reports each
model's FLOP utilisation against it (FLOPs counted with ``torch.utils.flop_counter``).

    python scripts/benchmark_tokeniser.py            # defaults: ~2-3 min on 2 CPU cores
    python scripts/benchmark_tokeniser.py --threads 1 --size 32 --repeats 3
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


def matmul_gflops(device: torch.device, size: int, repeats: int) -> float:
    """Best-of-``repeats`` fp32 ``size x size`` matmul throughput, the machine's practical peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def time_steps(steps: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Times each step ``repeats`` times, interleaving the models so machine load drifts hit both alike."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
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
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=9, help="1 + 8k (CogVideoX batches frames by 8)")
    parser.add_argument("--size", type=int, default=64, help="square grid side")
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    field_names = [f"field_{i}" for i in range(args.fields)]
    ours = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=field_names)).to(device).train()
    peer, peer_shape = cogvideox_matched(n_params(ours), args.fields, ours.config.latent_channels)
    peer = peer.to(device).train()

    fields = torch.randn(args.batch, args.frames, args.size, args.size, args.fields, device=device)
    channels_first = fields.permute(0, 4, 1, 2, 3).contiguous()  # CogVideoX's [b, c, t, h, w]

    def ours_step() -> None:
        ours.zero_grad(set_to_none=True)
        ours(fields, spatial_compression=8, temporal_compression=4).loss.backward()

    def peer_step() -> None:
        peer.zero_grad(set_to_none=True)
        F.mse_loss(peer(channels_first).sample, channels_first).backward()

    steps = {"physfm": ours_step, "cogvideox": peer_step}
    print(f"input [batch, time, x, y, fields] = {tuple(fields.shape)}, compression 8x space, 4x time, "
          f"device {device}, {torch.get_num_threads()} threads")
    print(f"physfm tokeniser   : {n_params(ours) / 1e6:.2f} M params (default config)")
    print(f"CogVideoX VAE      : {n_params(peer) / 1e6:.2f} M params {peer_shape}")

    flops = {name: count_flops(step) for name, step in steps.items()}  # also the warm-up
    peak_before = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5)
    times = time_steps(steps, args.repeats, device)
    peak_after = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5)
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
    print(f"throughput ratio physfm / CogVideoX (forward+backward samples/s): {rate['physfm'] / rate['cogvideox']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
