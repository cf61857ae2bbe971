"""Training throughput of the physfm tokeniser beside a peer autoencoder, in one run; in 3-D also peak memory.

Both autoencoders get the same input (a clip of physical fields, ``1 + 8k`` frames, which CogVideoX's frame
batching expects) and run forward + backward of a reconstruction MSE. The script also measures this machine's
fp32 matmul throughput and reports each model's FLOP utilisation against it (FLOPs counted with
``torch.utils.flop_counter``). Peers:

- ``cogvideox`` (2-D default): diffusers' AutoencoderKLCogVideoX, sized to the physfm tokeniser's parameter count,
  at its fixed compression (8x space, 4x time); physfm runs at the same ratio, chosen at run time. CogVideoX is a
  video (2-D space + time) autoencoder, so it has no 3-D counterpart.
- ``plain`` (3-D default): the plain convolutional autoencoder of ``plain_autoencoder.py`` (4x space, frame by
  frame), its width chosen to match physfm's parameter count; physfm runs at 4x space, 1x time, so both have the
  same latent size.

With ``--dims 3`` the script also measures the peak memory of one training step (batch 1) on a
``--memory_size``^3 x ``--frames`` clip, each model in a fresh process: peak RSS above the RSS before the step on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA.

On CPU every model and the matmul peak run with glibc keeping freed memory for the next step, as physfm's trainer
runs (``--malloc system`` for glibc's defaults, under which each step page-faults its activations in again).

    python scripts/benchmark_tokeniser.py            # 2-D defaults: ~2-3 min on 2 CPU cores
    python scripts/benchmark_tokeniser.py --threads 1 --clock cpu   # on a machine shared with other jobs
    python scripts/benchmark_tokeniser.py --dims 3 --threads 1 --clock cpu
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from plain_autoencoder import PlainAutoencoder  # scripts/, beside this file
from torch.utils.flop_counter import FlopCounterMode

from physfm._cli_parsing import Parser
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.training import keep_freed_memory


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


def plain_matched(n_target: int, n_fields: int, latent_channels: int, n_spatial_dims: int):
    """A PlainAutoencoder whose width gives the parameter count closest to ``n_target``."""
    models = (PlainAutoencoder(n_fields, latent_channels, width, n_spatial_dims) for width in range(4, 257, 4))
    model = min(models, key=lambda m: abs(n_params(m) - n_target))
    return model, dict(width=model.encoder[0].out_channels)


def peak_memory_bytes(model: torch.nn.Module, fields: torch.Tensor, step_kwargs: dict) -> tuple[int, int]:
    """(peak above the start of one forward + backward step, resident before it), in bytes, on fields' device."""
    device = fields.device
    model = model.to(device).train()

    def step() -> None:
        output = model(fields, **step_kwargs)
        loss = output.loss if hasattr(output, "loss") else F.mse_loss(output, fields)
        loss.backward()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - before, before
    # Linux keeps a peak-RSS mark (VmHWM); writing 5 to clear_refs resets it to the current RSS, so the mark
    # after the step is the step's own peak (ru_maxrss cannot be reset, and a spawned child inherits its parent's).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_bytes("VmRSS")
    step()
    return _status_bytes("VmHWM") - before, before


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024  # reported in kB


def _memory_child(queue, build: Callable[[], torch.nn.Module], shape: tuple, device: str, kwargs: dict,
                  threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    queue.put(peak_memory_bytes(build(), torch.randn(shape, device=device), kwargs))


def measure_memory(build: Callable[[], torch.nn.Module], shape: tuple, device: str, kwargs: dict) -> tuple[int, int]:
    """Runs :func:`peak_memory_bytes` in a fresh process, so one model's peak does not hide the other's."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_memory_child, args=(queue, build, shape, device, kwargs, torch.get_num_threads()))
    child.start()
    result = queue.get()
    child.join()
    return result


def build_parser() -> Parser:
    parser = Parser(prog="benchmark_tokeniser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, choices=[2, 3], default=2, help="spatial dimensions of the fields")
    # Batch 2, not 1: for a single sample PyTorch's CPU heuristic sends small 3-D convolutions (forward and
    # backward) to its reference kernel, 2-3x slower than oneDNN, for both models alike.
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=9, help="1 + 8k (CogVideoX batches frames by 8)")
    parser.add_argument("--size", type=int, default=None, help="grid side, every axis (default 64 in 2-D, 16 in 3-D)")
    parser.add_argument("--memory_size", type=int, default=32, help="3-D: grid side of the peak-memory clip")
    parser.add_argument("--fields", type=int, default=None, help="default 4 in 2-D, 5 in 3-D (navier_stokes_3d's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peer", choices=["cogvideox", "plain", "none"], default=None,
                        help="default cogvideox in 2-D, plain in 3-D; none: time physfm alone")
    parser.add_argument(
        "--malloc", choices=["keep", "system"], default="keep",
        help="keep: glibc keeps freed memory for the next step, as physfm's trainer has it on CPU "
        "(physfm.training.keep_freed_memory), for every model and the matmul peak alike; system: glibc's defaults",
    )
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="cpu: this process's CPU time, for a shared machine with --threads 1 (other jobs' load then "
        "does not count against either model)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    peer_name = args.peer or ("cogvideox" if args.dims == 2 else "plain")
    if peer_name == "cogvideox" and args.dims == 3:
        parser.error("--peer cogvideox: CogVideoX is a 2-D video autoencoder; a 3-D run takes --peer plain or none")
    size = args.size or (64 if args.dims == 2 else 16)
    n_fields = args.fields or (4 if args.dims == 2 else 5)
    # CogVideoX fixes 8x space / 4x time; the plain peer 4x space, no time compression (equal latent sizes).
    spatial, temporal = (8, 4) if peer_name == "cogvideox" or (peer_name == "none" and args.dims == 2) else (4, 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        parser.error(f"--clock cpu times CPU work; it cannot time --device {args.device}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    malloc = "keep freed memory" if args.malloc == "keep" and keep_freed_memory() else "system"
    # Plain fp32 everywhere (cuDNN would otherwise use TF32 for convolutions but not for the matmul peak).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)

    field_names = [f"field_{i}" for i in range(n_fields)]
    config = PhysfmTokeniserConfig(field_names=field_names, n_spatial_dims=args.dims)
    ours = PhysfmTokeniserModel(config).to(device).train()
    fields = torch.randn(args.batch, args.frames, *[size] * args.dims, n_fields, device=device)
    ratio = dict(spatial_compression=spatial, temporal_compression=temporal)

    def ours_step(x: torch.Tensor) -> None:
        ours.zero_grad(set_to_none=True)
        ours(x, **ratio).loss.backward()

    def cogvideox_step(x: torch.Tensor) -> None:
        peer.zero_grad(set_to_none=True)
        x = x.permute(0, 4, 1, 2, 3).contiguous()  # CogVideoX's [b, c, t, h, w]
        F.mse_loss(peer(x).sample, x).backward()

    def plain_step(x: torch.Tensor) -> None:
        peer.zero_grad(set_to_none=True)
        F.mse_loss(peer(x), x).backward()

    steps = {"physfm": ours_step}
    if peer_name == "cogvideox":
        peer, peer_shape = cogvideox_matched(n_params(ours), n_fields, config.latent_channels)
        steps["cogvideox"] = cogvideox_step
    elif peer_name == "plain":
        peer, peer_shape = plain_matched(n_params(ours), n_fields, config.latent_channels, args.dims)
        steps["plain"] = plain_step
    if peer_name != "none":
        peer = peer.to(device).train()
    axes = "x, y" if args.dims == 2 else "x, y, z"
    print(f"input [batch, time, {axes}, fields] = {tuple(fields.shape)}, compression {spatial}x space, "
          f"{temporal}x time, device {device}, {torch.get_num_threads()} threads, {args.clock} clock, malloc: {malloc}")
    if args.dims == 3:
        print("CogVideoX          : no 3-D peer (a 2-D video autoencoder); the peer is a plain 3-D conv autoencoder")
    print(f"physfm tokeniser   : {n_params(ours) / 1e6:.2f} M params (default config, {args.dims}-D)")
    if peer_name != "none":
        print(f"{peer_name + ' peer':<19}: {n_params(peer) / 1e6:.2f} M params {peer_shape}")

    flops = {name: count_flops(step, fields) for name, step in steps.items()}  # also the warm-up
    peak_before = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5, clock)
    times = time_steps(steps, fields, args.repeats, device, clock)
    peak_after = matmul_gflops(device, 2048 if device.type == "cpu" else 8192, 5, clock)
    peak = max(peak_before, peak_after)

    print(f"fp32 matmul        : {peak:.1f} GFLOP/s (best of before {peak_before:.1f} / after {peak_after:.1f})")
    print(f"{'model':<10} {'samples/s':>10} {'step ms':>9} {'GFLOP/step':>11} {'GFLOP/s':>9} {'utilisation':>12}")
    rate, achieved = {}, {}
    for name in steps:
        seconds = statistics.median(times[name])
        rate[name] = args.batch / seconds
        achieved[name] = flops[name] / seconds / 1e9
        print(f"{name:<10} {rate[name]:>10.3f} {seconds * 1e3:>9.1f} {flops[name] / 1e9:>11.2f} "
              f"{achieved[name]:>9.1f} {achieved[name] / peak:>11.1%}")
    if peer_name != "none":
        print(f"ratios physfm / {peer_name}: throughput (forward+backward samples/s) "
              f"{rate['physfm'] / rate[peer_name]:.2f}x, FLOP utilisation {achieved['physfm'] / achieved[peer_name]:.2f}x")

    if args.dims == 3:
        shape = (1, args.frames, *[args.memory_size] * 3, n_fields)
        builds = {"physfm": (partial(PhysfmTokeniserModel, config), ratio)}
        if peer_name == "plain":
            builds["plain"] = (partial(PlainAutoencoder, n_fields, config.latent_channels, peer_shape["width"], 3), {})
        memory = {name: measure_memory(build, shape, args.device, kwargs) for name, (build, kwargs) in builds.items()}
        kind = "allocated (torch.cuda)" if device.type == "cuda" else "RSS"
        for name, (peak_bytes, before) in memory.items():
            print(f"peak memory {name:<7}: {peak_bytes / 2**20:.0f} MiB {kind} above the {before / 2**20:.0f} MiB "
                  f"before one training step on {shape}")
        if "plain" in memory:
            print(f"peak memory ratio physfm / plain: {memory['physfm'][0] / memory['plain'][0]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
