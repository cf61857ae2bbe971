"""Input mistakes a user makes with the data tools: each is one message saying what was wrong and what was
expected, never a confusing count, a silently dropped part or an h5py/NumPy error."""

import numpy as np
import pytest

from physfm.data import WellWindowDataset
from physfm.data.convert import main as convert_main
from physfm.data.inspect import main as inspect_main
from physfm.data.toy import write_toy_dataset
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.selection import main as select_main

LAYOUT = ["--layout", "traj time x y field", "--dt", "0.1"]


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.random.default_rng(0).normal(size=(3, 4, 4, 4, 2)).astype(np.float32))
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda tmp, npy: [str(tmp), "--fields", "u,v"], "is a folder; expected a .npy, .npz, .h5 or .hdf5 file"),
    (lambda tmp, npy: [str(npy), "--fields", "u,u"], r"--fields names \['u'\] more than once"),
    (lambda tmp, npy: [str(npy), "--fields", "u,v", "--key", "a"], "a .npy file holds one array"),
    (lambda tmp, npy: [str(npy), "--fields", "rho/1,v"], "field name 'rho/1' has characters"),
])
def test_convert_mistakes(tmp_path, npy, edit, message):
    with pytest.raises(ValueError, match=message):
        convert_main([*edit(tmp_path, npy), "--out", str(tmp_path / "out"), *LAYOUT])
    assert not (tmp_path / "out").exists()


def test_convert_refuses_complex_values_instead_of_dropping_them(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.ones((2, 3, 4, 4, 1), dtype=np.complex64))
    with pytest.raises(ValueError, match="complex dtype complex64; expected real fields"):
        convert_main([str(path), "--fields", "psi", "--out", str(tmp_path / "out"), *LAYOUT])


def test_inspect_a_file_that_is_not_a_dataset(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    with pytest.raises(ValueError, match=r"stats.yaml is a .yaml file; expected a dataset folder"):
        inspect_main([str(data / "stats.yaml")])


def test_window_index_must_be_an_int(tmp_path):
    dataset = WellWindowDataset(write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4)), n_steps_input=1)
    with pytest.raises(TypeError, match="window index 1.5: expected an int, got float"):
        dataset[1.5]
    assert dataset[np.int64(0)]["input_fields"].shape[0] == 1


def test_select_tokeniser_says_the_ratio_is_the_problem(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(8, 8))
    tok = tmp_path / "tok"
    PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["tracer", "velocity_x", "velocity_y"],
                                               hidden_channels=4)).save_pretrained(tok)
    assert select_main(["--data", str(data), "--candidates", str(tok), "--spatial-compression", "3"]) == 1
    assert "no candidate serves spatial ×3 / temporal ×1" in capsys.readouterr().out


def test_empty_axes_are_named(tmp_path):
    import torch

    from physfm.data.convert import convert_arrays

    tok = PhysfmTokeniserModel(PhysfmTokeniserConfig(field_names=["u"], hidden_channels=4))
    with pytest.raises(ValueError, match=r"fields: got an empty axis \(shape \(1, 1, 0, 8, 1\)\)"):
        tok(torch.randn(1, 1, 0, 8, 1))
    with pytest.raises(ValueError, match=r"spatial shape \(0, 4\) .* has an empty axis"):
        convert_arrays(np.zeros((2, 3, 0, 4, 1), dtype=np.float32), tmp_path / "z", ["u"], "traj time x y field", 0.1)


def test_a_failed_training_run_leaves_no_empty_run_folder(tmp_path):
    from physfm.training import train

    data = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(8, 8))
    with pytest.raises(FileNotFoundError, match="--tokeniser: no folder"):
        train(stage="dynamics", data=[data], output_dir=tmp_path / "run", tokeniser="no_such_tokeniser", max_steps=1)
    assert not (tmp_path / "run").exists()


def test_a_misspelt_model_config_key_stops_training(tmp_path):
    from physfm.training import train

    data = write_toy_dataset(tmp_path / "toy", n_steps=10, shape=(8, 8))
    with pytest.raises(ValueError, match=r"'hiden_channels' \(did you mean 'hidden_channels'\?\)"):
        train(stage="tokeniser", data=[data], output_dir=tmp_path / "run", max_steps=1,
              model_config={"hiden_channels": 4})
