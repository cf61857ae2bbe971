"""Normalisation statistics (``stats.yaml``) and the z-score :class:`Normalizer`.

``stats.yaml`` follows The Well: top-level keys ``mean``, ``std``, ``mean_delta``, ``std_delta``,
``rms`` and ``rms_delta``, each mapping a *core* field name (``velocity``, not ``velocity_x``) to a
float (t0 field), a list of ``d`` floats (t1 field) or a ``d x d`` nested list (t2 field).
Deltas are statistics of ``x[t+1] - x[t]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import yaml

from .._io import atomic_write_yaml
from ..models.processing_physfm import ZScore
from .hub_files import HubFile

STAT_KEYS = ("mean", "std", "mean_delta", "std_delta", "rms", "rms_delta")

# The Well clips standard deviations from below with the same floor (``min_std``), so that constant
# fields do not blow up; we use it too so normalised windows match the peer's exactly.
MIN_STD = 1e-4


class _Moments:
    """Streaming first and second moments per tensor component, in float64.

    Accumulates per-chunk means and centred sums of squares and merges them with Chan's formula, so
    that large datasets can be reduced trajectory by trajectory without cancellation error.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None

    def update(self, chunk: np.ndarray, component_ndim: int) -> None:
        x = np.asarray(chunk, dtype=np.float64)
        axes = tuple(range(x.ndim - component_ndim))
        n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        if n == 0:
            return
        mean = x.mean(axis=axes)
        m2 = ((x - mean) ** 2).sum(axis=axes)
        sumsq = (x**2).sum(axis=axes)
        if self.mean is None:
            self.count, self.mean, self.m2, self.sumsq = n, mean, m2, sumsq
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / total
        self.sumsq = self.sumsq + sumsq
        self.count = total

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.mean is None:
            raise ValueError("cannot compute statistics of an empty array")
        return self.mean, np.sqrt(self.m2 / self.count), np.sqrt(self.sumsq / self.count)


def _to_yaml_value(x: np.ndarray) -> float | list:
    return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64).tolist()


class StatsAccumulator:
    """Accumulates The Well's statistics field by field, one trajectory chunk at a time.

    ``add(name, chunk, tensor_order)`` takes ``chunk`` shaped ``[traj, time, *space, (d, (d))]``
    (``time`` must be present for delta statistics; pass ``time_varying=False`` otherwise).
    """

    def __init__(self) -> None:
        self._values: dict[str, _Moments] = {}
        self._deltas: dict[str, _Moments] = {}

    def add(self, name: str, chunk: np.ndarray, tensor_order: int, time_varying: bool = True) -> None:
        self._values.setdefault(name, _Moments()).update(chunk, tensor_order)
        if time_varying and chunk.shape[1] > 1:
            delta = np.diff(np.asarray(chunk, dtype=np.float64), axis=1)
            self._deltas.setdefault(name, _Moments()).update(delta, tensor_order)

    def result(self) -> dict[str, dict[str, float | list]]:
        stats: dict[str, dict[str, float | list]] = {key: {} for key in STAT_KEYS}
        for name, moments in self._values.items():
            mean, std, rms = moments.finish()
            stats["mean"][name], stats["std"][name], stats["rms"][name] = map(_to_yaml_value, (mean, std, rms))
        for name, moments in self._deltas.items():
            mean, std, rms = moments.finish()
            stats["mean_delta"][name] = _to_yaml_value(mean)
            stats["std_delta"][name] = _to_yaml_value(std)
            stats["rms_delta"][name] = _to_yaml_value(rms)
        return stats


def write_stats(stats: Mapping, path: str | os.PathLike) -> Path:
    """Write ``stats`` to ``path`` as YAML, atomically."""
    return atomic_write_yaml(path, {k: dict(v) for k, v in stats.items()})


def load_stats(path: str | os.PathLike | HubFile) -> dict:
    """Read a ``stats.yaml`` (a local file or one on the Hub); raises a clear error if it is missing or lacks The
    Well's keys."""
    path = path if isinstance(path, HubFile) else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"normalisation statistics {path} not found; expected a stats.yaml beside data/ "
            "(write one with physfm.data.compute_stats + write_stats, or pass normalize=False)"
        )
    try:
        stats = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    missing = [k for k in ("mean", "std") if not isinstance(stats, dict) or k not in stats]
    if missing:
        raise ValueError(f"{path}: missing statistics {missing}; expected keys {list(STAT_KEYS)}")
    return stats


def check_statistic(value: np.ndarray, key: str, name: str, source: str) -> None:
    """A ``stats.yaml`` entry must be finite, and a ``std`` not negative. (A zero std is right for a field that
    is constant over the train split; ``physfm inspect`` checks that it is.)"""
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{source}: {key} of field {name!r} is {value.tolist()}; expected finite numbers. "
                         "Recompute it with physfm.data.compute_stats")
    if key == "std" and np.any(value < 0):
        raise ValueError(f"{source}: std of field {name!r} is {value.tolist()}; expected a number >= 0. Recompute it "
                         "with physfm.data.compute_stats")


class Normalizer(ZScore):
    """Z-score normalisation over the last (channel) axis, as The Well's ``ZScoreNormalization``.

    ``mean`` and ``std`` are 1-D, one entry per flattened channel (``velocity_x``, ``velocity_y``, ...), the std
    floored at ``min_std``. Works on torch tensors and NumPy arrays shaped ``[..., C]``. The arithmetic is
    :class:`physfm.models.processing_physfm.ZScore`'s, the same a checkpoint's ``PhysfmFieldProcessor`` uses.
    """

    def __init__(self, mean: Iterable[float], std: Iterable[float], field_names: list[str] | None = None,
                 min_std: float = MIN_STD):
        super().__init__(mean, std, field_names)
        self.std = self.std.clamp_min(min_std)

    @classmethod
    def from_stats(cls, stats: Mapping, core_fields: list[tuple[str, int]], n_spatial_dims: int,
                   field_names: list[str] | None = None, source: str = "stats.yaml") -> Normalizer:
        """Build from a ``stats.yaml`` mapping; ``core_fields`` lists ``(name, tensor_order)`` in channel order."""
        means, stds = [], []
        for name, order in core_fields:
            for key, out in (("mean", means), ("std", stds)):
                if name not in stats[key]:
                    raise ValueError(f"{source}: no {key!r} entry for field {name!r}; "
                                     f"it has {sorted(stats[key])}")
                value = np.asarray(stats[key][name], dtype=np.float64)
                check_statistic(value, key, name, source)
                # Scalar stats of a vector field apply to every component, as broadcasting does in the peer.
                out.extend(np.broadcast_to(value, (n_spatial_dims,) * order).reshape(-1).tolist())
        return cls(means, stds, field_names)
