"""A mistyped local checkpoint path is answered at once, never sent to the Hub."""

import time

import pytest
from test_training_common import make_dataset

from physfm.checkpoints import check_checkpoint_reference
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


def test_no_import_circles_in_the_package():
    """Imports run downwards only, including imports inside functions (DESIGN.md)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src"
    files = {".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): f
             for f in (root / "physfm").rglob("*.py")}
    graph = {name: set() for name in files}
    for name, file in files.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join([*base, node.module] if node.module else base)
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name and not name.startswith(t + ".")}

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in graph[node]:
                if target == start:
                    return path
                if target not in path:
                    stack.append((target, [*path, target]))
        return None

    circles = [c for name in graph if (c := cycle_from(name))]
    assert not circles, circles[0]
