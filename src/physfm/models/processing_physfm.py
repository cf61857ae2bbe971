"""Physical units at the model boundary: :class:`PhysfmFieldProcessor`, saved as ``preprocessor_config.json``.

physfm models take z-scored fields. The statistics a checkpoint was trained with travel with it in this processor,
so raw simulation output goes in and predictions come back in physical units without the dataset's ``stats.yaml``
(normalising with the wrong statistics is silent and ruinous: The Well's own baselines score several times worse).

It is a transformers feature extractor, so ``AutoProcessor.from_pretrained`` (and ``AutoFeatureExtractor``) return
it: by class name after ``import physfm``, and through ``auto_map`` plus this file, copied into every checkpoint,
with ``trust_remote_code=True`` where physfm is not installed. Like all of ``physfm.models`` this file imports
nothing from physfm.

:class:`ZScore` is physfm's one implementation of the per-channel normalisation; ``physfm.data.Normalizer``
(the data loader's) builds on it, so a checkpoint's processor and the loader it was trained with agree bit for bit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

LAYOUT = "[batch, time, *space, fields]"
# Outputs that carry fields under a name other than "fields": the models' ModelOutputs.
_FIELD_KEYS = ("fields", "prediction", "reconstruction")


class ZScore:
    """``(x - mean) / std`` per channel over the last axis, for torch tensors and NumPy arrays shaped ``[..., C]``.

    ``mean`` and ``std`` are kept as float32 tensors (what the models train in) and cast to the input's dtype and
    device at use.
    """

    def __init__(self, mean: Iterable[float], std: Iterable[float], field_names: Sequence[str] | None = None):
        self.mean = torch.as_tensor(np.asarray(list(mean), dtype=np.float32))
        self.std = torch.as_tensor(np.asarray(list(std), dtype=np.float32))
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError(f"mean and std must be 1-D of equal length, got {tuple(self.mean.shape)} "
                             f"and {tuple(self.std.shape)}")
        self.field_names = list(field_names) if field_names is not None else None

    def _params(self, x):
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"{type(self).__name__}: expected {self.mean.shape[0]} channels in the last axis "
                             f"({self.field_names}), got shape {tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            return self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return self.mean.numpy().astype(x.dtype), self.std.numpy().astype(x.dtype)

    def normalize(self, x):
        """``(x - mean) / std`` per channel."""
        mean, std = self._params(x)
        return (x - mean) / std

    def normalize_(self, x: torch.Tensor) -> torch.Tensor:
        """In-place :meth:`normalize` of a float tensor (the loader's hot path); returns ``x``."""
        mean, std = self._params(x)
        return x.sub_(mean).div_(std)

    def denormalize(self, x):
        """Inverse of :meth:`normalize`: ``x * std + mean``."""
        mean, std = self._params(x)
        return x * std + mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.mean.shape[0]}, field_names={self.field_names})"


def _repeated(names: Sequence[str]) -> list[str]:
    return sorted({n for n in names if list(names).count(n) > 1})


def _floats(values, what: str, where: str, length: int | None = None, positive: bool = False) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be a list of numbers, got {values!r}") from None
    if length is not None and len(out) != length:
        raise ValueError(f"{where}: {what} has {len(out)} entries but there are {length} fields; expected one per "
                         "field")
    for i, v in enumerate(out):
        if not math.isfinite(v) or (positive and v <= 0):
            rule = "a finite number > 0" if positive else "a finite number"
            raise ValueError(f"{where}: {what}[{i}] is {v}; expected {rule}")
    return out


class PhysfmFieldProcessor(FeatureExtractionMixin):
    r"""Maps physical fields to the normalised tensors physfm models take, and predictions back.

    Args:
        field_names (`list[str]`): Flattened channel names, as The Well flattens vector and tensor fields
            (`velocity_x`, `velocity_y`, `stress_xx`, ...).
        mean (`list[float]`), std (`list[float]`): One per field: The Well's per-component statistics of the
            training split, the std already floored at The Well's `min_std` (1e-4) exactly as training used it, so
            every std is > 0.
        periodic (`list[bool]`, *optional*): One per spatial axis; its length fixes the number of spatial dims.
        dt (`float`, *optional*): Physical time between two frames the model sees (stored interval × frame stride).
        grid_spacing (`list[float]`, *optional*): Physical spacing of the grid along each spatial axis.
        dataset_name (`str`, *optional*): The dataset (or `+`-joined mixture) the statistics come from.

    `processor(fields, field_names=None)` takes an array (NumPy or torch) in The Well's layout
    `[batch, time, *space, fields]`, or a mapping `{name: [batch, time, *space]}`, and returns a `BatchFeature`
    with `fields` (float32 torch tensor, normalised) and `field_names`; `model(**processor(x))` calls a tokeniser.
    `postprocess(predictions, field_names=None)` maps normalised predictions back to physical units.
    """

    model_input_names = ["fields"]

    def __init__(self, field_names: Sequence[str], mean: Sequence[float], std: Sequence[float],
                 periodic: Sequence[bool] | None = None, dt: float | None = None,
                 grid_spacing: Sequence[float] | None = None, dataset_name: str | None = None, **kwargs):
        # Written by to_dict for the Auto classes; they follow from the class, not from this instance's state.
        for key in ("feature_extractor_type", "processor_class", "auto_map"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        where = f"{type(self).__name__}({dataset_name!r})" if dataset_name else type(self).__name__
        if isinstance(field_names, str) or not field_names or not all(isinstance(n, str) and n for n in field_names):
            raise ValueError(f"{where}: field_names must be a non-empty list of names, got {field_names!r}")
        if _repeated(field_names):
            raise ValueError(f"{where}: field_names lists {_repeated(field_names)} more than once; expected each "
                             "field once")
        self.field_names = list(field_names)
        self.mean = _floats(mean, "mean", where, len(self.field_names))
        self.std = _floats(std, "std", where, len(self.field_names))
        for name, value in zip(self.field_names, self.std, strict=True):
            if not value > 0:
                raise ValueError(f"{where}: std of field {name!r} is {value}; expected a number > 0 (a constant "
                                 "field's std is floored at 1e-4, as in The Well). Recompute the statistics")
        self.periodic = None if periodic is None else [bool(p) for p in periodic]
        self.dt = None if dt is None else _floats([dt], "dt", where, positive=True)[0]
        self.grid_spacing = None if grid_spacing is None else _floats(grid_spacing, "grid_spacing", where,
                                                                      positive=True)
        if self.periodic is not None and self.grid_spacing is not None and \
                len(self.periodic) != len(self.grid_spacing):
            raise ValueError(f"{where}: periodic has {len(self.periodic)} axes but grid_spacing has "
                             f"{len(self.grid_spacing)}; expected one entry per spatial axis in both")
        self.dataset_name = dataset_name

    # --------------------------------------------------------------------------------------------- helpers
    @property
    def n_spatial_dims(self) -> int | None:
        axes = self.periodic if self.periodic is not None else self.grid_spacing
        return None if axes is None else len(axes)

    def _where(self) -> str:
        return f"{type(self).__name__}({self.dataset_name!r})" if self.dataset_name else type(self).__name__

    def _index(self, field_names: Sequence[str] | None, argument: str = "field_names") -> list[int]:
        if field_names is None:
            return list(range(len(self.field_names)))
        if isinstance(field_names, str) or not all(isinstance(n, str) for n in field_names):
            raise ValueError(f"{argument}: expected a list of field names, got {field_names!r}")
        if _repeated(field_names):
            raise ValueError(f"{argument}: {_repeated(field_names)} listed more than once; expected each field once")
        unknown = [n for n in field_names if n not in self.field_names]
        if unknown:
            raise ValueError(f"{argument}: unknown fields {unknown}; {self._where()} has statistics for "
                             f"{self.field_names}")
        return [self.field_names.index(n) for n in field_names]

    def _zscore(self, index: list[int]) -> ZScore:
        return ZScore([self.mean[i] for i in index], [self.std[i] for i in index],
                      [self.field_names[i] for i in index])

    def _check_layout(self, x, names: list[str], argument: str) -> None:
        n_space = self.n_spatial_dims
        expected_ndim = None if n_space is None else 3 + n_space
        if (expected_ndim is not None and x.ndim != expected_ndim) or x.ndim < 4:
            dims = f"{n_space}-D space, so {expected_ndim} axes" if expected_ndim else "at least 4 axes"
            raise ValueError(f"{argument}: got shape {tuple(x.shape)}; expected {LAYOUT} ({dims}) for "
                             f"{self._where()}")
        if x.shape[-1] != len(names):
            # Channels-first arrays (torch's convention) are the usual cause: say which axis looks like the fields.
            axis = next((a for a in range(1, x.ndim - 1) if x.shape[a] == len(names)), None)
            hint = (f"; axis {axis} has {len(names)}: move the fields last" if axis is not None else
                    " (pass field_names=[...] to name a subset)")
            raise ValueError(f"{argument}: last axis has {x.shape[-1]} channels but {len(names)} fields are named "
                             f"({names}); expected {LAYOUT} with one channel per field, in that order{hint}")

    @staticmethod
    def _as_tensor(values, argument: str) -> torch.Tensor:
        if isinstance(values, torch.Tensor):
            x = values
        else:
            array = np.asarray(values)
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
                raise ValueError(f"{argument}: got an array of {array.dtype}; expected numbers in {LAYOUT}")
            x = torch.from_numpy(np.ascontiguousarray(array))
        if x.is_complex():
            raise ValueError(f"{argument}: got complex values ({x.dtype}); expected real numbers in {LAYOUT}")
        # Float64 input is normalised in float64 and only then cast, so that no precision is lost before scaling.
        return x if x.is_floating_point() else x.to(torch.float32)

    def _stack(self, fields: Mapping, field_names: Sequence[str] | None) -> tuple[torch.Tensor, list[str]]:
        names = list(field_names) if field_names is not None else [n for n in self.field_names if n in fields]
        self._index([k for k in fields if k not in names] + names, "fields")  # unknown keys are refused too
        missing = [n for n in names if n not in fields]
        if missing:
            raise ValueError(f"fields: missing fields {missing}; the mapping has {list(fields)} and field_names "
                             f"asks for {names}")
        if not names:
            raise ValueError(f"fields: the mapping is empty; expected {{name: [batch, time, *space]}} for some of "
                             f"{self.field_names}")
        parts = [self._as_tensor(fields[n], f"fields[{n!r}]") for n in names]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"fields: the arrays have different shapes {[tuple(p.shape) for p in parts]} for "
                             f"{names}; expected one shape [batch, time, *space] for all")
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in parts) else torch.float32
        return torch.stack([p.to(dtype) for p in parts], dim=-1), names

    @staticmethod
    def _check_finite(x: torch.Tensor, names: list[str], argument: str) -> None:
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            first = [int(i) for i in torch.nonzero(bad)[0]]
            kind = "NaN" if math.isnan(float(x[tuple(first)])) else "Inf"
            raise ValueError(f"{argument}: {kind} in field {names[first[-1]]!r} at batch {first[0]}, time "
                             f"{first[1]} (index {first}; {int(bad.sum())} non-finite values in all); expected "
                             "finite physical values")

    # ------------------------------------------------------------------------------------------ public API
    def __call__(self, fields, field_names: Sequence[str] | None = None) -> BatchFeature:
        """Normalise physical ``fields`` (a ``[batch, time, *space, fields]`` array, or ``{name: [batch, time, *space]}``).

        Returns a ``BatchFeature`` with ``fields`` (float32 tensor, on the input's device) and ``field_names``.
        """
        if isinstance(fields, Mapping):
            x, names = self._stack(fields, field_names)
        else:
            x = self._as_tensor(fields, "fields")
            index = self._index(field_names)
            names = [self.field_names[i] for i in index]
        self._check_layout(x, names, "fields")
        self._check_finite(x, names, "fields")
        normalised = self._zscore(self._index(names)).normalize(x).to(torch.float32)
        return BatchFeature({"fields": normalised, "field_names": names})

    def postprocess(self, predictions, field_names: Sequence[str] | None = None):
        """Map normalised ``predictions`` (``[batch, time, *space, fields]``) back to physical units.

        ``predictions`` may be a tensor or array, what :meth:`__call__` returned, or a model output (its
        ``prediction`` / ``reconstruction``). Returns the same kind (NumPy stays NumPy), float32. Non-finite
        predictions pass through: a diverged model should be seen, not hidden behind an error.
        """
        if isinstance(predictions, Mapping):
            key = next((k for k in _FIELD_KEYS if predictions.get(k) is not None), None)
            if key is None:
                raise ValueError(f"predictions: a mapping without any of {list(_FIELD_KEYS)} (keys "
                                 f"{list(predictions)}); expected normalised fields in {LAYOUT}")
            if field_names is None:
                field_names = predictions.get("field_names")
            predictions = predictions[key]
        as_numpy = not isinstance(predictions, torch.Tensor)
        x = self._as_tensor(predictions, "predictions")
        names = [self.field_names[i] for i in self._index(field_names)]
        self._check_layout(x, names, "predictions")
        physical = self._zscore(self._index(names)).denormalize(x).to(torch.float32)
        return physical.numpy() if as_numpy else physical

    def select(self, field_names: Sequence[str]) -> PhysfmFieldProcessor:
        """A processor for a subset of the fields (in the given order), with the same metadata."""
        index = self._index(field_names)
        return type(self)([self.field_names[i] for i in index], [self.mean[i] for i in index],
                          [self.std[i] for i in index], periodic=self.periodic, dt=self.dt,
                          grid_spacing=self.grid_spacing, dataset_name=self.dataset_name)

    def statistics_differences(self, other: PhysfmFieldProcessor, max_mean_shift: float = 1.0,
                               std_ratio: tuple[float, float] = (0.5, 2.0)) -> list[str]:
        """Fields both processors know whose statistics are far apart: ``|mean difference| > max_mean_shift``
        of this processor's std, or ``other.std / self.std`` outside ``std_ratio``. One description per field."""
        far = []
        for name in self.field_names:
            if name not in other.field_names:
                continue
            i, j = self.field_names.index(name), other.field_names.index(name)
            shift = abs(other.mean[j] - self.mean[i]) / self.std[i]
            ratio = other.std[j] / self.std[i]
            if shift > max_mean_shift or not std_ratio[0] <= ratio <= std_ratio[1]:
                far.append(f"{name} (mean {self.mean[i]:.4g} -> {other.mean[j]:.4g}, {shift:.2g} std apart; std "
                           f"{self.std[i]:.4g} -> {other.std[j]:.4g}, ratio {ratio:.2g})")
        return far

    @classmethod
    def union(cls, processors: Sequence[PhysfmFieldProcessor]) -> PhysfmFieldProcessor:
        """One processor for a mixture: the union of the fields in first-seen order.

        A field in several processors keeps the first one's statistics (the first dataset listed), with a warning
        when the others differ. ``periodic``, ``dt`` and ``grid_spacing`` are kept where all agree, else ``None``.
        """
        if not processors:
            raise ValueError("processors: expected at least one processor to merge")
        first = processors[0]
        names, means, stds, owner = [], [], [], []
        conflicts = []
        for processor in processors:
            for name, mean, std in zip(processor.field_names, processor.mean, processor.std, strict=True):
                if name not in names:
                    names.append(name)
                    means.append(mean)
                    stds.append(std)
                    owner.append(processor.dataset_name)
                    continue
                k = names.index(name)
                if not (math.isclose(mean, means[k], rel_tol=1e-6, abs_tol=1e-12)
                        and math.isclose(std, stds[k], rel_tol=1e-6)):
                    conflicts.append(f"{name!r} (kept {owner[k]!r}: mean {means[k]:.4g}, std {stds[k]:.4g}; "
                                     f"{processor.dataset_name!r} has mean {mean:.4g}, std {std:.4g})")
        if conflicts:
            # Training normalises each member of a mixture with its own statistics; one processor cannot.
            warnings.warn(f"datasets share field names with different statistics: {'; '.join(conflicts)}. The "
                          "merged processor keeps the first dataset's; normalise the others' data with their own "
                          "processor (physfm.data.processor_from_dataset)", stacklevel=3)

        def agreed(attribute):
            values = [getattr(p, attribute) for p in processors]
            return values[0] if all(v == values[0] for v in values) else None

        datasets = list(dict.fromkeys(p.dataset_name for p in processors if p.dataset_name))
        return cls(names, means, stds, periodic=agreed("periodic"), dt=agreed("dt"),
                   grid_spacing=agreed("grid_spacing"), dataset_name="+".join(datasets) or first.dataset_name)

    def to_dict(self) -> dict:
        output = super().to_dict()
        # Both Auto classes find this class: by name where physfm is imported, through auto_map (and this file,
        # which save_pretrained copies beside the config) with trust_remote_code=True where it is not.
        reference = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
        output["processor_class"] = type(self).__name__
        output["auto_map"] = {"AutoProcessor": reference, "AutoFeatureExtractor": reference}
        return output

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable, compared by value


# Makes save_pretrained copy this file into the checkpoint (transformers' custom_object_save).
PhysfmFieldProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["PhysfmFieldProcessor", "ZScore"]
