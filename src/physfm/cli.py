"""The ``physfm`` command.

Each subcommand lives beside the code it drives and exposes ``main(argv) -> int`` and the
``build_parser()`` it parses with (a :class:`physfm._cli_parsing.Parser`: options spelt with
underscores, the dashed spelling accepted); this module only dispatches, importing lazily so that
``physfm --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "simulate": ("physfm.simulate.cli", "generate Well-format data with an offline simulator"),
    "inspect": ("physfm.data.inspect", "summarise and validate a Well-format dataset"),
    "convert": ("physfm.data.convert", "turn your own NumPy/HDF5 arrays into a Well-format dataset"),
    "download": ("physfm.data.download", "copy some files of a Hub-hosted Well dataset into a local folder"),
    "train": ("physfm.training.cli", "train a tokeniser (stage 1) or a dynamics model (stage 2)"),
    "evaluate": ("physfm.training.checkpoint_evaluation", "evaluate a checkpoint on a dataset's valid split"),
    "forecast": ("physfm.forecasting", "forecast physical fields from a raw data file with a dynamics checkpoint"),
    "hub": ("physfm.hub", "push or pull checkpoints to or from the Hugging Face Hub"),
    "select-tokeniser": ("physfm.selection", "rank pretrained tokenisers for your data"),
    "experiment": ("physfm.experiment", "run the paper's pretraining x freezing experiment"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: physfm COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `physfm COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"physfm: unknown command {command!r}; expected one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return int(module.main(rest) or 0)
    except (ValueError, OSError) as error:  # how physfm reports user errors (OSError: FileNotFoundError, ...)
        print(f"physfm {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:  # Ctrl-C: say what was kept, not where Python was
        print(f"physfm {command}: interrupted" + (f"; {error}" if str(error) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
