"""scripts/pretrain_tokenisers.py end to end at micro scale: simulate, train, evaluate, card, push, load."""

from __future__ import annotations

import runpy
from pathlib import Path

import torch
import yaml
from transformers import AutoModel

import physfm  # noqa: F401 - registers the Auto classes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_tokenisers.py"


def test_pretrains_cards_and_pushes_every_system(tmp_path, hub_server, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    main(["--out", str(tmp_path / "run"), "--systems", "shear_flow", "acoustic_wave",
          "--resolution", "16x16", "--n-trajectories", "10", "--n-steps", "8", "--dt-stride", "1", "--max-steps", "2",
          "--batch-size", "2", "--device", "cpu", "--cards-dir", str(tmp_path / "cards"),
          "--push", "--hub-org", "physfm"])
    table = capsys.readouterr().out
    for name in ("tokeniser-shear-flow", "tokeniser-acoustic-wave", "tokeniser-multi"):
        assert name in table
        card = (tmp_path / "cards" / f"{name}.md").read_text()
        metadata = yaml.safe_load(card.split("---")[1])
        assert metadata["library_name"] == "physfm"
        assert metadata["spatial_compressions"] == [2, 4, 8, 16]
        results = metadata["model-index"][0]["results"]
        assert results and all(r["metrics"][0]["type"] == "vrmse" for r in results)

    loaded = AutoModel.from_pretrained("physfm/tokeniser-shear-flow", dtype=torch.float32)
    assert type(loaded).__name__ == "PhysfmTokeniserModel"
    assert loaded.config.field_names == ["tracer", "pressure", "velocity_x", "velocity_y"]
    multi = AutoModel.from_pretrained("physfm/tokeniser-multi", dtype=torch.float32)
    assert {"tracer", "speed_of_sound"} <= set(multi.config.field_names)  # the union of both systems' fields
