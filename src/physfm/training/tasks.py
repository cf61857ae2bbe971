"""What each training stage trains, on which data, with which loss and evaluation.

The loop in :mod:`physfm.training.trainer` is stage-agnostic; a *task* supplies:

- ``model``: the module to optimise (built, loaded and checked against the data here, before
  any training starts, so a misfit tokeniser is refused with a message naming what differs);
- ``train_datasets``: the datasets the global batches are drawn from (see :mod:`.sampling`);
- ``loss(model, batch, step)``: the scalar training loss of a micro-batch at a step (what is logged);
- ``objective(loss)``: what is differentiated (the loss itself, or a reweighting of it);
- ``evaluate(model, accelerator)``: valid-split metrics in physical units;
- ``flop_probes()``: ``(weight, batch, step)`` triples whose FLOPs average to one micro-batch's;
- ``processor``: the :class:`~physfm.models.PhysfmFieldProcessor` saved into every checkpoint (the training
  data's statistics).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_pretrained, load_processor
from ..data.field_processor import processor_for_datasets, processor_from_dataset
from ..data.hub_files import is_hub_url
from ..models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from ..models.configuration_dynamics import PhysfmDynamicsConfig
from ..models.modeling_dynamics import PhysfmDynamicsModel
from ..models.processing_physfm import PhysfmFieldProcessor
from .arguments import DataArguments, ModelArguments, TrainingArguments, model_config_overrides
from .autoencoding import autoencoding_loss, ratio_balanced_objective
from .evaluation import evaluate_dynamics, evaluate_tokeniser, rollout_metrics
from .sampling import step_generator

logger = logging.getLogger(__name__)

PathLike = str | Path


def check_data_exists(path: PathLike) -> None:
    """``--data`` names an existing local dataset, or a Hub one (which the dataset checks when it opens it)."""
    if not is_hub_url(path) and not Path(path).exists():
        raise FileNotFoundError(f"--data: {str(path)!r} does not exist; expected a Well-format dataset directory "
                                "or hf://datasets/<org>/<name>")


def _open_datasets(paths: Sequence[PathLike], split: str, n_steps_input: int, n_steps_output: int,
                   dt_stride: int) -> list:
    from ..data import WellWindowDataset

    datasets = []
    for path in paths:
        check_data_exists(path)
        datasets.append(WellWindowDataset(path, split=split, n_steps_input=n_steps_input,
                                          n_steps_output=n_steps_output, dt_stride=dt_stride))
    return datasets


def load_tokeniser(name_or_path: str) -> PhysfmTokeniserModel:
    """The pretrained tokeniser ``--tokeniser`` names (a folder, a training checkpoint or a Hub id), in float32."""
    return load_pretrained(name_or_path, kind="tokeniser", argument="--tokeniser")


def pretrained_processor(name_or_path: str) -> PhysfmFieldProcessor | None:
    """The field processor saved with a pretrained tokeniser; None for a checkpoint saved without one."""
    return load_processor(name_or_path, argument="--tokeniser")


def warn_if_statistics_differ(reference: PhysfmFieldProcessor | None, processor: PhysfmFieldProcessor,
                              source: str) -> None:
    """Warn when the new data's statistics are far from those the tokeniser was pretrained with (mean more than one
    std apart, or std ratio outside [0.5, 2]): the same physical values then reach it scaled differently."""
    if reference is None:
        logger.info("tokeniser %s has no preprocessor_config.json; its training statistics cannot be compared", source)
        return
    far = reference.statistics_differences(processor)
    if far:
        warnings.warn(
            f"dataset {processor.dataset_name!r} has statistics far from those tokeniser {source} was pretrained with "
            f"({reference.dataset_name!r}): {'; '.join(far)}. This run normalises with the new dataset's statistics "
            "(saved as its preprocessor_config.json), so the tokeniser sees these fields scaled differently from "
            "pretraining; expect it to need finetuning (do not freeze it)", stacklevel=3)


def check_tokeniser_fits(config: PhysfmTokeniserConfig, datasets: Sequence, source: str) -> None:
    """Refuse a tokeniser that cannot read ``datasets``: say which fields or dimensions differ."""
    for dataset in datasets:
        where = f"{dataset.dataset_name!r} ({dataset.path})"
        if dataset.n_spatial_dims != config.n_spatial_dims:
            raise ValueError(
                f"tokeniser {source} is {config.n_spatial_dims}-D but dataset {where} is {dataset.n_spatial_dims}-D "
                f"(spatial shape {tuple(dataset.spatial_shape)})"
            )
        missing = [name for name in dataset.field_names if name not in config.field_names]
        if missing:
            raise ValueError(
                f"tokeniser {source} does not know fields {missing} of dataset {where}; its vocabulary is "
                f"{list(config.field_names)} and the data has {list(dataset.field_names)}. Pretrain a tokeniser "
                f"whose --field_names include them"
            )


def _ratio_list(values: Sequence[int] | None, name: str, allowed: Sequence[int], source: str) -> list[int] | None:
    if values is None:
        return None
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"--{name}: {bad} not served by tokeniser {source}, which serves {list(allowed)}")
    return list(values)


class TokeniserTask:
    """Stage 1: autoencoding on one dataset or a mixture, one compression ratio drawn per step."""

    stage = "tokeniser"

    def __init__(self, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments):
        self.seed = training_args.seed
        overrides = model_config_overrides(model_args)
        if model_args.tokeniser == "scratch":
            base = PhysfmTokeniserConfig()  # only for its default ratios
            spatial = model_args.spatial_compression or overrides.get("spatial_compressions") or base.spatial_compressions
            temporal = (model_args.temporal_compression or overrides.get("temporal_compressions")
                        or base.temporal_compressions)
        else:
            base = load_tokeniser(model_args.tokeniser).config
            spatial = _ratio_list(model_args.spatial_compression, "spatial_compression", base.spatial_compressions,
                                  model_args.tokeniser) or base.spatial_compressions
            temporal = _ratio_list(model_args.temporal_compression, "temporal_compression",
                                   base.temporal_compressions, model_args.tokeniser) or base.temporal_compressions
        self.ratios = [(int(s), int(t)) for s in sorted(spatial) for t in sorted(temporal)]
        # One clip length serves every temporal ratio: T = 1 + k*t for all t. The default, 1 + 2*lcm, makes every
        # ratio compress at least two groups of frames, so temporal compression is trained where it bites.
        lcm = math.lcm(*(t for _, t in self.ratios))
        n_frames = data_args.n_steps_input if data_args.n_steps_input is not None else 1 + 2 * lcm
        if (n_frames - 1) % lcm:
            raise ValueError(
                f"--n_steps_input: got {n_frames} frames per clip; with temporal ratios {sorted(temporal)} a clip "
                f"must be 1 + k*{lcm} frames (e.g. {1 + lcm} or {1 + 2 * lcm})"
            )
        self.n_frames = n_frames
        self.train_datasets = _open_datasets(data_args.data, "train", n_frames, 0, data_args.dt_stride)
        self.eval_datasets = _open_datasets(data_args.data, "valid", n_frames, 0, data_args.dt_stride)
        first = self.train_datasets[0]
        for dataset in self.train_datasets[1:]:
            if dataset.n_spatial_dims != first.n_spatial_dims:
                raise ValueError(
                    f"--data: a mixture must share the number of spatial dims; {first.dataset_name!r} is "
                    f"{first.n_spatial_dims}-D, {dataset.dataset_name!r} is {dataset.n_spatial_dims}-D"
                )
        vocabulary = list(model_args.field_names or [])
        for dataset in self.train_datasets:
            vocabulary += [name for name in dataset.field_names if name not in vocabulary]

        if model_args.tokeniser == "scratch":
            settings = {**overrides, "field_names": vocabulary, "n_spatial_dims": first.n_spatial_dims,
                        "periodic": list(first.periodic), "spatial_compressions": sorted(spatial),
                        "temporal_compressions": sorted(temporal)}
            settings.setdefault("default_spatial_compression", base.default_spatial_compression)
            if settings["default_spatial_compression"] not in spatial:
                settings["default_spatial_compression"] = sorted(spatial)[len(spatial) // 2]
            if base.default_temporal_compression not in temporal:
                settings["default_temporal_compression"] = min(temporal)
            self.model = PhysfmTokeniserModel(PhysfmTokeniserConfig(**settings))
        else:
            self.model = load_tokeniser(model_args.tokeniser)
            if self.model.config.n_spatial_dims != first.n_spatial_dims:
                check_tokeniser_fits(self.model.config, self.train_datasets, repr(model_args.tokeniser))
            new = [name for name in vocabulary if name not in self.model.config.field_names]
            if new:  # continuing pretraining on new systems grows the vocabulary
                logger.info("adding fields %s to the tokeniser vocabulary", new)
                self.model.add_fields(new)
        check_tokeniser_fits(self.model.config, self.train_datasets, "being trained")
        self.processor = processor_for_datasets(self.train_datasets)
        if model_args.tokeniser != "scratch":
            reference = pretrained_processor(model_args.tokeniser)
            warn_if_statistics_differ(reference, self.processor, repr(model_args.tokeniser))
            earlier = [] if reference is None else [n for n in reference.field_names if n not in self.processor.field_names]
            if earlier:  # fields of earlier pretraining keep the statistics they were trained with
                self.processor = PhysfmFieldProcessor.union([self.processor, reference.select(earlier)])
        # Record which rows this pretraining trains: a vocabulary may hold fields no dataset here has (made
        # room for a downstream system), and a frozen tokeniser must still train those later.
        config = self.model.config
        if model_args.tokeniser == "scratch":
            trained = set()
        else:
            trained = set(config.field_names if config.trained_field_names is None else config.trained_field_names)
        trained.update(name for dataset in self.train_datasets for name in dataset.field_names)
        config.trained_field_names = [name for name in config.field_names if name in trained]

    def loss(self, model, batch: dict[str, Any], step: int) -> torch.Tensor:
        """The autoencoding loss at the ratio of ``step``: drawn from ``(seed, step)``, so the same on every rank
        and again after a resume."""
        dataset = self.train_datasets[batch["dataset_index"]]
        loss, _ = autoencoding_loss(model, batch["input_fields"], step_generator(self.seed, step),
                                    field_names=dataset.field_names, periodic=list(dataset.periodic),
                                    ratios=self.ratios)
        return loss

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """What is minimised: the log of the MSE, so that every ratio's error counts relative to itself."""
        return ratio_balanced_objective(loss)

    def evaluate(self, model, accelerator, training_args: TrainingArguments, data_args: DataArguments) -> dict:
        return evaluate_tokeniser(model, self.eval_datasets, self.ratios, batch_size=training_args.per_device_eval_batch_size,
                                  max_samples=data_args.max_eval_samples, accelerator=accelerator)

    def flop_probes(self) -> Iterator[tuple[float, dict[str, Any], tuple[int, int]]]:
        """One single-window batch of the largest dataset per ratio, each weighted by its probability.

        Mixture members differ only in their number of fields, which touches only the thin input and
        output projections, so one dataset stands for all of them."""
        index = max(range(len(self.train_datasets)), key=lambda i: len(self.train_datasets[i]))
        batch = {"input_fields": self.train_datasets[index][0]["input_fields"][None], "dataset_index": index}
        for ratio in self.ratios:
            yield 1.0 / len(self.ratios), batch, ratio

    def probe_loss(self, model, batch, ratio) -> torch.Tensor:
        dataset = self.train_datasets[batch["dataset_index"]]
        return model(batch["input_fields"], spatial_compression=ratio[0], temporal_compression=ratio[1],
                     field_names=dataset.field_names, periodic=list(dataset.periodic)).loss


class DynamicsTask:
    """Stage 2: next-frame prediction on one downstream dataset."""

    stage = "dynamics"

    def __init__(self, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments):
        overrides = model_config_overrides(model_args)
        tokeniser_overrides = dict(overrides.pop("tokeniser_config", {}) or {})
        source = model_args.tokeniser
        pretrained = None if source == "scratch" else load_tokeniser(source)
        tok_config = pretrained.config if pretrained is not None else None

        if model_args.spatial_compression:
            overrides["spatial_compression"] = model_args.spatial_compression[0]
        if model_args.temporal_compression:
            overrides["temporal_compression"] = model_args.temporal_compression[0]
        if data_args.n_steps_input is not None:
            overrides["n_steps_input"] = data_args.n_steps_input
        n_in = overrides.get("n_steps_input", PhysfmDynamicsConfig.n_steps_input)
        t = overrides.get("temporal_compression") or (
            tok_config.default_temporal_compression if tok_config else 1)

        path = data_args.data[0]
        self.train_dataset = _open_datasets([path], "train", n_in, t, data_args.dt_stride)[0]
        self.eval_dataset = _open_datasets([path], "valid", n_in, t, data_args.dt_stride)[0]
        self.test_dataset = (_open_datasets([path], "test", n_in, t, data_args.dt_stride)[0]
                             if data_args.eval_test_split else None)
        self.train_datasets = [self.train_dataset]
        self.data_path = path
        self.dt_stride = data_args.dt_stride
        data = self.train_dataset
        overrides.update(field_names=list(data.field_names), periodic=list(data.periodic))
        self.processor = processor_from_dataset(data)

        if pretrained is None:
            tok_settings = {**tokeniser_overrides, "field_names": list(data.field_names),
                            "n_spatial_dims": data.n_spatial_dims, "periodic": list(data.periodic)}
            # A scratch tokeniser serves the ratio the dynamics runs at (plus any listed in tokeniser_config,
            # e.g. to match the architecture of a pretrained one exactly).
            s = overrides.get("spatial_compression")
            if s is not None:
                tok_settings["spatial_compressions"] = sorted({*tok_settings.get("spatial_compressions", []), s})
                tok_settings["default_spatial_compression"] = s
            if overrides.get("temporal_compression") is not None:
                tok_settings["temporal_compressions"] = sorted({*tok_settings.get("temporal_compressions", []), t})
                tok_settings["default_temporal_compression"] = t
            config = PhysfmDynamicsConfig(tokeniser_config=PhysfmTokeniserConfig(**tok_settings), **overrides)
            self.model = PhysfmDynamicsModel(config)
        else:
            if tokeniser_overrides:
                raise ValueError(
                    f"--model_config: 'tokeniser_config' overrides {sorted(tokeniser_overrides)} cannot change the "
                    f"pretrained tokeniser {source!r}; drop them or use --tokeniser scratch"
                )
            new = [name for name in data.field_names if name not in tok_config.field_names]
            if new:  # like new tokens: a frozen tokeniser still trains them (see PhysfmDynamicsModel.freeze_tokeniser)
                logger.info("adding fields %s, which tokeniser %s has never seen, to its vocabulary", new, source)
                pretrained.add_fields(new)
            check_tokeniser_fits(tok_config, [data], repr(source))
            for key, allowed in (("spatial_compression", tok_config.spatial_compressions),
                                 ("temporal_compression", tok_config.temporal_compressions)):
                if overrides.get(key) is not None and overrides[key] not in allowed:
                    raise ValueError(
                        f"--{key}: {overrides[key]} is not served by tokeniser {source!r}, which serves {allowed}"
                    )
            warn_if_statistics_differ(pretrained_processor(source), self.processor, repr(source))
            self.model = PhysfmDynamicsModel.from_tokeniser(pretrained, overrides,
                                                           freeze_tokeniser=model_args.freeze_tokeniser)
            self.model.config.tokeniser_name_or_path = source
        self.rollout_horizons = list(training_args.rollout_horizons)
        self.max_rollout_samples = data_args.max_rollout_samples

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def loss(self, model, batch: dict[str, Any], step: int) -> torch.Tensor:
        return model(input_fields=batch["input_fields"], output_fields=batch["output_fields"],
                     field_names=self.train_dataset.field_names, periodic=list(self.train_dataset.periodic)).loss

    def evaluate(self, model, accelerator, training_args: TrainingArguments, data_args: DataArguments) -> dict:
        """Valid-split metrics, plus the same on test as ``test_<key>`` when the test split is scored."""
        metrics = {}
        for prefix, dataset in (("", self.eval_dataset), ("test_", self.test_dataset)):
            if dataset is not None:
                scores = evaluate_dynamics(model, dataset, batch_size=training_args.per_device_eval_batch_size,
                                           max_samples=data_args.max_eval_samples, accelerator=accelerator)
                metrics.update({f"{prefix}{key}": value for key, value in scores.items()})
        return metrics

    def final_rollout(self, model, accelerator, batch_size: int):
        split = "valid" if self.test_dataset is None else "test"
        return rollout_metrics(model, self.data_path, self.rollout_horizons, split=split,
                               max_samples=self.max_rollout_samples, dt_stride=self.dt_stride,
                               batch_size=batch_size, accelerator=accelerator, return_example=True)

    def flop_probes(self):
        sample = self.train_dataset[0]
        batch = {"input_fields": sample["input_fields"][None], "output_fields": sample["output_fields"][None],
                 "dataset_index": 0}
        yield 1.0, batch, None

    def probe_loss(self, model, batch, ratio) -> torch.Tensor:
        return self.loss(model, batch, 0)


def build_task(data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments):
    task_class = TokeniserTask if training_args.stage == "tokeniser" else DynamicsTask
    return task_class(data_args, model_args, training_args)
