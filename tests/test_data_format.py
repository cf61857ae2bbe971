"""Well HDF5 format: writing, reading, stats.yaml, and compatibility with the peer (`the-well`) both ways."""

import h5py
import numpy as np
import pytest
import torch
import yaml

from physfm.data import WellWindowDataset, compute_stats, read_file_header, read_well_metadata, write_stats
from physfm.data.toy import toy_fields, write_toy_dataset
from physfm.data.well_format import write_well_dataset

the_well_data = pytest.importorskip("the_well.data")
from the_well.data.normalization import ZScoreNormalization  # noqa: E402
from the_well.utils.dummy_data import write_dummy_data  # noqa: E402


def test_written_file_has_every_required_attr_and_group(tmp_path):
    out = write_toy_dataset(tmp_path / "toy", n_traj=(2, 1, 1), n_steps=5, shape=(8, 4))
    files = sorted((out / "data" / "train").glob("*.hdf5"))
    assert [f.name for f in files] == ["toy_waves_amplitude_0.5.hdf5"]
    with h5py.File(files[0]) as f:
        assert f.attrs["dataset_name"] == "toy_waves" and f.attrs["grid_type"] == "cartesian"
        assert f.attrs["n_spatial_dims"] == 2 and f.attrs["n_trajectories"] == 2
        assert list(f.attrs["simulation_parameters"]) == ["amplitude"] and f.attrs["amplitude"] == 0.5
        assert list(f["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
        np.testing.assert_allclose(f["dimensions/time"][:], 0.1 * np.arange(5), rtol=1e-6)
        assert f["dimensions/x"].shape == (8,) and not f["dimensions/x"].attrs["sample_varying"]
        for name in ("x_periodic", "y_periodic"):
            bc = f["boundary_conditions"][name]
            assert bc.attrs["bc_type"] == "PERIODIC" and list(bc.attrs["associated_dims"]) == [name[0]]
            assert bc["mask"][0] and bc["mask"][-1] and not bc["mask"][1]
        assert list(f["scalars"].attrs["field_names"]) == ["amplitude"]
        assert list(f["t0_fields"].attrs["field_names"]) == ["tracer"]
        assert list(f["t1_fields"].attrs["field_names"]) == ["velocity"]
        assert list(f["t2_fields"].attrs["field_names"]) == []
        v = f["t1_fields/velocity"]
        assert v.shape == (2, 5, 8, 4, 2) and v.dtype == np.float32
        assert list(v.attrs["dim_varying"]) == [True, True] and v.attrs["sample_varying"] and v.attrs["time_varying"]
    assert not list(tmp_path.glob(".*tmp*")), "temporary directory left behind"


def test_stats_yaml_matches_numpy_over_train_split(tmp_path):
    fields = toy_fields(3, 6, (8, 4), seed=1)
    out = write_well_dataset(tmp_path / "d", "toy", {"train": fields, "test": toy_fields(1, 6, (8, 4), seed=9)},
                             dt=0.1, coords={"x": np.arange(8) / 8, "y": np.arange(4) / 4},
                             periodic={"x": True, "y": True})
    stats = yaml.safe_load((out / "stats.yaml").read_text())
    assert set(stats) == {"mean", "std", "mean_delta", "std_delta", "rms", "rms_delta"}
    v = fields["velocity"].astype(np.float64)
    np.testing.assert_allclose(stats["mean"]["velocity"], v.mean(axis=(0, 1, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(stats["std"]["velocity"], v.std(axis=(0, 1, 2, 3)), rtol=1e-9)
    d = np.diff(fields["tracer"].astype(np.float64), axis=1)
    np.testing.assert_allclose(stats["std_delta"]["tracer"], d.std(), rtol=1e-9)
    np.testing.assert_allclose(stats["rms"]["tracer"], np.sqrt((fields["tracer"].astype(np.float64) ** 2).mean()))
    # Recomputing from the files gives the same numbers.
    again = compute_stats(out)
    np.testing.assert_allclose(again["std"]["velocity"], stats["std"]["velocity"], rtol=1e-6)


def test_trajectories_grouped_into_one_file_per_parameter_set(tmp_path):
    fields = toy_fields(3, 4, (4, 4))
    out = write_well_dataset(tmp_path / "d", "toy", {"train": fields}, dt=0.5,
                             coords={"x": np.arange(4), "y": np.arange(4)}, periodic={"x": False, "y": "wall"},
                             simulation_parameters={"train": [{"Re": 10.0}, {"Re": 20.0}, {"Re": 10.0}]})
    meta = read_well_metadata(out)
    assert meta.splits["train"]["files"] == 2 and meta.splits["train"]["trajectories"] == 3
    assert meta.boundary_types == {"x": ("OPEN", "OPEN"), "y": ("WALL", "WALL")} and meta.periodic == (False, False)
    assert meta.dt == pytest.approx(0.5)
    header = read_file_header(out / "data" / "train" / "toy_Re_10.hdf5")
    assert header.n_trajectories == 2 and header.parameters == {"Re": 10.0} and header.scalars["Re"] == 10.0


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    with pytest.raises(ValueError, match="already exists"):
        write_toy_dataset(tmp_path / "toy", n_steps=4, shape=(4, 4))
    write_toy_dataset(tmp_path / "toy", n_steps=6, shape=(4, 4), overwrite=True)
    assert read_well_metadata(out).splits["train"]["steps"] == [6]


def test_failed_write_leaves_nothing(tmp_path):
    bad = {"train": {"a": np.zeros((1, 3, 4, 4)), "b": np.zeros((1, 3, 4, 5))}}
    with pytest.raises(ValueError, match=r"spatial shape \(4, 5\)"):
        write_well_dataset(tmp_path / "d", "toy", bad, dt=0.1, coords={"x": np.arange(4), "y": np.arange(4)},
                           periodic={"x": True, "y": True})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n_in,n_out,stride", [(2, 1, 1), (1, 3, 2)])
def test_physfm_files_give_the_same_windows_in_the_well(tmp_path, n_in, n_out, stride):
    fields = toy_fields(3, 9, (8, 6), seed=3)
    fields["stress"] = np.random.default_rng(0).normal(size=(3, 9, 8, 6, 2, 2)).astype(np.float32)  # t2
    out = write_well_dataset(
        tmp_path / "d", "toy",
        {"train": fields}, dt=0.1,
        coords={"x": np.arange(8) / 8, "y": np.arange(6) / 6}, periodic={"x": True, "y": False},
        simulation_parameters={"train": [{"k": 1.0}, {"k": 2.0}, {"k": 1.0}]})
    ours = WellWindowDataset(out, "train", n_steps_input=n_in, n_steps_output=n_out, dt_stride=stride)
    peer = the_well_data.WellDataset(path=str(out), well_split_name="train", n_steps_input=n_in,
                                     n_steps_output=n_out, min_dt_stride=stride, max_dt_stride=stride,
                                     use_normalization=True, normalization_type=ZScoreNormalization)
    assert len(ours) == len(peer) > 0
    assert ours.field_names == [n for names in peer.metadata.field_names.values() for n in names]
    assert ours.field_names[-4:] == ["stress_xx", "stress_xy", "stress_yx", "stress_yy"]
    for i in range(len(ours)):
        a, b = ours[i], peer[i]
        torch.testing.assert_close(a["input_fields"], b["input_fields"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a["output_fields"], b["output_fields"], rtol=1e-6, atol=1e-6)
    # Periodic x / open y in the peer's own boundary encoding (2 = periodic, 1 = open).
    assert peer[0]["boundary_conditions"].tolist() == [[2.0, 2.0], [1.0, 1.0]]
    assert ours.periodic == (True, False)


def _write_peer_layout_file(path, rng, with_profile=False):
    """A file laid out as The Well documents it: t0 + t1 + t2 fields, a constant t0 field, time-varying
    scalars, wall/open boundaries; optionally a field that does not vary along y (``dim_varying``)."""
    n_traj, nt, nx, ny = 2, 7, 6, 5
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "peer_style", "grid_type": "cartesian", "n_spatial_dims": 2,
                        "n_trajectories": n_traj, "simulation_parameters": ["Ra"], "Ra": 1e6})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        for name, data in (("time", np.linspace(0, 0.6, nt)), ("x", np.linspace(0, 1, nx)),
                           ("y", np.linspace(-1, 1, ny))):
            ds = dims.create_dataset(name, data=data.astype(np.float32))
            ds.attrs["sample_varying"] = False
            ds.attrs["time_varying"] = name == "time"
        bcs = f.create_group("boundary_conditions")
        for name, dim, kind, n in (("x_open", "x", "open", nx), ("y_wall", "y", "wall", ny)):
            g = bcs.create_group(name)
            g.attrs.update({"associated_dims": [dim], "associated_fields": [], "bc_type": kind,
                            "sample_varying": False, "time_varying": False})
            mask = np.zeros(n, bool)
            mask[[0, -1]] = True
            g.create_dataset("mask", data=mask)
        sc = f.create_group("scalars")
        sc.attrs["field_names"] = ["Ra", "energy"]
        sc.create_dataset("Ra", data=np.float32(1e6)).attrs.update({"sample_varying": False, "time_varying": False})
        sc.create_dataset("energy", data=rng.random(nt).astype(np.float32)).attrs.update(
            {"sample_varying": False, "time_varying": True})

        def field(group, name, data, dim_varying=(True, True), sample=True, time=True):
            ds = f[group].create_dataset(name, data=data.astype(np.float32))
            ds.attrs.update({"dim_varying": list(dim_varying), "sample_varying": sample, "time_varying": time})

        t0_names = ["buoyancy", "profile", "mask"] if with_profile else ["buoyancy", "mask"]
        for g, names in (("t0_fields", t0_names), ("t1_fields", ["velocity"]),
                         ("t2_fields", ["stress"])):
            f.create_group(g).attrs["field_names"] = names
        field("t0_fields", "buoyancy", rng.normal(size=(n_traj, nt, nx, ny)))
        if with_profile:
            field("t0_fields", "profile", rng.normal(size=(n_traj, nt, nx)), dim_varying=(True, False))
        field("t0_fields", "mask", rng.random((nx, ny)), sample=False, time=False)
        field("t1_fields", "velocity", rng.normal(size=(n_traj, nt, nx, ny, 2)))
        field("t2_fields", "stress", rng.normal(size=(n_traj, nt, nx, ny, 2, 2)))


def test_peer_layout_files_load_in_physfm_with_the_peers_windows(tmp_path):
    split = tmp_path / "peer" / "data" / "train"
    split.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_peer_layout_file(split / "a.hdf5", rng)
    _write_peer_layout_file(split / "b.hdf5", rng)
    write_stats(compute_stats(tmp_path / "peer"), tmp_path / "peer" / "stats.yaml")

    ours = WellWindowDataset(tmp_path / "peer", "train", n_steps_input=2, n_steps_output=2)
    assert ours.field_names == ["buoyancy", "velocity_x", "velocity_y",
                                "stress_xx", "stress_xy", "stress_yx", "stress_yy"]
    assert ours.constant_field_names == ["mask"] and ours.periodic == (False, False)
    assert ours.boundary_types == {"x": ("OPEN", "OPEN"), "y": ("WALL", "WALL")}
    peer = the_well_data.WellDataset(path=str(tmp_path / "peer"), well_split_name="train", n_steps_input=2,
                                     n_steps_output=2, use_normalization=True,
                                     normalization_type=ZScoreNormalization)
    assert len(ours) == len(peer) == 2 * 2 * 4
    for i in (0, 5, len(ours) - 1):
        a, b = ours[i], peer[i]
        for key in ("input_fields", "output_fields", "constant_fields"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    meta = read_well_metadata(tmp_path / "peer")
    assert meta.parameters["train/a.hdf5"] == {"Ra": 1e6} and meta.scalars == ["Ra", "energy"]


def test_the_wells_own_dummy_writer_loads_in_physfm(tmp_path):
    split = tmp_path / "dummy" / "data" / "train"
    split.mkdir(parents=True)
    write_dummy_data(str(split / "dummy.hdf5"))
    ds = WellWindowDataset(tmp_path / "dummy", "train", n_steps_input=3, n_steps_output=1, normalize=False)
    peer = the_well_data.WellDataset(path=str(tmp_path / "dummy"), well_split_name="train", n_steps_input=3,
                                     n_steps_output=1)
    assert ds.field_names == ["field_x", "field_y"] and len(ds) == len(peer) == 2 * 7
    torch.testing.assert_close(ds[9]["input_fields"], peer[9]["input_fields"])
    torch.testing.assert_close(ds[9]["constant_fields"], peer[9]["constant_fields"])


def test_fields_not_varying_along_an_axis_are_broadcast(tmp_path):
    # The peer's reader cannot tile such time-varying fields, so this direction is checked against NumPy.
    _write_peer_layout_file(tmp_path / "p.hdf5", np.random.default_rng(1), with_profile=True)
    ds = WellWindowDataset(tmp_path / "p.hdf5", n_steps_input=1, n_steps_output=1, normalize=False)
    assert ds.field_names[:2] == ["buoyancy", "profile"]
    with h5py.File(tmp_path / "p.hdf5") as f:
        profile = f["t0_fields/profile"][1, 3:5]  # trajectory 1, times 3..4: [2, nx]
    item = ds[1 * 6 + 3]
    np.testing.assert_array_equal(item["input_fields"][0, :, :, 1].numpy(), np.repeat(profile[0][:, None], 5, 1))
    np.testing.assert_array_equal(item["output_fields"][0, :, :, 1].numpy(), np.repeat(profile[1][:, None], 5, 1))
