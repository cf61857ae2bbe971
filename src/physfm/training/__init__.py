"""physfm training: the autoencoding objective of stage 1 (tokeniser pretraining), the accelerate loops of
both stages, their arguments, checkpoints and evaluation."""

from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
from .autoencoding import autoencoding_step, fit_autoencoder, ratio_balanced_objective
from .trainer import NonFiniteLossError, TrainingResult, train

__all__ = [
    "DataArguments",
    "ModelArguments",
    "NonFiniteLossError",
    "TrainingArguments",
    "TrainingResult",
    "autoencoding_step",
    "ratio_balanced_objective",
    "fit_autoencoder",
    "parse_args",
    "train",
]
