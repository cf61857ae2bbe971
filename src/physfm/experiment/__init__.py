"""The paper's experiment in one command: does tokeniser pretraining pay off for a physics dynamics model?

``physfm experiment --preset tiny --out runs/tiny`` (or :func:`run_experiment`) simulates the data (or reuses
it from a cache), checks it for leakage, pretrains an in-domain, a cross-domain and a same-data tokeniser, and
trains the dynamics model with a scratch / pretrained tokeniser, frozen or finetuned, plus a compute-matched
scratch run, over several seeds, with one learning-rate sweep for every configuration. It writes
``results.json``, ``results.md`` and figures, with the tables on the test split.

Modules: :mod:`.presets` (settings), :mod:`.data` (cached simulation), :mod:`.leakage` (held-out against seen
data), :mod:`.runner` (the job graph), :mod:`.report` (tables and figures), :mod:`.cli` (the command).
"""

from .cli import build_parser, main, run_experiment
from .presets import CONFIGURATIONS, PRESETS, DataSpec, ExperimentPreset, get_preset

__all__ = ["CONFIGURATIONS", "PRESETS", "DataSpec", "ExperimentPreset", "build_parser", "get_preset", "main",
           "run_experiment"]
