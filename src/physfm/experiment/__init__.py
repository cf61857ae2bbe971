"""The paper's experiment in one command: does tokeniser pretraining pay off for a physics dynamics model?

``physfm experiment --preset tiny --out runs/tiny`` (or :func:`run_experiment`) simulates the data (or reuses
it from a cache), pretrains an in-domain and a cross-domain tokeniser, trains the dynamics model on shear_flow
with a scratch / in-domain / cross-domain tokeniser, frozen or finetuned, plus a learning-rate-swept scratch
baseline and a compute-matched one, and writes ``results.json``, ``results.md`` and figures.

Modules: :mod:`.presets` (settings), :mod:`.data` (cached simulation), :mod:`.runner` (the job graph),
:mod:`.report` (tables and figures), :mod:`.cli` (the command).
"""

from .cli import main, run_experiment
from .presets import CONFIGURATIONS, PRESETS, DataSpec, ExperimentPreset, get_preset

__all__ = ["CONFIGURATIONS", "PRESETS", "DataSpec", "ExperimentPreset", "get_preset", "main", "run_experiment"]
