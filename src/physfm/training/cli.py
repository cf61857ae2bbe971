"""``physfm train``: parse the arguments (config file first, flags override) and run one stage.

Works the same under ``python``, ``physfm train`` and ``accelerate launch scripts/train.py``.
"""

from __future__ import annotations

import json
import logging

from .arguments import build_parser, parse_args
from .trainer import train


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``physfm train``; user errors raise ``ValueError`` / ``FileNotFoundError``."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(flag in argv for flag in ("-h", "--help")):
        build_parser().print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data_args, model_args, training_args = parse_args(argv)
    result = train(data_args, model_args, training_args)
    summary = {"output_dir": result.output_dir, "steps": result.steps, "final": result.history[-1],
               "rollout_vrmse": result.rollout_vrmse, "total_flops": result.total_flops}
    from accelerate.state import PartialState

    if PartialState().is_main_process:
        print(json.dumps(summary, indent=2, default=str))
    return 0
