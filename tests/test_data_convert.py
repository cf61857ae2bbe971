"""Users' own data: `physfm convert`, `physfm inspect`, and the Hugging Face `datasets` bridge."""

import h5py
import numpy as np
import pytest
import torch

from physfm.cli import main as physfm
from physfm.data import WellWindowDataset, read_well_metadata
from physfm.data.convert import convert_arrays
from physfm.data.hf_datasets import (
    HFStreamingWindowDataset,
    HFWindowDataset,
    from_hf_dataset,
    to_hf_dataset,
    to_hf_dataset_dict,
)
from physfm.data.toy import write_toy_dataset


def _user_array(n_traj=10, nt=6, nx=8, ny=4):
    """[field, traj, y, x, time]: deliberately not The Well's order."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, n_traj, ny, nx, nt)).astype(np.float32)


def test_convert_npy_cli_reorders_axes_and_groups_vectors(tmp_path, capsys):
    array = _user_array()
    np.save(tmp_path / "sim.npy", array)
    rc = physfm(["convert", str(tmp_path / "sim.npy"), "--out", str(tmp_path / "mine"), "--fields",
                 "dye,velocity_x,velocity_y", "--layout", "field traj y x time", "--dt", "0.25",
                 "--periodic", "x", "--split", "0.6,0.2,0.2"])
    assert rc == 0 and "dye, velocity_x, velocity_y" in capsys.readouterr().out
    meta = read_well_metadata(tmp_path / "mine")
    assert meta.dataset_name == "mine" and meta.spatial_dims == ("x", "y") and meta.spatial_shape == (8, 4)
    assert {s: v["trajectories"] for s, v in meta.splits.items()} == {"train": 6, "valid": 2, "test": 2}
    assert meta.periodic == (True, False) and meta.dt == pytest.approx(0.25)
    assert [(f.name, f.order) for f in meta.fields] == [("dye", 0), ("velocity", 1)]
    ds = WellWindowDataset(tmp_path / "mine", "valid", n_steps_input=1, n_steps_output=1, normalize=False)
    # valid = trajectories 6, 7; window 0 of trajectory 7 is index 5 (5 windows per trajectory).
    expected = np.transpose(array[:, 7, :, :, 0], (2, 1, 0))  # [x, y, field]
    np.testing.assert_array_equal(ds[5]["input_fields"][0].numpy(), expected)


def test_convert_npz_and_hdf5_with_key(tmp_path):
    array = np.moveaxis(_user_array(n_traj=2), [0, 1, 2, 3, 4], [4, 0, 3, 2, 1])  # traj time x y field
    np.savez(tmp_path / "a.npz", other=np.zeros(3), data=array)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("group/fields", data=array)
        f.create_dataset("grid", data=np.zeros(3))
    for file, key in (("a.npz", "data"), ("a.h5", "group/fields")):
        out = convert_arrays(tmp_path / file, tmp_path / file.replace(".", "_"), fields=["a", "b", "c"],
                             layout="traj time x y field", dt=0.1, periodic=["x", "y"], split=(1, 0, 0), key=key)
        ds = WellWindowDataset(out, n_steps_input=1, n_steps_output=1, normalize=False)
        np.testing.assert_array_equal(ds[0]["output_fields"][0].numpy(), array[0, 1])
    with pytest.raises(ValueError, match=r"holds arrays \['other', 'data'\]; pass --key"):
        convert_arrays(tmp_path / "a.npz", tmp_path / "x", fields=["a", "b", "c"], layout="traj time x y field", dt=1)
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        convert_arrays(tmp_path / "a.h5", tmp_path / "x", fields=["a", "b", "c"], layout="traj time x y field", dt=1,
                       key="nope")


def test_convert_single_trajectory_without_traj_axis(tmp_path):
    array = np.random.default_rng(1).normal(size=(5, 6, 4, 2)).astype(np.float32)  # time x y field
    out = convert_arrays(array, tmp_path / "one", fields=["p", "q"], layout="time x y field", dt=0.1, split=(1, 0, 0))
    assert read_well_metadata(out).splits["train"]["trajectories"] == 1


@pytest.mark.parametrize("layout,fields,message", [
    ("traj time x y", ["a", "b"], "no 'field' axis"),
    ("traj time x field", ["a", "b"], r"array of shape \(3, 6, 8, 4, 2\) \(5 axes\) does not match layout"),
    ("traj time x y field", ["a", "b", "c"], "has 2 channels but --fields lists 3"),
    ("traj time x (y z) field", ["a", "b"], "grouped axes are not supported"),
])
def test_convert_pattern_mismatch(tmp_path, layout, fields, message):
    np.save(tmp_path / "bad.npy", np.zeros((3, 6, 8, 4, 2), np.float32))
    with pytest.raises(ValueError, match=message):
        convert_arrays(tmp_path / "bad.npy", tmp_path / "out", fields=fields, layout=layout, dt=0.1)
    assert not (tmp_path / "out").exists()


def test_convert_cli_error_exit_code(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 4, 2), np.float32))
    rc = physfm(["convert", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o"), "--fields", "a,b",
                 "--layout", "traj time x y field", "--dt", "0.1", "--periodic", "z"])
    assert rc == 1
    assert "physfm convert: error: periodic: unknown axes ['z']" in capsys.readouterr().err


def test_inspect_prints_summary_and_flags_invalid(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path / "toy", n_traj=(2, 1, 1), n_steps=5, shape=(8, 4))
    assert physfm(["inspect", str(toy)]) == 0
    out = capsys.readouterr().out
    for text in ("toy_waves", "tracer, velocity_x, velocity_y", "shape [8, 4]", "dt = 0.1", "x: periodic",
                 "train        2 trajectories", "amplitude=0.5", "4 trajectories scanned", "valid        yes"):
        assert text in out
    with h5py.File(next((toy / "data" / "test").glob("*.hdf5")), "r+") as f:
        f["t0_fields/tracer"][0, 3, 1, 1] = np.nan
    assert physfm(["inspect", str(toy)]) == 1
    err = capsys.readouterr().err
    assert "physfm inspect: error:" in err and "trajectory 0 at time index 3" in err
    assert physfm(["inspect", str(toy), "--no-scan"]) == 0


def test_hf_round_trip_and_windows(tmp_path):
    toy = write_toy_dataset(tmp_path / "toy", n_traj=(3, 1, 0), n_steps=6, shape=(8, 4))
    hf = to_hf_dataset(toy, "train", cache_dir=tmp_path / "cache")
    assert len(hf) == 3 and {"tracer", "velocity_x", "velocity_y", "file", "trajectory"} <= set(hf.column_names)
    assert np.asarray(hf.with_format("numpy")[0]["velocity_x"]).shape == (6, 8, 4)

    well = WellWindowDataset(toy, n_steps_input=2, n_steps_output=2)
    windows = HFWindowDataset(hf, n_steps_input=2, n_steps_output=2, normalizer=well.normalizer)
    assert windows.field_names == well.field_names and len(windows) == len(well)
    for i in (0, 4, len(well) - 1):
        torch.testing.assert_close(windows[i]["input_fields"], well[i]["input_fields"])
        torch.testing.assert_close(windows[i]["output_fields"], well[i]["output_fields"])
    streamed = list(HFStreamingWindowDataset(hf.to_iterable_dataset(), n_steps_input=2, n_steps_output=2,
                                             field_names=well.field_names, normalizer=well.normalizer))
    assert len(HFWindowDataset(hf.select([2, 0]), n_steps_input=2, n_steps_output=2)) == 2 * 3
    assert len(streamed) == len(well)
    torch.testing.assert_close(streamed[5]["output_fields"], well[5]["output_fields"])

    back = from_hf_dataset(to_hf_dataset_dict(toy, cache_dir=tmp_path / "cache"), tmp_path / "back")
    meta, orig = read_well_metadata(back), read_well_metadata(toy)
    assert (meta.field_names, meta.periodic, meta.dt, meta.spatial_shape) == \
        (orig.field_names, orig.periodic, orig.dt, orig.spatial_shape)
    assert {s: v["trajectories"] for s, v in meta.splits.items()} == {"train": 3, "valid": 1}
    again = WellWindowDataset(back, n_steps_input=2, n_steps_output=2)
    torch.testing.assert_close(again[7]["input_fields"], well[7]["input_fields"])


def test_from_plain_hf_dataset_needs_dt_and_periodic(tmp_path):
    import datasets

    rows = {"u": [np.ones((4, 6, 4), np.float32) * i for i in range(2)]}
    hf = datasets.Dataset.from_dict(rows)
    with pytest.raises(ValueError, match="pass dt="):
        from_hf_dataset(hf, tmp_path / "o")
    out = from_hf_dataset(hf, tmp_path / "o", dt=0.5, periodic=["x"])
    meta = read_well_metadata(out)
    assert meta.field_names == ["u"] and meta.periodic == (True, False) and meta.dt == 0.5
