"""A forecast from raw physical data in one call: ``physfm.forecast(...)`` and ``physfm forecast``.

The checkpoint's own :class:`PhysfmFieldProcessor` normalises the input and maps the rollout back to physical
units, so users never handle statistics. Inputs:

- a Well-format HDF5 file (every trajectory, its flattened field names, grid, ``dt`` and boundaries);
- a ``.npy`` array ``[time, *space, fields]`` or ``[traj, time, *space, fields]``;
- a ``.npz`` holding such an array as ``fields`` (with optional ``field_names``), or one array per field
  ``{name: [time, *space]}`` / ``{name: [traj, time, *space]}``.

Field names come from the file, else from ``field_names=`` / ``--field_names``, else the processor's. The first
``n_steps_input`` frames from ``start`` are the context; frames after them, when the input has any, are the
truth the figure compares against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._cli_parsing import Parser
from .checkpoints import load_pretrained, load_processor
from .data.well_format import read_file_header, read_trajectory, write_well_dataset
from .models import PhysfmDynamicsModel, PhysfmFieldProcessor


@dataclass
class ForecastInput:
    """Physical fields ``[traj, time, *space, fields]`` with what is known of their grid."""

    fields: np.ndarray
    field_names: list[str]
    dt: float | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    periodic: list[bool] | None = None


def read_input(path: str | os.PathLike, n_spatial_dims: int, field_names: list[str] | None = None) -> ForecastInput:
    """Reads a Well-format HDF5 file or a ``.npy`` / ``.npz`` array into ``[traj, time, *space, fields]``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--input: no file at {str(path)!r}; expected a Well-format .hdf5 or a .npy/.npz.")
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        header = read_file_header(path)
        trajectories = [read_trajectory(path, i) for i in range(header.n_trajectories)]
        names = list(trajectories[0])
        fields = np.stack([np.stack([t[n] for n in names], axis=-1) for t in trajectories])
        return ForecastInput(fields, names, header.dt, dict(header.coords), list(header.periodic))
    if suffix == ".npz":
        with np.load(path) as archive:
            if "fields" in archive:
                fields = archive["fields"]
                if "field_names" in archive:
                    field_names = [str(n) for n in archive["field_names"]]
            else:
                names = list(archive.files)
                fields = np.stack([archive[n] for n in names], axis=-1)
                field_names = names
    elif suffix == ".npy":
        fields = np.load(path)
    else:
        raise ValueError(f"--input: {str(path)!r} has suffix {suffix!r}; expected .hdf5/.h5 (Well format), .npy "
                         "or .npz.")
    if fields.ndim == n_spatial_dims + 2:  # one trajectory [time, *space, fields]
        fields = fields[None]
    if fields.ndim != n_spatial_dims + 3:
        raise ValueError(f"--input: {str(path)!r} holds shape {fields.shape}; expected [time, *space, fields] or "
                         f"[traj, time, *space, fields] with {n_spatial_dims} spatial axes for this model.")
    return ForecastInput(np.asarray(fields), list(field_names) if field_names else [])


def load_forecaster(checkpoint: str | os.PathLike) -> tuple[PhysfmDynamicsModel, PhysfmFieldProcessor]:
    """The dynamics model and the field processor of a checkpoint folder or Hub id."""
    model = load_pretrained(checkpoint, kind="dynamics")
    processor = load_processor(checkpoint)
    if processor is None:
        raise ValueError(f"checkpoint: {str(checkpoint)!r} has no preprocessor_config.json, so its training "
                         "statistics are unknown; expected a checkpoint saved by physfm training (which writes one).")
    return model.eval(), processor


def forecast(
    model_id_or_path: str | os.PathLike,
    fields: str | os.PathLike | np.ndarray,
    n_steps: int,
    field_names: list[str] | None = None,
    start: int = 0,
    out: str | os.PathLike | None = None,
    stream: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> np.ndarray:
    """Forecasts ``n_steps`` frames in physical units from raw ``fields``.

    Args:
        model_id_or_path: a dynamics checkpoint folder or Hub id carrying its ``preprocessor_config.json``.
        fields: a file path (see the module docstring) or an array ``[time, *space, fields]`` /
            ``[traj, time, *space, fields]``.
        n_steps: frames to predict after the context.
        field_names: the fields in the input's last axis when the input does not name them (default: the
            processor's fields).
        start: the first context frame.
        out: a directory to write the forecast to as a Well-format dataset (``out/data/test/forecast.hdf5``),
            with ``out/forecast.png`` (truth / prediction / error) when the input holds frames to compare with.
        stream: use the cached streaming rollout (see ``PhysfmDynamicsModel.rollout``); the default is the
            sliding window the model was trained on.
        progress: show a progress bar.
        overwrite: replace an existing ``out``.

    Returns:
        The forecast ``[traj, n_steps, *space, fields]`` (float32, physical units).
    """
    model, processor = load_forecaster(model_id_or_path)
    n_space = model.tokeniser.config.n_spatial_dims
    if isinstance(fields, np.ndarray | torch.Tensor):
        array = np.asarray(fields)
        data = ForecastInput(array[None] if array.ndim == n_space + 2 else array, list(field_names or []))
    else:
        data = read_input(fields, n_space, field_names)
    names = data.field_names or processor.field_names
    n_in = model.config.n_steps_input
    frames = data.fields.shape[1] - start
    if frames < n_in:
        raise ValueError(f"fields: {data.fields.shape[1]} frames from start={start} leave {max(frames, 0)}; this "
                         f"model needs n_steps_input={n_in} context frames.")
    context = processor(data.fields[:, start : start + n_in], field_names=names)["fields"]
    with tqdm(total=n_steps, desc="forecast", unit="frame", disable=not progress) as bar:
        normalised = model.rollout(context.to(model.device), n_steps, field_names=names, stream=stream,
                                   progress=bar.update)
    prediction = processor.postprocess(normalised.cpu().numpy(), field_names=names)
    if out is not None:
        truth = data.fields[:, start + n_in : start + n_in + n_steps]
        write_forecast(Path(out), prediction, truth, names, data, processor, overwrite)
    return prediction


def write_forecast(out: Path, prediction: np.ndarray, truth: np.ndarray, names: list[str], data: ForecastInput,
                   processor: PhysfmFieldProcessor, overwrite: bool) -> None:
    """The forecast as a Well-format dataset, plus the truth / prediction / error figure where truth exists."""
    space = prediction.shape[2:-1]
    spacing = processor.grid_spacing or [1.0] * len(space)
    coords = data.coords or {axis: np.arange(n) * h for axis, n, h in zip("xyz", space, spacing, strict=False)}
    periodic = data.periodic or processor.periodic or [True] * len(space)
    write_well_dataset(out, "forecast", {"test": {n: prediction[..., i] for i, n in enumerate(names)}},
                       dt=data.dt or processor.dt or 1.0, coords=coords,
                       periodic=dict(zip(coords, periodic, strict=True)), overwrite=overwrite)
    if truth.shape[1] > 0:
        from .training.evaluation import plot_rollout

        n = truth.shape[1]
        plot_rollout(torch.from_numpy(truth[0]), torch.from_numpy(prediction[0, :n]), out / "forecast.png",
                     field_names=names)


def build_parser() -> Parser:
    parser = Parser(prog="physfm forecast", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="dynamics model directory or Hub id (with preprocessor_config.json)")
    parser.add_argument("--input", required=True, help="Well-format .hdf5, or .npy/.npz [(traj,) time, *space, fields]")
    parser.add_argument("--steps", type=int, required=True, help="frames to forecast")
    parser.add_argument("--out", required=True, help="output directory (Well-format dataset + forecast.png)")
    parser.add_argument("--field_names", nargs="+", default=None, help="fields of a .npy's last axis, in order")
    parser.add_argument("--start", type=int, default=0, help="first context frame")
    parser.add_argument("--stream", action="store_true", help="cached streaming rollout instead of the window")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prediction = forecast(args.checkpoint, args.input, args.steps, args.field_names, args.start, args.out,
                          args.stream, overwrite=args.overwrite)
    print(f"wrote {prediction.shape[1]} frames of {prediction.shape[0]} trajectories to {args.out}")
    return 0


__all__ = ["ForecastInput", "forecast", "load_forecaster", "read_input"]
