"""`--overwrite` replaces only a dataset physfm wrote: never a user's folder, file or extra files."""

import numpy as np
import pytest

from physfm.data import read_well_metadata
from physfm.data.convert import main as convert_main
from physfm.data.toy import write_toy_dataset
from physfm.data.well_format import MARKER
from physfm.simulate.cli import main as simulate_main


def test_physfm_dataset_is_replaced_and_carries_the_marker(tmp_path):
    out = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    assert (out / MARKER).is_file()
    write_toy_dataset(out, n_steps=6, shape=(4, 4), overwrite=True)
    assert read_well_metadata(out).splits["train"]["steps"] == [6] and (out / MARKER).is_file()


def test_user_folder_and_file_are_never_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="not written by physfm"):
        write_toy_dataset(folder, n_steps=4, shape=(4, 4), overwrite=True)
    assert (folder / "notes.txt").read_text() == "precious"

    file = tmp_path / "results.csv"
    file.write_text("a,b\n")
    with pytest.raises(ValueError, match="not a dataset folder"):
        write_toy_dataset(file, n_steps=4, shape=(4, 4), overwrite=True)
    assert file.read_text() == "a,b\n"


def test_files_added_to_a_physfm_dataset_are_kept(tmp_path):
    out = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    (out / "README.md").write_text("my notes")
    (out / "data" / "train" / "extra.npy").write_bytes(b"\x00")
    with pytest.raises(ValueError, match=r"README\.md, data/train/extra\.npy"):
        write_toy_dataset(out, n_steps=6, shape=(4, 4), overwrite=True)
    assert (out / "README.md").read_text() == "my notes" and read_well_metadata(out).splits["train"]["steps"] == [4]


def test_simulate_refuses_before_simulating(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="not written by physfm"):
        simulate_main(["acoustic_wave", "--out", str(folder), "--overwrite", "--n-trajectories", "1",
                       "--resolution", "8x8", "--n-steps", "2", "--no-progress"])
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    # A dataset it wrote itself is replaced.
    out = tmp_path / "sim"
    args = ["acoustic_wave", "--out", str(out), "--n-trajectories", "1", "--resolution", "8x8", "--no-progress"]
    simulate_main([*args, "--n-steps", "2"])
    simulate_main([*args, "--n-steps", "3", "--overwrite"])
    assert read_well_metadata(out).splits["train"]["steps"] == [4]


def test_convert_refuses_a_user_folder(tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, np.zeros((2, 3, 4, 4, 1), dtype=np.float32))
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="not written by physfm"):
        convert_main([str(array), "--out", str(folder), "--fields", "u", "--layout", "traj time x y field",
                      "--dt", "0.1", "--overwrite"])
    assert (folder / "notes.txt").read_text() == "precious"
