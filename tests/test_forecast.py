"""`physfm forecast` / `physfm.forecast`: raw data in, physical-unit forecast out, with the checkpoint's processor."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from test_training_common import TINY_DYNAMICS, make_dataset
from transformers import AutoProcessor

import physfm
from physfm.checkpoints import load_pretrained
from physfm.cli import main as physfm_main
from physfm.data import read_trajectory
from physfm.training.trainer import train

TOKENISER = {"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2]}
RUN = {"per_device_train_batch_size": 2, "max_eval_samples": 1, "max_rollout_samples": 1, "disable_tqdm": True,
       "count_flops": False, "spatial_compression": [2], "temporal_compression": [1], "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A dynamics model trained 2 steps on a tiny advection dataset (it carries that dataset's processor)."""
    root = tmp_path_factory.mktemp("forecast")
    data = make_dataset(root / "advection")
    out = root / "model"
    train(stage="dynamics", data=[data], output_dir=out, max_steps=2, eval_steps=2, save_steps=2, n_steps_input=2,
          model_config={**TINY_DYNAMICS, "tokeniser_config": TOKENISER}, rollout_horizons=[1], **RUN)
    return {"model": out, "file": sorted((data / "data" / "test").glob("*.hdf5"))[0]}


def by_hand(checkpoint, fields: np.ndarray, names: list[str], n_steps: int, **rollout) -> np.ndarray:
    model, processor = load_pretrained(checkpoint).eval(), AutoProcessor.from_pretrained(checkpoint)
    n_in = model.config.n_steps_input
    context = torch.as_tensor((fields[:, :n_in] - np.array(processor.mean)) / np.array(processor.std))
    prediction = model.rollout(context.float(), n_steps, field_names=names, **rollout)
    return prediction.numpy() * np.array(processor.std, dtype=np.float32) + np.array(processor.mean, dtype=np.float32)


def test_cli_on_a_well_file_equals_normalising_rolling_out_and_denormalising_by_hand(checkpoint, tmp_path):
    out = tmp_path / "out"
    argv = ["forecast", str(checkpoint["model"]), "--input", str(checkpoint["file"]), "--steps", "5", "--out",
            str(out)]
    assert physfm_main(argv) == 0
    trajectory = read_trajectory(checkpoint["file"], 0)
    names = list(trajectory)
    fields = np.stack([trajectory[n] for n in names], axis=-1)[None]
    expected = by_hand(checkpoint["model"], fields, names, 5)
    written = read_trajectory(next((out / "data" / "test").glob("*.hdf5")), 0)
    assert list(written) == names
    np.testing.assert_allclose(np.stack([written[n] for n in names], -1)[None], expected, atol=1e-5, rtol=1e-5)
    assert (out / "forecast.png").stat().st_size > 0  # the file holds 8 frames after the context: truth exists


def test_python_api_on_npy_and_npz_and_the_streaming_rollout(checkpoint, tmp_path):
    trajectory = read_trajectory(checkpoint["file"], 0)
    names = list(trajectory)
    fields = np.stack([trajectory[n] for n in names], axis=-1)  # [time, x, y, fields]: one trajectory
    np.save(tmp_path / "x.npy", fields[:, :, :, ::-1])
    reordered = physfm.forecast(checkpoint["model"], tmp_path / "x.npy", 3, field_names=names[::-1], progress=False)
    np.testing.assert_allclose(reordered[..., ::-1], by_hand(checkpoint["model"], fields[None], names, 3),
                               atol=1e-5, rtol=1e-5)
    np.savez(tmp_path / "x.npz", **trajectory)
    streamed = physfm.forecast(checkpoint["model"], tmp_path / "x.npz", 3, stream=True, progress=False)
    np.testing.assert_allclose(streamed, by_hand(checkpoint["model"], fields[None], names, 3, stream=True),
                               atol=1e-5, rtol=1e-5)


def error_line(capsys) -> str:
    """The one error line (transformers' loading bars may share stderr)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("physfm forecast:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_errors_are_one_line(checkpoint, tmp_path, capsys):
    model = str(checkpoint["model"])
    trajectory = read_trajectory(checkpoint["file"], 0)
    fields = np.stack(list(trajectory.values()), axis=-1)
    np.save(tmp_path / "short.npy", fields[:1])
    np.save(tmp_path / "ok.npy", fields)
    no_processor = tmp_path / "no_processor"
    load_pretrained(model).save_pretrained(no_processor)
    capsys.readouterr()
    cases = [
        ([str(tmp_path / "missing.npy")], "no file at"),
        ([str(tmp_path / "short.npy")], "needs n_steps_input=2 context frames"),
        ([str(tmp_path / "ok.npy"), "--field_names", "tracer", "pressure", "velocity_x"], "pressure"),
    ]
    for extra, message in cases:
        assert physfm_main(["forecast", model, "--input", *extra, "--steps", "2", "--out", str(tmp_path / "o")]) == 1
        assert message in error_line(capsys)
    assert physfm_main(["forecast", str(no_processor), "--input", str(tmp_path / "ok.npy"), "--steps", "2",
                        "--out", str(tmp_path / "o")]) == 1
    assert "no preprocessor_config.json" in error_line(capsys)
    with h5py.File(checkpoint["file"]) as f:  # the Well file is left as it was
        assert f.attrs["n_trajectories"] >= 1
