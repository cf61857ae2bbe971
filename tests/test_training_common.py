"""Shared helpers for the training tests (tiny Well-format datasets) and fast unit tests of the
argument parsing and the step-indexed data order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physfm.data import write_well_dataset
from physfm.training.arguments import parse_args
from physfm.training.sampling import GlobalBatchPlan, rank_micro_batches
from physfm.training.trainer import check_mixed_precision, cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]

# A tokeniser small enough that a training step takes milliseconds: 3 pyramid levels (ratios 2, 4).
TINY_TOKENISER = {"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2, 2]}
TINY_DYNAMICS = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 2}


def make_dataset(out: Path, fields: tuple[str, ...] = ("tracer", "velocity"), n_traj=(6, 2, 1), n_steps: int = 10,
                 shape=(16, 16), seed: int = 0, name: str = "advection") -> Path:
    """Advected sine waves (periodic, smooth, learnable): a real Well-format dataset on disk."""
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    x = (np.arange(shape[0]) + 0.5) / shape[0]
    y = (np.arange(shape[1]) + 0.5) / shape[1]
    grid_x, grid_y = np.meshgrid(x, y, indexing="ij")
    time = np.arange(n_steps)[:, None, None] * 0.05
    splits = {}
    for split, n in zip(("train", "valid", "test"), n_traj, strict=True):
        data: dict[str, list] = {f: [] for f in fields}
        for _ in range(n):
            kx, ky = rng.integers(1, 3, size=2)
            u, v, phase = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * (kx * (grid_x - u * time) + ky * (grid_y - v * time)) + phase)
            for f in fields:
                if f == "velocity":
                    data[f].append(np.stack([u + 0.2 * wave, v - 0.2 * np.roll(wave, 3, axis=1)], axis=-1))
                else:
                    data[f].append((1 + 0.3 * len(f)) * np.roll(wave, len(f), axis=2) + 0.1 * len(f))
        splits[split] = {f: np.stack(a).astype(np.float32) for f, a in data.items()}
    return write_well_dataset(out, name, splits, dt=0.05, coords={"x": x, "y": y}, periodic={"x": True, "y": True})


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(path) / "model.safetensors")


def run_script(args: list[str], timeout: float = 240, env: dict | None = None, launcher: list[str] | None = None):
    """Run scripts/train.py in a subprocess (optionally under `accelerate launch`)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    command = (launcher or [sys.executable]) + [str(REPO / "scripts" / "train.py"), *args, "--disable_tqdm", "true"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


# ---------------------------------------------------------------------------------------------- unit tests
def test_config_file_then_flags_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("stage: tokeniser\ndata: [a, b]\noutput_dir: out\nmax_steps: 50\nlearning_rate: 0.01\n"
                      "spatial_compression: [2, 4]\nmodel_config: {hidden_channels: 8}\n")
    data, model, training = parse_args([str(config), "--max_steps", "7", "--seed", "3"])
    assert data.data == ["a", "b"] and training.stage == "tokeniser"
    assert training.max_steps == 7 and training.seed == 3 and training.learning_rate == 0.01  # flag wins, file kept
    assert model.spatial_compression == [2, 4] and json.loads(model.model_config) == {"hidden_channels": 8}

    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"data": ["d"], "output_dir": "o", "freeze_tokeniser": True, "tokeniser": "tok"}))
    _, model, training = parse_args([str(as_json)])
    assert model.freeze_tokeniser is True and model.tokeniser == "tok" and training.stage == "dynamics"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "d", "--output_dir", "o", "--max_step", "3"], "unrecognised arguments ['--max_step'"),
        (["--data", "d", "--output_dir", "o", "--stage", "vae"], "--stage: got 'vae'"),
        (["--output_dir", "o"], "--data"),
        (["--data", "a", "b", "--output_dir", "o"], "one downstream dataset"),
        (["--data", "d", "--output_dir", "o", "--max_steps", "many"], "invalid int value"),
        (["--data", "d", "--output_dir", "o", "--model_config", "{bad"], "not valid JSON"),
    ],
)
def test_bad_arguments_are_value_errors(argv, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_args(argv)


def test_config_file_with_unknown_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: [d]\noutput_dir: o\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown options \\['learning_rat'\\]"):
        parse_args([str(config)])


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.yaml", "max_steps: [1,\n  bad", r"not valid YAML \(line 2, column 6: expected ',' or ']'"),
    ("bad.json", '{"max_steps": 1,,}', r"not valid JSON \(line 1, column 17: Expecting property name"),
])
def test_unparsable_config_file_is_one_error_with_its_position(tmp_path, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        parse_args([str(config)])


def test_data_order_is_a_function_of_the_step():
    plan = GlobalBatchPlan([7, 3], global_batch_size=4, seed=5)
    sequential = [plan.batch(s) for s in range(12)]
    fresh = GlobalBatchPlan([7, 3], global_batch_size=4, seed=5)
    assert fresh.batch(9) == sequential[9]  # jumping ahead (a resume) replays the same choices
    assert {d for d, _ in sequential} == {0, 1}  # a mixture draws from both datasets
    # every window of a dataset is seen once per epoch
    single = GlobalBatchPlan([8], global_batch_size=4, seed=0)
    assert sorted(single.batch(0)[1] + single.batch(1)[1]) == list(range(8))
    # two ranks without accumulation see the same global batch as one rank with two micro-batches
    one = list(rank_micro_batches(plan, 0, 3, 2, 2, rank=0, world_size=1))
    two = [list(rank_micro_batches(plan, 0, 3, 2, 1, rank=r, world_size=2)) for r in range(2)]
    assert [one[2 * s] + one[2 * s + 1] for s in range(3)] == [two[0][s] + two[1][s] for s in range(3)]


def test_physfm_train_cli_reports_user_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "physfm.cli", "train", "--data", str(tmp_path / "missing"),
                             "--output_dir", str(tmp_path / "o"), "--max_steps", "1"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "physfm train: error: --data" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_mixed_precision_on_cpu():
    cpu = torch.device("cpu")
    check_mixed_precision("no", cpu)
    with pytest.raises(ValueError, match="fp16: needs a GPU"):
        check_mixed_precision("fp16", cpu)
    if cpu_has_native_bf16():  # AVX512-BF16 / AMX: allowed, with a warning to measure first
        with pytest.warns(UserWarning, match="often slower than fp32"):
            check_mixed_precision("bf16", cpu)
    else:  # e.g. AVX2: refused, saying why
        with pytest.raises(ValueError, match="no native bf16"):
            check_mixed_precision("bf16", cpu)
