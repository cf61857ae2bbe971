"""``physfm experiment``: run a preset of the paper's experiment and write its results."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from .._cli_parsing import Parser
from .data import default_cache_dir
from .presets import CONFIGURATIONS, PRESETS, SYSTEMS, ExperimentPreset, clip_frames, get_preset

logger = logging.getLogger("physfm.experiment")


def _environment(device: str) -> dict[str, Any]:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        hardware = torch.cuda.get_device_name(0)
    else:
        hardware = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    return {"hardware": hardware, "torch": torch.__version__, "python": platform.python_version(),
            "device": device}


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_experiment(preset: str | ExperimentPreset = "tiny", out: str | os.PathLike = "runs/experiment",
                   cache_dir: str | os.PathLike | None = None, progress: bool = True, system: str | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """Run the experiment and write its results into ``out``; returns the ``results.json`` payload.

    Args:
        preset: a name of :data:`PRESETS` (``micro``, ``tiny``, ``small``, ``paper``) or an
            :class:`ExperimentPreset`.
        out: output directory: ``results.json``, ``results.md``, the PNG figures, and ``runs/seed<k>/<name>/`` per
            training run (checkpoints, model, metrics, learning curve).
        cache_dir: where simulated datasets are kept between experiments (default
            :func:`~physfm.experiment.data.default_cache_dir`).
        progress: progress bar and one log line per finished job.
        system: the downstream system (default the preset's: shear_flow, euler_multi_quadrants for paper); the others become
            the cross-domain pretraining data.
        **overrides: preset fields to change, e.g. ``max_steps=400, workers=1``.

    ``results.json`` holds ``test`` (configuration -> ``step``, ``vrmse_mean``, ``vrmse_std``,
    ``vrmse_per_seed``: the tables' numbers), ``runs`` (seed 0: configuration -> ``step``, ``vrmse``,
    ``spectral_mse_low``, ``_mid``, ``_high`` on valid, ``test_vrmse`` and ``rollout_vrmse`` on test), ``lr_sweep``,
    ``compute`` (steps and FLOPs of pretraining, of the sweep and of the dynamics per configuration),
    ``tokenisers``, ``references`` (``persistence`` and ``linear_extrapolation``, scored like the models, with
    ``test_vrmse`` over seeds), ``leakage`` (``min_vrmse`` over seeds), ``summary`` (change against scratch on
    test at the mid-training and final checkpoints), ``settings`` (the preset, with ``system``, ``dt_stride``
    and ``n_seeds``) and ``wall_time_s``.
    """
    from .report import collect, write_report
    from .runner import run_grid

    if isinstance(preset, str):
        preset = get_preset(preset)
    if not isinstance(preset, ExperimentPreset):
        raise ValueError(f"preset: got {type(preset).__name__}, expected a preset name or an ExperimentPreset")
    if system is not None:
        preset = preset.with_system(system)
    if overrides:
        unknown = sorted(set(overrides) - set(preset.to_dict()))
        if unknown:
            raise ValueError(f"run_experiment(): unknown preset fields {unknown}; valid: {sorted(preset.to_dict())}")
        preset = preset.replace(**overrides)
    _validate(preset)
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = _resolve_device(preset.device)
    tic = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    results = run_grid(preset, out, cache, device, progress)
    payload = collect(preset, results, time.perf_counter() - tic, _environment(device))
    write_report(payload, out)
    return payload


def _validate(preset: ExperimentPreset) -> None:
    unknown = [c for c in preset.configurations if c not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"--configurations: unknown {unknown}; expected some of {', '.join(CONFIGURATIONS)}")
    if "scratch" not in preset.configurations:
        raise ValueError("--configurations: 'scratch' is required, every other configuration is compared to it")
    for name in ("max_steps", "tokeniser_steps", "batch_size", "tokeniser_batch_size", "workers", "n_seeds",
                 "dt_stride"):
        if getattr(preset, name) < 1:
            raise ValueError(f"--{name}: got {getattr(preset, name)}, expected an integer >= 1")
    if not preset.learning_rates or min(preset.learning_rates) <= 0:
        raise ValueError(f"--learning_rates: got {preset.learning_rates}, expected positive rates")
    if preset.eval_steps < 1 or preset.eval_steps > preset.max_steps:
        raise ValueError(f"--eval_steps: got {preset.eval_steps}, expected 1 ... max_steps ({preset.max_steps})")
    _validate_protocol(preset)


def _validate_protocol(preset: ExperimentPreset) -> None:
    """What the protocol needs from the data, checked before minutes (or hours) of simulation."""
    import math
    import warnings

    from physfm.simulate import split_counts

    if preset.n_steps_input < 2:
        raise ValueError(f"dynamics n_steps_input: got {preset.n_steps_input}, expected >= 2 (linear extrapolation, "
                         "a reference of every table, needs two input frames)")
    lcm = math.lcm(*preset.pretrain_temporal_compressions, preset.temporal_compression)
    clip = clip_frames(preset)
    if (clip - 1) % lcm:
        raise ValueError(f"temporal compressions {sorted({*preset.pretrain_temporal_compressions, preset.temporal_compression})}"
                         f": the dynamics clip of {clip} frames is not 1 + k * {lcm}; choose n_steps_input so it is")
    for name, data in (("downstream", preset.downstream), ("in_domain", preset.in_domain)):
        span = 1 + preset.dt_stride * (clip - 1)
        if span > data.n_steps + 1:
            raise ValueError(f"--dt_stride: {preset.dt_stride} makes a {clip}-frame clip span {span} stored frames, but the "
                             f"{name} trajectories have {data.n_steps + 1}; expected dt_stride <= "
                             f"{data.n_steps // (clip - 1)}")
    counts = split_counts(preset.downstream.n_trajectories, preset.downstream.split_fractions)
    if min(counts.values()) < 1:
        raise ValueError(f"downstream data: {preset.downstream.n_trajectories} trajectories split "
                         f"{preset.downstream.split_fractions} give {counts}; the protocol needs train, valid and test "
                         "trajectories")
    if min(counts["valid"], counts["test"]) < 4:
        warnings.warn(f"downstream data: {counts['valid']} valid and {counts['test']} test trajectories; the protocol "
                      "asks for at least 4 of each, so read these numbers as a check of the plumbing", stacklevel=3)


def build_parser() -> Parser:
    presets = "\n".join(f"  {name:6s} {p.description}" for name, p in PRESETS.items())
    parser = Parser(
        prog="physfm experiment",
        description="Run the paper's tokeniser-pretraining x freezing experiment and write results.json, "
                    "results.md and figures (tables on the test split, mean and spread over seeds).",
        epilog=f"presets:\n{presets}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)} (default tiny)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--cache_dir", default=None,
                        help=f"simulated-data cache (default {default_cache_dir()}; env PHYSFM_CACHE)")
    parser.add_argument("--workers", type=int, default=None,
                        help="training runs at the same time, one process each (default: the preset's)")
    parser.add_argument("--max_steps", type=int, default=None, help="dynamics steps (default: the preset's)")
    parser.add_argument("--eval_steps", type=int, default=None, help="evaluate every N steps")
    parser.add_argument("--tokeniser_steps", type=int, default=None, help="tokeniser pretraining steps")
    parser.add_argument("--system", default=None, choices=SYSTEMS,
                        help="downstream system (default: the preset's: shear_flow, or euler_multi_quadrants for paper); the others pretrain the "
                             "cross-domain tokeniser")
    parser.add_argument("--n_seeds", type=int, default=None,
                        help="seeds, each with new data and new initial weights (default: the preset's, 3)")
    parser.add_argument("--dt_stride", type=int, default=None,
                        help="frames between a window's frames, both stages (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="first training seed (default: the preset's)")
    parser.add_argument("--device", default=None, help="simulation device: auto | cpu | cuda (default auto)")
    parser.add_argument("--field_residual", action="store_true",
                        help="dynamics adds the decoded change to the last frame (physfm's default) instead of "
                             "decoding the next latent alone (the paper's formulation, the presets' setting)")
    parser.add_argument("--configurations", nargs="+", default=None, metavar="NAME",
                        help=f"subset of {', '.join(CONFIGURATIONS)} (scratch is always run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if k in ("workers", "max_steps", "eval_steps", "tokeniser_steps", "seed", "device", "n_seeds",
                          "dt_stride") and v is not None}
    if args.field_residual:
        preset = get_preset(args.preset)
        overrides["dynamics_config"] = {**preset.dynamics_config, "field_residual": True}
    if args.configurations:
        overrides["configurations"] = tuple(dict.fromkeys(["scratch", *args.configurations]))
    logging.basicConfig(level=logging.WARNING)
    payload = run_experiment(args.preset, args.out, cache_dir=args.cache_dir, progress=not args.quiet,
                             system=args.system, **overrides)
    out = Path(args.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and figures in {out} "
          f"({payload['wall_time_s'] / 60:.1f} min)")
    return 0


__all__ = ["build_parser", "main", "run_experiment"]
