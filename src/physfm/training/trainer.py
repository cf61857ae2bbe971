"""The accelerate training loop shared by both stages.

``train(...)`` is the in-process API (``physfm train``, ``scripts/train.py`` and the experiment all
call it). One call is one run: it builds a fresh :class:`accelerate.Accelerator`, trains for
``max_steps`` optimisation steps, evaluates every ``eval_steps``, checkpoints every ``save_steps``
and returns a :class:`TrainingResult`. Calling it many times in one process is safe: accelerate's
singleton state is reset before and after every run.

Reproducibility: model init is seeded; the data order and the tokeniser stage's compression ratio
are pure functions of ``(seed, step)`` (:mod:`.sampling`); checkpoints hold every rank's RNG
state. A run resumed from ``checkpoint-k`` therefore computes the same losses and final weights as
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm
from transformers import get_scheduler

from .._io import atomic_write_json
from ..models.input_checks import NonFiniteError, finite_checks
from .arguments import DataArguments, ModelArguments, TrainingArguments, args_to_dict, from_kwargs
from .checkpointing import (
    latest_checkpoint,
    list_checkpoints,
    read_trainer_state,
    remove_stale_temp_dirs,
    resolve_checkpoint,
    save_checkpoint,
)
from .cpu_memory import keep_freed_memory
from .curves import write_learning_curve
from .evaluation import plot_rollout
from .sampling import GlobalBatchPlan, rank_micro_batches
from .tasks import build_task

logger = logging.getLogger("physfm.training")


class NonFiniteLossError(NonFiniteError):
    """The training loss or gradient became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclass
class TrainingResult:
    """What a run produced. ``history`` holds one entry per evaluation, e.g. for stage dynamics
    ``{"step", "vrmse", "spectral_mse_low", "spectral_mse_mid", "spectral_mse_high", "loss", ...}``
    (physical units). ``rollout_vrmse`` maps horizon (frames) to VRMSE (stage dynamics only).
    ``compute``: ``steps``, ``flops_per_step``, ``total_flops`` (FlopCounterMode estimate of the
    optimisation steps actually run, resumed ones included), ``samples_seen``, ``global_batch_size``,
    ``world_size``, ``train_time_s``, ``samples_per_second``."""

    stage: str
    output_dir: str
    steps: int
    history: list[dict[str, float]]
    train_log: list[dict[str, float]]
    rollout_vrmse: dict[int, float]
    compute: dict[str, float]
    parameter_hashes: list[str]
    last_checkpoint: str | None
    metrics_path: str
    model_dir: str = field(default="")

    @property
    def total_flops(self) -> float:
        return float(self.compute.get("total_flops", 0.0))

    def series(self, key: str) -> list[float]:
        """One metric across evaluations, e.g. ``result.series("vrmse")``."""
        return [entry[key] for entry in self.history]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide singletons so the next Accelerator starts clean.

    The distributed ``PartialState`` is kept: it owns the process group of a launched job."""
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_mixed_precision(mixed_precision: str, device: torch.device) -> None:
    if device.type != "cpu" or mixed_precision == "no":
        return
    if mixed_precision == "fp16":
        raise ValueError("--mixed_precision fp16: needs a GPU; this run is on the CPU. Use --mixed_precision no")
    if not cpu_has_native_bf16():
        raise ValueError(
            "--mixed_precision bf16: this CPU has no native bf16 instructions (no avx512_bf16/amx_bf16), where "
            "bf16 autocast was measured 80-550x slower than fp32. Use --mixed_precision no on this machine"
        )
    warnings.warn("bf16 autocast on a CPU is often slower than fp32; measure before relying on it", stacklevel=3)


def parameter_hash(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in name order: equal across ranks iff DDP is in sync."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def measure_flops(task, model: torch.nn.Module, device: torch.device) -> float:
    """FLOPs of forward + backward for one training window (weighted over datasets and ratios).

    Runs on the bare model before DDP wrapping, with the RNGs forked, and drops the gradients: it
    changes nothing a resumed run could notice."""
    total = 0.0
    model.to(device)
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        model.train()
        for weight, batch, ratio in task.flop_probes():
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with FlopCounterMode(display=False) as counter:
                task.probe_loss(model, batch, ratio).backward()
            total += weight * counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return total


class _WindowPairs(Dataset):
    """Index a list of datasets by ``(dataset, window)`` pairs (the sampler yields those)."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, pair: tuple[int, int]) -> dict[str, Any]:
        dataset, index = pair
        item = self.datasets[dataset][index]
        return {"input_fields": item["input_fields"], "output_fields": item["output_fields"], "dataset_index": dataset}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "input_fields": torch.stack([item["input_fields"] for item in items]),
        "output_fields": torch.stack([item["output_fields"] for item in items]),
        "dataset_index": items[0]["dataset_index"],
    }


class _MicroBatchSampler:
    """This rank's micro-batches from ``start_step`` on (an iterable DataLoader batch sampler)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __iter__(self):
        return rank_micro_batches(**self.kwargs)


def _save_final_model(model, output_dir: Path, processor=None) -> None:
    """``save_pretrained`` (model, and its field processor) into a temp dir, then move each file into
    ``output_dir`` atomically."""
    tmp = output_dir / f".tmp-model-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if processor is not None:
        processor.save_pretrained(tmp)
    for item in tmp.iterdir():
        os.replace(item, output_dir / item.name)
    tmp.rmdir()


def _tracker_config(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in args.items()}


def train(data_args: DataArguments | None = None, model_args: ModelArguments | None = None,
          training_args: TrainingArguments | None = None, **kwargs: Any) -> TrainingResult:
    """Run one training stage and return its :class:`TrainingResult`.

    Either pass the three argument dataclasses (as parsed by :func:`physfm.training.parse_args`) or
    flat keyword arguments with the command-line names::

        result = train(stage="dynamics", data=["data/shear_flow"], output_dir="runs/frozen",
                       tokeniser="runs/tokeniser", freeze_tokeniser=True, max_steps=500,
                       eval_steps=100, learning_rate=1e-3, model_config={"hidden_size": 64})
    """
    if data_args is None and model_args is None and training_args is None:
        data_args, model_args, training_args = from_kwargs(**kwargs)
    elif kwargs or None in (data_args, model_args, training_args):
        raise ValueError("train(): pass either all three argument dataclasses or keyword arguments, not a mix")
    reset_accelerate_state()
    try:
        return _Run(data_args, model_args, training_args).run()
    finally:
        reset_accelerate_state()


def _warn_schedule_changes(previous_args: Path, args: TrainingArguments, checkpoint) -> None:
    """A resume restores the optimiser and scheduler: new learning-rate settings would be silently ignored."""
    if not previous_args.is_file():
        return
    previous = json.loads(previous_args.read_text())
    changed = [f"--{key} {previous[key]} -> {getattr(args, key)}"
               for key in ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay")
               if key in previous and previous[key] != getattr(args, key)]
    if changed:
        warnings.warn(f"resuming {checkpoint} keeps its optimiser and learning-rate schedule, so {', '.join(changed)} "
                      "is not applied; start a new run (no --resume_from_checkpoint) to train with it",
                      stacklevel=3)


class _Run:
    """One training run, from an empty (or resumable) ``output_dir`` to the final model and ``metrics.json``.

    :meth:`run` sets up (:meth:`_run`: accelerator, task, optimiser, checkpoint to resume), trains
    (:meth:`_loop`: per optimisation step :meth:`_step`, then logging, evaluation and checkpoints on their
    schedules) and writes the outputs (:meth:`_finish`). A run that fails before writing anything but its
    arguments removes the folder it created.
    """

    def __init__(self, data_args: DataArguments, model_args: ModelArguments, training_args: TrainingArguments):
        self.data_args, self.model_args, self.args = data_args, model_args, training_args
        self.output_dir = Path(training_args.output_dir)
        self.last_checkpoint: str | None = None  # what a diverged run can be resumed from

    # ------------------------------------------------------------------------------------------ set-up
    def _resume_point(self) -> Path | None:
        args = self.args
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, self.output_dir)
        existing = list_checkpoints(self.output_dir)
        if checkpoint is None and existing and not args.overwrite_output_dir:
            raise ValueError(
                f"--output_dir: {str(self.output_dir)!r} already holds checkpoints "
                f"({', '.join(p.name for _, p in existing)}); pass --resume_from_checkpoint latest to continue "
                f"or --overwrite_output_dir to start again"
            )
        return checkpoint

    def run(self) -> TrainingResult:
        created = not self.output_dir.exists()
        try:
            return self._run()
        except BaseException:
            # A run that failed before writing anything but its arguments leaves no folder that looks like a run.
            if created and self.output_dir.is_dir() and {p.name for p in self.output_dir.iterdir()} <= {
                    "training_args.json"}:
                shutil.rmtree(self.output_dir, ignore_errors=True)
            raise

    def _run(self) -> TrainingResult:
        args, data_args = self.args, self.data_args
        checkpoint = self._resume_point()
        # A ratio runs the tokeniser's pyramid down to its own exit level only: the other ratios' latent heads and
        # deeper levels get no gradient that step, in both stages.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_dir=str(self.output_dir),
            step_scheduler_with_optimizer=False,  # one scheduler step per optimisation step, any world size
            kwargs_handlers=[ddp],
        )
        self.accelerator = accelerator
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != accelerator.num_processes:
            # accelerate 1.15 on a machine without GPUs: `--multi_gpu` without ACCELERATE_USE_CPU=1 starts
            # unsynchronised copies that each think they are rank 0 and would overwrite each other's files.
            raise ValueError(
                f"the launcher started {launched} processes but accelerate sees {accelerator.num_processes}; on "
                f"CPUs launch with ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {launched} "
                f"(or --config_file examples/accelerate/cpu_ddp.yaml)"
            )
        check_mixed_precision(args.mixed_precision, accelerator.device)
        if args.keep_freed_memory and accelerator.device.type == "cpu":
            keep_freed_memory()
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if args.overwrite_output_dir and checkpoint is None:
                for _, old in list_checkpoints(self.output_dir):
                    shutil.rmtree(old)
            remove_stale_temp_dirs(self.output_dir)
            if checkpoint is not None:
                _warn_schedule_changes(self.output_dir / "training_args.json", args, checkpoint)
            atomic_write_json(self.output_dir / "training_args.json",
                              args_to_dict(data_args, self.model_args, args))
        accelerator.wait_for_everyone()

        set_seed(args.seed)  # identical initial weights on every rank
        task = build_task(data_args, self.model_args, args)
        model = task.model
        world = accelerator.num_processes
        global_batch = args.per_device_train_batch_size * world * args.gradient_accumulation_steps
        n_windows = sum(len(dataset) for dataset in task.train_datasets)
        if global_batch > n_windows:
            warnings.warn(f"the global batch ({global_batch} windows) is larger than the training data ({n_windows} "
                          "windows): every step repeats windows. Lower --per_device_train_batch_size or add data",
                          stacklevel=2)
        flops_per_window = measure_flops(task, model, accelerator.device) if args.count_flops else 0.0

        trainable = [p for p in model.parameters() if p.requires_grad]  # a frozen tokeniser gets no state
        optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                      weight_decay=args.weight_decay)
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps,
                                  num_training_steps=args.max_steps)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        set_seed(args.seed, device_specific=True)  # dropout streams differ per rank

        state: dict[str, Any] = {"step": 0, "train_log": [], "eval_log": [], "train_time_s": 0.0,
                                 "samples_seen": 0, "total_flops": 0.0, "global_batch_size": global_batch}
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            state.update(read_trainer_state(checkpoint))
            if state["global_batch_size"] != global_batch:
                warnings.warn(
                    f"resuming {checkpoint} with a global batch of {global_batch} windows; it was trained with "
                    f"{state['global_batch_size']}, so the data order from here on differs", stacklevel=2)
                state["global_batch_size"] = global_batch
            logger.info("resumed from %s at step %d", checkpoint, state["step"])
        elif args.resume_from_checkpoint == "latest":
            logger.info("no checkpoint in %s yet; starting from step 0", self.output_dir)

        if args.report_to != "none":
            accelerator.init_trackers(args.run_name or self.output_dir.name,
                                      config=_tracker_config(args_to_dict(data_args, self.model_args, args)))
        try:
            result = self._loop(task, model, optimizer, scheduler, trainable, state, checkpoint,
                                flops_per_window * global_batch)
        except KeyboardInterrupt:
            last = latest_checkpoint(self.output_dir)
            resume = (f"the last checkpoint is {last}; resume with --resume_from_checkpoint latest" if last else
                      "no checkpoint was saved yet (--save_steps sets how often)")
            raise KeyboardInterrupt(f"training stopped by the user; {resume}") from None
        finally:
            if args.report_to != "none":
                accelerator.end_training()
        return result

    # ------------------------------------------------------------------------------------------- loop
    def _loop(self, task, model, optimizer, scheduler, trainable, state, checkpoint, flops_per_step: float):
        args, accelerator = self.args, self.accelerator
        start_step = state["step"]
        batches = self._batches(task, state["global_batch_size"], start_step)
        self.last_checkpoint = str(checkpoint) if checkpoint is not None else None
        with tqdm(total=args.max_steps, initial=start_step, desc=f"train {args.stage}",
                  disable=args.disable_tqdm or not accelerator.is_local_main_process, dynamic_ncols=True) as progress:
            for step in range(start_step, args.max_steps):
                tic = time.perf_counter()
                value = self._step(task, model, trainable, batches, step)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                done = step + 1
                state["step"] = done
                state["samples_seen"] += state["global_batch_size"]
                state["total_flops"] += flops_per_step
                state["train_time_s"] += time.perf_counter() - tic
                progress.update(1)
                if done % max(args.logging_steps, 1) == 0 or done in (1, args.max_steps):
                    self._log_loss(state, value, float(scheduler.get_last_lr()[0]), progress)
                if (args.eval_steps > 0 and done % args.eval_steps == 0) or done == args.max_steps:
                    self._evaluate(task, model, state, progress)
                if (args.save_steps > 0 and done % args.save_steps == 0) or done == args.max_steps:
                    unwrapped = accelerator.unwrap_model(model)
                    self.last_checkpoint = str(save_checkpoint(accelerator, self.output_dir, done, state,
                                                               model_config=unwrapped.config,
                                                               save_total_limit=args.save_total_limit,
                                                               processor=task.processor))
        return self._finish(task, model, state, self.last_checkpoint, flops_per_step)

    def _batches(self, task, global_batch_size: int, start_step: int):
        """This rank's micro-batches from ``start_step`` on: a pure function of ``(seed, step)``."""
        args, accelerator = self.args, self.accelerator
        plan = GlobalBatchPlan([len(d) for d in task.train_datasets], global_batch_size, args.seed)
        sampler = _MicroBatchSampler(plan=plan, start_step=start_step, max_steps=args.max_steps,
                                     per_device_batch_size=args.per_device_train_batch_size,
                                     accumulation_steps=args.gradient_accumulation_steps,
                                     rank=accelerator.process_index, world_size=accelerator.num_processes)
        loader = DataLoader(_WindowPairs(task.train_datasets), batch_sampler=sampler, collate_fn=_collate,
                            num_workers=self.data_args.dataloader_num_workers,
                            # Its own generator: creating the iterator must not draw from the global RNG,
                            # which a resumed run has just restored (dropout would shift by one draw).
                            generator=torch.Generator().manual_seed(args.seed))
        return iter(loader)

    def _step(self, task, model, trainable, batches, step: int) -> float:
        """Forward and backward over one step's micro-batches, then gradient clipping; returns the step's loss
        (mean over ranks). Raises :class:`NonFiniteLossError` before the update when anything is not finite."""
        args, accelerator = self.args, self.accelerator
        device, accum = accelerator.device, args.gradient_accumulation_steps
        model.train()
        step_loss = torch.zeros((), device=device)
        for micro in range(accum):
            batch = next(batches)
            batch["input_fields"] = batch["input_fields"].to(device, non_blocking=True)
            batch["output_fields"] = batch["output_fields"].to(device, non_blocking=True)
            # Only the last micro-batch all-reduces gradients.
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
            # The data was checked finite on load and the loss is checked below: the models' own NaN check, a
            # device synchronisation per forward, is skipped.
            with sync, finite_checks(False):
                with accelerator.autocast():
                    loss = task.loss(model, batch, step)
                accelerator.backward(task.objective(loss) / accum)
            step_loss += loss.detach().float() / accum
        if accelerator.num_processes > 1:
            step_loss = accelerator.reduce(step_loss, reduction="mean")
        value = float(step_loss)
        if not math.isfinite(value):
            raise self._diverged(step + 1, f"the training loss is {value}")
        if args.max_grad_norm and args.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(trainable, args.max_grad_norm))
            if not math.isfinite(grad_norm):
                raise self._diverged(step + 1, f"the gradient norm is {grad_norm}")
        return value

    def _log_loss(self, state, loss: float, lr: float, progress) -> None:
        entry = {"step": state["step"], "loss": loss, "lr": lr}
        state["train_log"].append(entry)
        progress.set_postfix(loss=f"{loss:.4g}")
        if self.args.report_to != "none":
            self.accelerator.log({"train/loss": loss, "train/lr": lr}, step=state["step"])

    def _evaluate(self, task, model, state, progress) -> None:
        """Score valid (and test, when asked) now; keep the learning-curve CSV current."""
        args, accelerator, done = self.args, self.accelerator, state["step"]
        metrics = task.evaluate(accelerator.unwrap_model(model), accelerator, args, self.data_args)
        state["eval_log"].append({"step": done, **metrics})
        if args.report_to != "none":
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=done)
        if accelerator.is_main_process:
            # The CSV is cheap and always current; the PNG is drawn once, at the end.
            write_learning_curve(self.output_dir, state["train_log"], state["eval_log"], plot=False)
            logger.info("step %d: valid vrmse %.4g", done, metrics["vrmse"])
            if not progress.disable:
                progress.write(f"step {done}: valid vrmse {metrics['vrmse']:.4g}")

    def _diverged(self, step: int, what: str) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"training diverged at step {step} (stage {self.args.stage}): {what}; stopped before applying that "
            f"update. Last good checkpoint: {self.last_checkpoint or 'none (no checkpoint saved yet)'}. Lower "
            f"--learning_rate or raise --warmup_steps, then resume with --resume_from_checkpoint"
        )

    # ----------------------------------------------------------------------------------------- outputs
    def _finish(self, task, model, state, last_checkpoint, flops_per_step: float) -> TrainingResult:
        args, accelerator = self.args, self.accelerator
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        rollout: dict[int, float] = {}
        if args.stage == "dynamics":
            rollout, example = task.final_rollout(unwrapped, accelerator, args.per_device_eval_batch_size)
            if accelerator.is_main_process and example is not None:
                truth, prediction, names = example
                plot_rollout(truth, prediction, self.output_dir / "rollout.png", field_names=names)
        hashes = gather_object([parameter_hash(unwrapped)])
        if not state["eval_log"] or state["eval_log"][-1]["step"] != state["step"]:
            metrics = task.evaluate(unwrapped, accelerator, args, self.data_args)
            state["eval_log"].append({"step": state["step"], **metrics})
        compute = {
            "steps": state["step"],
            "flops_per_step": flops_per_step,
            "total_flops": state["total_flops"],
            "samples_seen": state["samples_seen"],
            "global_batch_size": state["global_batch_size"],
            "world_size": accelerator.num_processes,
            "train_time_s": state["train_time_s"],
            "samples_per_second": state["samples_seen"] / max(state["train_time_s"], 1e-9),
        }
        metrics_path = self.output_dir / "metrics.json"
        result = TrainingResult(
            stage=args.stage, output_dir=str(self.output_dir), steps=state["step"], history=state["eval_log"],
            train_log=state["train_log"], rollout_vrmse=rollout, compute=compute, parameter_hashes=hashes,
            last_checkpoint=last_checkpoint, metrics_path=str(metrics_path), model_dir=str(self.output_dir),
        )
        if accelerator.is_main_process:
            _save_final_model(unwrapped, self.output_dir, task.processor)
            payload = result.to_dict()
            payload["final"] = state["eval_log"][-1]
            payload["rollout_vrmse"] = {str(h): v for h, v in rollout.items()}
            atomic_write_json(metrics_path, payload)
            write_learning_curve(self.output_dir, state["train_log"], state["eval_log"])
        accelerator.wait_for_everyone()
        return result
