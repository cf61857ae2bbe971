"""Publishing and loading physfm checkpoints through a local Hub-compatible server.

Loading is checked the way users load: ``AutoModel.from_pretrained`` in a fresh subprocess with
its own ``HF_HOME`` (so nothing is served from this process's imports or caches).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from physfm import hub
from physfm.models import (
    PhysfmDynamicsConfig,
    PhysfmDynamicsModel,
    PhysfmTokeniserConfig,
    PhysfmTokeniserModel,
)

REPO = "physfm/tokeniser-shear-flow"


def digest(state: dict) -> str:
    """One hash over all weights; the subprocesses run this same source."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


DIGEST = inspect.getsource(digest)


def tiny_tokeniser(seed: int) -> PhysfmTokeniserModel:
    torch.manual_seed(seed)
    config = PhysfmTokeniserConfig(
        field_names=["tracer", "pressure", "velocity_x", "velocity_y"], spatial_compressions=[2, 4],
        temporal_compressions=[1, 2], default_spatial_compression=2, hidden_channels=8, latent_channels=4,
    )
    return PhysfmTokeniserModel(config)


def publish_two_versions(server) -> dict[str, str]:
    """Push v1 (tagged) then v2 to main; returns weight digests by revision and the commit of v1."""
    v1, v2 = tiny_tokeniser(1), tiny_tokeniser(2)
    oid1 = hub.push_to_hub(v1, REPO, physical_system="shear_flow", tag="v1", commit_message="v1")
    oid2 = hub.push_to_hub(v2, REPO, physical_system="shear_flow", commit_message="v2")
    assert oid1 != oid2 and server.head(REPO) == oid2 and server.head(REPO, "v1") == oid1
    return {"v1": digest(v1.state_dict()), "main": digest(v2.state_dict()), "oid1": oid1}


def run_python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", DIGEST + "\n" + textwrap.dedent(code)], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120,
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Cards
# ------------------------------------------------------------------------------------------------


def test_model_card_metadata_and_every_template_renders():
    model = tiny_tokeniser(0)
    rows = [
        {"spatial_compression": 2, "temporal_compression": 1, "vrmse": 0.125, "spectral_nmse_high": 0.5},
        {"spatial_compression": 4, "temporal_compression": 2, "vrmse": 0.25},
    ]
    card = hub.render_model_card(model, REPO, physical_system="shear_flow", eval_results=rows,
                                 datasets=["polymathic-ai/shear_flow"], training={"steps": 300})
    parsed = ModelCard(str(card))  # what the Hub would parse back from README.md
    data = parsed.data
    assert data.library_name == "physfm" and data.license == "apache-2.0"
    assert {"physfm", "physfm-tokeniser", "shear-flow"} <= set(data.tags)
    assert data.datasets == ["polymathic-ai/shear_flow"]
    assert data.physical_system == "shear_flow"
    assert data.field_names == ["tracer", "pressure", "velocity_x", "velocity_y"]
    assert data.spatial_compressions == [2, 4] and data.temporal_compressions == [1, 2]
    results = {(r.dataset_config, r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == {("spatial2-temporal1", "valid", "vrmse"): 0.125, ("spatial4-temporal2", "valid", "vrmse"): 0.25}
    text = str(card)
    assert "# tokeniser-shear-flow" in text and "Kelvin" in text  # titled, with shear flow's description
    assert "| 4 | 2 | 0.2500 |" in text and f'AutoModel.from_pretrained("{REPO}"' in text
    assert "{{" not in text and "{%" not in text

    # Every shipped template renders to a card whose metadata parses.
    templates = sorted(p.name[:-3] for p in hub.CARD_TEMPLATES.iterdir() if p.name.endswith(".md"))
    assert templates == ["dynamics", "tokeniser"]
    dynamics_config = {"model_type": "physfm_dynamics", "tokeniser_config": model.config.to_dict(),
                       "spatial_compression": 2, "temporal_compression": 1, "n_steps_input": 3,
                       "tokeniser_name_or_path": REPO, "freeze_tokeniser": True}
    for name in templates:
        config = dynamics_config if name == "dynamics" else model.config
        rendered = str(hub.render_model_card(config, f"physfm/{name}", physical_system="x", eval_results=rows,
                                             template=name))
        assert "{{" not in rendered and ModelCard(rendered).data.library_name == "physfm", name
    dyn = ModelCard(str(hub.render_model_card(dynamics_config, "me/dyn", physical_system="shear_flow")))
    assert dyn.data.base_model == REPO and "physfm-dynamics" in dyn.data.tags and "kept frozen" in dyn.text

    # A multi-system tokeniser: rows name their dataset, and the card lists them per dataset.
    multi_rows = [dict(r, dataset=name) for name in ("shear_flow", "acoustic_wave") for r in rows]
    multi = hub.render_model_card(model, "physfm/tokeniser-multi", physical_system="multi", eval_results=multi_rows)
    assert sorted({r.dataset_name for r in multi.data.eval_results}) == ["acoustic_wave", "shear_flow"]
    assert "| acoustic_wave | 2 | 1 | 0.1250 |" in str(multi) and "all the systems" in str(multi)

    with pytest.raises(ValueError, match="eval_results: a row lacks 'vrmse'"):
        hub.render_model_card(model, REPO, eval_results=[{"spatial_compression": 2, "temporal_compression": 1}])
    with pytest.raises(ValueError, match="model_type"):
        hub.render_model_card({"model_type": "bert"}, REPO)


def test_each_system_gets_its_own_text_from_one_tokeniser_template(tmp_path):
    config = tiny_tokeniser(0).config
    descriptions = yaml.safe_load((hub.CARD_TEMPLATES / "systems.yaml").read_text(encoding="utf-8"))
    assert {"shear_flow", "gray_scott_reaction_diffusion", "euler_multi_quadrants", "acoustic_wave", "multi"} <= set(
        descriptions)
    for system, described in descriptions.items():
        text = ModelCard(str(hub.render_model_card(config, "me/tok", physical_system=system))).text
        for value in described.values():
            assert " ".join(value.split()) in " ".join(text.split()), (system, value)
        assert "{{" not in text and "{%" not in text and "trained on `" not in text, system
    generic = str(hub.render_model_card(config, "me/tok", physical_system="my_system"))
    assert "A **physfm tokeniser trained on `my_system`**" in generic and "## The system" not in generic

    # A template of the user's own, by path, sees the same variables.
    mine = tmp_path / "mine.md"
    mine.write_text("---\n{{ card_data }}\n---\n\n# {{ model_name }}: {{ system.name }}, {{ fields_list }}\n")
    card = hub.render_model_card(config, "me/tok", physical_system="shear_flow", template=mine)
    assert "# tok: shear flow, `tracer`" in str(card) and card.data.physical_system == "shear_flow"

    # A template that is not there is an error naming it and where physfm looked, never a stand-in card.
    with pytest.raises(FileNotFoundError, match=r"template: 'tokeniser-shear-flow' is not a physfm card template "
                       r"\(looked in .*card_templates, which has \['dynamics', 'tokeniser'\]\)"):
        hub.render_model_card(config, "me/tok", template="tokeniser-shear-flow")
    with pytest.raises(FileNotFoundError, match=r"template: '.*nope.md' not found at /"):
        hub.render_model_card(config, "me/tok", template=tmp_path / "nope.md")


def test_cli_push_with_a_missing_template_fails_before_uploading(tmp_path, capsys):
    from physfm.cli import main

    tiny_tokeniser(0).config.save_pretrained(tmp_path / "ckpt")  # a checkpoint's config is all a card needs
    assert main(["hub", "push", str(tmp_path / "ckpt"), "--repo-id", "me/tok", "--template", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("physfm hub: error: template: 'nope' is not a physfm card template") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# Push / pull in this process
# ------------------------------------------------------------------------------------------------


def test_push_pull_revisions_and_clear_errors(hub_server, tmp_path, capsys):
    digests = publish_two_versions(hub_server)
    repo = hub_server.store.repos[REPO]
    files = repo.commits[hub_server.head(REPO)].files
    assert {"config.json", "model.safetensors", "README.md", "modeling_tokeniser.py"} <= set(files)
    card = ModelCard(hub_server.file_bytes(REPO, "README.md").decode())
    assert card.data.library_name == "physfm" and card.data.physical_system == "shear_flow"

    for revision in ("v1", "main", digests["oid1"]):
        folder = hub.pull(REPO, revision=revision)
        expected = digests["main" if revision == "main" else "v1"]
        assert digest(load_file(folder / "model.safetensors")) == expected, revision

    # The CLI: pull into a folder; push a checkpoint folder to a new branch.
    assert hub.main(["pull", REPO, "--revision", "v1", "--out", str(tmp_path / "out")]) == 0
    assert digest(load_file(tmp_path / "out" / "model.safetensors")) == digests["v1"]
    assert capsys.readouterr().out.strip().endswith("out")
    tiny_tokeniser(3).save_pretrained(tmp_path / "ckpt")
    assert hub.main(["push", str(tmp_path / "ckpt"), "--repo-id", REPO, "--revision", "dev",
                     "--physical-system", "shear_flow"]) == 0
    assert "revision dev" in capsys.readouterr().out
    assert hub_server.head(REPO, "dev") != hub_server.head(REPO)  # main untouched

    # A dynamics model built on the published tokeniser: its card links the tokeniser as base model.
    dynamics = PhysfmDynamicsModel(PhysfmDynamicsConfig(
        tokeniser_config=tiny_tokeniser(0).config.to_dict(), n_steps_input=3, hidden_size=8, num_hidden_layers=1,
        num_attention_heads=2, tokeniser_name_or_path=REPO, freeze_tokeniser=True))
    hub.push_to_hub(dynamics, "me/dynamics-shear-flow", physical_system="shear_flow")
    card = ModelCard(hub_server.file_bytes("me/dynamics-shear-flow", "README.md").decode())
    assert card.data.base_model == REPO and "physfm-dynamics" in card.data.tags
    assert "modeling_dynamics.py" in hub_server.store.repos["me/dynamics-shear-flow"].commits[
        hub_server.head("me/dynamics-shear-flow")].files

    with pytest.raises(ValueError, match=r"repo_id: 'physfm/nope' does not exist"):
        hub.pull("physfm/nope")
    with pytest.raises(ValueError, match=r"revision: 'v9' does not exist in .*tag 'v1'"):
        hub.pull(REPO, revision="v9")
    with pytest.raises(ValueError, match="repo_id: got 'no-namespace'"):
        hub.push_to_hub(tiny_tokeniser(0), "no-namespace")
    with pytest.raises(FileNotFoundError, match="checkpoint: .* has no config.json"):
        hub.push_to_hub(tmp_path, REPO)
    assert hub_server.errors == []

    hub_server.stop()  # unreachable Hub: a clear connection error, not a traceback
    with pytest.raises(hub.HubConnectionError, match="could not download 'physfm/other'@main from http://127.0.0.1"):
        hub.pull("physfm/other")


def test_cli_dispatcher_reports_missing_repo(hub_server, capsys):
    from physfm.cli import main

    assert main(["hub", "pull", "physfm/missing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("physfm hub: error: repo_id: 'physfm/missing' does not exist") and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# Loading in fresh processes
# ------------------------------------------------------------------------------------------------


def test_from_pretrained_with_physfm_pinning_missing_and_offline(hub_server, tmp_path):
    digests = publish_two_versions(hub_server)
    env = hub_server.env(tmp_path / "hf_home")
    proc = run_python(f"""
        import json, physfm
        from transformers import AutoModel
        from physfm.hub import load_pretrained
        out = {{}}
        main = AutoModel.from_pretrained("{REPO}")
        v1 = AutoModel.from_pretrained("{REPO}", revision="v1")
        out["class"] = type(main).__module__ + "." + type(main).__name__
        out["isinstance"] = isinstance(main, physfm.PhysfmTokeniserModel)
        out["main"], out["v1"] = digest(main.state_dict()), digest(v1.state_dict())
        for repo, rev in [("physfm/missing", None), ("{REPO}", "v9")]:
            try:
                AutoModel.from_pretrained(repo, revision=rev)
            except OSError as e:
                out.setdefault("transformers_errors", []).append(str(e).splitlines()[0])
            try:
                load_pretrained(repo, revision=rev)
            except ValueError as e:
                out.setdefault("physfm_errors", []).append(str(e))
        print(json.dumps(out))
    """, env, tmp_path)
    out = last_json(proc)
    assert out["class"] == "physfm.models.modeling_tokeniser.PhysfmTokeniserModel" and out["isinstance"]
    assert out["main"] == digests["main"] and out["v1"] == digests["v1"]
    assert "physfm/missing" in out["transformers_errors"][0]
    assert "v9" in out["transformers_errors"][1]
    assert out["physfm_errors"][0].startswith("repo_id: 'physfm/missing' does not exist")
    assert out["physfm_errors"][1].startswith("revision: 'v9' does not exist")

    # Offline: the same cache serves both revisions with no request reaching the server.
    hub_server.log.clear()
    offline = dict(env, HF_HUB_OFFLINE="1")
    proc = run_python(f"""
        import json, physfm
        from transformers import AutoModel
        from physfm.hub import load_pretrained
        out = {{"main": digest(AutoModel.from_pretrained("{REPO}").state_dict()),
               "v1": digest(AutoModel.from_pretrained("{REPO}", revision="v1").state_dict())}}
        try:
            load_pretrained("physfm/never-downloaded")
        except ValueError as e:
            out["error"] = str(e)
        print(json.dumps(out))
    """, offline, tmp_path)
    out = last_json(proc)
    assert out["main"] == digests["main"] and out["v1"] == digests["v1"]
    assert "HF_HUB_OFFLINE=1" in out["error"] and "physfm/never-downloaded" in out["error"]
    assert [line for line in hub_server.log if "agent-harnesses" not in line] == []


def test_from_pretrained_remote_code_without_physfm(hub_server, tmp_path):
    digests = publish_two_versions(hub_server)
    proc = run_python(f"""
        import json, sys
        sys.modules["physfm"] = None  # physfm is not importable: the code must come from the repo
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("{REPO}", trust_remote_code=True, revision="v1")
        x = torch.randn(1, 3, 8, 8, 4)
        rec = model(x, spatial_compression=2, temporal_compression=2).reconstruction
        print(json.dumps({{"module": type(model).__module__, "name": type(model).__name__,
                          "v1": digest(model.state_dict()), "shape": list(rec.shape)}}))
    """, hub_server.env(tmp_path / "hf_home"), tmp_path)
    out = last_json(proc)
    assert out["module"].startswith("transformers_modules.") and out["name"] == "PhysfmTokeniserModel"
    assert out["v1"] == digests["v1"] and out["shape"] == [1, 3, 8, 8, 4]


def test_dropped_connection_is_a_clear_error_and_leaves_no_corrupt_cache(hub_server, tmp_path):
    publish_two_versions(hub_server)
    env = hub_server.env(tmp_path / "hf_home")
    code = f"""
        import json, physfm
        from physfm.hub import load_pretrained
        try:
            model = load_pretrained("{REPO}")
            print(json.dumps({{"main": digest(model.state_dict())}}))
        except ValueError as e:
            print(json.dumps({{"error": str(e), "type": type(e).__name__}}))
    """
    hub_server.drop_downloads = True
    out = last_json(run_python(code, env, tmp_path))
    assert hub_server.dropped >= 1
    assert out["type"] == "HubConnectionError" and "connection failed midway" in out["error"], out
    cache = tmp_path / "hf_home" / "hub" / f"models--{REPO.replace('/', '--')}"
    blobs = sorted(p.name for p in (cache / "blobs").iterdir()) if (cache / "blobs").exists() else []
    assert not any(name.endswith(".incomplete") for name in blobs)
    expected = {hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()
                for d in (hub_server.file_bytes(REPO, "model.safetensors"),)}
    assert not expected & set(blobs)  # no (partial) weights file kept under the weights' name

    hub_server.drop_downloads = False
    out = last_json(run_python(code, env, tmp_path))
    assert "main" in out, out
    weights = next((cache / "snapshots").glob("*/model.safetensors"))
    assert hashlib.sha256(weights.read_bytes()).digest() == hashlib.sha256(
        hub_server.file_bytes(REPO, "model.safetensors")).digest()


def test_push_to_an_unreachable_endpoint_says_upload(tmp_path, monkeypatch):
    from physfm.models import PhysfmTokeniserConfig, PhysfmTokeniserModel

    PhysfmTokeniserModel(PhysfmTokeniserConfig(hidden_channels=4)).save_pretrained(tmp_path / "tok")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(hub.HubConnectionError, match=r"could not upload 'me/tok'@main to http://127.0.0.1:9: "
                                                     r"the connection failed .*nothing was committed"):
        hub.push_to_hub(tmp_path / "tok", "me/tok", token="x")
