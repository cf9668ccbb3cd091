"""Shuffled minibatches from an activation array (in memory or memory-mapped).

The order of an epoch is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class RowStream:
    def __init__(self, acts, rows: np.ndarray, batch_size: int | None, seed: int,
                 drop_last: bool = False) -> None:
        self.acts, self.rows = acts, np.asarray(rows, dtype=np.int64)
        self.batch_size = batch_size or len(self.rows)
        self.seed, self.drop_last = seed, drop_last

    @property
    def steps_per_epoch(self) -> int:
        n, b = len(self.rows), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return self.rows[rng.permutation(len(self.rows))]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        order = self.order(epoch)
        for step in range(start_step, self.steps_per_epoch):
            idx = np.sort(order[step * self.batch_size : (step + 1) * self.batch_size])
            yield torch.from_numpy(np.ascontiguousarray(self.acts[idx], dtype=np.float32))
