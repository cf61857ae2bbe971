"""Data order as a pure function of (seed, step): exact resume without saving sampler state.

Every optimisation step consumes one *global batch* of ``per_device_batch * world_size *
gradient_accumulation_steps`` windows, all from one dataset (a mixture's datasets have different
field sets, so a batch cannot mix them, and every rank must use the same fields in a step so that
DDP reduces the same parameters). Which dataset a step uses, and which of its windows, depend only
on the seed and the step number:

- the dataset of step ``s`` is drawn (in proportion to dataset sizes) from a generator seeded by
  ``(seed, s)``;
- each dataset is read through a fresh random permutation per epoch, seeded by
  ``(seed, dataset, epoch)``; its cursor is the number of its windows earlier steps took, which
  is recomputed by replaying the (cheap, data-free) dataset draws.

So a run resumed at step ``k`` sees exactly the batches an uninterrupted run sees from step
``k`` on, and the same global batches are used whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

_STEP_STREAM = 0x5EED_0001
_PERM_STREAM = 0x5EED_0002
_RATIO_STREAM = 0x5EED_0003


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:  # a simple 63-bit mix; collisions between runs do not matter, only determinism
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator from which per-step choices (e.g. the compression ratio) are drawn.

    Seeded by ``(seed, step)``, so every rank draws the same value at the same step and a resumed
    run draws what the uninterrupted run drew."""
    return _generator(_RATIO_STREAM, seed, step)


class GlobalBatchPlan:
    """Which windows step ``s`` trains on: ``plan.batch(s) -> (dataset_index, [window indices])``."""

    def __init__(self, dataset_sizes: Sequence[int], global_batch_size: int, seed: int):
        if not dataset_sizes or min(dataset_sizes) < 1:
            raise ValueError(f"every training dataset needs at least one window, got sizes {list(dataset_sizes)}")
        self.sizes = [int(n) for n in dataset_sizes]
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self._weights = torch.tensor(self.sizes, dtype=torch.float64)
        self._replayed_step = 0
        self._cursors = [0] * len(self.sizes)
        self._perm_cache: dict[tuple[int, int], torch.Tensor] = {}

    def dataset_of_step(self, step: int) -> int:
        if len(self.sizes) == 1:
            return 0
        return int(torch.multinomial(self._weights, 1, generator=_generator(_STEP_STREAM, self.seed, step)))

    def _cursors_at(self, step: int) -> list[int]:
        if step < self._replayed_step:  # asked for the past: replay from the start
            self._replayed_step, self._cursors = 0, [0] * len(self.sizes)
        while self._replayed_step < step:
            self._cursors[self.dataset_of_step(self._replayed_step)] += self.global_batch_size
            self._replayed_step += 1
        return self._cursors

    def _permutation(self, dataset: int, epoch: int) -> torch.Tensor:
        key = (dataset, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4 * len(self.sizes):
                self._perm_cache.clear()
            generator = _generator(_PERM_STREAM, self.seed, dataset, epoch)
            self._perm_cache[key] = torch.randperm(self.sizes[dataset], generator=generator)
        return self._perm_cache[key]

    def batch(self, step: int) -> tuple[int, list[int]]:
        dataset = self.dataset_of_step(step)
        start = self._cursors_at(step)[dataset]
        size = self.sizes[dataset]
        indices = [
            int(self._permutation(dataset, position // size)[position % size])
            for position in range(start, start + self.global_batch_size)
        ]
        return dataset, indices


def rank_micro_batches(plan: GlobalBatchPlan, start_step: int, max_steps: int, per_device_batch_size: int,
                       accumulation_steps: int, rank: int, world_size: int) -> Iterator[list[tuple[int, int]]]:
    """This rank's micro-batches, step-major then micro-batch, as ``(dataset, window)`` pairs.

    Micro-batch ``m`` of rank ``r`` takes slice ``(m * world_size + r)`` of the global batch, so one
    process with ``k`` accumulation steps sees the same global batch as ``k`` processes without."""
    for step in range(start_step, max_steps):
        dataset, indices = plan.batch(step)
        for micro in range(accumulation_steps):
            offset = (micro * world_size + rank) * per_device_batch_size
            yield [(dataset, i) for i in indices[offset:offset + per_device_batch_size]]
