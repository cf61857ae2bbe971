"""A mistyped local checkpoint path is answered at once, never sent to the Hub."""

import time

import pytest
from test_training_common import make_dataset

from physfm.checkpoint_reference import check_checkpoint_reference
from physfm.cli import main as physfm_main
from physfm.hub import load_pretrained
from physfm.training import train


def test_folders_hub_ids_and_typos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "tokeniser-shear").mkdir(parents=True)
    assert check_checkpoint_reference("runs/tokeniser-shear", "x").resolve() == tmp_path / "runs" / "tokeniser-shear"
    assert check_checkpoint_reference("physfm/tokeniser-gray-scott", "x") == "physfm/tokeniser-gray-scott"
    with pytest.raises(FileNotFoundError, match=r"no folder 'runs/tokeniser-shaer' \(did you mean 'runs/tokeniser-shear'\?\)"):
        check_checkpoint_reference("runs/tokeniser-shaer", "--tokeniser")
    for typo in ("r_tokk", "./tok", "/no/such/dir", "runs/a/b", "~/nothing-here/"):
        with pytest.raises(FileNotFoundError, match=f"--tokeniser: no folder '{typo}'"):
            check_checkpoint_reference(typo, "--tokeniser")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        check_checkpoint_reference("notes.txt", "--tokeniser")


def test_every_loader_answers_a_typo_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a Hub call would retry for tens of seconds
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # and would fail: nothing listens there
    data = make_dataset(tmp_path / "adv")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="--tokeniser: no folder 'r_tokk'"):
        train(stage="dynamics", data=[data], output_dir=tmp_path / "run", tokeniser="r_tokk", max_steps=1)
    with pytest.raises(FileNotFoundError, match="checkpoint: no folder 'runs/my-tok/'"):
        load_pretrained("runs/my-tok/")
    assert physfm_main(["evaluate", "no_such_ckpt", "--data", str(data)]) == 1
    assert "CHECKPOINT: no folder 'no_such_ckpt'" in capsys.readouterr().err
    assert time.monotonic() - start < 2
