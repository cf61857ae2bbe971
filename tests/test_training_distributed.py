"""Real processes: a 2-process DDP run on CPU (gloo) and a run killed with SIGKILL mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_training_common import REPO, TINY_DYNAMICS, TINY_TOKENISER, make_dataset, run_script, weights

from physfm.training.checkpointing import list_checkpoints
from physfm.training.trainer import train

MODEL_CONFIG = json.dumps({**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER})


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until ``path`` exists; fails with the run's stderr if it dies first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.02)


def test_two_process_cpu_ddp(tmp_path):
    data = make_dataset(tmp_path / "adv")
    out = tmp_path / "run"
    accelerate = str(Path(sys.executable).parent / "accelerate")
    launcher = [accelerate, "launch", "--config_file", str(REPO / "examples/accelerate/cpu_ddp.yaml")]
    result = run_script(
        ["--stage", "dynamics", "--data", str(data), "--output_dir", str(out), "--max_steps", "3",
         "--per_device_train_batch_size", "2", "--eval_steps", "3", "--save_steps", "3", "--max_eval_samples", "2",
         "--max_rollout_samples", "2", "--rollout_horizons", "1", "--spatial_compression", "4",
         "--model_config", MODEL_CONFIG, "--count_flops", "false"],
        env={"ACCELERATE_USE_CPU": "1"}, launcher=launcher, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compute"]["world_size"] == 2
    assert metrics["compute"]["global_batch_size"] == 4
    hashes = metrics["parameter_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold the same weights
    # every rank wrote its RNG state into the (atomically renamed) checkpoint
    assert {p.name for p in (out / "checkpoint-3").glob("random_states_*.pkl")} == {
        "random_states_0.pkl", "random_states_1.pkl"}


def test_sigkill_loses_nothing_beyond_the_last_checkpoint(tmp_path):
    data = make_dataset(tmp_path / "adv")
    out = tmp_path / "killed"
    settings = {"stage": "dynamics", "per_device_train_batch_size": 2, "save_steps": 2, "eval_steps": 0,
                "learning_rate": 3e-3, "lr_scheduler_type": "constant", "spatial_compression": 4,
                "max_eval_samples": 1, "max_rollout_samples": 1, "rollout_horizons": [1], "count_flops": False}
    flags = [x for key, value in settings.items()
             for x in (f"--{key}", *map(str, value if isinstance(value, list) else [value]))]
    threads = str(torch.get_num_threads())  # same thread count as this process: bitwise-comparable numbers
    env = {**os.environ, "OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts/train.py"), "--data", str(data), "--output_dir", str(out),
         "--max_steps", "100000", "--model_config", MODEL_CONFIG, "--disable_tqdm", "true", *flags],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(out / "checkpoint-4", process)
        time.sleep(0.1)  # let it get somewhere between checkpoints (or inside one)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    last_step = list_checkpoints(out)[-1][0]
    assert last_step >= 4
    target = last_step + 2
    common = {**settings, "data": [data], "max_steps": target, "model_config": MODEL_CONFIG, "disable_tqdm": True}
    resumed = train(output_dir=out, resume_from_checkpoint="latest", **common)
    reference = train(output_dir=tmp_path / "reference", **common)
    assert not list(out.glob(".tmp-checkpoint-*"))  # a half-written checkpoint was cleared, never used
    assert resumed.steps == reference.steps == target
    a, b = weights(out), weights(tmp_path / "reference")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    data = make_dataset(tmp_path / "adv")
    out = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "physfm.cli", "train", "--stage", "dynamics", "--data", str(data), "--output_dir",
         str(out), "--max_steps", "100000", "--save_steps", "2", "--eval_steps", "0", "--model_config", MODEL_CONFIG,
         "--per_device_train_batch_size", "2", "--spatial_compression", "4", "--count_flops", "false",
         "--disable_tqdm", "true"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(out / "checkpoint-2", process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    message = stderr.decode()
    assert process.returncode == 130 and "Traceback" not in message, message[-3000:]
    last = list_checkpoints(out)[-1][1]
    assert f"the last checkpoint is {last}; resume with --resume_from_checkpoint latest" in message
