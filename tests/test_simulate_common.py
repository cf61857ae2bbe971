"""The simulator registry, `generate` (Well-format writing) and `physfm simulate` CLI."""

import h5py
import numpy as np
import pytest
import torch

import physfm.simulate as simulate
from physfm.data import WellWindowDataset
from physfm.simulate import SYSTEMS, generate, split_counts
from physfm.simulate.base import check_resolution, grid_coordinates, parse_resolution
from physfm.simulate.cli import main

SMALL = {"shear_flow": (16, 32), "gray_scott_reaction_diffusion": (16, 16), "navier_stokes_3d": (8, 8, 8)}


def _read_split(path, split):
    """{field: [traj, time, x, y(, d)]} of every file of a split, concatenated (sorted names)."""
    out = {}
    for file in sorted((path / "data" / split).glob("*.hdf5")):
        with h5py.File(file) as f:
            for group in ("t0_fields", "t1_fields"):
                for name in f[group].attrs["field_names"]:
                    name = name.decode() if isinstance(name, bytes) else name
                    out.setdefault(name, []).append(f[group][name][()])
    return {k: np.concatenate(v) for k, v in out.items()}


def test_registry_holds_the_four_systems_with_consistent_specs():
    expected = {"shear_flow", "gray_scott_reaction_diffusion", "euler_multi_quadrants", "acoustic_wave"}
    assert expected <= set(SYSTEMS)
    for name, spec in SYSTEMS.items():
        assert spec.name == name
        assert len(spec.periodic) == len(spec.domain) == len(spec.default_resolution) == len(spec.axis_names)
        components = [c for comps in spec.vector_fields.values() for c in comps]
        assert set(components) <= set(spec.field_names) and len(set(spec.field_names)) == len(
            spec.field_names
        )
        assert spec.dt > 0 and spec.default_n_steps > 0
        draws = spec.sample_parameters(3, torch.Generator().manual_seed(0))
        assert len(draws) == 3 and draws == spec.sample_parameters(3, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_simulator_returns_well_layout(name):
    spec = SYSTEMS[name]
    params = spec.sample_parameters(2, torch.Generator().manual_seed(1))
    out = simulate.simulate_system(name, params, SMALL[name], 2)
    assert set(out) == set(spec.scalar_fields) | set(spec.vector_fields)
    for key, value in out.items():
        d = len(spec.vector_fields.get(key, ()))
        assert value.shape == (2, 3, *SMALL[name]) + ((d,) if d else ()) and value.dtype == torch.float32
        assert torch.isfinite(value).all()


def test_generate_writes_a_loadable_deterministic_dataset(tmp_path):
    kwargs = dict(n_trajectories=5, resolution=(16, 32), n_steps=3, seed=7, progress=False, batch_size=2)
    path = generate("shear_flow", tmp_path / "a", split_fractions=(0.6, 0.2, 0.2), **kwargs)
    again = generate("shear_flow", tmp_path / "b", split_fractions=(0.6, 0.2, 0.2), **kwargs)
    assert (path / "stats.yaml").is_file()
    for split, n in {"train": 3, "valid": 1, "test": 1}.items():
        data, data_b = _read_split(path, split), _read_split(again, split)
        assert data["velocity"].shape == (n, 4, 16, 32, 2) and data["tracer"].shape == (n, 4, 16, 32)
        for key in data:
            np.testing.assert_array_equal(data[key], data_b[key])
    # Files group trajectories by parameters and record them under The Well's names.
    with h5py.File(next((path / "data" / "train").glob("*.hdf5"))) as f:
        assert f.attrs["dataset_name"] == "shear_flow"
        assert float(f.attrs["Reynolds"]) in (1e4, 5e4, 1e5, 5e5)
        np.testing.assert_allclose(f["dimensions"]["x"][()], np.arange(16) / 16)
        np.testing.assert_allclose(f["dimensions"]["y"][()], -1 + 2 * np.arange(32) / 32)
        np.testing.assert_allclose(f["dimensions"]["time"][()], 0.1 * np.arange(4), atol=1e-12)
    ds = WellWindowDataset(path, split="train", n_steps_input=2, n_steps_output=1)
    assert ds.field_names == ["tracer", "pressure", "velocity_x", "velocity_y"]
    assert tuple(ds.periodic) == (True, True) and tuple(ds.spatial_shape) == (16, 32)
    assert ds[0]["input_fields"].shape == (2, 16, 32, 4)


def test_generate_with_fixed_parameters_and_the_well_reader(tmp_path):
    from the_well.data import WellDataset

    path = generate(
        "gray_scott_reaction_diffusion",
        tmp_path / "gs",
        n_trajectories=2,
        resolution=(16, 16),
        n_steps=3,
        split_fractions=(1.0, 0.0, 0.0),
        progress=False,
        pattern="spots",
    )
    files = list((path / "data" / "train").glob("*.hdf5"))
    assert len(files) == 1  # both trajectories share (F, k) -> one file, as in The Well
    with h5py.File(files[0]) as f:
        assert (float(f.attrs["F"]), float(f.attrs["k"])) == (0.03, 0.062)
    well = WellDataset(
        path=str(path / "data" / "train"), n_steps_input=1, n_steps_output=1, use_normalization=False
    )
    assert well[0]["input_fields"].shape == (1, 16, 16, 2)


def test_cli_writes_a_dataset_and_reports_user_errors(tmp_path, capsys):
    out = tmp_path / "sf"
    argv = [
        "shear_flow",
        "--out",
        str(out),
        "--n-trajectories",
        "1",
        "--resolution",
        "16x32",
        "--n-steps",
        "1",
    ]
    argv += ["--reynolds", "1e5", "--schmidt", "2", "--n-shear", "4", "--n-blobs", "3", "--width", "0.5"]
    assert main(argv + ["--no-progress"]) == 0
    with h5py.File(next((out / "data" / "train").glob("*.hdf5"))) as f:
        assert (f.attrs["Reynolds"], f.attrs["Schmidt"], f.attrs["n_shear"], f.attrs["width"]) == (
            1e5,
            2.0,
            4,
            0.5,
        )
        tracer = f["t0_fields"]["tracer"][0]
    expected = simulate.shear_flow(
        reynolds=1e5, schmidt=2.0, n_shear=4, n_blobs=3, width=0.5, resolution=(16, 32), n_steps=1
    )["tracer"]
    np.testing.assert_allclose(tracer, expected.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="already exists"):
        main(argv)
    with pytest.raises(ValueError, match="resolution"):
        main(["shear_flow", "--out", str(tmp_path / "x"), "--resolution", "16by32"])
    with pytest.raises(ValueError, match="invalid choice"):
        main(["no_such_system", "--out", str(tmp_path / "y")])
    with pytest.raises(ValueError, match="pattern"):
        main(["gray_scott_reaction_diffusion", "--out", str(tmp_path / "z"), "--pattern", "zebra"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "nope"}, "system"),
        ({"n_trajectories": 0}, "n_trajectories"),
        ({"split_fractions": (0.5, 0.1, 0.1)}, "split_fractions"),
        ({"viscosity": 1.0}, "viscosity"),
        ({"resolution": (2, 32)}, "resolution"),
        ({"batch_size": 0}, "batch_size: got 0"),
        ({"device": "cuda:7" if torch.cuda.is_available() else "cuda"}, "CUDA"),
        ({"device": "gpu"}, "expected a torch device"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path, kwargs, needle):
    args = {"name": "shear_flow", "out": tmp_path / "d", "n_trajectories": 1, "progress": False} | kwargs
    with pytest.raises(ValueError, match=needle):
        generate(**args)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("n", "fractions", "expected"), [
    (8, (0.8, 0.1, 0.1), (6, 1, 1)),   # rounding down alone would leave valid and test empty
    (4, (0.8, 0.1, 0.1), (2, 1, 1)),
    (10, (0.8, 0.2, 0.0), (8, 2, 0)),  # a split not asked for stays empty
    (2, (0.5, 0.25, 0.25), (2, 0, 0)),  # too few to split: everything trains
    (100, (0.8, 0.1, 0.1), (80, 10, 10)),
])
def test_every_split_asked_for_gets_a_trajectory(n, fractions, expected):
    counts = split_counts(n, fractions)
    assert (counts["train"], counts["valid"], counts["test"]) == expected


def test_grid_helpers():
    assert parse_resolution("128x256") == (128, 256) and parse_resolution(None) is None
    with pytest.raises(ValueError, match="resolution"):
        parse_resolution("128", 2)
    assert check_resolution(SYSTEMS["shear_flow"], None) == (128, 256)
    centres, edges = grid_coordinates([(0.0, 1.0)], [4]), grid_coordinates([(0.0, 1.0)], [4], centred=False)
    np.testing.assert_allclose(centres[0], [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(edges[0], [0.0, 0.25, 0.5, 0.75])
