"""Orchestration: the experiment as a graph of jobs (simulate, pretrain, train), run by a small process pool.

Jobs and what they wait for::

    data:downstream ──▶ data:in_domain ──▶ tokeniser:in_domain ──┬─▶ in_domain_{frozen,finetuned}
         │             data:cross:* ───▶ tokeniser:cross_domain ──┼─▶ cross_domain_{frozen,finetuned}
         ├──────────────▶ scratch@lr (the sweep) ──────────────────┴─▶ scratch_compute_matched
         └──────────────▶ reference:persistence (the last input frame, scored like the models)

Every training job calls :func:`physfm.training.train` with the same seed, steps and architecture; only the
tokeniser (scratch / in-domain / cross-domain), its freezing and, for the scratch sweep, the learning rate
differ. The compute-matched scratch run trains with the best swept learning rate for ``max_steps`` plus as many
steps as the in-domain tokeniser's pretraining cost in FLOPs.

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
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import simulate_cached, simulate_distinct
from .presets import CONFIGURATIONS, ExperimentPreset

logger = logging.getLogger("physfm.experiment")

JOB_FILE = "experiment_job.json"


@dataclass
class Job:
    """One unit of work: ``build(results)`` turns the results of its dependencies into its arguments."""

    name: str
    kind: str  # "data" | "train" | "reference" | "reconstruction"
    deps: tuple[str, ...]
    build: Callable[[dict[str, Any]], dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- workers
def _init_worker(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def execute(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one job (in a worker process or inline) and return a small JSON-able summary."""
    if kind == "data":
        return _execute_data(**kwargs)
    if kind == "train":
        return _execute_train(kwargs)
    if kind == "reference":
        return _execute_persistence(**kwargs)
    if kind == "reconstruction":
        return _execute_reconstruction(**kwargs)
    raise ValueError(f"unknown job kind {kind!r}")


def _execute_data(spec: dict[str, Any], cache_dir: str, device: str, distinct: bool = False,
                  disjoint_from: str | None = None, progress: bool = False) -> dict[str, Any]:
    from .presets import DataSpec

    spec = DataSpec(**{**spec, "resolution": tuple(spec["resolution"]),
                       "split_fractions": tuple(spec["split_fractions"])})
    tic = time.perf_counter()
    if distinct:  # the downstream system: distinct trajectories, in-domain ones disjoint from downstream's
        path = simulate_distinct(spec, cache_dir, device, progress, disjoint_from)
    else:
        path = simulate_cached(spec, cache_dir, device, progress)
    return {"path": str(path), "seed": spec.seed, "system": spec.system, "wall_time_s": time.perf_counter() - tic}


def _execute_persistence(data_dir: str, **kwargs: Any) -> dict[str, Any]:
    from physfm.training.evaluation import persistence_metrics

    tic = time.perf_counter()
    metrics = persistence_metrics(data_dir, **kwargs)
    metrics["rollout_vrmse"] = {str(k): v for k, v in metrics["rollout_vrmse"].items()}
    return {"metrics": metrics, "wall_time_s": time.perf_counter() - tic}


def _execute_reconstruction(model_dir: str, data_dir: str, spatial_compression: int, temporal_compression: int,
                            max_samples: int) -> dict[str, Any]:
    """A tokeniser's reconstruction of the downstream valid split: the floor a frozen tokeniser puts under the
    dynamics error. Only the fields it has learnt count (the cross-domain one never saw the tracer)."""
    import torch

    from physfm.models import PhysfmTokeniserModel
    from physfm.selection import evaluate_reconstruction

    tokeniser = PhysfmTokeniserModel.from_pretrained(model_dir, dtype=torch.float32)
    result = evaluate_reconstruction(tokeniser, data_dir, "valid", max_samples=max_samples,
                                     compressions=[(spatial_compression, temporal_compression)])[0]
    return {"fields": list(result.vrmse_per_field), "vrmse": result.vrmse, "wall_time_s": 0.0}


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
    tmp = job_file.with_name(f".{JOB_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(kwargs, indent=2, sort_keys=True))
    os.replace(tmp, job_file)  # written last: its presence marks the run as complete
    return summary


# ------------------------------------------------------------------------------------------------ graph
def _lr_name(lr: float) -> str:
    return f"scratch_lr{lr:g}"


def best_learning_rate(preset: ExperimentPreset, results: dict[str, Any]) -> float:
    """The swept scratch learning rate with the lowest final valid VRMSE (ties: the smaller rate)."""
    final = {lr: results[_lr_name(lr)]["history"][-1]["vrmse"] for lr in preset.scratch_learning_rates}
    return min(final, key=lambda lr: (final[lr] if math.isfinite(final[lr]) else math.inf, lr))


def build_jobs(preset: ExperimentPreset, out: Path, cache_dir: Path, device: str, progress: bool) -> list[Job]:
    """The experiment's jobs in priority order (a ready job earlier in the list starts first)."""
    runs = out / "runs"
    show = progress and preset.workers == 1  # per-run bars only when runs do not interleave

    def data_job(name: str, spec, distinct: bool = False, disjoint_from: str | None = None) -> Job:
        deps = (disjoint_from,) if disjoint_from else ()

        def build(results):
            kwargs = {"spec": dataclasses.asdict(spec), "distinct": distinct,
                      "cache_dir": str(cache_dir), "device": device, "progress": show}
            if disjoint_from:
                kwargs["disjoint_from"] = results[disjoint_from]["path"]
            return kwargs

        return Job(name, "data", deps, build)

    cross_names = [f"data:{spec.system}" for spec in preset.cross_domain]
    jobs = [data_job("data:downstream", preset.downstream, distinct=True),
            data_job("data:in_domain", preset.in_domain, distinct=True, disjoint_from="data:downstream")]
    jobs += [data_job(name, spec) for name, spec in zip(cross_names, preset.cross_domain, strict=True)]

    common = {
        "seed": preset.seed,
        "lr_scheduler_type": preset.lr_scheduler_type,
        "warmup_steps": preset.warmup_steps,
        "max_eval_samples": preset.max_eval_samples,
        "save_steps": 0,  # one checkpoint, at the end
        "save_total_limit": 1,
        "logging_steps": max(1, preset.eval_steps // 5),
        "disable_tqdm": not show,
    }
    tokeniser_arch = {**preset.tokeniser_config,
                      "spatial_compressions": sorted({*preset.pretrain_spatial_compressions,
                                                      preset.spatial_compression}),
                      "temporal_compressions": sorted({*preset.pretrain_temporal_compressions,
                                                       preset.temporal_compression})}

    def tokeniser_job(name: str, data_deps: list[str]) -> Job:
        # A downstream field no pretraining system has (shear_flow's tracer, for the cross-domain tokeniser) is
        # added to the vocabulary by the dynamics stage, and trained there even when the tokeniser is frozen.
        def build(results):
            return {**common, "stage": "tokeniser", "data": [results[d]["path"] for d in data_deps],
                    "output_dir": str(runs / name), "max_steps": preset.tokeniser_steps,
                    "eval_steps": preset.tokeniser_steps, "learning_rate": preset.tokeniser_learning_rate,
                    "per_device_train_batch_size": preset.tokeniser_batch_size,
                    "per_device_eval_batch_size": preset.tokeniser_batch_size,
                    "spatial_compression": list(preset.pretrain_spatial_compressions),
                    "temporal_compression": list(preset.pretrain_temporal_compressions),
                    "model_config": {k: v for k, v in tokeniser_arch.items()
                                     if k not in ("spatial_compressions", "temporal_compressions")}}

        return Job(f"tokeniser:{name}", "train", tuple(data_deps), build)

    def dynamics_kwargs(results, name: str, learning_rate: float, max_steps: int, tokeniser: str,
                        freeze: bool) -> dict[str, Any]:
        model_config = dict(preset.dynamics_config)
        if tokeniser == "scratch":
            model_config["tokeniser_config"] = tokeniser_arch  # the pretrained ones' architecture exactly
        return {**common, "stage": "dynamics", "data": [results["data:downstream"]["path"]],
                "output_dir": str(runs / name), "max_steps": max_steps, "eval_steps": preset.eval_steps,
                "learning_rate": learning_rate, "per_device_train_batch_size": preset.batch_size,
                "per_device_eval_batch_size": preset.batch_size,
                "spatial_compression": preset.spatial_compression,
                "temporal_compression": preset.temporal_compression,
                "tokeniser": tokeniser, "freeze_tokeniser": freeze, "model_config": model_config,
                "rollout_horizons": list(preset.rollout_horizons),
                "max_rollout_samples": preset.max_rollout_samples}

    def sweep_job(lr: float) -> Job:
        return Job(_lr_name(lr), "train", ("data:downstream",),
                   lambda results: dynamics_kwargs(results, _lr_name(lr), lr, preset.max_steps, "scratch", False),
                   info={"learning_rate": lr})

    def pretrained_job(name: str, tokeniser: str, freeze: bool) -> Job:
        def build(results):
            return dynamics_kwargs(results, name, preset.learning_rate, preset.max_steps,
                                   results[tokeniser]["model_dir"], freeze)

        return Job(name, "train", ("data:downstream", tokeniser), build)

    sweep = [_lr_name(lr) for lr in preset.scratch_learning_rates]

    def matched_build(results):
        lr = best_learning_rate(preset, results)
        flops_per_step = results[_lr_name(lr)]["compute"]["flops_per_step"]
        pretraining = results["tokeniser:in_domain"]["compute"]["total_flops"]
        extra = math.ceil(pretraining / flops_per_step) if flops_per_step > 0 else preset.tokeniser_steps
        return dynamics_kwargs(results, "scratch_compute_matched", lr, preset.max_steps + extra, "scratch", False)

    def persistence_build(results):
        return {"data_dir": results["data:downstream"]["path"],
                "n_steps_input": preset.dynamics_config.get("n_steps_input", 4),
                "horizons": list(preset.rollout_horizons), "max_samples": preset.max_eval_samples,
                "max_rollout_samples": preset.max_rollout_samples}

    wanted = set(preset.configurations)
    jobs.append(Job("reference:persistence", "reference", ("data:downstream",), persistence_build))
    jobs.append(tokeniser_job("in_domain", ["data:in_domain"]))
    jobs += [sweep_job(lr) for lr in preset.scratch_learning_rates]
    if "scratch_compute_matched" in wanted:
        jobs.append(Job("scratch_compute_matched", "train", ("tokeniser:in_domain", *sweep), matched_build))
    if wanted & {"cross_domain_frozen", "cross_domain_finetuned"}:
        jobs.append(tokeniser_job("cross_domain", cross_names))
    for name, tokeniser, freeze in (("in_domain_frozen", "tokeniser:in_domain", True),
                                    ("in_domain_finetuned", "tokeniser:in_domain", False),
                                    ("cross_domain_frozen", "tokeniser:cross_domain", True),
                                    ("cross_domain_finetuned", "tokeniser:cross_domain", False)):
        if name in wanted:
            jobs.append(pretrained_job(name, tokeniser, freeze))
    needed = {dep for job in jobs for dep in job.deps}
    for key in ("in_domain", "cross_domain"):
        if f"tokeniser:{key}" in {job.name for job in jobs}:
            jobs.append(Job(f"reconstruction:{key}", "reconstruction", (f"tokeniser:{key}", "data:downstream"),
                            lambda results, key=key: {
                                "model_dir": results[f"tokeniser:{key}"]["model_dir"],
                                "data_dir": results["data:downstream"]["path"],
                                "spatial_compression": preset.spatial_compression,
                                "temporal_compression": preset.temporal_compression,
                                "max_samples": preset.max_eval_samples}))
    if not wanted & {"cross_domain_frozen", "cross_domain_finetuned"}:
        jobs = [job for job in jobs if job.name not in cross_names or job.name in needed]
    return jobs


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
    """Build and run every job of ``preset``; returns the job summaries plus ``scratch`` (the best sweep run)."""
    jobs = build_jobs(preset, out, cache_dir, device, progress)
    results = run_jobs(jobs, preset.workers, preset.threads_per_worker, progress)
    lr = best_learning_rate(preset, results)
    results["scratch"] = {**results[_lr_name(lr)], "learning_rate": lr}
    return results


__all__ = ["CONFIGURATIONS", "Job", "best_learning_rate", "build_jobs", "execute", "run_grid", "run_jobs"]
