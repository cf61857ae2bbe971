"""WellWindowDataset: windows, normalisation, DataLoader workers."""

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from physfm.data import Normalizer, WellWindowDataset, write_well_dataset
from physfm.data.toy import toy_fields, write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("d") / "toy", n_traj=(3, 1, 1), n_steps=8, shape=(8, 4))


def test_windows_are_the_stored_frames_with_stride(tmp_path):
    fields = toy_fields(2, 10, (6, 4), seed=5)
    out = write_well_dataset(tmp_path / "d", "toy", {"train": fields}, dt=0.1,
                             coords={"x": np.arange(6) / 6, "y": np.arange(4) / 4}, periodic={"x": True, "y": True})
    ds = WellWindowDataset(out, n_steps_input=2, n_steps_output=2, dt_stride=3, normalize=False)
    span = 1 + 3 * 3
    assert len(ds) == 2 * (10 - span + 1)
    traj, start = 1, 0
    item = ds[traj * (10 - span + 1) + start]
    expected = np.concatenate([fields["tracer"][traj, ..., None], fields["velocity"][traj]], -1)[start:start + span:3]
    np.testing.assert_array_equal(item["input_fields"].numpy(), expected[:2])
    np.testing.assert_array_equal(item["output_fields"].numpy(), expected[2:])
    assert item["input_fields"].dtype == torch.float32 and item["input_fields"].shape == (2, 6, 4, 3)


def test_metadata_and_normalisation_round_trip(toy):
    ds = WellWindowDataset(toy, "train", n_steps_input=3, n_steps_output=1)
    assert ds.field_names == ["tracer", "velocity_x", "velocity_y"]
    assert ds.periodic == (True, True) and ds.spatial_shape == (8, 4) and ds.n_spatial_dims == 2
    assert ds.dataset_name == "toy_waves" and ds.dt == pytest.approx(0.1)
    raw = WellWindowDataset(toy, "train", n_steps_input=3, n_steps_output=1, normalize=False)
    stats = yaml.safe_load((toy / "stats.yaml").read_text())
    x, r = ds[4]["input_fields"], raw[4]["input_fields"]
    expected = (r[..., 1] - stats["mean"]["velocity"][0]) / stats["std"]["velocity"][0]
    torch.testing.assert_close(x[..., 1], expected)
    torch.testing.assert_close(ds.normalizer.denormalize(x), r, rtol=1e-5, atol=1e-5)
    # Over the whole train split the normalised channels are ~N(0, 1).
    all_frames = torch.cat([ds[i]["input_fields"] for i in range(0, len(ds), 5)])
    assert all_frames.mean(dim=(0, 1, 2)).abs().max() < 0.3
    assert ((all_frames.std(dim=(0, 1, 2)) - 1).abs() < 0.3).all()


def test_normalizer_numpy_and_channel_check():
    norm = Normalizer([1.0, 2.0], [2.0, 0.0])  # zero std is floored like the peer (1e-4)
    x = np.array([[3.0, 2.0]], np.float32)
    np.testing.assert_allclose(norm.normalize(x), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="expected 2 channels"):
        norm.normalize(torch.zeros(3, 3))


def test_dataloader_workers_open_lazily_and_agree(toy):
    ds = WellWindowDataset(toy, "train", n_steps_input=2, n_steps_output=1)
    assert ds._handles == {}, "files must not be opened before a worker asks"
    serial = [ds[i]["input_fields"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False, multiprocessing_context="fork")
    batched = torch.cat([b["input_fields"] for b in loader])
    torch.testing.assert_close(batched, torch.stack(serial))
    ds.close()
