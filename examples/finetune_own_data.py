"""Finetune physfm on your own data, end to end, in about a minute on a laptop CPU (40 s on 2 cores).

1. Convert your arrays to a Well-format dataset (``physfm.data.convert.convert_arrays``).
2. Take a pretrained tokeniser (``--tokeniser`` a Hub id or a local directory). Without one, a small
   tokeniser is pretrained here on simulated shear flow; it stands in for
   ``physfm/tokeniser-shear-flow`` so the example needs no network.
3. Train a dynamics model around it: finetuned (default) or frozen (``--freeze``).
4. Evaluate on the valid split in physical units and plot a rollout (truth / prediction / error).

    python examples/finetune_own_data.py --out runs/own_data [--tokeniser physfm/tokeniser-shear-flow]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_your_arrays(n_traj: int = 10, n_time: int = 24, size: int = 32, seed: int = 0) -> np.ndarray:
    """Stand-in for YOUR data: a tracer advected by a steady cellular flow and diffused, solved
    spectrally on a periodic square. Layout ``[traj, time, x, y, field]``, fields
    ``tracer, velocity_x, velocity_y``."""
    rng = np.random.default_rng(seed)
    x = np.arange(size) / size
    gx, gy = np.meshgrid(x, x, indexing="ij")
    k = 2 * np.pi * np.fft.fftfreq(size, d=1 / size)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    out = np.empty((n_traj, n_time, size, size, 3), dtype=np.float32)
    for i in range(n_traj):
        amplitude = rng.uniform(0.5, 1.5)
        u = amplitude * np.sin(2 * np.pi * gx) * np.cos(2 * np.pi * gy)
        v = -amplitude * np.cos(2 * np.pi * gx) * np.sin(2 * np.pi * gy)
        c = np.exp(-((gx - rng.uniform(0.3, 0.7)) ** 2 + (gy - rng.uniform(0.3, 0.7)) ** 2) / 0.02)
        for t in range(n_time):
            out[i, t] = np.stack([c, u, v], axis=-1)
            for _ in range(10):  # 10 explicit substeps per stored frame
                c_hat = np.fft.fft2(c)
                dcdx, dcdy = np.fft.ifft2(1j * kx * c_hat).real, np.fft.ifft2(1j * ky * c_hat).real
                c = c - 0.002 * (u * dcdx + v * dcdy) + 0.002 * 1e-3 * np.fft.ifft2(-(kx**2 + ky**2) * c_hat).real
    return out


def pretrain_stand_in_tokeniser(out: Path) -> str:
    """A small shear-flow tokeniser (stage 1), standing in for a Hub download."""
    from physfm.simulate import generate
    from physfm.training import train

    data = out / "shear_flow"
    if not data.exists():
        generate("shear_flow", data, n_trajectories=10, resolution=(32, 32), n_steps=12, seed=1, progress=False)
    train(stage="tokeniser", data=[data], output_dir=out / "tokeniser", overwrite_output_dir=True,
          max_steps=150, per_device_train_batch_size=4, learning_rate=3e-3, eval_steps=150, save_steps=0,
          spatial_compression=[2, 4], temporal_compression=[1], max_eval_samples=8,
          model_config={"hidden_channels": 8, "latent_channels": 8, "channel_multipliers": [1, 2, 2]})
    return str(out / "tokeniser")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/own_data", help="working directory")
    parser.add_argument("--tokeniser", default=None, help="pretrained tokeniser: Hub id or directory")
    parser.add_argument("--freeze", action="store_true", help="keep the tokeniser frozen")
    parser.add_argument("--steps", type=int, default=200, help="dynamics training steps")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Your arrays -> a Well-format dataset (train/valid/test split by trajectory).
    from physfm.data.convert import convert_arrays

    data = out / "my_system"
    if not data.exists():
        convert_arrays(make_your_arrays(), data, fields=["tracer", "velocity_x", "velocity_y"],
                       layout="traj time x y field", dt=0.02, periodic=["x", "y"], split=(0.7, 0.2, 0.1))

    # 2. A pretrained tokeniser. Its field vocabulary must include your fields (here all three).
    tokeniser = args.tokeniser or pretrain_stand_in_tokeniser(out)

    # 3. Stage 2: dynamics around the pretrained tokeniser.
    from physfm.training import train

    result = train(stage="dynamics", data=[data], output_dir=out / "dynamics", overwrite_output_dir=True,
                   tokeniser=tokeniser, freeze_tokeniser=args.freeze, spatial_compression=4, n_steps_input=4,
                   max_steps=args.steps, per_device_train_batch_size=4, learning_rate=2e-3, warmup_steps=10,
                   eval_steps=50, save_steps=100, rollout_horizons=[1, 2, 4, 8],
                   model_config={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4})
    print("valid VRMSE by step:", {e["step"]: round(e["vrmse"], 4) for e in result.history})
    print(f"training compute: {result.steps} steps, {result.total_flops:.3g} FLOPs")

    # 4. Evaluate the saved model and plot a rollout (truth / prediction / error).
    from physfm.training.checkpoint_evaluation import evaluate_checkpoint, format_table

    report = evaluate_checkpoint(str(out / "dynamics"), str(data), output_dir=str(out / "eval"),
                                 horizons=[1, 2, 4, 8], field="tracer")
    print(format_table(report))
    print("rollout figure:", report["figure"])


if __name__ == "__main__":
    main()
