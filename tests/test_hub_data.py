"""Well-format datasets read straight from a Hub dataset repository (``hf://datasets/...``), and ``physfm download``.

The repository lives on the local Hub test server, in The Well's layout (``polymathic-ai/<name>`` with
``data/<split>/*.hdf5`` and ``stats.yaml``); every window read over ``hf://`` is compared with the same
window read from the local copy that was uploaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, HfFileSystem, constants

from physfm.cli import main as physfm_main
from physfm.data import WellWindowDataset, write_well_dataset
from physfm.data.hub_files import HubFolder, HubReadError
from physfm.data.well_format import MARKER

REPO = "polymathic-ai/shear_flow"
URL = f"hf://datasets/{REPO}"
BLOCK = 8 * 2**10  # small blocks, so that one window is a small part of a file
TINY_DYNAMICS = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 2,
                 "tokeniser_config": {"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2, 2]}}


def make_well_dataset(out: Path, n_steps: int = 24, shape=(32, 32), seed: int = 0) -> Path:
    """Two train files (one per Reynolds number, as The Well groups them), one valid file."""
    rng = np.random.default_rng(seed)

    def fields(n_traj):
        return {"tracer": rng.normal(size=(n_traj, n_steps, *shape)).astype(np.float32),
                "velocity": rng.normal(size=(n_traj, n_steps, *shape, 2)).astype(np.float32)}

    coords = {"x": np.linspace(0, 1, shape[0], endpoint=False), "y": np.linspace(0, 2, shape[1], endpoint=False)}
    return write_well_dataset(out, "shear_flow", {"train": fields(6), "valid": fields(2)}, dt=0.1, coords=coords,
                              periodic={"x": True, "y": False},
                              simulation_parameters={"train": [{"Reynolds": 1e4}] * 3 + [{"Reynolds": 1e5}] * 3,
                                                     "valid": {"Reynolds": 1e4}})


def publish(local: Path, repo: str = REPO) -> None:
    """Upload a local dataset folder as a dataset repo, the way a user would."""
    api = HfApi(endpoint=constants.ENDPOINT)
    api.create_repo(repo, repo_type="dataset")
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=local, ignore_patterns=[MARKER])


@pytest.fixture
def well_repo(hub_server, tmp_path):
    local = make_well_dataset(tmp_path / "local")
    publish(local)
    return local


def windows(dataset) -> torch.Tensor:
    return torch.stack([torch.cat([item["input_fields"], item["output_fields"]]) for item in dataset])


def served(server) -> int:
    return sum(server.bytes_served.values())


def test_hub_windows_equal_the_local_copy_and_the_second_epoch_comes_from_the_cache(hub_server, well_repo, tmp_path):
    local = WellWindowDataset(well_repo, split="train")
    remote = WellWindowDataset(HubFolder(URL, cache_dir=tmp_path / "cache", block_size=BLOCK), split="train")
    assert [f.name for f in remote.files] == [f.name for f in local.files] and len(remote) == len(local) == 120
    assert remote.field_names == local.field_names and remote.periodic == local.periodic
    first = windows(remote)
    assert torch.equal(first, windows(local))  # normalised with the Hub's stats.yaml, bit for bit
    cold = served(hub_server)
    assert 0 < cold <= sum(f.size for f in remote.files) + remote.path.files["stats.yaml"]  # no block fetched twice

    hub_server.log.clear()
    again = WellWindowDataset(HubFolder(URL, cache_dir=tmp_path / "cache", block_size=BLOCK), split="train")
    assert torch.equal(windows(again), first)
    assert served(hub_server) == cold  # the second epoch: nothing served
    assert not [line for line in hub_server.log if "/resolve/" in line]
    valid = WellWindowDataset(URL, split="valid", cache_dir=tmp_path / "cache")  # a str path, the default blocks
    assert torch.equal(windows(valid), windows(WellWindowDataset(well_repo, split="valid")))


def test_one_window_fetches_a_small_part_of_the_file(hub_server, well_repo, tmp_path):
    dataset = WellWindowDataset(HubFolder(URL, cache_dir=tmp_path / "cache", block_size=BLOCK), split="train",
                                normalize=False)
    size = dataset.files[0].size
    headers = served(hub_server)  # both files' headers and coordinates
    window = dataset[7]
    fetched = served(hub_server) - headers
    assert torch.equal(torch.cat([window["input_fields"], window["output_fields"]]),
                       dataset.read_window(*dataset.locate(7), 5))
    assert headers < 0.1 * 2 * size and fetched < 0.15 * size, (headers, fetched, size)


def test_a_dropped_connection_is_one_clear_error_and_leaves_no_partial_block(hub_server, well_repo, tmp_path):
    folder = HubFolder(URL, cache_dir=tmp_path / "cache", block_size=BLOCK, retries=0)
    dataset = WellWindowDataset(folder, split="train")
    hub_server.drop_range_reads = 10**6  # a dead link: every ranged GET is cut halfway
    with pytest.raises(HubReadError) as caught:
        dataset[50]
    message = str(caught.value)
    assert message.startswith(f"{URL}/data/train/") and ".hdf5: bytes " in message
    assert hub_server.endpoint in message and "nothing partial was cached" in message and hub_server.dropped >= 1

    blocks = folder.repo_dir / "blocks" / folder.commit  # <path in repo>/<block size>-<index>
    assert blocks.is_dir()
    for block in (p for p in blocks.rglob("*") if p.is_file()):  # each a whole block of the file's true bytes
        size, index = map(int, block.name.split("-"))
        data = hub_server.file_bytes(f"datasets/{REPO}", block.parent.relative_to(blocks).as_posix())
        assert block.read_bytes() == data[index * size:(index + 1) * size], block
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    hub_server.drop_range_reads = 0  # the link is back: the same dataset reads the window exactly
    expected = WellWindowDataset(well_repo)
    assert all(torch.equal(dataset[50][k], v) for k, v in expected[50].items())

    retrying = WellWindowDataset(HubFolder(URL, cache_dir=tmp_path / "cache", block_size=BLOCK, retries=1))
    hub_server.drop_range_reads = 1  # a link that fails once: the retry reads it
    item = retrying[100]
    assert hub_server.drop_range_reads == 0 and all(torch.equal(item[k], v) for k, v in expected[100].items())


def test_offline_reads_a_warm_cache_and_names_a_cold_one(hub_server, well_repo, tmp_path, monkeypatch):
    warm = WellWindowDataset(URL, split="valid", cache_dir=tmp_path / "warm")
    expected = windows(warm)
    hub_server.log.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = WellWindowDataset(URL, split="valid", cache_dir=tmp_path / "warm")
    assert torch.equal(windows(offline), expected) and hub_server.log == []
    with pytest.raises(FileNotFoundError, match=r"HF_HUB_OFFLINE=1 and this revision was never read online"):
        WellWindowDataset(URL, split="valid", cache_dir=tmp_path / "cold")
    with pytest.raises(FileNotFoundError, match=r"not in the block cache .* HF_HUB_OFFLINE=1 forbids fetching"):
        WellWindowDataset(URL, split="train", cache_dir=tmp_path / "warm")  # listed, never read
    assert hub_server.log == []


def test_revisions_missing_repos_and_paths_info(hub_server, well_repo, tmp_path):
    api = HfApi(endpoint=hub_server.endpoint)
    api.create_tag(REPO, tag="v1", repo_type="dataset")
    v1 = hub_server.head(f"datasets/{REPO}")
    api.delete_file("data/train/shear_flow_Reynolds_100000.hdf5", REPO, repo_type="dataset")
    assert len(WellWindowDataset(f"{URL}@v1", cache_dir=tmp_path / "c").files) == 2
    assert len(WellWindowDataset(f"{URL}@{v1}", cache_dir=tmp_path / "c").files) == 2
    assert len(WellWindowDataset(URL, cache_dir=tmp_path / "c").files) == 1
    assert HubFolder(f"{URL}@v1", cache_dir=tmp_path / "c").commit == v1
    with pytest.raises(FileNotFoundError, match=r"revision 'v9' does not exist in dataset repository"):
        WellWindowDataset(f"{URL}@v9")
    with pytest.raises(FileNotFoundError, match=r"no dataset repository 'polymathic-ai/shear_flwo' .* did you mean "
                                                r"polymathic-ai/shear_flow\?"):
        WellWindowDataset("hf://datasets/polymathic-ai/shear_flwo")
    with pytest.raises(ValueError, match=r"expected hf://datasets/<org>/<name>"):
        WellWindowDataset("hf://polymathic-ai/shear_flow")
    # HfFileSystem's info() asks paths-info once its listing cache is cold.
    info = HfFileSystem(endpoint=hub_server.endpoint, skip_instance_cache=True).info(
        f"datasets/{REPO}/stats.yaml", refresh=True)
    assert info["size"] == (well_repo / "stats.yaml").stat().st_size
    assert any("paths-info" in line for line in hub_server.log)


def test_download_a_subset_round_trip_refusals_and_a_dropped_download(hub_server, well_repo, tmp_path, capsys):
    def download(out, *extra):
        return physfm_main(["download", REPO, "--split", "train", "valid", "--out", str(out), "--no-progress", *extra])

    out = tmp_path / "subset"
    assert download(out, "--n_files", "1") == 0
    assert "shear_flow" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        MARKER, "data/train/shear_flow_Reynolds_10000.hdf5", "data/valid/shear_flow_Reynolds_10000.hdf5", "stats.yaml"]
    subset = WellWindowDataset(out, split="train")
    source = WellWindowDataset(well_repo / "data" / "train" / "shear_flow_Reynolds_10000.hdf5",
                               stats_path=well_repo / "stats.yaml")
    assert torch.equal(windows(subset), windows(source))  # the repository's statistics, not the subset's

    assert download(out, "--n_files", "1") == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert download(out, "--n_files", "2", "--overwrite") == 0
    assert len(WellWindowDataset(out).files) == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert download(mine, "--overwrite") == 1
    assert "not written by physfm" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "precious"

    hub_server.drop_downloads = True  # every download dies halfway, and resuming is refused
    dropped = tmp_path / "dropped"
    assert download(dropped) == 1
    error = capsys.readouterr().err
    assert f"downloading {URL}/" in error and hub_server.endpoint in error and f"nothing was written to {dropped}" in error
    assert not dropped.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_inspect_train_and_evaluate_on_a_hub_path(hub_server, well_repo, tmp_path, capsys):
    assert physfm_main(["inspect", URL]) == 0
    out = capsys.readouterr().out
    assert f"({URL})" in out and "train        6 trajectories in 2 file(s)" in out and "not scanned" in out
    assert physfm_main(["inspect", URL, "--scan"]) == 0
    assert "8 trajectories scanned, all finite" in capsys.readouterr().out

    import json

    run = tmp_path / "run"
    assert physfm_main(["train", "--stage", "dynamics", "--data", URL, "--output_dir", str(run), "--max_steps", "2",
                        "--per_device_train_batch_size", "2", "--eval_steps", "2", "--save_steps", "2",
                        "--max_eval_samples", "2", "--max_rollout_samples", "1", "--rollout_horizons", "1", "--spatial_compression", "4",
                        "--disable_tqdm", "--count_flops", "false", "--model_config", json.dumps(TINY_DYNAMICS)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][-1]["vrmse"])
    processor = json.loads((run / "preprocessor_config.json").read_text())
    assert processor["dataset_name"] == "shear_flow" and processor["field_names"] == ["tracer", "velocity_x",
                                                                                     "velocity_y"]
    assert physfm_main(["evaluate", str(run), "--data", f"{URL}@main", "--output_dir", str(tmp_path / "eval"),
                        "--horizons", "1", "--max_samples", "2"]) == 0
    assert "1" in json.loads((tmp_path / "eval" / "metrics.json").read_text())["rollout_vrmse"]
