"""physfm training: the autoencoding objective of stage 1 (tokeniser pretraining), the accelerate loops of
both stages, their arguments, checkpoints and evaluation."""

import sys

from . import checkpoint_evaluation
from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
from .autoencoding import autoencoding_step, fit_autoencoder, ratio_balanced_objective
from .cpu_memory import keep_freed_memory
from .trainer import NonFiniteLossError, TrainingResult, train

# `physfm evaluate`'s module was `physfm.training.evaluate`, easy to confuse with `.evaluation`; the old name
# still imports.
sys.modules[f"{__name__}.evaluate"] = checkpoint_evaluation

__all__ = [
    "DataArguments",
    "ModelArguments",
    "NonFiniteLossError",
    "TrainingArguments",
    "TrainingResult",
    "autoencoding_step",
    "ratio_balanced_objective",
    "fit_autoencoder",
    "keep_freed_memory",
    "parse_args",
    "train",
]
