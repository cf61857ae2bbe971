"""``physfm evaluate CHECKPOINT --data DIR``: metrics table, JSON and a rollout figure.

``CHECKPOINT`` is a saved model directory (a training run's ``output_dir``), a training checkpoint
``output_dir/checkpoint-<step>``, or a Hub id. A dynamics model is scored on next-frame VRMSE and
spectral errors plus rollout VRMSE by horizon, and a rollout figure (truth / prediction / error) is
drawn; a tokeniser is scored on reconstruction at each compression ratio it serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .._cli_parsing import Parser
from .._io import atomic_write_json
from ..checkpoints import load_pretrained
from ..models.modeling_dynamics import PhysfmDynamicsModel
from ..reconstruction import evaluate_reconstruction, reconstruction_metrics
from .evaluation import evaluate_dynamics, plot_rollout, rollout_metrics, summarise
from .tasks import check_data_exists, check_tokeniser_fits


def evaluate_checkpoint(checkpoint: str, data: str, output_dir: str | None = None, split: str = "valid",
                        horizons: list[int] | None = None, max_samples: int = 64, batch_size: int = 8,
                        field: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data``'s ``split``; write ``metrics.json`` (and ``rollout.png``)
    into ``output_dir`` and return the metrics."""
    from ..data import WellWindowDataset

    check_data_exists(data)
    horizons = list(horizons or [1, 2, 4, 8, 16])
    if any(h < 1 for h in horizons):
        raise ValueError(f"--horizons: got {horizons}; expected positive numbers of frames")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_pretrained(checkpoint, argument="CHECKPOINT").to(device)
    out = Path(output_dir or "physfm_eval")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"checkpoint": checkpoint, "data": str(data), "split": split,
                              "model_type": model.config.model_type}
    if isinstance(model, PhysfmDynamicsModel):
        n_in, t = model.config.n_steps_input, model.config.temporal_compression
        dataset = WellWindowDataset(data, split=split, n_steps_input=n_in, n_steps_output=t)
        check_tokeniser_fits(model.tokeniser.config, [dataset], repr(checkpoint))
        result["next_frame"] = evaluate_dynamics(model, dataset, batch_size=batch_size, max_samples=max_samples,
                                                 device=device)
        if field is not None and field not in dataset.field_names:
            raise ValueError(f"--field: {field!r} is not one of the data's fields {list(dataset.field_names)}")
        rollout, example = rollout_metrics(model, data, horizons, split=split, max_samples=max_samples,
                                           batch_size=batch_size, device=device, return_example=True)
        result["rollout_vrmse"] = {str(h): v for h, v in rollout.items()}
        result["skipped_horizons"] = [h for h in horizons if h not in rollout]
        truth, prediction, names = example
        field_index = names.index(field) if field else 0
        result["figure"] = str(plot_rollout(truth, prediction, out / "rollout.png", field_names=names,
                                            field=field_index, title=f"{Path(checkpoint).name}: {names[field_index]}"))
    else:
        check_tokeniser_fits(model.config, [WellWindowDataset(data, split=split, n_steps_input=1, n_steps_output=0)],
                             repr(checkpoint))
        # Scored as the cards and select-tokeniser score it: at every ratio it serves on this grid.
        result["reconstruction"] = reconstruction_metrics(evaluate_reconstruction(
            model, data, split, max_samples=max_samples, batch_size=batch_size, device=device))
    atomic_write_json(out / "metrics.json", result)
    result["json"] = str(out / "metrics.json")
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{result['model_type']} {result['checkpoint']} on {result['data']} ({result['split']})", ""]
    if "next_frame" in result:
        lines += ["next-frame (physical units)", summarise(result["next_frame"]), "",
                  "rollout VRMSE by horizon", summarise({f"step {h}": v for h, v in result["rollout_vrmse"].items()})]
        if result["skipped_horizons"]:
            lines.append(f"horizons {result['skipped_horizons']} skipped: longer than the {result['split']} "
                         "split's trajectories allow after the input window")
    else:
        lines += ["reconstruction (normalised fields)", summarise(result["reconstruction"])]
    return "\n".join(lines)


def build_parser() -> Parser:
    parser = Parser(prog="physfm evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="model directory, output_dir/checkpoint-<step>, or Hub id")
    parser.add_argument("--data", required=True, help="Well-format dataset directory, or hf://datasets/<org>/<name>")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    parser.add_argument("--output_dir", default=None, help="where metrics.json and rollout.png go (default: physfm_eval)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="rollout horizons (frames)")
    parser.add_argument("--max_samples", type=int, default=64, help="windows / trajectories evaluated")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--field", default=None, help="field shown in the rollout figure (default: the first)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, args.data, args.output_dir, args.split, args.horizons,
                                 args.max_samples, args.batch_size, args.field, args.device)
    print(format_table(result))
    print(f"\nwrote {result['json']}" + (f" and {result['figure']}" if "figure" in result else ""))
    return 0
