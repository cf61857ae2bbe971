"""The data and selection tools on 3-D fields: `physfm inspect`, `physfm convert`, `physfm select-tokeniser`,
and the rendered card of a 3-D tokeniser."""

import numpy as np
import pytest
import torch

from physfm.cli import main as physfm
from physfm.data import WellWindowDataset, read_well_metadata
from physfm.data.convert import convert_arrays
from physfm.hub import render_model_card
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel
from physfm.selection import evaluate_reconstruction, select_tokeniser
from physfm.simulate import generate

TINY = {"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2, 2],
        "spatial_compressions": [2, 4], "temporal_compressions": [1, 2]}


@pytest.fixture(scope="module")
def ns3d(tmp_path_factory):
    return generate("navier_stokes_3d", tmp_path_factory.mktemp("ns3d") / "ns", n_trajectories=3,
                    resolution=(8, 8, 8), n_steps=4, split_fractions=(1 / 3, 1 / 3, 1 / 3), progress=False)


def _tokeniser(n_spatial_dims):
    torch.manual_seed(0)
    return PhysfmTokeniserModel(PhysfmTokeniserConfig(n_spatial_dims=n_spatial_dims, **TINY)).eval()


def test_inspect_reports_a_3d_dataset(ns3d, capsys):
    assert physfm(["inspect", str(ns3d)]) == 0
    out = capsys.readouterr().out
    assert "3-D, dims ['x', 'y', 'z'], shape [8, 8, 8]" in out
    assert "velocity_z" in out and "z: periodic" in out and "all finite" in out


def test_convert_traj_time_x_y_z_field_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(3, 4, 6, 5, 4, 4)).astype(np.float32)  # traj time x y z field; unequal axes
    out = convert_arrays(array, tmp_path / "mine", fields=["density", "velocity_x", "velocity_y", "velocity_z"],
                         layout="traj time x y z field", dt=0.1, periodic=["x", "y"], split=(1, 0, 0))
    meta = read_well_metadata(out)
    assert meta.n_spatial_dims == 3 and meta.spatial_dims == ("x", "y", "z") and meta.spatial_shape == (6, 5, 4)
    assert meta.periodic == (True, True, False)
    assert [(f.name, f.order) for f in meta.fields] == [("density", 0), ("velocity", 1)]  # a 3-component vector
    ds = WellWindowDataset(out, "train", n_steps_input=4, n_steps_output=0, normalize=False)
    assert ds.field_names == ["density", "velocity_x", "velocity_y", "velocity_z"]
    np.testing.assert_array_equal(ds[len(ds) - 1]["input_fields"].numpy(), array[2])


def test_convert_reorders_a_3d_layout(tmp_path):
    rng = np.random.default_rng(1)
    array = rng.normal(size=(2, 2, 3, 4, 5, 3)).astype(np.float32)  # field traj z y x time
    out = convert_arrays(array, tmp_path / "mine", fields=["a", "b"], layout="field traj z y x time", dt=1.0,
                         split=(1, 0, 0))
    assert read_well_metadata(out).spatial_dims == ("x", "y", "z")  # stored as The Well's [x, y, z]
    ds = WellWindowDataset(out, "train", n_steps_input=3, n_steps_output=0, normalize=False)
    np.testing.assert_array_equal(ds[0]["input_fields"].numpy(), array[:, 0].transpose(4, 3, 2, 1, 0))


def test_select_tokeniser_ranks_3d_and_explains_a_2d_candidate(ns3d, tmp_path):
    _tokeniser(3).save_pretrained(tmp_path / "tok3d")
    _tokeniser(2).save_pretrained(tmp_path / "tok2d")
    report = select_tokeniser(ns3d, [str(tmp_path / "tok2d"), str(tmp_path / "tok3d")], max_samples=2)
    assert report.recommendation == str(tmp_path / "tok3d")
    first, second = report.candidates
    assert first.result is not None and np.isfinite(first.result.vrmse)
    assert second.result is None and "3-D fields but the tokeniser is 2-D" in second.reason
    with pytest.raises(ValueError, match="3-D fields but the tokeniser is 2-D"):
        evaluate_reconstruction(_tokeniser(2), ns3d, "valid")


def test_evaluate_reconstruction_in_3d_covers_every_ratio(ns3d):
    rows = evaluate_reconstruction(_tokeniser(3), ns3d, "valid", max_samples=2)
    assert {(r.spatial_compression, r.temporal_compression) for r in rows} == {(2, 1), (2, 2), (4, 1), (4, 2)}
    assert all(np.isfinite(r.vrmse) for r in rows)


def test_card_of_a_3d_tokeniser_describes_3d_fields():
    card = str(render_model_card(_tokeniser(3), "physfm/tokeniser-turbulence-3d", physical_system="navier_stokes_3d"))
    assert "causal (3+1)-D convolutional" in card and "3-D decaying turbulence" in card
    assert "torch.randn(1, 5, 32, 32, 32, 5)  # [batch, time, x, y, z, fields]" in card
    assert "spatial_shape=(32, 32, 32)" in card and "z: periodic" in card
