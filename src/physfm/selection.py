"""Choosing a pretrained tokeniser for your data by domain alignment.

Tokeniser pretraining helps a dynamics model most when the pretraining system matches the
downstream one. ``select_tokeniser`` measures that match directly, for each candidate:

1. it maps the data's fields onto the tokeniser's vocabulary (exact names) and reports the
   fields it cannot encode;
2. it reconstructs a sample of the data zero-shot and scores it as :mod:`physfm.reconstruction` does
   everywhere (VRMSE and the binned spectral error of normalised fields, same definitions as the_well);
3. it ranks the candidates and recommends one.

``evaluate_reconstruction`` (from :mod:`physfm.reconstruction`, also importable from here) is the
measurement on its own; the model cards use it for their results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._cli_parsing import Parser
from ._io import atomic_write_json
from .reconstruction import (
    SPECTRAL_BINS,
    ReconstructionResult,
    dims_mismatch,
    evaluate_reconstruction,
    map_fields,
    tokeniser_of,
    trained_vocabulary,
)

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
            tokeniser = tokeniser_of(candidate, revision)
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
        if mismatch := dims_mismatch(config, probe.n_spatial_dims):
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
        atomic_write_json(args.json, report.to_dict())
    return 1 if report.ratio_unserved else 0


__all__ = ["CandidateReport", "ReconstructionResult", "SelectionReport", "evaluate_reconstruction", "map_fields",
           "select_tokeniser"]
