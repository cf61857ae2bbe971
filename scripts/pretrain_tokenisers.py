"""Pretrain one tokeniser per physical system (plus ``multi``, on all of them) and publish them.

For each system this script

1. simulates a Well-format dataset with ``physfm.simulate`` (or takes the one under ``--data_root``);
2. trains stage 1 (tokeniser autoencoding, a compression ratio sampled per batch);
3. evaluates reconstruction VRMSE at every compression ratio on the valid split;
4. renders the model card (with the system's text from ``physfm/card_templates/systems.yaml``) into
   the checkpoint (and into ``--cards_dir``);
5. saves the checkpoint and, with ``--push --hub_org ORG``, pushes it to ``ORG/tokeniser-<system>``.

It ends with a summary table. The defaults are a CPU-sized run (minutes); raise ``--resolution``,
``--n_trajectories`` and ``--max_steps`` on a GPU::

    python scripts/pretrain_tokenisers.py --out runs/tokenisers --systems shear_flow gray_scott_reaction_diffusion
    python scripts/pretrain_tokenisers.py --out runs/tokenisers --push --hub_org physfm
    # tokeniser-turbulence-3d as its card reports it (~12 min on one CPU thread):
    python scripts/pretrain_tokenisers.py --out runs/tokenisers --systems navier_stokes_3d --resolution 16 \
        --max_steps 1200 --batch_size 4 --model_config '{"hidden_channels": 16, "spatial_compressions": [2, 4, 8]}' \
        --cards_dir model_cards/rendered
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from physfm._cli_parsing import Parser
from physfm.checkpoints import load_pretrained
from physfm.data import read_well_metadata
from physfm.hub import push_to_hub, render_model_card
from physfm.reconstruction import evaluate_reconstruction
from physfm.simulate import SYSTEMS, generate
from physfm.training import train

# Hub names are short and hyphenated: physfm/tokeniser-gray-scott, not ..._reaction_diffusion.
REPO_NAMES = {"gray_scott_reaction_diffusion": "gray-scott", "navier_stokes_3d": "turbulence-3d"}
DEFAULT_SYSTEMS = ["shear_flow", "gray_scott_reaction_diffusion", "euler_multi_quadrants", "acoustic_wave"]
# The default PhysfmTokeniserConfig is the CPU-sized one; GPU runs pass PhysfmTokeniserConfig.for_gpu()'s
# settings: --model_config '{"hidden_channels": 64, "channel_multipliers": [1, 2, 4, 4, 4],
# "layers_per_level": [1, 2, 2, 2, 2]}'.


def repo_name(system: str) -> str:
    return "tokeniser-" + REPO_NAMES.get(system, system.replace("_", "-"))


def build_parser() -> Parser:
    parser = Parser(prog="pretrain_tokenisers.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Output folder: data/, one checkpoint per system, summary.json.")
    parser.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, help=f"Systems, from {sorted(SYSTEMS)}.")
    parser.add_argument("--no_multi", action="store_true", help="Skip the tokeniser-multi checkpoint (all systems).")
    parser.add_argument("--data_root", help="Use <data_root>/<system> instead of simulating.")
    parser.add_argument("--resolution", default="32",
                        help="Simulated grid: N (N per axis, for 2-D and 3-D systems alike), HxW or HxWxD.")
    parser.add_argument("--n_trajectories", type=int, default=10)
    parser.add_argument("--n_steps", type=int, default=40, help="Stored time steps per simulated trajectory.")
    parser.add_argument("--dt_stride", type=int, default=4,
                        help="Stored frames between the frames of a training and evaluation clip: the stride at which "
                        "the dynamics model will use the tokeniser (default 4, where the systems change visibly).")
    parser.add_argument("--max_steps", type=int, default=600, help="Tokeniser training steps per checkpoint.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--model_config", default="{}",
                        help="Tokeniser config overrides as inline JSON (default: the default, CPU-sized config).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="Simulation device.")
    parser.add_argument("--cards_dir", default=None, help="Also write each rendered card to <cards_dir>/<repo>.md.")
    parser.add_argument("--push", action="store_true", help="Push every checkpoint to the Hub.")
    parser.add_argument("--hub_org", default="physfm", help="Hub namespace for --push.")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {unknown}; expected some of {sorted(SYSTEMS)}")
    dims = {system: n_spatial_dims(system) for system in args.systems}
    if not args.no_multi and len(args.systems) > 1 and len(set(dims.values())) > 1:
        parser.error(f"--systems: tokeniser-multi needs systems of one dimensionality, got {dims}; "
                     "pass --no_multi or choose 2-D or 3-D systems only")
    return args


def n_spatial_dims(system: str) -> int:
    return len(SYSTEMS[system].periodic)


def resolution_for(system: str, resolution: str) -> str:
    """``--resolution`` for one system: a single N means N along each of the system's axes."""
    return resolution if "x" in resolution else "x".join([resolution] * n_spatial_dims(system))


def dataset_for(system: str, args: argparse.Namespace, out: Path) -> Path:
    if args.data_root:
        path = Path(args.data_root) / system
        if not (path / "stats.yaml").is_file():
            raise FileNotFoundError(f"--data_root: {path} is not a Well-format dataset (no stats.yaml)")
        return path
    path = out / "data" / system
    if not (path / "stats.yaml").is_file():  # simulated once, reused by later invocations
        generate(system, path, n_trajectories=args.n_trajectories, resolution=resolution_for(system, args.resolution),
                 n_steps=args.n_steps, seed=args.seed, device=args.device)
    return path


def pretrain(name: str, system: str, datasets: list[Path], args: argparse.Namespace, out: Path) -> dict:
    """Train, evaluate, card and (optionally) push one tokeniser; returns its summary row."""
    repo_id = f"{args.hub_org}/{name}"
    run_dir = out / name
    result = train(stage="tokeniser", data=datasets, output_dir=run_dir, max_steps=args.max_steps,
                   per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate,
                   eval_steps=0, save_steps=0, seed=args.seed, model_config=args.model_config, dt_stride=args.dt_stride,
                   overwrite_output_dir=True, disable_tqdm=False)
    model = load_pretrained(result.model_dir, kind="tokeniser")
    evals = [row for dataset in datasets
             for row in evaluate_reconstruction(model, dataset, "valid", dt_stride=args.dt_stride)]
    card = render_model_card(
        model, repo_id, physical_system=system, eval_results=evals,
        dataset_name=system if len(datasets) == 1 else "multi",
        training={"data": ", ".join(f"{d.name} ({'x'.join(map(str, read_well_metadata(d).spatial_shape))} grid)"
                                    for d in datasets),
                  "steps": result.steps,
                  "clips": f"{1 + 2 * max(model.config.temporal_compressions)} frames, {args.dt_stride} stored "
                           "frames apart, one compression ratio drawn per batch",
                  "batch size": args.batch_size, "learning rate": f"{args.learning_rate:g} (cosine)",
                  "training FLOPs": f"{result.total_flops:.3g}"},
    )
    card.save(Path(result.model_dir) / "README.md")
    if args.cards_dir:
        Path(args.cards_dir).mkdir(parents=True, exist_ok=True)
        card.save(Path(args.cards_dir) / f"{name}.md")
    commit = push_to_hub(result.model_dir, repo_id, card=card) if args.push else None
    best = min(evals, key=lambda r: r.spatial_compression * r.temporal_compression)
    worst = max(evals, key=lambda r: r.spatial_compression * r.temporal_compression)
    return {"checkpoint": name, "repo_id": repo_id, "model_dir": str(result.model_dir), "steps": result.steps,
            "vrmse_lowest_ratio": best.vrmse, "vrmse_highest_ratio": worst.vrmse,
            "evaluations": [vars(r) if not hasattr(r, "to_dict") else r.to_dict() for r in evals],
            "pushed": commit}


def print_summary(rows: list[dict]) -> None:
    header = f"{'checkpoint':32} {'steps':>6} {'VRMSE (lowest ratio)':>21} {'VRMSE (highest ratio)':>22}  pushed"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['checkpoint']:32} {row['steps']:>6} {row['vrmse_lowest_ratio']:>21.4f} "
              f"{row['vrmse_highest_ratio']:>22.4f}  {row['repo_id'] if row['pushed'] else '-'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    datasets = {system: dataset_for(system, args, out) for system in args.systems}
    rows = [pretrain(repo_name(system), system, [path], args, out) for system, path in datasets.items()]
    if not args.no_multi and len(datasets) > 1:
        rows.append(pretrain("tokeniser-multi", "multi", list(datasets.values()), args, out))
    (out / "summary.json").write_text(json.dumps(rows, indent=2, default=str))
    print_summary(rows)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:  # user errors: one line, no traceback
        print(f"pretrain_tokenisers.py: error: {error}", file=sys.stderr)
        sys.exit(1)
