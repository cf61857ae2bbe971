"""How many trajectories each split gets, for every writer of datasets (simulators and the converter)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def split_counts(n: int, fractions: Sequence[float], argument: str = "split_fractions") -> dict[str, int]:
    """Trajectories per split: valid and test get ``floor(f * n)`` but at least one each when asked for and
    ``n >= 3``; train gets the rest, so small runs still train on something (1 trajectory -> train only).

    ``argument`` names the fractions in the error message (``--split`` on the command line)."""
    fractions = tuple(fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"{argument}: got {fractions}, expected three non-negative numbers (train, valid, test)")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"{argument}: got {fractions} summing to {sum(fractions)}, expected a sum of 1")
    n_valid, n_test = int(fractions[1] * n + 1e-9), int(fractions[2] * n + 1e-9)
    if n >= 3:  # rounding down must not empty a split that was asked for (8 at 0.8/0.1/0.1 -> 6/1/1)
        n_valid, n_test = max(n_valid, fractions[1] > 0), max(n_test, fractions[2] > 0)
    return {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}


__all__ = ["split_counts"]
