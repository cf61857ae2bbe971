"""Dynamics-training throughput on this machine, and 1 -> 2 process scaling on CPU.

Both runs train the same model on the same global batches (8 windows per step: one process with
2 accumulation steps vs two processes with 1), each as a real `accelerate launch` job with one
thread per process, so the speed-up is what a second process adds, not a second thread moved
between processes. They report samples/s over the training steps only (start-up, evaluation and
checkpoints excluded). Run it on an otherwise idle machine with at least two cores.

    python scripts/benchmark_training.py [--steps 20] [--resolution 32] [--keep DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from physfm._cli_parsing import Parser

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 2,
                "tokeniser_config": {"hidden_channels": 16, "latent_channels": 8, "channel_multipliers": [1, 2, 4]}}
THREADS_PER_PROCESS = 1  # 1 -> 2 processes is then 1 -> 2 cores


def make_data(out: Path, resolution: int, n_traj: int = 8, n_steps: int = 16) -> Path:
    """Advected sine waves with 4 fields (like shear flow's), periodic: cheap to write, real to read."""
    from physfm.data import write_well_dataset

    rng = np.random.default_rng(0)
    x = (np.arange(resolution) + 0.5) / resolution
    gx, gy = np.meshgrid(x, x, indexing="ij")
    time = np.arange(n_steps)[:, None, None] * 0.05
    splits = {}
    for split, n in (("train", n_traj), ("valid", 2)):
        fields = {"tracer": [], "pressure": [], "velocity": []}
        for _ in range(n):
            k, u, v, phase = rng.integers(1, 4), rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 6.28)
            wave = np.sin(2 * np.pi * k * (gx - u * time + gy - v * time) + phase)
            fields["tracer"].append(wave)
            fields["pressure"].append(np.roll(wave, 2, axis=1) ** 2)
            fields["velocity"].append(np.stack([u + 0.1 * wave, v - 0.1 * wave], -1))
        splits[split] = {k: np.stack(a).astype(np.float32) for k, a in fields.items()}
    return write_well_dataset(out, "bench", splits, dt=0.05, coords={"x": x, "y": x},
                              periodic={"x": True, "y": True})


def run(data: Path, out: Path, processes: int, steps: int, per_device: int, accumulation: int) -> dict:
    command = [str(Path(sys.executable).parent / "accelerate"), "launch",
               "--config_file", str(REPO / "examples/accelerate/cpu_ddp.yaml"), "--num_processes", str(processes),
               "--num_cpu_threads_per_process", str(THREADS_PER_PROCESS),
               str(REPO / "scripts/train.py"), "--stage", "dynamics", "--data", str(data), "--output_dir", str(out),
               "--max_steps", str(steps), "--per_device_train_batch_size", str(per_device),
               "--gradient_accumulation_steps", str(accumulation), "--eval_steps", "0", "--save_steps", "0",
               "--max_eval_samples", "2", "--max_rollout_samples", "1", "--rollout_horizons", "1",
               "--spatial_compression", "4", "--model_config", json.dumps(MODEL_CONFIG), "--disable_tqdm", "true",
               "--lr_scheduler_type", "constant"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(THREADS_PER_PROCESS),
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{processes}-process run failed:\n{result.stderr[-4000:]}")
    return json.loads((out / "metrics.json").read_text())


def build_parser() -> Parser:
    parser = Parser(prog="benchmark_training.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per run")
    parser.add_argument("--resolution", type=int, default=32, help="square grid size")
    parser.add_argument("--per_device_batch", type=int, default=4, help="windows per process per micro-batch")
    parser.add_argument("--keep", default=None, help="keep data and runs in this directory")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print(f"warning: {os.cpu_count()} core; two one-thread processes share it, so expect no speed-up",
              file=sys.stderr)
    root = Path(args.keep or tempfile.mkdtemp(prefix="physfm-bench-"))
    data = root / "data"
    if not data.exists():
        make_data(data, args.resolution)
    one = run(data, root / "p1", 1, args.steps, args.per_device_batch, 2)
    two = run(data, root / "p2", 2, args.steps, args.per_device_batch, 1)
    c1, c2 = one["compute"], two["compute"]
    assert c1["global_batch_size"] == c2["global_batch_size"]
    loss_gap = abs(one["train_log"][0]["loss"] - two["train_log"][0]["loss"])
    print(f"dynamics training, {args.resolution}x{args.resolution}, 4 fields, global batch {c1['global_batch_size']}, "
          f"{args.steps} steps, {c1['flops_per_step'] / 1e9:.2f} GFLOP/step, {THREADS_PER_PROCESS} thread per process")
    print(f"{'processes':>10} {'samples/s':>10} {'GFLOP/s':>8} {'step 1 loss':>12}")
    for n, m in ((1, one), (2, two)):
        c = m["compute"]
        gflops = c["total_flops"] / max(c["train_time_s"], 1e-9) / 1e9
        print(f"{n:>10} {c['samples_per_second']:>10.1f} {gflops:>8.2f} {m['train_log'][0]['loss']:>12.6f}")
    print(f"1 -> 2 process speed-up: {c2['samples_per_second'] / c1['samples_per_second']:.2f}x "
          f"(same global batches; step-1 loss differs by {loss_gap:.1e})")


if __name__ == "__main__":
    main()
