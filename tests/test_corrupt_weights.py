"""Weights that cannot be read get one message naming the checkpoint, wherever they are loaded."""

import pytest
import torch
from test_training_common import TINY_DYNAMICS, make_dataset
from transformers import AutoModel

from physfm.cli import main as physfm_main
from physfm.models import (
    PhysfmDynamicsConfig,
    PhysfmDynamicsModel,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
)
from physfm.selection import select_tokeniser
from physfm.training import train


def corrupt(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # a truncated header, as after a broken download
    return folder


@pytest.fixture
def corrupt_tokeniser(tmp_path):
    tok = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["tracer", "velocity_x", "velocity_y"],
                                                     hidden_channels=4, latent_channels=4))
    tok.save_pretrained(tmp_path / "tok")
    return corrupt(tmp_path / "tok")


def test_from_pretrained_and_automodel_name_the_corrupt_file(corrupt_tokeniser, tmp_path):
    for load in (PhysfmTokeniserModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=r"tok: model\.safetensors is corrupt or truncated"):
            load(corrupt_tokeniser, dtype=torch.float32)
    PhysfmDynamicsModel(PhysfmDynamicsConfig(tokeniser_config={"hidden_channels": 4})).save_pretrained(tmp_path / "dyn")
    with pytest.raises(ValueError, match=r"dyn: model\.safetensors is corrupt"):
        PhysfmDynamicsModel.from_pretrained(corrupt(tmp_path / "dyn"))


def test_training_evaluating_and_selecting_with_corrupt_weights(corrupt_tokeniser, tmp_path, capsys):
    data = make_dataset(tmp_path / "adv")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        train(stage="dynamics", data=[data], output_dir=tmp_path / "run", tokeniser=str(corrupt_tokeniser),
              max_steps=1, model_config=TINY_DYNAMICS)
    assert physfm_main(["evaluate", str(corrupt_tokeniser), "--data", str(data)]) != 0
    assert "corrupt or truncated" in capsys.readouterr().err
    # An unloadable candidate is ranked last with its reason; the ranking goes on.
    good = tmp_path / "good"
    PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["tracer", "velocity_x", "velocity_y"],
                                               hidden_channels=4, latent_channels=4)).save_pretrained(good)
    ranking = select_tokeniser(data, [str(corrupt_tokeniser), str(good)], spatial_compression=4, max_samples=2)
    assert [row.candidate for row in ranking.candidates] == [str(good), str(corrupt_tokeniser)]
    assert "corrupt or truncated" in ranking.candidates[-1].reason


def test_saved_files_follow_the_umask(tmp_path):
    import os

    from physfm.data.toy import write_toy_dataset

    previous = os.umask(0o022)
    try:
        PhysfmTokeniserModel(PhysfmTokeniserConfig(hidden_channels=4)).save_pretrained(tmp_path / "tok")
        PhysfmDynamicsModel(PhysfmDynamicsConfig(tokeniser_config={"hidden_channels": 4})).save_pretrained(
            tmp_path / "dyn")
        data = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    finally:
        os.umask(previous)
    for file in [tmp_path / "tok" / "model.safetensors", tmp_path / "dyn" / "model.safetensors",
                 tmp_path / "tok" / "config.json", data / "stats.yaml"]:
        assert file.stat().st_mode & 0o777 == 0o644, file


def test_config_fields_without_weights_are_an_error_not_random_rows(tmp_path):
    import json

    tok = tmp_path / "tok"
    PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["a", "b"], hidden_channels=4)).save_pretrained(tok)
    config = json.loads((tok / "config.json").read_text())
    config["field_names"].append("c")  # edited by hand, weights not regrown
    (tok / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json describes weights that model.safetensors lacks "
                                         r"\(decoder.field_out.bias_2, decoder.field_out.weight_2, "
                                         r"encoder.field_in.weight_2\)"):
        PhysfmTokeniserModel.from_pretrained(tok)
