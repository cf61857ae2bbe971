"""Orchestration: the experiment as a graph of jobs (simulate, check, pretrain, train), run by a small process pool.

Jobs of one seed ``k`` (every name ends in ``@k``) and what they wait for::

    data:downstream ─┬─▶ leakage (refuses near-copies) ─▶ every training job
    data:in_domain ──┤─▶ tokeniser:in_domain ───┬─▶ in_domain_{frozen,finetuned}, scratch_compute_matched
    data:<other> ────┘─▶ tokeniser:cross_domain ─┼─▶ cross_domain_{frozen,finetuned}
    data:downstream ───▶ tokeniser:same_data ────┴─▶ same_data_finetuned          (train split only)
    data:downstream ───▶ reference:{persistence,linear_extrapolation} (valid and test)

Seed 0 trains every configuration at every learning rate of the preset (``<configuration>@lr<rate>@0``); the
best final valid VRMSE picks each configuration's rate, and the other seeds train each configuration once, at
that rate. The compute-matched scratch run trains at scratch's rate for ``max_steps`` plus as many steps as the
in-domain tokeniser's pretraining cost in FLOPs.

A finished run is reused when the experiment is run again into the same directory with the same settings
(its ``experiment_job.json`` and ``metrics.json`` are checked), so an interrupted experiment resumes where
it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from .data import simulate_cached
from .presets import CONFIGURATIONS, TOKENISERS, ExperimentPreset, clip_frames

logger = logging.getLogger("physfm.experiment")

JOB_FILE = "experiment_job.json"


@dataclass
class Job:
    """One unit of work: ``build(results)`` turns the results of its dependencies into its arguments."""

    name: str
    kind: str  # "data" | "leakage" | "train" | "reference" | "reconstruction"
    deps: tuple[str, ...]
    build: Callable[[dict[str, Any]], dict[str, Any]]


# ---------------------------------------------------------------------------------------------- workers
def _init_worker(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def execute(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one job (in a worker process or inline) and return a small JSON-able summary."""
    if kind == "data":
        return _execute_data(**kwargs)
    if kind == "leakage":
        return _execute_leakage(**kwargs)
    if kind == "train":
        return _execute_train(kwargs)
    if kind == "reference":
        return _execute_reference(**kwargs)
    if kind == "reconstruction":
        return _execute_reconstruction(**kwargs)
    raise ValueError(f"unknown job kind {kind!r}")


def _execute_data(data: dict[str, Any], cache_dir: str, device: str, progress: bool = False) -> dict[str, Any]:
    from .presets import DataSpec

    data = DataSpec(**{**data, "resolution": tuple(data["resolution"]),
                       "split_fractions": tuple(data["split_fractions"])})
    tic = time.perf_counter()
    path = simulate_cached(data, cache_dir, device, progress)
    return {"path": str(path), "seed": data.seed, "system": data.system, "wall_time_s": time.perf_counter() - tic}


def _execute_leakage(comparisons: list[dict[str, list]], n_frames: int, dt_stride: int) -> dict[str, Any]:
    """Each comparison's held-out clips against its seen ones; the closest pair of all decides."""
    from .leakage import check_leakage, first_clips, measure_leakage

    tic = time.perf_counter()
    reports = []
    for comparison in comparisons:
        held_out = [c for path, splits in comparison["held_out"] for c in first_clips(path, splits, n_frames, dt_stride)]
        seen = [c for path, splits in comparison["seen"]
                for c in first_clips(path, splits, n_frames, dt_stride, missing_ok=True)]
        reports.append(measure_leakage(held_out, seen))
    report = min(reports, key=lambda r: r["min_vrmse"])
    check_leakage(report)
    return {**report, "n_held_out": reports[0]["n_held_out"], "n_seen": reports[0]["n_seen"], "n_frames": n_frames,
            "dt_stride": dt_stride, "wall_time_s": time.perf_counter() - tic}


def _execute_reference(data_dir: str, **kwargs: Any) -> dict[str, Any]:
    from physfm.training.evaluation import reference_metrics

    tic = time.perf_counter()
    metrics = {}
    for split in ("valid", "test"):
        scores = reference_metrics(data_dir, split=split, **kwargs)
        scores["rollout_vrmse"] = {str(k): v for k, v in scores["rollout_vrmse"].items()}
        metrics[split] = scores
    return {"metrics": metrics, "wall_time_s": time.perf_counter() - tic}


def _execute_reconstruction(model_dir: str, data_dir: str, spatial_compression: int, temporal_compression: int,
                            dt_stride: int, max_samples: int) -> dict[str, Any]:
    """A tokeniser's reconstruction of the downstream valid split: the floor a frozen tokeniser puts under the
    dynamics error. Only the fields it has learnt count (the cross-domain one never saw the tracer)."""
    from physfm.reconstruction import evaluate_reconstruction

    tic = time.perf_counter()
    result = evaluate_reconstruction(model_dir, data_dir, "valid", max_samples=max_samples, dt_stride=dt_stride,
                                     compressions=[(spatial_compression, temporal_compression)])[0]
    return {"fields": list(result.vrmse_per_field), "vrmse": result.vrmse,
            "wall_time_s": time.perf_counter() - tic}


def _summary_from_metrics(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": payload["stage"],
        "steps": payload["steps"],
        "history": payload["history"],
        "rollout_vrmse": {str(k): v for k, v in payload.get("rollout_vrmse", {}).items()},
        "compute": payload["compute"],
        "model_dir": payload.get("model_dir") or payload["output_dir"],
    }


def _execute_train(kwargs: dict[str, Any]) -> dict[str, Any]:
    from physfm.training import train

    output_dir = Path(kwargs["output_dir"])
    job_file, metrics = output_dir / JOB_FILE, output_dir / "metrics.json"
    if job_file.is_file() and metrics.is_file() and json.loads(job_file.read_text()) == kwargs:
        summary = _summary_from_metrics(json.loads(metrics.read_text()))
        summary.update(reused=True, wall_time_s=0.0)
        return summary
    tic = time.perf_counter()
    result = train(**kwargs, overwrite_output_dir=True)
    summary = _summary_from_metrics({**result.to_dict(), "rollout_vrmse": result.rollout_vrmse})
    summary.update(reused=False, wall_time_s=time.perf_counter() - tic)
    atomic_write_json(job_file, kwargs, sort_keys=True)  # written last: its presence marks the run as complete
    return summary


# ------------------------------------------------------------------------------------------------ graph
def sweep_name(configuration: str, lr: float) -> str:
    """The seed-0 run of ``configuration`` at learning rate ``lr``."""
    return f"{configuration}@lr{lr:g}@0"


def swept_configurations(preset: ExperimentPreset) -> list[str]:
    """Configurations that get the learning-rate sweep: all but compute-matched scratch, which takes scratch's."""
    return [name for name in preset.configurations if name != "scratch_compute_matched"]


def best_learning_rate(preset: ExperimentPreset, results: dict[str, Any], configuration: str) -> float:
    """The swept rate with the lowest final valid VRMSE for ``configuration`` (ties: the smaller rate)."""
    final = {lr: results[sweep_name(configuration, lr)]["history"][-1]["vrmse"] for lr in preset.learning_rates}
    return min(final, key=lambda lr: (final[lr] if math.isfinite(final[lr]) else math.inf, lr))


def build_jobs(preset: ExperimentPreset, out: Path, cache_dir: Path, device: str, progress: bool) -> list[Job]:
    """The experiment's jobs in priority order (a ready job earlier in the list starts first)."""
    jobs = [job for seed in range(preset.n_seeds)
            for job in _SeedGraph(preset, seed, out / "runs" / f"seed{seed}", cache_dir, device, progress).jobs()]

    # Tokenisers first (most runs wait for one), then the long compute-matched runs, so the pool's last minutes
    # are not one long job on one core; the cheap evaluations fill the gaps.
    def priority(job: Job) -> tuple[int, int]:
        if job.kind == "train":
            return 2, 0 if job.name.startswith("tokeniser:") else 1 if "compute_matched" in job.name else 2
        return {"data": 0, "leakage": 1}.get(job.kind, 3), 0

    return sorted(jobs, key=priority)


class _SeedGraph:
    """The jobs of one seed: its data, the leakage check, the tokenisers, the dynamics runs and the references.

    Every name ends in ``@<seed>``; seed 0 also runs the learning-rate sweep whose choices the other seeds use.
    """

    def __init__(self, preset: ExperimentPreset, seed: int, runs: Path, cache_dir: Path, device: str,
                 progress: bool):
        self.preset, self.seed, self.runs, self.cache_dir, self.device = preset, seed, runs, cache_dir, device
        self.at = f"@{seed}"
        self.show = progress and preset.workers == 1  # per-run bars only when runs do not interleave
        wanted = set(preset.configurations)
        self.tokenisers = {TOKENISERS[name] for name in wanted if name in TOKENISERS}
        if "scratch_compute_matched" in wanted:
            self.tokenisers.add("in_domain")
        self.cross_names = [f"data:{data.system}" for data in preset.cross_domain]
        # The same-data tokeniser trains on the downstream train split only: two-stage training without more data.
        self.tokeniser_data = {"in_domain": ["data:in_domain"], "cross_domain": self.cross_names,
                               "same_data": ["data:downstream"]}
        self.checked = ("leakage" + self.at,)  # no model trains on data that failed the check
        self.common = {
            "seed": preset.seed + seed,
            "dt_stride": preset.dt_stride,
            "lr_scheduler_type": preset.lr_scheduler_type,
            "warmup_steps": preset.warmup_steps,
            "max_eval_samples": preset.max_eval_samples,
            "save_steps": 0,  # one checkpoint, at the end
            "save_total_limit": 1,
            "logging_steps": max(1, preset.eval_steps // 5),
            "disable_tqdm": not self.show,
        }
        self.tokeniser_arch = {
            **preset.tokeniser_config,
            "spatial_compressions": sorted({*preset.pretrain_spatial_compressions, preset.spatial_compression}),
            "temporal_compressions": sorted({*preset.pretrain_temporal_compressions, preset.temporal_compression}),
        }

    def path(self, results: dict[str, Any], name: str) -> str:
        return results[name + self.at]["path"]

    def jobs(self) -> list[Job]:
        jobs = self.data_jobs() + [self.leakage_job()]
        for configuration in swept_configurations(self.preset):
            jobs += self.dynamics_jobs(configuration)
        if "scratch_compute_matched" in self.preset.configurations:
            jobs.append(self.compute_matched_job())
        jobs += [self.reference_job(forecaster) for forecaster in ("persistence", "linear_extrapolation")]
        for key in sorted(self.tokenisers):
            jobs += [self.tokeniser_job(key), self.reconstruction_job(key)]
        return jobs

    # ------------------------------------------------------------------------------------------- data
    def data_jobs(self) -> list[Job]:
        datasets = [("data:downstream", self.preset.downstream), ("data:in_domain", self.preset.in_domain)]
        if "cross_domain" in self.tokenisers:
            datasets += list(zip(self.cross_names, self.preset.cross_domain, strict=True))
        jobs = []
        for name, data in datasets:
            kwargs = {"data": dataclasses.asdict(data.for_seed(self.seed)), "cache_dir": str(self.cache_dir),
                      "device": self.device, "progress": self.show}
            jobs.append(Job(name + self.at, "data", (), lambda results, kwargs=kwargs: kwargs))
        return jobs

    def leakage_job(self) -> Job:
        def build(results):
            downstream, in_domain = self.path(results, "data:downstream"), self.path(results, "data:in_domain")
            # Test is also held out from valid, on which the learning rates are chosen.
            return {"comparisons": [
                        {"held_out": [(downstream, ["valid", "test"])],
                         "seen": [(downstream, ["train"]), (in_domain, ["train", "valid", "test"])]},
                        {"held_out": [(downstream, ["test"])], "seen": [(downstream, ["valid"])]}],
                    "n_frames": clip_frames(self.preset), "dt_stride": self.preset.dt_stride}

        # The in-domain data is simulated and checked even when no configuration uses it: cheap, and conservative.
        return Job("leakage" + self.at, "leakage", ("data:downstream" + self.at, "data:in_domain" + self.at), build)

    # ------------------------------------------------------------------------------------------ training
    def tokeniser_job(self, key: str) -> Job:
        preset = self.preset

        # A downstream field no pretraining system has (shear_flow's tracer, for the cross-domain tokeniser) is
        # added to the vocabulary by the dynamics stage, and trained there even when the tokeniser is frozen.
        def build(results):
            return {**self.common, "stage": "tokeniser",
                    "data": [self.path(results, d) for d in self.tokeniser_data[key]],
                    "output_dir": str(self.runs / f"tokeniser_{key}"), "max_steps": preset.tokeniser_steps,
                    "eval_steps": preset.tokeniser_steps, "learning_rate": preset.tokeniser_learning_rate,
                    "per_device_train_batch_size": preset.tokeniser_batch_size,
                    "per_device_eval_batch_size": preset.tokeniser_batch_size,
                    "n_steps_input": clip_frames(preset),  # the clips the dynamics model encodes and decodes
                    "spatial_compression": list(preset.pretrain_spatial_compressions),
                    "temporal_compression": list(preset.pretrain_temporal_compressions),
                    "model_config": {k: v for k, v in self.tokeniser_arch.items()
                                     if k not in ("spatial_compressions", "temporal_compressions")}}

        deps = (*[d + self.at for d in self.tokeniser_data[key]], *self.checked)
        return Job(f"tokeniser:{key}{self.at}", "train", deps, build)

    def dynamics_kwargs(self, results, run_name: str, configuration: str, learning_rate: float,
                        max_steps: int) -> dict[str, Any]:
        preset = self.preset
        model_config = dict(preset.dynamics_config)
        key = TOKENISERS.get(configuration)
        if key is None:
            model_config["tokeniser_config"] = self.tokeniser_arch  # the pretrained ones' architecture exactly
        return {**self.common, "stage": "dynamics", "data": [self.path(results, "data:downstream")],
                "output_dir": str(self.runs / run_name), "max_steps": max_steps, "eval_steps": preset.eval_steps,
                "learning_rate": learning_rate, "per_device_train_batch_size": preset.batch_size,
                "per_device_eval_batch_size": preset.batch_size, "eval_test_split": True,
                "spatial_compression": preset.spatial_compression,
                "temporal_compression": preset.temporal_compression,
                "tokeniser": "scratch" if key is None else results[f"tokeniser:{key}{self.at}"]["model_dir"],
                "freeze_tokeniser": configuration.endswith("_frozen"), "model_config": model_config,
                "rollout_horizons": list(preset.rollout_horizons),
                "max_rollout_samples": preset.max_rollout_samples}

    def dynamics_deps(self, configuration: str) -> tuple[str, ...]:
        key = TOKENISERS.get(configuration)
        return ("data:downstream" + self.at, *self.checked, *([f"tokeniser:{key}{self.at}"] if key else []))

    def dynamics_jobs(self, configuration: str) -> list[Job]:
        """Seed 0: one run per swept rate. Other seeds: one run at the rate seed 0 chose."""
        preset, deps = self.preset, self.dynamics_deps(configuration)
        if self.seed == 0:
            return [Job(sweep_name(configuration, lr), "train", deps,
                        lambda results, lr=lr: self.dynamics_kwargs(
                            results, sweep_name(configuration, lr).removesuffix(self.at), configuration, lr,
                            preset.max_steps))
                    for lr in preset.learning_rates]
        sweep = tuple(sweep_name(configuration, lr) for lr in preset.learning_rates)
        return [Job(configuration + self.at, "train", (*deps, *sweep), lambda results: self.dynamics_kwargs(
            results, configuration, configuration, best_learning_rate(preset, results, configuration),
            preset.max_steps))]

    def compute_matched_job(self) -> Job:
        preset = self.preset

        def build(results):
            lr = best_learning_rate(preset, results, "scratch")
            flops_per_step = results[sweep_name("scratch", lr)]["compute"]["flops_per_step"]
            pretraining = results["tokeniser:in_domain" + self.at]["compute"]["total_flops"]
            extra = math.ceil(pretraining / flops_per_step) if flops_per_step > 0 else preset.tokeniser_steps
            return self.dynamics_kwargs(results, "scratch_compute_matched", "scratch_compute_matched", lr,
                                        preset.max_steps + extra)

        sweep = tuple(sweep_name("scratch", lr) for lr in preset.learning_rates)
        return Job("scratch_compute_matched" + self.at, "train",
                   (*self.dynamics_deps("scratch"), "tokeniser:in_domain" + self.at, *sweep), build)

    # ----------------------------------------------------------------------------------------- evaluation
    def reference_job(self, forecaster: str) -> Job:
        preset = self.preset
        return Job(f"reference:{forecaster}{self.at}", "reference", ("data:downstream" + self.at,), lambda results: {
            "data_dir": self.path(results, "data:downstream"), "n_steps_input": preset.n_steps_input,
            "horizons": list(preset.rollout_horizons), "max_samples": preset.max_eval_samples,
            "max_rollout_samples": preset.max_rollout_samples, "dt_stride": preset.dt_stride,
            "forecaster": forecaster})

    def reconstruction_job(self, key: str) -> Job:
        preset = self.preset
        return Job(f"reconstruction:{key}{self.at}", "reconstruction",
                   (f"tokeniser:{key}{self.at}", "data:downstream" + self.at), lambda results: {
                       "model_dir": results[f"tokeniser:{key}{self.at}"]["model_dir"],
                       "data_dir": self.path(results, "data:downstream"),
                       "spatial_compression": preset.spatial_compression,
                       "temporal_compression": preset.temporal_compression,
                       "dt_stride": preset.dt_stride, "max_samples": preset.max_eval_samples})


# -------------------------------------------------------------------------------------------- execution
def run_jobs(jobs: list[Job], workers: int, threads: int | None, progress: bool = True) -> dict[str, Any]:
    """Run ``jobs`` respecting their dependencies, ``workers`` at a time; returns ``{name: summary}``."""
    from tqdm.auto import tqdm

    names = {job.name for job in jobs}
    for job in jobs:
        missing = [d for d in job.deps if d not in names]
        if missing:
            raise ValueError(f"job {job.name!r} depends on unknown jobs {missing}")
    results: dict[str, Any] = {}
    pending = list(jobs)
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="experiment", disable=not progress, dynamic_ncols=True)

    def log_done(job: Job, summary: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - start
        detail = ""
        if job.kind == "train" and summary.get("history"):
            detail = f", final valid vrmse {summary['history'][-1]['vrmse']:.4g}"
            if summary.get("reused"):
                detail += " (reused)"
        message = f"[{elapsed:7.1f}s] done {job.name} in {summary.get('wall_time_s', 0.0):.1f}s{detail}"
        logger.info(message)
        if progress:
            bar.write(message)
        bar.update(1)

    def ready(job: Job) -> bool:
        return all(dep in results for dep in job.deps)

    try:
        if workers <= 1:
            previous = None
            if threads:
                import torch

                previous = torch.get_num_threads()
                torch.set_num_threads(threads)
            try:
                while pending:
                    job = next((j for j in pending if ready(j)), None)
                    if job is None:
                        raise RuntimeError(f"jobs {[j.name for j in pending]} wait on each other")
                    pending.remove(job)
                    results[job.name] = execute(job.kind, job.build(results))
                    log_done(job, results[job.name])
            finally:
                if previous is not None:
                    import torch

                    torch.set_num_threads(previous)
            return results

        context = multiprocessing.get_context("spawn")  # fork + torch threads is unsafe
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(threads,))
        try:
            running: dict[Any, Job] = {}
            while pending or running:
                for job in [j for j in pending if ready(j)]:
                    if len(running) >= workers:
                        break
                    pending.remove(job)
                    running[pool.submit(execute, job.kind, job.build(results))] = job
                if not running:
                    raise RuntimeError(f"jobs {[j.name for j in pending]} wait on each other")
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    results[job.name] = future.result()  # a failed job stops the experiment with its error
                    log_done(job, results[job.name])
        finally:
            # On an error, queued jobs are dropped; the ones already running finish (each is atomic) first.
            pool.shutdown(wait=True, cancel_futures=True)
        return results
    finally:
        bar.close()


def run_grid(preset: ExperimentPreset, out: Path, cache_dir: Path, device: str,
             progress: bool = True) -> dict[str, Any]:
    """Build and run every job of ``preset``; returns the job summaries, plus ``<configuration>@0`` for seed 0 (the
    sweep run at the chosen learning rate), ``learning_rates`` (configuration -> chosen rate) and ``reused_runs``
    (training jobs an earlier invocation had finished)."""
    jobs = build_jobs(preset, out, cache_dir, device, progress)
    results = run_jobs(jobs, preset.workers, preset.threads_per_worker, progress)
    results["reused_runs"] = sorted(name for name, summary in results.items() if summary.get("reused"))
    chosen = {name: best_learning_rate(preset, results, name) for name in swept_configurations(preset)}
    for name, lr in chosen.items():
        results[f"{name}@0"] = results[sweep_name(name, lr)]
    if "scratch_compute_matched" in preset.configurations:
        chosen["scratch_compute_matched"] = chosen["scratch"]
    results["learning_rates"] = chosen
    return results


__all__ = ["CONFIGURATIONS", "Job", "best_learning_rate", "build_jobs", "execute", "run_grid", "run_jobs", "sweep_name"]
