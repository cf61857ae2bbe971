"""The field processor: physical units in and out, saved with every checkpoint, loaded by the Auto classes with
and without physfm, filled from the training data's stats.yaml, and a warning when finetuning data is far from it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import yaml
from test_training_common import TINY_DYNAMICS, make_dataset
from transformers import AutoFeatureExtractor, AutoProcessor

from physfm import PhysfmFieldProcessor, hub
from physfm.data import Normalizer, WellWindowDataset, processor_for_datasets, processor_from_dataset
from physfm.simulate import generate
from physfm.training.trainer import train

TOKENISER = {"hidden_channels": 4, "latent_channels": 4, "channel_multipliers": [1, 2]}  # ratio 2 only: fast
RUN = {"per_device_train_batch_size": 2, "max_eval_samples": 1, "max_rollout_samples": 1, "disable_tqdm": True,
       "count_flops": False, "spatial_compression": [2], "temporal_compression": [1], "learning_rate": 1e-3}


def processor(**overrides) -> PhysfmFieldProcessor:
    settings = dict(field_names=["density", "velocity_x", "velocity_y"], mean=[1.5, -0.25, 3.0],
                    std=[0.5, 2.0, 1e-3], periodic=[True, False], dt=0.01, grid_spacing=[0.1, 0.2],
                    dataset_name="toy")
    return PhysfmFieldProcessor(**{**settings, **overrides})


def physical(shape=(2, 3, 8, 6), seed=0, dtype=np.float64) -> np.ndarray:
    p = processor()
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((*shape, 3)) * np.array(p.std) + np.array(p.mean)).astype(dtype)


def with_value(x: np.ndarray, index, value) -> np.ndarray:
    x[index] = value
    return x


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    shear = generate("shear_flow", root / "shear_flow", n_trajectories=6, resolution=(16, 32), n_steps=4,
                     progress=False)
    return {"shear_flow": shear, "advection": make_dataset(root / "advection")}


@pytest.fixture(scope="module")
def tokeniser(data, tmp_path_factory):
    """Stage 1 for 2 steps on shear_flow, a checkpoint at each step."""
    out = tmp_path_factory.mktemp("tok")
    train(stage="tokeniser", data=[data["shear_flow"]], output_dir=out, max_steps=2, eval_steps=2, save_steps=1,
          model_config=TOKENISER, **RUN)
    return out


# ---------------------------------------------------------------------------------------------- round trips
def test_round_trip_to_float_precision():
    p = processor()
    x = physical()
    out = p(x)
    assert out["fields"].dtype == torch.float32 and out["field_names"] == p.field_names
    normalised = out["fields"].double()
    assert float(normalised.mean()) == pytest.approx(0, abs=0.3) and float(normalised.std()) == pytest.approx(1, abs=0.3)
    np.testing.assert_allclose(p.postprocess(out).numpy(), x, rtol=1e-6, atol=1e-6)  # float32 precision

    torch_x = torch.from_numpy(physical(dtype=np.float32))
    back = p.postprocess(p(torch_x)["fields"])
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32
    torch.testing.assert_close(back, torch_x, rtol=1e-6, atol=1e-5)
    assert isinstance(p.postprocess(out["fields"].numpy()), np.ndarray)  # NumPy in, NumPy out


def test_subsets_reordering_and_mappings_by_name():
    p = processor()
    x = physical()
    full = p(x)["fields"]
    sub = p(x[..., [2, 0]], field_names=["velocity_y", "density"])
    assert sub["field_names"] == ["velocity_y", "density"]
    torch.testing.assert_close(sub["fields"], full[..., [2, 0]])
    mapping = {"velocity_x": x[..., 1], "density": x[..., 0]}  # dict order is not channel order
    by_name = p(mapping)
    assert by_name["field_names"] == ["density", "velocity_x"]
    torch.testing.assert_close(by_name["fields"], full[..., :2])
    np.testing.assert_allclose(p.postprocess(by_name).numpy(), x[..., :2], rtol=1e-6, atol=1e-8)
    selected = p.select(["velocity_y"])
    assert selected.field_names == ["velocity_y"] and selected.std == [1e-3] and selected.dt == p.dt


def test_the_loaders_normalizer_uses_the_same_arithmetic():
    p = processor()
    x = torch.from_numpy(physical(dtype=np.float32))
    torch.testing.assert_close(p(x)["fields"], Normalizer(p.mean, p.std).normalize(x), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("call", "message"), [
    (lambda p: p(physical(), field_names=["density", "vorticity", "velocity_x"]),
     r"^field_names: unknown fields \['vorticity'\]; PhysfmFieldProcessor\('toy'\) has statistics for"),
    (lambda p: p(physical(), field_names=["density", "density", "velocity_x"]),
     r"^field_names: \['density'\] listed more than once"),
    (lambda p: p({"density": physical()[..., 0]}, field_names=["density", "velocity_x"]),
     r"^fields: missing fields \['velocity_x'\]; the mapping has \['density'\]"),
    (lambda p: p({"density": physical()[..., 0], "temperature": physical()[..., 0]}),
     r"^fields: unknown fields \['temperature'\]"),
    (lambda p: p(physical()[..., :2]),
     r"^fields: last axis has 2 channels but 3 fields are named \(\['density', 'velocity_x', 'velocity_y'\]\)"),
    (lambda p: p(np.moveaxis(physical(), -1, 1)),
     r"^fields: last axis has 6 channels but 3 fields are named .*; axis 1 has 3: move the fields last"),
    (lambda p: p(physical()[:, :, :, 0]),
     r"^fields: got shape \(2, 3, 8, 3\); expected \[batch, time, \*space, fields\] \(2-D space, so 5 axes\)"),
    (lambda p: p(np.where(np.arange(3) == 1, np.nan, physical())),
     r"^fields: NaN in field 'velocity_x' at batch 0, time 0 \(index \[0, 0, 0, 0, 1\]; 288 non-finite"),
    (lambda p: p(with_value(physical(), (1, 2), np.inf)),
     r"^fields: Inf in field 'density' at batch 1, time 2"),
    (lambda p: p.postprocess(torch.zeros(2, 3, 8, 6, 2)), r"^predictions: last axis has 2 channels but 3 fields"),
    (lambda p: processor(std=[0.5, 0.0, 1.0]),
     r"^PhysfmFieldProcessor\('toy'\): std of field 'velocity_x' is 0.0; expected a number > 0"),
    (lambda p: processor(std=[0.5, 1.0, -2.0]),
     r"^PhysfmFieldProcessor\('toy'\): std of field 'velocity_y' is -2.0; expected a number > 0"),
    (lambda p: processor(mean=[0.0, float("nan"), 1.0]), r"^PhysfmFieldProcessor\('toy'\): mean\[1\] is nan"),
    (lambda p: processor(std=[1.0, 1.0]), r"^PhysfmFieldProcessor\('toy'\): std has 2 entries but there are 3"),
])
def test_errors_are_one_clear_line(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(processor())
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- save / load
def test_save_load_and_auto_classes(tmp_path):
    p = processor()
    p.save_pretrained(tmp_path)
    assert {f.name for f in tmp_path.iterdir()} == {"preprocessor_config.json", "processing_physfm.py"}
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["processor_class"] == saved["feature_extractor_type"] == "PhysfmFieldProcessor"
    assert saved["auto_map"] == {"AutoProcessor": "processing_physfm.PhysfmFieldProcessor",
                                 "AutoFeatureExtractor": "processing_physfm.PhysfmFieldProcessor"}
    for loader in (PhysfmFieldProcessor, AutoProcessor, AutoFeatureExtractor):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is PhysfmFieldProcessor and loaded == p, loader
        assert loaded.periodic == [True, False] and loaded.dt == 0.01 and loaded.grid_spacing == [0.1, 0.2]


# ------------------------------------------------------------------------------------ from the training data
def test_processor_from_a_well_dataset_matches_stats_yaml(data):
    p = processor_from_dataset(data["shear_flow"])
    stats = yaml.safe_load((data["shear_flow"] / "stats.yaml").read_text())
    assert p.field_names == ["tracer", "pressure", "velocity_x", "velocity_y"] and p.dataset_name == "shear_flow"
    expected_mean = [stats["mean"]["tracer"], stats["mean"]["pressure"], *stats["mean"]["velocity"]]
    expected_std = [stats["std"]["tracer"], stats["std"]["pressure"], *stats["std"]["velocity"]]
    np.testing.assert_allclose(p.mean, expected_mean, rtol=1e-6, atol=1e-12)  # float32, as the loader uses them
    np.testing.assert_allclose(p.std, expected_std, rtol=1e-6)
    dataset = WellWindowDataset(data["shear_flow"], n_steps_input=2, n_steps_output=0, dt_stride=2)
    assert p.periodic == list(dataset.periodic) and p.grid_spacing == [pytest.approx(1 / 16), pytest.approx(1 / 16)]
    assert processor_from_dataset(dataset).dt == pytest.approx(2 * dataset.dt)  # the frame interval a model sees
    raw = dataset.read_window(*dataset.locate(0), 2)[None]
    torch.testing.assert_close(p(raw, field_names=dataset.field_names)["fields"][0], dataset[0]["input_fields"],
                               rtol=0, atol=0)  # exactly what training sees


def test_mixture_takes_the_union_and_the_first_datasets_statistics(data):
    datasets = [WellWindowDataset(data[name], n_steps_input=1, n_steps_output=0) for name in ("shear_flow",
                                                                                                 "advection")]
    with pytest.warns(UserWarning, match=r"share field names with different statistics: 'tracer' \(kept "
                                         r"'shear_flow'.*The merged processor keeps the first dataset's"):
        merged = processor_for_datasets(datasets)
    first, second = (processor_from_dataset(d) for d in datasets)
    assert merged.field_names == ["tracer", "pressure", "velocity_x", "velocity_y"]
    assert merged.mean == first.mean and merged.std == first.std
    assert merged.dataset_name == "shear_flow+advection"
    assert merged.dt is None and merged.periodic == [True, True]  # kept where the datasets agree
    assert second.statistics_differences(second) == []


def test_checkpoints_of_both_stages_carry_the_training_datas_processor(data, tokeniser, tmp_path):
    expected = processor_from_dataset(data["shear_flow"])
    for folder in (tokeniser, tokeniser / "checkpoint-1", tokeniser / "checkpoint-2"):
        assert AutoProcessor.from_pretrained(folder) == expected, folder
        assert (folder / "processing_physfm.py").is_file()

    # Finetuning on another dataset: that dataset's processor, and a warning that it is far from the tokeniser's.
    with pytest.warns(UserWarning, match=r"dataset 'advection' has statistics far from those tokeniser .* was "
                                         r"pretrained with \('shear_flow'\): tracer \(mean"):
        train(stage="dynamics", data=[data["advection"]], output_dir=tmp_path, tokeniser=str(tokeniser),
              freeze_tokeniser=False, max_steps=2, eval_steps=2, save_steps=2, n_steps_input=2,
              model_config=TINY_DYNAMICS, rollout_horizons=[1], **RUN)
    finetuned = processor_from_dataset(data["advection"])
    for folder in (tmp_path, tmp_path / "checkpoint-2"):
        assert AutoProcessor.from_pretrained(folder) == finetuned

    # The same data again: no such warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(stage="dynamics", data=[data["shear_flow"]], output_dir=tmp_path / "same", tokeniser=str(tokeniser),
              freeze_tokeniser=True, max_steps=1, eval_steps=1, save_steps=1, n_steps_input=2,
              model_config=TINY_DYNAMICS, rollout_horizons=[1], **RUN)
    assert not [w for w in caught if "statistics far" in str(w.message)]
    assert AutoProcessor.from_pretrained(tmp_path / "same") == expected


def test_hub_push_uploads_it_and_remote_code_loads_it_without_physfm(tokeniser, hub_server, tmp_path):
    assert hub.main(["push", str(tokeniser), "--repo-id", "me/tokeniser-shear-flow"]) == 0
    files = hub_server.store.repos["me/tokeniser-shear-flow"].commits[hub_server.head("me/tokeniser-shear-flow")].files
    assert {"preprocessor_config.json", "processing_physfm.py"} <= set(files)
    assert AutoProcessor.from_pretrained("me/tokeniser-shear-flow") == AutoProcessor.from_pretrained(tokeniser)

    x = torch.randn(1, 3, 16, 32, 4, dtype=torch.float64)
    expected = AutoProcessor.from_pretrained(tokeniser)(x)["fields"]
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["physfm"] = None  # physfm cannot be imported: only the checkpoint's own code can serve
        import torch
        from transformers import AutoProcessor
        io = torch.load({str(tmp_path / "io.pt")!r})
        for source in ({str(tokeniser)!r}, "me/tokeniser-shear-flow"):
            p = AutoProcessor.from_pretrained(source, trust_remote_code=True)
            assert type(p).__module__.startswith("transformers_modules"), type(p).__module__
            out = p(io["x"])
            torch.testing.assert_close(out["fields"], io["expected"], rtol=0, atol=0)
            torch.testing.assert_close(p.postprocess(out), io["x"].float())
        assert not any(n.startswith("physfm") for n in sys.modules if sys.modules[n] is not None)
        print("REMOTE_OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(tmp_path), env=hub_server.env(tmp_path / "hf_home_remote"))
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]
