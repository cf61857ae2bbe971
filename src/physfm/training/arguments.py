"""Command-line and in-process arguments for ``physfm train``.

Three dataclasses, parsed together by physfm's :class:`~physfm._cli_parsing.Parser` (a
:class:`transformers.HfArgumentParser`):

- :class:`DataArguments`: which datasets, how they are windowed;
- :class:`ModelArguments`: which tokeniser, which compression ratios, model size;
- :class:`TrainingArguments`: the optimisation loop, evaluation, checkpoints, logging.

A YAML or JSON config file may come first on the command line; flags after it override it,
because the file is turned into flags that are placed *before* the user's flags and argparse
keeps the last value it sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._cli_parsing import Parser

STAGES = ("tokeniser", "dynamics")
REPORT_TO = ("none", "tensorboard", "trackio", "wandb")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


@dataclass
class DataArguments:
    """Where the data is and how samples are cut from it."""

    data: list[str] = field(
        default=None,
        metadata={"help": "One or more Well-format datasets: directories, or Hub datasets "
                          "hf://datasets/<org>/<name>[@<revision>] read in cached byte ranges (a mixture when several; "
                          "stage dynamics takes exactly one)."},
    )
    n_steps_input: int = field(
        default=None,
        metadata={"help": "Frames per sample: the dynamics model's input window (default: the model config's, 4), "
                          "or the tokeniser's clip length (default: 1 + 2 x the lcm of the temporal ratios)."},
    )
    dt_stride: int = field(default=1, metadata={"help": "Stride between the frames of a window."})
    max_eval_samples: int = field(
        default=64, metadata={"help": "Valid windows used per evaluation (evenly spaced; <=0: all)."}
    )
    max_rollout_samples: int = field(
        default=8, metadata={"help": "Trajectories used for the final rollout evaluation (valid; test with --eval_test_split)."}
    )
    eval_test_split: bool = field(
        default=False,
        metadata={"help": "Stage dynamics: also score the test split at every evaluation (history keys test_*) and "
                          "run the final rollout on test. Make choices on valid only; test is for the tables."},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})


@dataclass
class ModelArguments:
    """Which model is trained, and its size."""

    tokeniser: str = field(
        default="scratch",
        metadata={"help": "Stage dynamics: 'scratch', a local checkpoint directory, or a Hub id of a "
                          "pretrained tokeniser. Stage tokeniser: 'scratch' or a checkpoint to continue."},
    )
    freeze_tokeniser: bool = field(
        default=False, metadata={"help": "Stage dynamics: keep the pretrained tokeniser's weights fixed."}
    )
    spatial_compression: list[int] = field(
        default=None,
        metadata={"help": "Stage tokeniser: spatial ratios to train (one is sampled per batch). "
                          "Stage dynamics: the ratio the dynamics model works at (one value)."},
    )
    temporal_compression: list[int] = field(
        default=None, metadata={"help": "Temporal ratios, as for --spatial_compression."}
    )
    field_names: list[str] = field(
        default=None,
        metadata={"help": "Stage tokeniser: field vocabulary (default: the union of the data's fields). "
                          "List extra names so later systems with those fields can use the checkpoint."},
    )
    model_config: str = field(
        default=None,
        metadata={"help": "Model-config overrides: a JSON file or an inline JSON object, e.g. "
                          "'{\"latent_channels\": 8}'. Stage dynamics: keys of PhysfmDynamicsConfig; put "
                          "tokeniser keys under \"tokeniser_config\"."},
    )


@dataclass
class TrainingArguments:
    """The optimisation loop, evaluation, checkpoints and logging."""

    stage: str = field(default="dynamics", metadata={"help": f"One of {', '.join(STAGES)}."})
    output_dir: str = field(default=None, metadata={"help": "Where checkpoints, the model and metrics go."})
    max_steps: int = field(default=1000, metadata={"help": "Optimisation steps."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Micro-batch per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per step."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": f"One of {', '.join(LR_SCHEDULERS)}."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (<=0: off)."})
    mixed_precision: str = field(
        default="no", metadata={"help": "no | fp16 | bf16. bf16 is for GPUs and CPUs with native bf16."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for weights, data order and ratio sampling."})
    eval_steps: int = field(default=100, metadata={"help": "Evaluate every N steps (<=0: only at the end)."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps (<=0: only at the end)."})
    save_total_limit: int = field(default=None, metadata={"help": "Keep at most N checkpoints."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every N steps."})
    resume_from_checkpoint: str = field(
        default=None, metadata={"help": "A checkpoint-<step> directory, or 'latest' (in --output_dir)."}
    )
    report_to: str = field(default="none", metadata={"help": f"Tracker: {' | '.join(REPORT_TO)}."})
    run_name: str = field(default=None, metadata={"help": "Tracker run name (default: output_dir's name)."})
    rollout_horizons: list[int] = field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        metadata={"help": "Stage dynamics: rollout steps at which the final VRMSE is reported."},
    )
    count_flops: bool = field(
        default=True, metadata={"help": "Measure the FLOPs of one step with torch's FlopCounterMode."}
    )
    keep_freed_memory: bool = field(
        default=True, metadata={"help": "On CPU, make glibc keep freed memory for the next step instead of returning "
                                "it to the OS, whose page faults cost about a tenth of a tokeniser step."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow a fresh run into a non-empty --output_dir."}
    )


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainingArguments)


def build_parser(prog: str = "physfm train") -> Parser:
    description = ("Train a physfm tokeniser (--stage tokeniser) or dynamics model (--stage dynamics). A YAML/JSON "
                   "config file may come first; flags after it override it.")
    parser = Parser(ARGUMENT_CLASSES, prog=prog, description=description,
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.usage = f"{prog} [CONFIG.yaml|CONFIG.json] [--flag value ...]"
    return parser


def _field_names() -> dict[str, type]:
    return {f.name: cls for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file into a flat ``{argument: value}`` dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    import yaml

    try:
        config = json.loads(text) if path.suffix == ".json" else (yaml.safe_load(text) or {})
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {str(path)!r} is not valid JSON (line {error.lineno}, column {error.colno}: "
                         f"{error.msg}); expected a mapping of argument: value") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ValueError(f"config file {str(path)!r} is not valid YAML ({where}{getattr(error, 'problem', error)}); "
                         "expected a mapping of argument: value") from None
    if not isinstance(config, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of argument: value, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_field_names()))
    if unknown:
        raise ValueError(
            f"config file {str(path)!r} has unknown options {unknown}; see `physfm train --help` for valid names"
        )
    return config


def _config_to_flags(config: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, dict):  # e.g. model_config given inline in YAML
            flags += [f"--{key}", json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def parse_args(argv: list[str] | None) -> tuple[DataArguments, ModelArguments, TrainingArguments]:
    """Parse ``[CONFIG] [--flag value ...]`` into the three dataclasses and validate them."""
    argv = list(argv or [])
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = _config_to_flags(load_config_file(argv[0])) + argv[1:]
    parser = build_parser()
    data_args, model_args, training_args, remaining = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True, look_for_args_file=False
    )
    if remaining:
        parser.reject(remaining)
    validate(data_args, model_args, training_args)
    return data_args, model_args, training_args


def from_kwargs(**kwargs: Any) -> tuple[DataArguments, ModelArguments, TrainingArguments]:
    """Build the three dataclasses from flat keyword arguments (the in-process API)."""
    owners = _field_names()
    unknown = sorted(set(kwargs) - set(owners))
    if unknown:
        raise ValueError(f"train(): unknown arguments {unknown}; valid names are {sorted(owners)}")
    if isinstance(kwargs.get("model_config"), dict):
        kwargs["model_config"] = json.dumps(kwargs["model_config"])
    for key in ("data", "spatial_compression", "temporal_compression", "field_names", "rollout_horizons"):
        if key in kwargs and isinstance(kwargs[key], (str, int, os.PathLike)):
            kwargs[key] = [kwargs[key]]
    if "data" in kwargs and kwargs["data"] is not None:
        kwargs["data"] = [str(path) for path in kwargs["data"]]
    if "output_dir" in kwargs and kwargs["output_dir"] is not None:
        kwargs["output_dir"] = str(kwargs["output_dir"])
    groups = [cls(**{k: v for k, v in kwargs.items() if owners[k] is cls}) for cls in ARGUMENT_CLASSES]
    validate(*groups)
    return tuple(groups)  # type: ignore[return-value]


def validate(data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """Check values that argparse cannot: required fields, choices, ranges."""

    def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            raise ValueError(f"--{name}: got {value!r}, expected one of {', '.join(allowed)}")

    if not data_args.data:
        raise ValueError("--data: no dataset directory given; expected one or more Well-format dataset dirs")
    if not training_args.output_dir:
        raise ValueError("--output_dir: not given; expected a directory for checkpoints and results")
    choice("stage", training_args.stage, STAGES)
    choice("report_to", training_args.report_to, REPORT_TO)
    choice("mixed_precision", training_args.mixed_precision, MIXED_PRECISION)
    choice("lr_scheduler_type", training_args.lr_scheduler_type, LR_SCHEDULERS)
    for name in ("max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
                 "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise ValueError(f"--{name}: got {getattr(training_args, name)}, expected an integer >= 1")
    if training_args.learning_rate <= 0:
        raise ValueError(f"--learning_rate: got {training_args.learning_rate}, expected > 0")
    if data_args.n_steps_input is not None and data_args.n_steps_input < 1:
        raise ValueError(f"--n_steps_input: got {data_args.n_steps_input}, expected >= 1")
    if training_args.stage == "dynamics":
        if len(data_args.data) != 1:
            raise ValueError(
                f"--data: stage dynamics trains on one downstream dataset, got {len(data_args.data)}: {data_args.data}"
            )
        for name in ("spatial_compression", "temporal_compression"):
            value = getattr(model_args, name)
            if value is not None and len(value) != 1:
                raise ValueError(f"--{name}: stage dynamics works at one ratio, got {value}")
    elif model_args.freeze_tokeniser:
        raise ValueError("--freeze_tokeniser: only meaningful for --stage dynamics (stage tokeniser trains it)")
    if any(h < 1 for h in training_args.rollout_horizons):
        raise ValueError(f"--rollout_horizons: got {training_args.rollout_horizons}, expected integers >= 1")
    if training_args.report_to != "none":
        import importlib.util

        packages = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
        if not any(importlib.util.find_spec(p) for p in packages[training_args.report_to]):
            raise ValueError(
                f"--report_to {training_args.report_to}: the package is not installed; "
                f"`pip install {packages[training_args.report_to][0]}` or use --report_to none"
            )
    model_config_overrides(model_args)  # fail early on malformed JSON


def model_config_overrides(model_args: ModelArguments) -> dict[str, Any]:
    """``--model_config`` as a dict: a JSON file path or an inline JSON object (empty when unset)."""
    given = model_args.model_config
    if not given:
        return {}
    text = given
    if not given.lstrip().startswith("{"):
        if not Path(given).is_file():
            raise FileNotFoundError(f"--model_config: {given!r} is neither a JSON object nor an existing file")
        text = Path(given).read_text()
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--model_config: {given!r} is not valid JSON ({error})") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--model_config: expected a JSON object, got {type(overrides).__name__}")
    return overrides


def args_to_dict(*groups: Any) -> dict[str, Any]:
    """Flat ``{name: value}`` of all argument groups (written to ``training_args.json``)."""
    out: dict[str, Any] = {}
    for group in groups:
        out.update(dataclasses.asdict(group))
    return out
