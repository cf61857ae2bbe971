"""`--overwrite` replaces only a dataset physfm wrote: never a user's folder, file or extra files."""

import os

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


def test_a_full_disk_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import physfm.data.well_format as well_format

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(well_format, "_write_file", full)
    with pytest.raises(ValueError, match=r"no space left on the device holding .*toy; nothing was written"):
        write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    assert list(tmp_path.iterdir()) == []  # no half-written dataset, no temp folder


def test_a_full_disk_while_checkpointing_is_named(tmp_path, monkeypatch):
    from test_training_common import TINY_DYNAMICS, TINY_TOKENISER, make_dataset

    from physfm.training import train

    data = make_dataset(tmp_path / "adv")

    def full(self, output_dir, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1234 vs 1200")

    monkeypatch.setattr("accelerate.Accelerator.save_state", full)
    with pytest.raises(ValueError, match=r"saving checkpoint checkpoint-1: no space left on the device"):
        train(stage="dynamics", data=[data], output_dir=tmp_path / "run", max_steps=1, save_steps=1, eval_steps=0,
              spatial_compression=4, per_device_train_batch_size=2, count_flops=False, disable_tqdm=True,
              model_config={**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER})
    assert not list((tmp_path / "run").glob("*checkpoint-1"))


def test_a_killed_write_leaves_no_lasting_litter(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".toy.tmp-{dead.stdout.strip()}-deadbeef"  # a write whose process was killed
    (abandoned / "data").mkdir(parents=True)
    running = tmp_path / f".toy.tmp-{os.getpid()}-cafe0000"  # a write still under way (this process)
    running.mkdir()
    write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    assert not abandoned.exists() and running.exists()


def test_an_unwritable_output_is_named(tmp_path, monkeypatch):
    import errno

    import physfm.data.well_format as well_format

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"cannot write .*a-file/toy .*nothing was written there"):
        write_toy_dataset(blocker / "toy", n_steps=4, shape=(4, 4))  # its parent is a file

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(well_format, "_write_file", denied)  # tests run as root: chmod would not stop them
    with pytest.raises(ValueError, match=r"cannot write .*toy: permission denied"):
        write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_overwrite_output_dir_deletes_only_the_trainers_checkpoints(tmp_path):
    from test_training_common import TINY_DYNAMICS, TINY_TOKENISER, make_dataset

    from physfm.training import train

    data = make_dataset(tmp_path / "adv")
    run = tmp_path / "run"
    settings = dict(stage="dynamics", data=[data], output_dir=run, max_steps=2, save_steps=2, eval_steps=0,
                    spatial_compression=4, per_device_train_batch_size=2, count_flops=False, disable_tqdm=True,
                    model_config={**TINY_DYNAMICS, "tokeniser_config": TINY_TOKENISER})
    train(**settings)
    (run / "notes.txt").write_text("precious")
    (run / "checkpoint-7").mkdir()  # a user's folder that merely looks like a checkpoint
    train(**{**settings, "max_steps": 1, "save_steps": 1}, overwrite_output_dir=True)
    assert (run / "notes.txt").read_text() == "precious" and (run / "checkpoint-7").is_dir()
    assert not (run / "checkpoint-2").exists() and (run / "checkpoint-1").is_dir()


def test_atomic_files_keep_the_old_content_on_failure_follow_the_umask_and_clear_dead_temporaries(tmp_path):
    import subprocess
    import sys

    from physfm._io import atomic_file, atomic_write_json, atomic_write_text, pyplot, save_figure

    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"vrmse": 0.5})
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text('{"vrmse": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "vrmse": 0.5\n}\n' and sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.json"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".metrics.json.tmp-{dead.stdout.strip()}-deadbeef"
    abandoned.write_text("half")
    previous = os.umask(0o022)
    try:
        atomic_write_text(target, "new\n")
        fig, _ = pyplot().subplots()
        save_figure(fig, tmp_path / "curve.png")
    finally:
        os.umask(previous)
    assert not abandoned.exists() and target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"  # the format follows the name, not the temp's
