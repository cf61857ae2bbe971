"""Train a physfm tokeniser (stage 1) or dynamics model (stage 2).

    python scripts/train.py --stage tokeniser --data DIR [DIR ...] --output_dir OUT ...
    accelerate launch --config_file examples/accelerate/cpu_ddp.yaml scripts/train.py --stage dynamics ...

Same options as ``physfm train`` (``--help``); a YAML/JSON config file may come first.
"""

import sys

from physfm.training.cli import main

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as error:  # user errors: one line, no traceback
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as error:  # Ctrl-C: where the last checkpoint is and how to resume
        print("train.py: interrupted" + (f"; {error}" if str(error) else ""), file=sys.stderr)
        sys.exit(130)
