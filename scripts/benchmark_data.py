"""Data-side throughput, side by side with the peer in one run.

1. Windows/s of ``physfm.data.WellWindowDataset`` against ``the_well.data.WellDataset`` on the SAME
   Well files (written by physfm), z-score normalised, random access, one process.
2. ``physfm.simulate.shear_flow`` stored frames/s (one frame = Δt 0.1 of physical time) at 128×256.

    python scripts/benchmark_data.py [--n_windows 300] [--shear_steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from physfm._cli_parsing import Parser
from physfm.data import WellWindowDataset
from physfm.data.toy import toy_fields
from physfm.data.well_format import write_well_dataset


def _windows_per_second(dataset, indices: list[int], repeats: int = 3) -> float:
    dataset[indices[0]]  # open files / warm caches outside the timed region
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in indices:
            dataset[i]
        best = min(best, time.perf_counter() - start)
    return len(indices) / best


def bench_loader(root: Path, n_windows: int, shape: tuple[int, int], n_traj: int, n_steps: int) -> dict:
    from the_well.data import WellDataset
    from the_well.data.normalization import ZScoreNormalization

    data = write_well_dataset(
        root / "bench", "bench", {"train": toy_fields(n_traj, n_steps, shape, seed=0)}, dt=0.1,
        coords={"x": np.arange(shape[0]) / shape[0], "y": np.arange(shape[1]) / shape[1]},
        periodic={"x": True, "y": True}, overwrite=True)
    kwargs = dict(n_steps_input=4, n_steps_output=1)
    ours = WellWindowDataset(data, "train", **kwargs)
    peer = WellDataset(path=str(data), well_split_name="train", use_normalization=True,
                       normalization_type=ZScoreNormalization, **kwargs)
    assert len(ours) == len(peer)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(ours), size=n_windows).tolist()
    torch.testing.assert_close(ours[indices[0]]["input_fields"], peer[indices[0]]["input_fields"])
    return {"physfm": _windows_per_second(ours, indices), "the_well": _windows_per_second(peer, indices),
            "shape": shape, "windows": len(ours)}


def bench_shear_flow(n_steps: int, device: str, dtype: torch.dtype) -> float:
    from physfm.simulate import shear_flow

    shear_flow(resolution=(128, 256), n_steps=1, device=device, dtype=dtype)  # warm-up (FFT plans)
    start = time.perf_counter()
    shear_flow(resolution=(128, 256), n_steps=n_steps, device=device, dtype=dtype)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n_steps / (time.perf_counter() - start)


def build_parser() -> Parser:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_windows", type=int, default=300)
    parser.add_argument("--resolution", type=int, nargs=2, default=(128, 128))
    parser.add_argument("--shear_steps", type=int, default=3, help="stored frames to simulate (0 = skip)")
    parser.add_argument("--device", default="cpu")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        r = bench_loader(Path(tmp), args.n_windows, tuple(args.resolution), n_traj=4, n_steps=24)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"loader  {r['windows']} windows of 4+1 frames, {r['shape'][0]}x{r['shape'][1]}x3, normalised, "
          "random access, 1 process")
    print(f"  physfm.data.WellWindowDataset   {r['physfm']:9.1f} windows/s")
    print(f"  the_well.data.WellDataset       {r['the_well']:9.1f} windows/s")
    print(f"  ratio physfm / the_well         {r['physfm'] / r['the_well']:9.2f}x")

    if args.shear_steps > 0:
        try:
            for dtype in (torch.float64, torch.float32):
                rate = bench_shear_flow(args.shear_steps, args.device, dtype)
                print(f"shear_flow 128x256 {str(dtype).removeprefix('torch.'):>7} on {args.device}: "
                      f"{rate:.3f} stored frames/s (Δt = 0.1 each, {1 / rate:.2f} s/frame)")
        except ImportError as error:  # the simulator is optional for the loader benchmark
            print(f"shear_flow: not available ({error})")


if __name__ == "__main__":
    main()
