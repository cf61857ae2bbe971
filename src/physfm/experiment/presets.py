"""Named settings of the paper's experiment: ``micro`` (tests), ``tiny`` (a laptop), ``small`` and ``paper`` (GPUs).

A preset fixes everything that decides the outcome: data, both architectures and their training, the
learning-rate sweep, the seeds and the evaluation. ``docs/experiment-presets.md`` states the protocol every
preset follows and why ``tiny``'s settings are what they are.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

CONFIGURATIONS = (
    "scratch",
    "in_domain_frozen",
    "in_domain_finetuned",
    "cross_domain_frozen",
    "cross_domain_finetuned",
    "same_data_finetuned",
    "scratch_compute_matched",
)
"""Names of the dynamics runs, in the order tables and figures list them."""

TOKENISERS = {"in_domain_frozen": "in_domain", "in_domain_finetuned": "in_domain",
              "cross_domain_frozen": "cross_domain", "cross_domain_finetuned": "cross_domain",
              "same_data_finetuned": "same_data"}
"""The pretrained tokeniser each configuration starts from (the others train theirs from scratch)."""

SYSTEMS = ("shear_flow", "euler_multi_quadrants", "gray_scott_reaction_diffusion", "acoustic_wave")
"""The 2-D systems physfm simulates: one is downstream, the others pretrain the cross-domain tokeniser."""

# Settings applied to every trajectory of a system. shear_flow's perturbation gives each trajectory its own
# initial condition (The Well's is a function of the parameters, so equal draws would be equal flows).
SYSTEM_PARAMS: dict[str, dict[str, Any]] = {"shear_flow": {"perturbation": 1.0}}

SEED_STRIDE = 1_000_003
"""Data seeds of experiment seed ``k`` are the preset's plus ``k * SEED_STRIDE``: new draws, same recipe."""


@dataclass(frozen=True)
class DataSpec:
    """One simulated dataset: which system, how much, on which grid, from which seed."""

    system: str
    n_trajectories: int
    resolution: tuple[int, int]
    n_steps: int
    seed: int
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    params: dict[str, Any] = field(default_factory=dict)  # parameters fixed for every trajectory

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes the simulated data (the cache is keyed by it)."""
        return dataclasses.asdict(self)

    def for_seed(self, seed: int) -> DataSpec:
        return dataclasses.replace(self, seed=self.seed + seed * SEED_STRIDE)


def grid(system: str, side: int) -> tuple[int, int]:
    """A grid with ``side`` cells on the shorter axis and isotropic spacing on ``system``'s domain."""
    from physfm.simulate import get_system

    (x0, x1), (y0, y1) = get_system(system).domain
    return side, round(side * (y1 - y0) / (x1 - x0))


@dataclass(frozen=True)
class ExperimentPreset:
    """Settings of one run of the experiment (``docs/experiment-presets.md`` says how ``tiny``'s were chosen)."""

    name: str
    description: str
    # ---- data
    downstream: DataSpec
    in_domain: DataSpec  # same system as downstream, its own seed (so its own initial conditions)
    cross_domain: tuple[DataSpec, ...]  # the other systems only
    # ---- tokeniser architecture (PhysfmTokeniserConfig keys) and pretraining
    tokeniser_config: dict[str, Any]
    pretrain_spatial_compressions: tuple[int, ...]
    pretrain_temporal_compressions: tuple[int, ...]
    tokeniser_steps: int
    tokeniser_learning_rate: float
    tokeniser_batch_size: int
    # ---- dynamics architecture (PhysfmDynamicsConfig keys) and training
    dynamics_config: dict[str, Any]
    spatial_compression: int
    temporal_compression: int
    max_steps: int
    eval_steps: int
    batch_size: int
    learning_rates: tuple[float, ...]  # swept for every configuration on seed 0; the best final valid VRMSE wins
    dt_stride: int = 1  # frames between a window's frames, in both stages
    n_seeds: int = 3  # each seed draws new data and new initial weights
    warmup_steps: int = 0
    lr_scheduler_type: str = "cosine"
    # ---- evaluation
    rollout_horizons: tuple[int, ...] = (1, 2, 4, 8, 16)
    max_eval_samples: int = 64
    max_rollout_samples: int = 8
    # ---- execution
    seed: int = 0
    workers: int = 1  # training runs executed at the same time (processes)
    threads_per_worker: int | None = None  # torch threads per process; None: torch's default
    device: str = "auto"  # for the simulators: "auto" = cuda when available, else cpu
    configurations: tuple[str, ...] = field(default=CONFIGURATIONS)

    @property
    def system(self) -> str:
        return self.downstream.system

    @property
    def n_steps_input(self) -> int:
        return int(self.dynamics_config.get("n_steps_input", 4))

    @property
    def mid_step(self) -> int:
        """The mid-training checkpoint: the evaluation step closest to ``max_steps / 2``."""
        steps = eval_schedule(self.max_steps, self.eval_steps)
        return min(steps, key=lambda s: (abs(s - self.max_steps / 2), s))

    def replace(self, **changes: Any) -> ExperimentPreset:
        return dataclasses.replace(self, **changes)

    def with_system(self, system: str) -> ExperimentPreset:
        """The same experiment with ``system`` downstream and the other simulated systems as cross-domain data.

        Grids keep the preset's shorter side (isotropic spacing on each domain); trajectory counts, lengths,
        splits and seeds stay as they are, and so do the fixed parameters of every system the preset already
        simulates (shear_flow's resolved layer width moves with it from downstream to cross-domain).
        """
        if system not in SYSTEMS:
            raise ValueError(f"--system: got {system!r}, expected one of {', '.join(SYSTEMS)}")
        if system == self.system:
            return self
        side = min(self.downstream.resolution)
        fixed = {data.system: data.params for data in (*self.cross_domain, self.downstream)}

        def retarget(data: DataSpec, name: str) -> DataSpec:
            return dataclasses.replace(data, system=name, resolution=grid(name, side),
                                       params=dict(fixed.get(name, SYSTEM_PARAMS.get(name, {}))))

        template = self.cross_domain[0]
        others = [name for name in SYSTEMS if name != system]
        cross = tuple(dataclasses.replace(retarget(template, name), seed=template.seed + offset)
                      for offset, name in enumerate(others))
        return self.replace(downstream=retarget(self.downstream, system), in_domain=retarget(self.in_domain, system),
                            cross_domain=cross)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "system": self.system}


def eval_schedule(max_steps: int, eval_steps: int) -> list[int]:
    """Steps at which the trainer evaluates: every ``eval_steps`` and at the last step."""
    steps = list(range(eval_steps, max_steps + 1, eval_steps)) if eval_steps > 0 else []
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps


def _data(system: str, side: int, n_steps: int, n_downstream: int, n_in_domain: int, n_cross: int,
          downstream_splits: tuple[float, float, float], params: dict[str, Any] | None = None,
          cross_steps: int | None = None) -> dict[str, Any]:
    """The three kinds of data of a preset. In-domain data keeps a fifth for its own valid split, cross-domain a quarter."""
    params = {**SYSTEM_PARAMS.get(system, {}), **(params or {})}
    others = [name for name in SYSTEMS if name != system]
    return {
        "downstream": DataSpec(system, n_downstream, grid(system, side), n_steps, seed=0,
                               split_fractions=downstream_splits, params=params),
        "in_domain": DataSpec(system, n_in_domain, grid(system, side), n_steps, seed=1000,
                              split_fractions=(0.8, 0.2, 0.0), params=params),
        "cross_domain": tuple(
            DataSpec(name, n_cross, grid(name, side), cross_steps or n_steps, seed=2000 + offset,
                     split_fractions=(0.75, 0.25, 0.0), params=dict(SYSTEM_PARAMS.get(name, {})))
            for offset, name in enumerate(others)),
    }


def _pretraining(tokeniser_config: dict[str, Any], spatial_compressions: tuple[int, ...], steps: int,
                 learning_rate: float, batch_size: int) -> dict[str, Any]:
    """Stage 1 of a preset: the tokeniser's architecture, the ratios it learns (one per batch) and its training."""
    return {"tokeniser_config": tokeniser_config, "pretrain_spatial_compressions": spatial_compressions,
            "pretrain_temporal_compressions": (1,), "tokeniser_steps": steps,
            "tokeniser_learning_rate": learning_rate, "tokeniser_batch_size": batch_size}


def _dynamics(n_steps_input: int, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
              spatial_compression: int) -> dict[str, Any]:
    """Stage 2's architecture, on 2 x 2 patches of latents ``spatial_compression`` times coarser than the data.

    The paper's dynamics predicts the next latent and decodes it. physfm's default (``field_residual=True``) adds
    the decoded change to the last frame instead, which cancels the tokeniser's reconstruction error; the
    experiment keeps the paper's formulation so that it measures what the paper measures (``--field_residual``
    switches).
    """
    return {"dynamics_config": {"field_residual": False, "n_steps_input": n_steps_input, "hidden_size": hidden_size,
                                "num_hidden_layers": num_hidden_layers, "num_attention_heads": num_attention_heads,
                                "patch_size": 2},
            "spatial_compression": spatial_compression, "temporal_compression": 1}


_SMALL_TOKENISER = {"hidden_channels": 16, "latent_channels": 16, "channel_multipliers": [1, 2, 2]}

# On a 32-cell-wide grid, shear layers thinner than width 1 alias into grid-scale ripples that no model can
# learn (seen in the tracer); thicker layers keep the data resolved. Re and Sc stay drawn from The Well's grid.
_RESOLVED_SHEAR = {"width": 1.0}

PRESETS: dict[str, ExperimentPreset] = {}

PRESETS["micro"] = ExperimentPreset(
    name="micro",
    description="Plumbing check for tests: every configuration runs, a few steps each (< 1 minute, 1 core). "
                "Its numbers mean nothing.",
    **_data("shear_flow", 16, 8, n_downstream=6, n_in_domain=3, n_cross=3, downstream_splits=(1 / 3, 1 / 3, 1 / 3),
            params={"width": 2.0}),
    **_pretraining({**_SMALL_TOKENISER, "hidden_channels": 4, "latent_channels": 4}, (4,), steps=2,
                   learning_rate=2e-3, batch_size=2),
    **_dynamics(n_steps_input=2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, spatial_compression=4),
    max_steps=2, eval_steps=1, batch_size=2, learning_rates=(1e-3, 3e-3), dt_stride=2, n_seeds=2,
    rollout_horizons=(1, 2), max_eval_samples=2, max_rollout_samples=1,
)

PRESETS["tiny"] = ExperimentPreset(
    name="tiny",
    description="The experiment on a laptop: 2 CPU cores, 3 seeds, about 15 minutes with data generation.",
    **_data("shear_flow", 32, 40, n_downstream=16, n_in_domain=40, n_cross=4, downstream_splits=(0.5, 0.25, 0.25),
            params=_RESOLVED_SHEAR),
    **_pretraining(dict(_SMALL_TOKENISER), (4,), steps=500, learning_rate=3e-3, batch_size=8),
    **_dynamics(n_steps_input=2, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, spatial_compression=4),
    max_steps=200, eval_steps=50, batch_size=8, learning_rates=(1e-3, 3e-3), dt_stride=4,
    rollout_horizons=(1, 2, 4, 8), max_eval_samples=32, max_rollout_samples=4,
    workers=2, threads_per_worker=1,
)

PRESETS["small"] = ExperimentPreset(
    name="small",
    description="One GPU, about 10 minutes: 64 x 128 shear flow, 3 seeds, tokenisers pretrained over ratios 2 and 4.",
    **_data("shear_flow", 64, 80, n_downstream=32, n_in_domain=64, n_cross=12,
            downstream_splits=(0.75, 0.125, 0.125), params=_RESOLVED_SHEAR),
    **_pretraining({"hidden_channels": 32, "latent_channels": 16, "channel_multipliers": [1, 2, 2]}, (2, 4),
                   steps=2000, learning_rate=2e-3, batch_size=16),
    **_dynamics(n_steps_input=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, spatial_compression=4),
    max_steps=1000, eval_steps=250, batch_size=16, learning_rates=(3e-4, 1e-3, 3e-3), warmup_steps=20,
    dt_stride=2,  # 64 cells on the short axis, twice tiny's 32: half tiny's stride keeps the motion per frame in cells
    max_rollout_samples=4, workers=3, threads_per_worker=2,
)

PRESETS["paper"] = ExperimentPreset(
    name="paper",
    description="The paper's system and scale on one large GPU (many hours): Euler multi-quadrants downstream at "
                "128 x 128 and 101 frames, 10,500 dynamics steps, 3 seeds.",
    **_data("euler_multi_quadrants", 128, 100, n_downstream=112, n_in_domain=112, n_cross=64,
            downstream_splits=(0.8, 0.1, 0.1)),
    **_pretraining({"hidden_channels": 64, "latent_channels": 16, "channel_multipliers": [1, 2, 4, 4, 4],
                    "layers_per_level": [1, 2, 2, 2, 2]}, (2, 4, 8, 16), steps=20000, learning_rate=5e-4,
                   batch_size=32),
    **_dynamics(n_steps_input=4, hidden_size=384, num_hidden_layers=8, num_attention_heads=6, spatial_compression=8),
    max_steps=10500, eval_steps=1500, batch_size=32, learning_rates=(1e-4, 3e-4, 1e-3), warmup_steps=500,
    dt_stride=1,  # the paper's: The Well's own frame interval (not measured here: check persistence when run)
    rollout_horizons=(1, 2, 4, 8, 16, 32, 64), max_eval_samples=256, max_rollout_samples=16,
)


def get_preset(name: str, system: str | None = None) -> ExperimentPreset:
    """The preset called ``name`` (with ``system`` downstream, if given), with a clear error for unknown names."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"--preset: got {name!r}, expected one of {', '.join(PRESETS)}") from None
    return preset.with_system(system) if system else preset


def clip_frames(preset: ExperimentPreset) -> int:
    """Frames per pretraining clip: what the dynamics model encodes and decodes (inputs plus the target)."""
    return preset.n_steps_input + math.lcm(*preset.pretrain_temporal_compressions, preset.temporal_compression)


__all__ = ["CONFIGURATIONS", "DataSpec", "ExperimentPreset", "PRESETS", "SYSTEMS", "TOKENISERS", "clip_frames",
           "eval_schedule", "get_preset"]
