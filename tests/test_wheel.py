"""The wheel carries everything an installed physfm reads at run time.

The editable install the suite runs against finds files next to the source tree that a wheel may
lack, so this builds the wheel, installs it into a fresh virtualenv and runs ``physfm hub push``
from there, outside the repository. No network: pip runs with ``--no-index`` and the Hub is the
local test server.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

from huggingface_hub import ModelCard

from physfm.models import PhysfmTokeniserConfig

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def build_wheel(out: Path) -> Path:
    # From a copy: pip builds in the source folder, which would leave build/ and *.egg-info in the checkout.
    checkout = out / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", out / "dist", checkout)
    (wheel,) = (out / "dist").glob("physfm-*.whl")
    return wheel


def fresh_env(path: Path) -> Path:
    """A virtualenv without physfm whose interpreter can import physfm's dependencies; returns its python."""
    venv.create(path, with_pip=False)
    python = path / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # The dependencies are those of the interpreter running the suite. A .pth line puts its site-packages on
    # sys.path without running the .pth files there, so the editable physfm installed in it stays invisible.
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    (Path(purelib) / "physfm-test-dependencies.pth").write_text("\n".join(ours) + "\n")
    return python


def test_installed_wheel_pushes_a_card_from_its_shipped_templates(tmp_path, hub_server):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {"physfm/card_templates/tokeniser.md", "physfm/card_templates/systems.yaml"} <= set(names)

    env_dir = tmp_path / "env"
    python = fresh_env(env_dir)
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)

    checkpoint = tmp_path / "ckpt"  # a tokeniser's config is all `hub push` reads to write the card
    PhysfmTokeniserConfig(field_names=["tracer", "pressure", "velocity_x", "velocity_y"]).save_pretrained(checkpoint)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -I: neither PYTHONPATH, the user's site-packages nor the working folder reach sys.path.
    code = textwrap.dedent(f"""
        import json, sys
        import physfm
        from physfm.cli import main
        code = main(["hub", "push", {str(checkpoint)!r}, "--repo-id", "physfm/tokeniser-shear-flow",
                     "--physical-system", "shear_flow"])
        print(json.dumps({{"physfm": physfm.__file__, "exit": code}}))
    """)
    proc = run(python, "-I", "-c", code, cwd=elsewhere, env=hub_server.env(tmp_path / "hf_home"))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0, proc.stderr[-3000:]
    assert Path(result["physfm"]).resolve().is_relative_to(env_dir.resolve()), result["physfm"]

    card = ModelCard(hub_server.file_bytes("physfm/tokeniser-shear-flow", "README.md").decode())
    assert card.data.physical_system == "shear_flow" and card.data.library_name == "physfm"
    assert "pretrained on shear flow" in card.text and "Kelvin–Helmholtz" in card.text  # systems.yaml
    assert "## The system" in card.text and "physfm select-tokeniser" in card.text  # tokeniser.md
    assert "Provide a quick summary" not in card.text  # huggingface_hub's default template
