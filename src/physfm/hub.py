"""Publishing physfm checkpoints on the Hugging Face Hub, and getting them back.

``push_to_hub`` uploads a tokeniser or dynamics checkpoint (a model object or a folder written by
``save_pretrained``) together with a model card whose metadata says what the checkpoint can do:
the physical system it was trained on, its field vocabulary, the compression ratios it serves and
its reconstruction VRMSE on the valid split at each ratio (the card's ``model-index``). Cards are
rendered with ``huggingface_hub.ModelCard`` from the Jinja templates that ship inside the package
(``physfm/card_templates/``: one per model kind, plus what a tokeniser card says about each physical
system in ``systems.yaml``).

``pull`` downloads a checkpoint; ``load_pretrained`` loads one. Both turn the Hub's failure modes
(missing repo, missing revision, no connection, offline mode without a cached copy) into one
``ValueError`` whose message says what was asked for and what to do.

The same functions back the ``physfm hub push`` / ``physfm hub pull`` commands and the
pretraining script, which renders a card with ``render_model_card`` and pushes with ``push_to_hub``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ._cli_parsing import Parser
from .checkpoints import HubConnectionError, HubError, _endpoint, hub_errors, load_pretrained  # noqa: F401 - re-exported

LIBRARY_NAME = "physfm"
DEFAULT_LICENSE = "apache-2.0"
PAPER_ARXIV = "2603.05598"
# Package data, declared in pyproject.toml so that a wheel carries it; read through importlib.resources
# so that an install that is not a plain folder (a zip) finds it too.
CARD_TEMPLATES = resources.files(__package__) / "card_templates"
# What a checkpoint folder may hold that belongs on the Hub. Training state (optimizer, RNG, accelerate
# folders) stays local, and pickles are never uploaded: checkpoints are safetensors only.
UPLOAD_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.yaml", "*.png"]
IGNORE_PATTERNS = ["optimizer*", "scheduler*", "random_states*", "rng_state*", "trainer_state*", "checkpoint-*/**",
                   ".cache/**", "**/.cache/**"]
# On a new version, stale weight shards of the previous one must not linger in the repo.
DELETE_PATTERNS = ["*.safetensors", "*.safetensors.index.json"]


# --------------------------------------------------------------------------------------------------
# Model cards
# --------------------------------------------------------------------------------------------------


def _config_dict(model_or_config: Any) -> dict:
    """A plain config dict from a model, a config, a checkpoint folder or a dict."""
    if isinstance(model_or_config, Mapping):
        return dict(model_or_config)
    if isinstance(model_or_config, (str, os.PathLike)):
        path = Path(model_or_config) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint: {str(model_or_config)!r} has no config.json; expected a folder written by "
                "save_pretrained (e.g. a physfm tokeniser or dynamics checkpoint)."
            )
        return json.loads(path.read_text())
    config = getattr(model_or_config, "config", model_or_config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise ValueError(
        f"model_or_dir: got {type(model_or_config).__name__}; expected a physfm model, its config, or a checkpoint folder."
    )


def checkpoint_facts(model_or_config: Any) -> dict[str, Any]:
    """What a card says about a checkpoint: kind, fields, boundary conditions and compressions.

    For a dynamics model the vocabulary and compressions are those of its tokeniser, and the ratio
    it runs at is reported as ``spatial_compression`` / ``temporal_compression``.
    """
    config = _config_dict(model_or_config)
    model_type = config.get("model_type")
    if model_type == "physfm_tokeniser":
        tok, kind = config, "tokeniser"
    elif model_type == "physfm_dynamics":
        tok, kind = config.get("tokeniser_config") or {}, "dynamics"
    else:
        raise ValueError(
            f"model_type: got {model_type!r} in the checkpoint config; expected 'physfm_tokeniser' or 'physfm_dynamics'."
        )
    facts = {
        "kind": kind,
        "field_names": list(config.get("field_names") or tok.get("field_names") or []),
        "n_spatial_dims": int(tok.get("n_spatial_dims", 2)),
        "periodic": list(config.get("periodic") or tok.get("periodic") or []),
        "spatial_compressions": [int(s) for s in tok.get("spatial_compressions") or []],
        "temporal_compressions": [int(t) for t in tok.get("temporal_compressions") or []],
        "latent_channels": tok.get("latent_channels"),
    }
    if kind == "dynamics":
        facts.update(
            spatial_compression=config.get("spatial_compression"),
            temporal_compression=config.get("temporal_compression"),
            n_steps_input=config.get("n_steps_input"),
            tokeniser_name_or_path=config.get("tokeniser_name_or_path"),
            freeze_tokeniser=config.get("freeze_tokeniser"),
        )
    return facts


def _as_row(result: Any) -> dict[str, Any]:
    """One evaluation row as a dict (accepts dataclasses such as ``ReconstructionResult`` and mappings)."""
    row = dict(result) if isinstance(result, Mapping) else dict(vars(result))
    for key in ("spatial_compression", "temporal_compression", "vrmse"):
        if key not in row:
            raise ValueError(
                f"eval_results: a row lacks {key!r} (got keys {sorted(row)}); expected rows with "
                "spatial_compression, temporal_compression and vrmse, as returned by evaluate_reconstruction."
            )
    if not math.isfinite(float(row["vrmse"])):
        raise ValueError(f"eval_results: vrmse must be finite, got {row['vrmse']!r} at ratio "
                         f"{row['spatial_compression']}x{row['temporal_compression']}.")
    return row


def _eval_table(rows: Sequence[dict], split: str) -> str:
    if not rows:
        return "_Not evaluated yet._"
    has_spectral = any(r.get("spectral_nmse_high") is not None for r in rows)
    by_dataset = len({r.get("dataset") or "" for r in rows}) > 1  # a multi-system tokeniser: one block per system
    head = ("| dataset " if by_dataset else "") + "| spatial × | temporal × | VRMSE |"
    head += " spectral NMSE low / mid / high |" if has_spectral else ""
    rule = ("|---" if by_dataset else "") + "|---:|---:|---:|" + ("---|" if has_spectral else "")
    clips = sorted({(int(r["n_frames"]), int(r.get("dt_stride") or 1)) for r in rows if r.get("n_frames")})
    where = "".join(f" on clips of {n} frames, {stride} stored frame{'s' if stride > 1 else ''} apart"
                    for n, stride in clips[:1])
    lines = [f"Reconstruction on the `{split}` split{where} (VRMSE of normalised fields; lower is better).", "",
             head, rule]
    for r in sorted(rows, key=lambda r: (r.get("dataset") or "", r["spatial_compression"], r["temporal_compression"])):
        line = f"| {r.get('dataset') or ''} " if by_dataset else ""
        line += f"| {r['spatial_compression']} | {r['temporal_compression']} | {float(r['vrmse']):.4f} |"
        if has_spectral:
            bins = [r.get(f"spectral_nmse_{b}") for b in ("low", "mid", "high")]
            line += " " + " / ".join("–" if v is None else f"{float(v):.3g}" for v in bins) + " |"
        lines.append(line)
    return "\n".join(lines)


def _usage(repo_id: str, facts: dict) -> str:
    fields = facts["field_names"]
    # The snippet's grid: 64 per axis in 2-D, 32 in 3-D (a 64^3 clip is large for a first try on a laptop).
    n_dims = facts["n_spatial_dims"]
    side = 64 if n_dims == 2 else 32
    grid, axes = ", ".join([str(side)] * n_dims), ", ".join("xyz"[:n_dims])
    if facts["kind"] == "dynamics":
        n_in = facts.get("n_steps_input") or 4
        return (
            "```python\nimport torch\nimport physfm  # registers the physfm models with transformers\n"
            "from transformers import AutoModel\n\n"
            f'model = AutoModel.from_pretrained("{repo_id}", dtype=torch.float32)\n'
            f"fields = torch.randn(1, {n_in}, {grid}, {len(fields)})  # [batch, time, {axes}, fields], normalised\n"
            "rollout = model.rollout(fields, n_steps=8)\n```"
        )
    s = facts["spatial_compressions"][len(facts["spatial_compressions"]) // 2] if facts["spatial_compressions"] else 4
    t = facts["temporal_compressions"][-1] if facts["temporal_compressions"] else 1
    return (
        "```python\nimport torch\nimport physfm  # registers the physfm models with transformers\n"
        "from transformers import AutoModel\n\n"
        f'tokeniser = AutoModel.from_pretrained("{repo_id}", dtype=torch.float32)\n'
        f"fields = torch.randn(1, {1 + 2 * t}, {grid}, {len(fields)})  # [batch, time, {axes}, fields], normalised\n"
        f"latents = tokeniser.encode(fields, spatial_compression={s}, temporal_compression={t})\n"
        f"reconstruction = tokeniser.decode(latents, spatial_compression={s}, temporal_compression={t},\n"
        f"                                  spatial_shape=({grid}))\n```\n\n"
        "Without physfm installed, pass `trust_remote_code=True`: the model code ships with the checkpoint.\n"
        "Pin a version with `revision=` (a tag, branch or commit id)."
    )


def _training(training: Mapping[str, Any] | None) -> str:
    if not training:
        return "_Training details were not recorded._"
    return "\n".join(f"- **{key.replace('_', ' ')}:** {value}" for key, value in training.items())


def _template_source(template: str | os.PathLike | None, kind: str) -> str:
    """The Jinja source of a card: the user's file, a template physfm ships (by name), or the one for the kind."""
    path = Path(template) if template is not None else None
    if path is not None and (path.suffix or len(path.parts) > 1):
        if not path.is_file():
            raise FileNotFoundError(f"template: {str(template)!r} not found at {path.resolve()}; "
                                    "expected a Jinja markdown file or the name of a physfm card template.")
        return path.read_text(encoding="utf-8")
    name = str(template) if template is not None else kind
    shipped = CARD_TEMPLATES / f"{name}.md"
    if not shipped.is_file():  # a wrong name, or (for the kind's own template) an install that lost its package data
        available = sorted(p.name[:-3] for p in CARD_TEMPLATES.iterdir() if p.name.endswith(".md")) \
            if CARD_TEMPLATES.is_dir() else []
        raise FileNotFoundError(f"template: {name!r} is not a physfm card template (looked in {CARD_TEMPLATES}, "
                                f"which has {available}); pass one of those names or a path to a .md file.")
    return shipped.read_text(encoding="utf-8")


def system_description(physical_system: str | None) -> dict[str, str]:
    """What a tokeniser card says about a physical system (``card_templates/systems.yaml``); empty if unknown."""
    descriptions = yaml.safe_load((CARD_TEMPLATES / "systems.yaml").read_text(encoding="utf-8"))
    return dict(descriptions.get(physical_system) or {})


def render_model_card(
    model_or_config: Any,
    repo_id: str,
    *,
    physical_system: str | None = None,
    eval_results: Sequence[Any] = (),
    eval_split: str = "valid",
    dataset_name: str | None = None,
    datasets: Sequence[str] | None = None,
    license: str = DEFAULT_LICENSE,  # noqa: A002 - the card's field name
    tags: Sequence[str] = (),
    base_model: str | None = None,
    training: Mapping[str, Any] | None = None,
    template: str | os.PathLike | None = None,
    **template_kwargs: Any,
) -> ModelCard:
    """Render the model card of a physfm checkpoint.

    Args:
        model_or_config: A physfm model, its config, a checkpoint folder or a config dict.
        repo_id: Where the card will live (its title, and the id in the usage snippet).
        physical_system: The system the checkpoint was trained on, e.g. ``"shear_flow"`` or ``"multi"``.
        eval_results: Rows with ``spatial_compression``, ``temporal_compression``, ``vrmse`` and optionally
            ``spectral_nmse_{low,mid,high}`` and ``dataset``, e.g. from
            :func:`physfm.reconstruction.evaluate_reconstruction`. Each row becomes a ``model-index`` entry
            (metric ``vrmse`` on ``eval_split``); rows from several datasets are listed per dataset.
        dataset_name: Name of the evaluation dataset in the model-index for rows that do not name one
            (defaults to the physical system).
        datasets: Hub dataset ids for the ``datasets`` metadata field.
        license, tags, base_model: Card metadata; ``physfm`` and the model kind are always tagged.
        training: Free-form training facts (steps, data, hardware...) listed in the card.
        template: A path to a Jinja card template, or the name of one physfm ships (``"tokeniser"``,
            ``"dynamics"``). Defaults to the template for the model's kind. Templates see the sections
            below, the card metadata, and ``system``: what :func:`system_description` knows about
            ``physical_system`` (the tokeniser template uses it for its system-specific text).
        template_kwargs: Extra variables for the template.
    """
    facts = checkpoint_facts(model_or_config)
    source = _template_source(template, facts["kind"])
    rows = [_as_row(r) for r in eval_results]
    system = physical_system or "unspecified"
    tokeniser_source = facts.get("tokeniser_name_or_path")
    if base_model is None and tokeniser_source and tokeniser_source.count("/") == 1 and not Path(tokeniser_source).exists():
        base_model = tokeniser_source  # a dynamics model built on a Hub tokeniser: link them on the Hub
    all_tags = list(dict.fromkeys([LIBRARY_NAME, f"physfm-{facts['kind']}", "physics", "pde", *tags]))
    if physical_system:
        all_tags.append(physical_system.replace("_", "-"))
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=license,
        tags=list(dict.fromkeys(all_tags)),
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        model_name=repo_id.split("/")[-1],
        eval_results=_model_index(rows, facts["kind"], dataset_name or system, eval_split) or None,
        physical_system=system,
        field_names=facts["field_names"],
        periodic=facts["periodic"],
        n_spatial_dims=facts["n_spatial_dims"],
        spatial_compressions=facts["spatial_compressions"],
        temporal_compressions=facts["temporal_compressions"],
        latent_channels=facts["latent_channels"],
        arxiv=PAPER_ARXIV,
    )
    sections = _card_sections(repo_id, facts, rows, eval_split, training, physical_system)
    sections.update(template_kwargs)
    return ModelCard.from_template(card_data, template_str=source, **sections)


CARD_ARGUMENTS = tuple(name for name, p in inspect.signature(render_model_card).parameters.items()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY)
"""What :func:`push_to_hub` passes on to :func:`render_model_card`."""


def _model_index(rows: Sequence[dict], kind: str, dataset_name: str, split: str) -> list[EvalResult]:
    """One ``model-index`` entry per evaluation row: metric ``vrmse`` at its compression ratio."""
    return [
        EvalResult(
            task_type="reconstruction" if kind == "tokeniser" else "time-series-forecasting",
            task_name="Field reconstruction" if kind == "tokeniser" else "Next-step prediction",
            dataset_type=r.get("dataset") or dataset_name,
            dataset_name=r.get("dataset") or dataset_name,
            dataset_split=split,
            dataset_config=f"spatial{r['spatial_compression']}-temporal{r['temporal_compression']}",
            metric_type="vrmse",
            metric_name=f"VRMSE (spatial ×{r['spatial_compression']}, temporal ×{r['temporal_compression']})",
            metric_value=round(float(r["vrmse"]), 6),
        )
        for r in rows
    ]


def _card_sections(repo_id: str, facts: dict, rows: Sequence[dict], split: str,
                   training: Mapping[str, Any] | None, physical_system: str | None) -> dict[str, Any]:
    """The variables a card template fills in: its prose sections and the checkpoint's facts."""
    return {
        "model_name": repo_id.split("/")[-1],  # model-index swallows card_data.model_name: pass the title itself
        "repo_id": repo_id,
        "kind": facts["kind"],
        "usage": _usage(repo_id, facts),
        "evaluation": _eval_table(rows, split),
        "training_details": _training(training),
        "fields_list": ", ".join(f"`{f}`" for f in facts["field_names"]),
        "compressions": "spatial " + ", ".join(f"×{s}" for s in facts["spatial_compressions"])
        + "; temporal " + ", ".join(f"×{t}" for t in facts["temporal_compressions"]),
        "boundaries": ", ".join(
            f"{axis}: {'periodic' if p else 'open'}" for axis, p in zip("xyz", facts["periodic"], strict=False)
        ),
        "facts": facts,
        "system": system_description(physical_system),
    }


# --------------------------------------------------------------------------------------------------
# Push / pull / load
# --------------------------------------------------------------------------------------------------


def push_to_hub(
    model_or_dir: Any,
    repo_id: str,
    *,
    card: ModelCard | str | None = None,
    revision: str | None = None,
    tag: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    private: bool = False,
    **card_kwargs: Any,
) -> str:
    """Push a physfm checkpoint and its model card to the Hub; returns the commit id.

    Args:
        model_or_dir: A physfm model (saved with ``save_pretrained`` into a temporary folder) or a folder
            that ``save_pretrained`` wrote. Only model files are uploaded (config, safetensors, remote code,
            card, figures); optimizer/RNG state stays local.
        repo_id: ``namespace/name``, e.g. ``physfm/tokeniser-shear-flow``. Created if missing.
        card: A ready card (``ModelCard`` or markdown text). Otherwise one is rendered with
            :func:`render_model_card` from ``card_kwargs``; a folder's own ``README.md`` is kept when none of
            ``physical_system``, ``eval_results`` and ``template`` is given.
        revision: Branch to commit to (created from ``main`` if missing). Default ``main``.
        tag: Also tag the new commit (e.g. ``"v1"``) so users can pin it with ``revision="v1"``.
        commit_message, token, private: As in ``huggingface_hub``.
        card_kwargs: The keyword-only arguments of :func:`render_model_card` (``physical_system``,
            ``eval_results``, ``eval_split``, ``dataset_name``, ``datasets``, ``license``, ``tags``, ``base_model``,
            ``training``, ``template``).
    """
    unknown = sorted(set(card_kwargs) - set(CARD_ARGUMENTS))
    if unknown:
        raise TypeError(f"push_to_hub() got unexpected keyword arguments {unknown}; the card arguments are "
                        f"{list(CARD_ARGUMENTS)}")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id: got {repo_id!r}; expected 'namespace/name', e.g. 'physfm/tokeniser-shear-flow'.")
    with tempfile.TemporaryDirectory(prefix="physfm-push-") as tmp:
        folder = _checkpoint_folder(model_or_dir, Path(tmp) / "checkpoint")
        facts = checkpoint_facts(folder)  # also validates that this is a physfm checkpoint
        card_args_given = (card_kwargs.get("physical_system") is not None or bool(card_kwargs.get("eval_results"))
                           or card_kwargs.get("template") is not None)
        if card is None and (card_args_given or not (folder / "README.md").is_file()):
            card = render_model_card(folder, repo_id, **card_kwargs)
        if card is not None:
            folder = _stage_with_card(folder, card, Path(tmp) / "staged")
        return _upload(folder, repo_id, revision=revision, tag=tag, private=private, token=token,
                       commit_message=commit_message or f"Upload physfm {facts['kind']}")


def _checkpoint_folder(model_or_dir: Any, save_to: Path) -> Path:
    """The folder of a checkpoint: the one given, or ``save_to`` after saving a model there."""
    if isinstance(model_or_dir, (str, os.PathLike)):
        folder = Path(model_or_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint: {str(folder)!r} is not a folder; expected a save_pretrained output.")
        return folder
    if hasattr(model_or_dir, "save_pretrained"):
        model_or_dir.save_pretrained(save_to)
        return save_to
    raise ValueError(f"model_or_dir: got {type(model_or_dir).__name__}; expected a physfm model or a checkpoint folder.")


def _stage_with_card(folder: Path, card: ModelCard | str, staged: Path) -> Path:
    """``folder``'s files linked into ``staged`` beside the card, so the user's checkpoint is not written into."""
    staged.mkdir()
    for item in folder.iterdir():
        if item.is_file() and item.name != "README.md":
            os.symlink(item.resolve(), staged / item.name)
    (staged / "README.md").write_text(str(card), encoding="utf-8")
    return staged


def _upload(folder: Path, repo_id: str, *, revision: str | None, tag: str | None, private: bool, token: str | None,
            commit_message: str) -> str:
    """Create the repo (and branch) if missing, upload the model files of ``folder``, tag the commit; its id."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint(), token=token, library_name=LIBRARY_NAME)
    with hub_errors(repo_id, revision, token, action="upload"):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            allow_patterns=UPLOAD_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
            delete_patterns=DELETE_PATTERNS,
        )
        if tag is not None:
            api.create_tag(repo_id, tag=tag, revision=info.oid, exist_ok=False)
    return info.oid


def pull(
    repo_id: str,
    revision: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    token: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """Download a checkpoint; returns the local folder (``out`` if given, else the Hub cache snapshot).

    Raises:
        HubError (a ``ValueError``): the repo or revision does not exist, or offline mode is on and the
            checkpoint is not cached.
        HubConnectionError (also a ``ValueError``): the server could not be reached or dropped the
            transfer; the cache keeps no partial file.
    """
    from huggingface_hub import snapshot_download

    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id: got {repo_id!r}; expected a Hub id such as 'physfm/tokeniser-shear-flow'.")
    with hub_errors(repo_id, revision, token):
        path = snapshot_download(
            repo_id,
            revision=revision,
            local_dir=out,
            token=token,
            endpoint=_endpoint(),
            local_files_only=local_files_only,
            library_name=LIBRARY_NAME,
        )
    return Path(path)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="physfm hub", description="Push or pull physfm checkpoints.")
    sub = parser.add_subparsers(dest="action", required=True)

    push = sub.add_parser("push", help="push a trained checkpoint folder with a model card")
    push.add_argument("checkpoint", help="folder written by save_pretrained (or by `physfm train`)")
    push.add_argument("--repo_id", required=True, help="namespace/name, e.g. physfm/tokeniser-shear-flow")
    push.add_argument("--revision", help="branch to push to (created if missing; default main)")
    push.add_argument("--tag", help="also tag the new commit, e.g. v1")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    push.add_argument("--commit_message")
    push.add_argument("--physical_system", help="system the checkpoint was trained on, e.g. shear_flow")
    push.add_argument("--data", help="Well-format dataset: evaluate reconstruction on its valid split for the card")
    push.add_argument("--eval_samples", type=int, default=16, help="windows evaluated with --data (default 16)")
    push.add_argument("--license", default=DEFAULT_LICENSE)
    push.add_argument("--template", help="path to a Jinja card template, or a physfm template name "
                      "(tokeniser, dynamics); default: the one for the checkpoint's kind")

    pull_ = sub.add_parser("pull", help="download a checkpoint")
    pull_.add_argument("repo_id")
    pull_.add_argument("--revision", help="branch, tag or commit id")
    pull_.add_argument("--out", help="copy the files into this folder instead of only the cache")
    pull_.add_argument("--token")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "pull":
        path = pull(args.repo_id, args.revision, args.out, token=args.token)
        print(path)
        return 0

    eval_results: list = []
    dataset_name = None
    if args.data:
        from .reconstruction import evaluate_reconstruction

        eval_results = evaluate_reconstruction(args.checkpoint, args.data, split="valid", max_samples=args.eval_samples)
        from .data import read_well_metadata

        dataset_name = read_well_metadata(args.data).dataset_name
    oid = push_to_hub(
        args.checkpoint, args.repo_id, physical_system=args.physical_system or dataset_name,
        eval_results=eval_results, dataset_name=dataset_name, license=args.license, template=args.template,
        revision=args.revision, tag=args.tag, commit_message=args.commit_message, token=args.token,
        private=args.private,
    )
    print(f"pushed {args.checkpoint} to {_endpoint()}/{args.repo_id} (revision {args.revision or 'main'}, commit {oid})")
    return 0
