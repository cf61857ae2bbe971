"""Bad input gets one clear ValueError/FileNotFoundError naming the file, trajectory, time and expectation."""

import shutil

import h5py
import numpy as np
import pytest

from physfm.data import WellWindowDataset, read_well_metadata
from physfm.data.toy import write_toy_dataset


@pytest.fixture
def toy(tmp_path):
    return write_toy_dataset(tmp_path / "toy", n_traj=(2, 1, 0), n_steps=6, shape=(8, 4))


def _train_file(toy):
    return next((toy / "data" / "train").glob("*.hdf5"))


def test_truncated_file(toy):
    file = _train_file(toy)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=rf"{file.name}.*truncated or corrupt"):
        WellWindowDataset(toy, n_steps_input=2, n_steps_output=1)


def test_not_hdf5_at_all(toy):
    _train_file(toy).write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(ValueError, match="cannot be opened as HDF5"):
        read_well_metadata(toy)


@pytest.mark.parametrize("what,edit,message", [
    ("root attr", lambda f: f.attrs.__delitem__("n_trajectories"), "missing root attribute 'n_trajectories'"),
    ("group", lambda f: f.__delitem__("boundary_conditions"), "missing group 'boundary_conditions'"),
    ("field attr", lambda f: f["t1_fields/velocity"].attrs.__delitem__("time_varying"),
     r"missing attribute t1_fields/velocity/@'time_varying'"),
    ("listed field", lambda f: f["t0_fields"].__delitem__("tracer"), "missing dataset t0_fields/'tracer'"),
    ("bc type", lambda f: f["boundary_conditions/x_periodic"].attrs.__setitem__("bc_type", "SLIPPERY"),
     "bc_type 'SLIPPERY'"),
])
def test_missing_groups_and_attrs(toy, what, edit, message):
    file = _train_file(toy)
    with h5py.File(file, "r+") as f:
        edit(f)
    with pytest.raises(ValueError, match=message) as info:
        WellWindowDataset(toy, n_steps_input=2, n_steps_output=1)
    assert file.name in str(info.value)


def test_field_with_wrong_shape(toy):
    file = _train_file(toy)
    with h5py.File(file, "r+") as f:
        del f["t0_fields/tracer"]
        ds = f["t0_fields"].create_dataset("tracer", data=np.zeros((2, 6, 8, 3), np.float32))
        ds.attrs.update({"dim_varying": [True, True], "sample_varying": True, "time_varying": True})
    with pytest.raises(ValueError, match=r"t0_fields/tracer has shape \(2, 6, 8, 3\), expected \(2, 6, 8, 4\)"):
        read_well_metadata(toy)


def test_nan_in_a_window_names_file_trajectory_time_and_field(toy):
    file = _train_file(toy)
    with h5py.File(file, "r+") as f:
        f["t1_fields/velocity"][1, 4, 2, 3, 1] = np.nan
    ds = WellWindowDataset(toy, n_steps_input=2, n_steps_output=1)
    ds[0]  # windows without the NaN are fine
    with pytest.raises(ValueError, match=rf"{file.name}.*'velocity_y' of trajectory 1 at time index 4"):
        ds[4 + 2]  # trajectory 1 (4 windows each), start 2 -> frames 2, 3, 4


def test_inf_reported_with_stride(toy):
    with h5py.File(_train_file(toy), "r+") as f:
        f["t0_fields/tracer"][0, 4] = np.inf
    ds = WellWindowDataset(toy, n_steps_input=1, n_steps_output=1, dt_stride=2)
    with pytest.raises(ValueError, match="'tracer' of trajectory 0 at time index 4"):
        ds[2]  # frames 2, 4


def test_trajectories_shorter_than_a_window(toy):
    with pytest.raises(ValueError, match=r"6 time steps, shorter than one window of 7 steps"):
        WellWindowDataset(toy, n_steps_input=4, n_steps_output=3)


def test_field_names_differ_between_files(toy, tmp_path):
    other = write_toy_dataset(tmp_path / "other", n_traj=(1, 0, 0), n_steps=6, shape=(8, 4))
    extra = toy / "data" / "train" / "zz_extra.hdf5"
    shutil.copy(_train_file(other), extra)
    with h5py.File(extra, "r+") as f:
        f["t0_fields"].move("tracer", "dye")
        f["t0_fields"].attrs["field_names"] = ["dye"]
    with pytest.raises(ValueError, match=r"zz_extra.hdf5: field names \['dye', 'velocity_x', 'velocity_y'\] differ"):
        WellWindowDataset(toy, n_steps_input=2, n_steps_output=1)


def test_missing_paths_and_stats(tmp_path, toy):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WellWindowDataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no HDF5 files for split 'test'"):
        WellWindowDataset(toy, split="test")
    (toy / "stats.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="stats.yaml not found"):
        WellWindowDataset(toy, n_steps_input=2, n_steps_output=1)
    assert len(WellWindowDataset(toy, n_steps_input=2, n_steps_output=1, normalize=False)) == 8


def test_bad_window_arguments(toy):
    with pytest.raises(ValueError, match="n_steps_input: got 0"):
        WellWindowDataset(toy, n_steps_input=0)
    with pytest.raises(ValueError, match="dt_stride: got 1.5"):
        WellWindowDataset(toy, dt_stride=1.5)


@pytest.mark.parametrize(("value", "message"), [
    (-1.0, r"std of field '\w+' is -1.0; expected a number >= 0"),
    (float("nan"), r"std of field '\w+' is \[?nan\]?; expected finite numbers"),
])
def test_broken_statistics_are_caught_by_inspect_and_the_loader(toy, value, message):
    from physfm.data.inspect import main as inspect_main

    _set_first_std(toy, value)
    with pytest.raises(ValueError, match=message):
        inspect_main([str(toy), "--no-scan"])
    with pytest.raises(ValueError, match=message):
        WellWindowDataset(toy, split="train", n_steps_input=2, n_steps_output=1)


def test_zero_std_of_a_varying_field_is_caught_by_inspect(toy):
    """Training on it would have seen a loss of ~1e7 and no other symptom."""
    from physfm.data.inspect import main as inspect_main

    name = _set_first_std(toy, 0.0)
    with pytest.raises(ValueError, match=rf"std of field '{name}' is 0 but its train values vary"):
        inspect_main([str(toy), "--no-scan"])
    with pytest.raises(ValueError, match=rf"std of '{name}\w*' is 0 but its values vary"):  # and the loader
        WellWindowDataset(toy, split="train", n_steps_input=2, n_steps_output=1)


def _set_first_std(toy, value) -> str:
    import yaml

    stats_file = toy / "stats.yaml"
    stats = yaml.safe_load(stats_file.read_text())
    name = next(iter(stats["std"]))
    stats["std"][name] = value
    stats_file.write_text(yaml.safe_dump(stats))
    return name
