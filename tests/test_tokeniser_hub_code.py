"""The tokeniser as a transformers model: identical round trips through save/load, the Auto classes after
`import physfm`, and the checkpoint's own remote code in a Python where physfm cannot be imported."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

import physfm  # noqa: F401  (registers the Auto classes)
from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel

# One 2-D and one 3-D checkpoint; the 3-D grid's last axis (6) is not a multiple of the ratio 4, so the remote
# code's padding and cropping are exercised too.
CHECKPOINTS = {2: dict(periodic=[True, False], shape=(2, 5, 16, 12, 2)),
               3: dict(periodic=[True, False, True], shape=(1, 5, 8, 12, 6, 2))}


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS), ids=lambda d: f"{d}d")
def checkpoint(request, tmp_path_factory):
    """A tiny tokeniser saved once, with an input and its outputs at a non-default ratio."""
    torch.manual_seed(0)
    spec = CHECKPOINTS[request.param]
    config = PhysfmTokeniserConfig(
        field_names=["u", "v", "p"], n_spatial_dims=request.param, periodic=spec["periodic"], hidden_channels=4,
        latent_channels=4, spatial_compressions=[2, 4], temporal_compressions=[1, 2], default_spatial_compression=2,
    )
    tok = PhysfmTokeniserModel(config).eval()
    # Non-trivial weights everywhere (zero-initialised kernels would hide a loading bug).
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp(f"tok{request.param}d")
    tok.save_pretrained(path)
    fields = torch.randn(*spec["shape"])
    kwargs = dict(spatial_compression=4, temporal_compression=2, field_names=["p", "u"])
    with torch.no_grad():
        out = tok(fields, **kwargs)
    torch.save({"fields": fields, "reconstruction": out.reconstruction, "latents": out.latents}, path / "io.pt")
    return path, fields, kwargs, out


def test_save_pretrained_writes_safetensors_code_and_auto_map(checkpoint):
    path, *_ = checkpoint
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "configuration_tokeniser.py", "modeling_tokeniser.py", "layers.py"} <= names
    assert not any(n.endswith(".bin") for n in names)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "physfm_tokeniser"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_tokeniser.PhysfmTokeniserConfig",
        "AutoModel": "modeling_tokeniser.PhysfmTokeniserModel",
    }


def test_round_trip_through_from_pretrained_and_auto_classes(checkpoint):
    path, fields, kwargs, out = checkpoint
    assert type(AutoConfig.from_pretrained(path)) is PhysfmTokeniserConfig
    for cls in (PhysfmTokeniserModel, AutoModel):
        loaded = cls.from_pretrained(path, dtype=torch.float32).eval()
        assert type(loaded) is PhysfmTokeniserModel
        assert loaded.config.periodic == CHECKPOINTS[fields.ndim - 3]["periodic"]
        assert loaded.config.field_names == ["u", "v", "p"]
        with torch.no_grad():
            again = loaded(fields, **kwargs)
        torch.testing.assert_close(again.reconstruction, out.reconstruction, atol=0, rtol=0)
        torch.testing.assert_close(again.latents, out.latents, atol=0, rtol=0)


def test_remote_code_loads_without_physfm(checkpoint):
    path, _, kwargs, _ = checkpoint
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["physfm"] = None  # physfm cannot be imported: only the checkpoint's own code can serve
        try:
            import physfm  # noqa: F401
            raise SystemExit("physfm should not be importable here")
        except ImportError:
            pass
        import torch
        from transformers import AutoModel
        torch.set_num_threads(1)
        model = AutoModel.from_pretrained({str(path)!r}, trust_remote_code=True, dtype=torch.float32).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        io = torch.load({str(path / "io.pt")!r})
        with torch.no_grad():
            out = model(io["fields"], **{kwargs!r})
        torch.testing.assert_close(out.reconstruction, io["reconstruction"], atol=0, rtol=0)
        torch.testing.assert_close(out.latents, io["latents"], atol=0, rtol=0)
        assert not any(name.startswith("physfm") for name in sys.modules if sys.modules[name] is not None)
        print("REMOTE_OK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=str(path.parent)
    )
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def test_model_code_imports_nothing_else_from_physfm():
    """The files pushed as remote code import each other only relatively, and nothing else of physfm."""
    models = Path(physfm.__file__).parent / "models"
    for file in sorted(models.glob("*.py")):
        name = file.name
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "physfm" for a in node.names), name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] != "physfm", (name, node.module)
