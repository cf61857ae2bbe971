"""Choosing a pretrained tokeniser for your data by domain alignment.

Tokeniser pretraining helps a dynamics model most when the pretraining system matches the
downstream one. ``select_tokeniser`` measures that match directly, for each candidate:

1. it maps the data's fields onto the tokeniser's vocabulary (exact names) and reports the
   fields it cannot encode;
2. it reconstructs a sample of the data zero-shot and measures VRMSE and the binned spectral
   error (normalised fields, same definitions as the_well);
3. it ranks the candidates and recommends one.

``evaluate_reconstruction`` is the measurement on its own; the model cards use it for their
"reconstruction VRMSE at each compression ratio on the valid split" results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._cli_parsing import Parser

SPECTRAL_BINS = ("low", "mid", "high")
# A frame whose field is spatially constant (normalised variance below this) has no defined VRMSE
# (it divides by the variance): such (frame, field) entries are left out of the means, e.g. a uniform
# medium's density, or a velocity that starts at rest.
CONSTANT_VARIANCE = 1e-6


@dataclass
class ReconstructionResult:
    """Zero-shot reconstruction quality of one tokeniser at one compression ratio."""

    spatial_compression: int
    temporal_compression: int
    vrmse: float  # mean over samples, frames and fields (spatially constant frames left out)
    vrmse_per_field: dict[str, float]  # fields constant in every sampled frame are absent
    spectral_nmse_low: float
    spectral_nmse_mid: float
    spectral_nmse_high: float
    n_samples: int
    dataset: str = ""  # the dataset's name (its HDF5 ``dataset_name``)
    n_frames: int = 0  # frames per evaluated clip
    dt_stride: int = 1  # stored frames between the frames of a clip


def _tokeniser_of(model: Any):
    """The tokeniser inside a model (a dynamics model wraps one), checked to have the tokeniser API."""
    tokeniser = getattr(model, "tokeniser", model)
    if not all(hasattr(tokeniser, name) for name in ("encode", "decode", "config")) or not hasattr(
        tokeniser.config, "field_names"
    ):
        raise ValueError(
            f"model: got {type(model).__name__}; expected a physfm tokeniser (or a model wrapping one)."
        )
    return tokeniser


def _dims_mismatch(config, n_spatial_dims: int) -> str | None:
    """Why a tokeniser cannot encode data of ``n_spatial_dims`` (a 2-D tokeniser on 3-D data), or None."""
    if config.n_spatial_dims == n_spatial_dims:
        return None
    return (f"the data has {n_spatial_dims}-D fields but the tokeniser is {config.n_spatial_dims}-D "
            f"(n_spatial_dims={config.n_spatial_dims}); choose a {n_spatial_dims}-D tokeniser")


def map_fields(data_fields: Sequence[str], vocabulary: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the data's fields into those the vocabulary holds (exact names) and the rest, in data order."""
    vocab = set(vocabulary)
    mapped = [f for f in data_fields if f in vocab]
    return mapped, [f for f in data_fields if f not in vocab]


def trained_vocabulary(config) -> list[str]:
    """The vocabulary less the fields whose rows were never trained (added for a downstream system): a
    tokeniser cannot be judged on a field it has not learnt."""
    trained = getattr(config, "trained_field_names", None)
    return [f for f in config.field_names if trained is None or f in trained]


def _window_length(temporal_compressions: Sequence[int], n_steps: int, dt_stride: int = 1) -> tuple[int, list[int]]:
    """The clip ``1 + 2 * lcm(t)`` frames long, ``dt_stride`` apart, and the temporal ratios it serves.

    Two latent frames per clip at the largest ratio: with one, ``t`` would barely compress (the first frame is
    always its own latent), and every ratio would look alike. One clip length for every ratio keeps the
    comparison on identical frames. Ratios whose clip does not fit in the trajectories are dropped (largest
    first).
    """
    ratios = sorted(set(int(t) for t in temporal_compressions))
    while ratios:
        n_frames = 1 + 2 * math.lcm(*ratios)
        if 1 + (n_frames - 1) * dt_stride <= n_steps:
            return n_frames, ratios
        ratios.pop()
    raise ValueError(
        f"data: trajectories have {n_steps} time steps; at least {1 + 2 * dt_stride} are needed to evaluate "
        f"reconstruction on 3-frame clips at dt_stride={dt_stride}."
    )


@torch.no_grad()
def evaluate_reconstruction(
    model: Any,
    dataset_dir: str | os.PathLike,
    split: str = "valid",
    *,
    compressions: Sequence[tuple[int, int]] | None = None,
    max_samples: int = 16,
    batch_size: int = 4,
    field_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    dt_stride: int = 1,
) -> list[ReconstructionResult]:
    """Reconstruction VRMSE and spectral error of ``model`` on a Well-format dataset, per compression ratio.

    Args:
        model: A physfm tokeniser (or a dynamics model, whose tokeniser is evaluated).
        dataset_dir: A Well-format dataset folder (``data/<split>/*.hdf5`` + ``stats.yaml``).
        split: The split to sample windows from.
        compressions: ``(spatial, temporal)`` pairs; default every pair the tokeniser supports whose
            spatial ratio divides the grid and whose clip fits in the trajectories.
        max_samples: Windows evaluated, spread evenly over the split (deterministic).
        batch_size: Windows per forward pass.
        field_names: The data fields to evaluate; default all that the vocabulary holds.
        dt_stride: Stored frames between the frames of a clip; use the stride the tokeniser will be used at.

    Every ratio is evaluated on the same clips of ``1 + 2 * lcm(t)`` frames (at least ``1 + 2t`` for each ``t``), in normalised space, with
    the data's own boundary conditions. VRMSE follows the_well's definition per frame and field;
    frames where a field is spatially constant are left out of its means, since VRMSE divides by the
    spatial variance. The spectral errors are pooled: the residual's power in each wavenumber bin
    over the target's power in that bin.
    """
    from .data import WellWindowDataset
    from .metrics import binned_spectral_mse, vrmse

    tokeniser = _tokeniser_of(model)
    config = tokeniser.config
    if max_samples < 1 or batch_size < 1:
        raise ValueError(f"max_samples / batch_size: got {max_samples} / {batch_size}; expected positive integers.")
    probe = WellWindowDataset(dataset_dir, split=split, n_steps_input=1, n_steps_output=0, normalize=False)
    mismatch = _dims_mismatch(config, probe.n_spatial_dims)
    if mismatch:
        raise ValueError(f"data {str(dataset_dir)!r}: {mismatch}.")
    mapped, unmapped = map_fields(probe.field_names, trained_vocabulary(config))
    if field_names is not None:
        missing = [f for f in field_names if f not in mapped]
        if missing:
            raise ValueError(
                f"field_names: {missing} are not both in the data ({probe.field_names}) and the tokeniser "
                f"vocabulary ({list(config.field_names)})."
            )
        mapped = list(field_names)
    if not mapped:
        raise ValueError(
            f"data: none of the fields {probe.field_names} of {str(dataset_dir)!r} is in the tokeniser vocabulary "
            f"{list(config.field_names)}; add them with tokeniser.add_fields([...]) and finetune."
        )

    if compressions is None:
        n_frames, ratios_t = _window_length(config.temporal_compressions, min(h.n_steps for h in probe.headers),
                                            dt_stride)
        compressions = [
            (s, t) for s in config.spatial_compressions for t in ratios_t
            if all(n % s == 0 for n in probe.spatial_shape)
        ]
    else:
        compressions = [(int(s), int(t)) for s, t in compressions]
        for s, t in compressions:
            if s not in config.spatial_compressions or t not in config.temporal_compressions:
                raise ValueError(
                    f"compressions: ({s}, {t}) is not served by this tokeniser; expected spatial in "
                    f"{list(config.spatial_compressions)} and temporal in {list(config.temporal_compressions)}."
                )
        n_frames, served = _window_length([t for _, t in compressions], min(h.n_steps for h in probe.headers),
                                          dt_stride)
        if len(served) < len({t for _, t in compressions}):
            raise ValueError(
                f"compressions: temporal ratios {sorted({t for _, t in compressions})} need clips of 1 + 2*lcm frames; "
                f"the trajectories of {str(dataset_dir)!r} are too short (serve {served})."
            )
    if not compressions:
        raise ValueError(
            f"data: no compression ratio of the tokeniser (spatial {list(config.spatial_compressions)}) divides the "
            f"grid {tuple(probe.spatial_shape)}; resample the data to a multiple of a supported ratio."
        )

    dataset = WellWindowDataset(dataset_dir, split=split, n_steps_input=n_frames, n_steps_output=0,
                                dt_stride=dt_stride, normalize=True)
    channels = [dataset.field_names.index(f) for f in mapped]
    n = min(max_samples, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)})
    clips = torch.stack([dataset[i]["input_fields"] for i in indices])[..., channels].to(device)

    dims = dataset.n_spatial_dims
    was_training = tokeniser.training
    tokeniser.eval()
    results = []
    try:
        for s, t in compressions:
            errors, defined, residual_power, target_power = [], [], [], []
            for batch in clips.split(batch_size):
                latents = tokeniser.encode(batch, spatial_compression=s, temporal_compression=t,
                                           field_names=mapped, periodic=list(dataset.periodic))
                recon = tokeniser.decode(latents, spatial_compression=s, temporal_compression=t, field_names=mapped,
                                         periodic=list(dataset.periodic), spatial_shape=tuple(batch.shape[2:-1]))
                errors.append(vrmse(recon, batch, n_spatial_dims=dims))  # [B, T, C]
                defined.append(batch.flatten(2, -2).var(dim=2) > CONSTANT_VARIANCE)  # [B, T, C]
                residual = binned_spectral_mse(recon, batch, n_spatial_dims=dims)
                target = binned_spectral_mse(torch.zeros_like(batch), batch, n_spatial_dims=dims)  # target's power
                residual_power.append(torch.stack([residual[f"mse_{b}"].sum() for b in SPECTRAL_BINS]))
                target_power.append(torch.stack([target[f"mse_{b}"].sum() for b in SPECTRAL_BINS]))
            error, mask = torch.cat(errors).flatten(0, 1), torch.cat(defined).flatten(0, 1)  # [samples*frames, C]
            if not mask.any():
                raise ValueError(f"data: every sampled frame of {str(dataset_dir)!r} is spatially constant; "
                                 "reconstruction error relative to the variance is undefined.")
            per_field = {f: float(error[mask[:, c], c].mean()) for c, f in enumerate(mapped) if mask[:, c].any()}
            # Spectral error pooled over samples, frames and fields: the share of each bin's power that is wrong.
            spectrum = torch.stack(residual_power).sum(0) / (torch.stack(target_power).sum(0) + 1e-12)
            results.append(ReconstructionResult(
                spatial_compression=s,
                temporal_compression=t,
                vrmse=float(error[mask].mean()),
                vrmse_per_field=per_field,
                spectral_nmse_low=float(spectrum[0]),
                spectral_nmse_mid=float(spectrum[1]),
                spectral_nmse_high=float(spectrum[2]),
                n_samples=len(indices),
                dataset=dataset.dataset_name,
                n_frames=n_frames,
                dt_stride=dt_stride,
            ))
    finally:
        tokeniser.train(was_training)
    return results


# --------------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------------


@dataclass
class CandidateReport:
    """How one candidate tokeniser fits the data."""

    candidate: str
    mapped_fields: list[str] = field(default_factory=list)
    unmapped_fields: list[str] = field(default_factory=list)
    result: ReconstructionResult | None = None
    reason: str | None = None  # why it could not be evaluated (then it ranks last)
    rank: int = 0

    @property
    def usable(self) -> bool:
        return self.result is not None


@dataclass
class SelectionReport:
    """Candidates ranked best first, with the recommendation and a printable table."""

    data: str
    data_fields: list[str]
    spatial_compression: int
    temporal_compression: int
    candidates: list[CandidateReport]

    @property
    def recommendation(self) -> str | None:
        best = self.candidates[0] if self.candidates else None
        return best.candidate if best is not None and best.usable else None

    @property
    def ratio_unserved(self) -> bool:
        """Whether the asked-for ratio, not the fields, rules out every candidate."""
        return bool(self.candidates) and all((c.reason or "").startswith("does not serve") for c in self.candidates)

    def summary(self) -> str:
        best = self.candidates[0] if self.candidates else None
        if best is None or not best.usable:
            if self.ratio_unserved:
                return (f"Recommendation: none; no candidate serves spatial ×{self.spatial_compression} / temporal "
                        f"×{self.temporal_compression} (see each note). Pick a ratio they serve.")
            return "Recommendation: none of the candidates can encode these fields; train a tokeniser on your data."
        text = (f"Recommendation: {best.candidate} (VRMSE {best.result.vrmse:.4f} at spatial ×{self.spatial_compression}, "
                f"temporal ×{self.temporal_compression}).")
        if best.unmapped_fields:
            text += (f" It lacks {best.unmapped_fields}: add them with tokeniser.add_fields({best.unmapped_fields}) "
                     "and finetune the tokeniser with the dynamics model.")
        return text

    def table(self) -> str:
        header = ["rank", "candidate", "fields", "unmapped", "VRMSE", "spec. low", "spec. mid", "spec. high", "note"]
        rows = []
        for c in self.candidates:
            r = c.result
            rows.append([
                str(c.rank), c.candidate, f"{len(c.mapped_fields)}/{len(self.data_fields)}",
                ", ".join(c.unmapped_fields) or "-",
                f"{r.vrmse:.4f}" if r else "-",
                *([f"{getattr(r, f'spectral_nmse_{b}'):.3g}" for b in SPECTRAL_BINS] if r else ["-"] * 3),
                c.reason or "",
            ])
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*row).rstrip() for row in [header, ["-" * w for w in widths], *rows]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "data": self.data, "data_fields": self.data_fields,
            "spatial_compression": self.spatial_compression, "temporal_compression": self.temporal_compression,
            "recommendation": self.recommendation,
            "candidates": [{**asdict(c), "result": asdict(c.result) if c.result else None} for c in self.candidates],
        }


def _rank_key(report: CandidateReport) -> tuple:
    # Usable before unusable; then fewer unmapped fields (a full match needs no new vocabulary rows);
    # then lower reconstruction error.
    if report.result is None:
        return (1, 0, math.inf)
    return (0, len(report.unmapped_fields), report.result.vrmse)


def _pick_ratio(tokenisers: list[Any], spatial: int | None, temporal: int | None, spatial_shape) -> tuple[int, int]:
    """The ratio to compare at: the user's, else the first tokeniser's default if every candidate serves it."""
    configs = [t.config for t in tokenisers]
    if spatial is None:
        common = set.intersection(*(set(c.spatial_compressions) for c in configs)) if configs else set()
        common = {s for s in common if all(n % s == 0 for n in spatial_shape)}
        default = configs[0].default_spatial_compression if configs else 4
        spatial = default if default in common or not common else sorted(common)[len(common) // 2]
    if temporal is None:
        common = set.intersection(*(set(c.temporal_compressions) for c in configs)) if configs else set()
        default = configs[0].default_temporal_compression if configs else 1
        temporal = default if default in common or not common else min(common)
    return int(spatial), int(temporal)


def select_tokeniser(
    data: str | os.PathLike,
    candidates: Sequence[Any],
    *,
    split: str = "valid",
    spatial_compression: int | None = None,
    temporal_compression: int | None = None,
    max_samples: int = 8,
    batch_size: int = 4,
    revision: str | None = None,
) -> SelectionReport:
    """Rank candidate tokenisers (Hub ids, checkpoint folders or loaded models) for a dataset.

    All candidates are compared at one compression ratio: ``spatial_compression`` /
    ``temporal_compression`` if given, else the first candidate's default when all serve it.
    Candidates that cannot be loaded, serve no such ratio or encode none of the data's fields are
    listed last with the reason. Ranking: candidates encoding more of the data's fields first, then
    lower zero-shot VRMSE.
    """
    from .checkpoints import load_pretrained
    from .data import WellWindowDataset

    data_path = Path(data)
    if not data_path.exists():
        raise FileNotFoundError(f"data: {str(data)!r} does not exist; expected a Well-format dataset folder.")
    if not candidates:
        raise ValueError("candidates: got none; expected one or more tokeniser Hub ids or checkpoint folders.")
    probe = WellWindowDataset(data_path, split=split, n_steps_input=1, n_steps_output=0, normalize=False)

    reports, loaded = [], []
    for candidate in candidates:
        name = candidate if isinstance(candidate, (str, os.PathLike)) else getattr(
            getattr(candidate, "config", None), "name_or_path", None) or type(candidate).__name__
        report = CandidateReport(candidate=str(name))
        reports.append(report)
        try:
            model = load_pretrained(candidate, revision=revision) if isinstance(candidate, (str, os.PathLike)) else candidate
            tokeniser = _tokeniser_of(model)
        except (ValueError, OSError) as error:
            report.reason = f"cannot load: {error}"
            loaded.append(None)
            continue
        report.mapped_fields, report.unmapped_fields = map_fields(probe.field_names,
                                                                   trained_vocabulary(tokeniser.config))
        loaded.append(tokeniser)

    usable = [t for t in loaded if t is not None]
    s, t = _pick_ratio(usable, spatial_compression, temporal_compression, probe.spatial_shape)
    for report, tokeniser in zip(reports, loaded, strict=True):
        if tokeniser is None:
            continue
        config = tokeniser.config
        if mismatch := _dims_mismatch(config, probe.n_spatial_dims):
            report.reason = mismatch
        elif not report.mapped_fields:
            report.reason = f"encodes none of the data's fields (vocabulary: {', '.join(config.field_names)})"
        elif s not in config.spatial_compressions or t not in config.temporal_compressions:
            report.reason = (f"does not serve spatial ×{s} / temporal ×{t} (serves {list(config.spatial_compressions)} / "
                             f"{list(config.temporal_compressions)})")
        else:
            try:
                report.result = evaluate_reconstruction(
                    tokeniser, data_path, split, compressions=[(s, t)], max_samples=max_samples,
                    batch_size=batch_size, field_names=report.mapped_fields,
                )[0]
            except ValueError as error:
                report.reason = f"cannot evaluate: {error}"

    reports.sort(key=_rank_key)  # stable: ties keep the order the user gave
    for rank, report in enumerate(reports, start=1):
        report.rank = rank
    return SelectionReport(str(data_path), list(probe.field_names), s, t, reports)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(
        prog="physfm select-tokeniser",
        description="Rank pretrained tokenisers by zero-shot reconstruction of your data and recommend one.",
    )
    parser.add_argument("--data", required=True, help="Well-format dataset folder")
    parser.add_argument("--candidates", nargs="+", required=True, help="tokeniser Hub ids or checkpoint folders")
    parser.add_argument("--split", default="valid", help="split to sample (default valid)")
    parser.add_argument("--spatial_compression", type=int, help="ratio to compare at (default: common default)")
    parser.add_argument("--temporal_compression", type=int)
    parser.add_argument("--samples", type=int, default=8, help="windows to reconstruct per candidate (default 8)")
    parser.add_argument("--revision", help="revision for every Hub candidate")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    report = select_tokeniser(
        args.data, args.candidates, split=args.split, spatial_compression=args.spatial_compression,
        temporal_compression=args.temporal_compression, max_samples=args.samples, revision=args.revision,
    )
    print(f"data: {report.data}  fields: {', '.join(report.data_fields)}  "
          f"ratio: spatial ×{report.spatial_compression}, temporal ×{report.temporal_compression}")
    print(report.table())
    print(report.summary())
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report.to_dict(), indent=2))
        os.replace(tmp, out)
    return 1 if report.ratio_unserved else 0
