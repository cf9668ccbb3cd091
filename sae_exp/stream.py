"""Shuffled minibatches from an activation array (in memory or memory-mapped).

The order of an epoch is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen: `stream.epoch(e, start_step=s)` yields batches
s, s+1, ... of `stream.epoch(e)`.

Memory stays bounded when `acts` is a `np.memmap` (or `np.load(..., mmap_mode="r")`) larger
than RAM: each batch's row ids are sorted before indexing (reads run forward through the file),
the rows are copied into a fresh float32 array, and the pages just read are dropped from the
process's mapping (`madvise(MADV_DONTNEED)`; the kernel's page cache keeps them, but they no
longer count in the process's resident set). Without that, every page touched during an epoch
stays mapped and RSS grows to the file size. `python -m sae_exp.bench --stream` measures it.

A background thread can prepare the next batches while the model trains on the current one
(`prefetch`), and can pin them in page-locked memory for asynchronous copies to a GPU
(`pin_memory`, ignored when CUDA is unavailable).
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

_RELEASABLE_MODES = ("r", "readonly", "r+", "readwrite")  # never "c": private pages would be lost


def _mapping_of(acts) -> mmap.mmap | None:
    """The mmap behind a read-only or shared-writable np.memmap, else None."""
    mm = getattr(acts, "_mmap", None)
    if mm is None or getattr(acts, "mode", None) not in _RELEASABLE_MODES:
        return None
    return mm if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED") else None


class RowStream:
    """Minibatches of float32 rows of `acts` [N, d], drawn from `rows` in a shuffled order.

    acts: np.ndarray or np.memmap, [N, d] (any float dtype; batches come out float32).
    rows: 1-D int array of the row ids of `acts` to use (e.g. a training split).
    batch_size: rows per batch; None = all rows in one batch (one step per epoch).
    seed: with the epoch number, determines the order (`order(epoch)`).
    drop_last: skip the final short batch.
    prefetch: batches a background thread prepares ahead (0: read in the caller's thread).
    pin_memory: pin each batch (page-locked) for fast non-blocking copies to CUDA.
    release_pages: drop a memmap's pages from this process after each batch (bounded RSS).
    """

    def __init__(self, acts, rows: np.ndarray, batch_size: int | None, seed: int,
                 drop_last: bool = False, *, prefetch: int = 1, pin_memory: bool = False,
                 release_pages: bool = True) -> None:
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer or None, not {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, not {prefetch}")
        self.acts, self.rows = acts, np.asarray(rows, dtype=np.int64).reshape(-1)
        self.batch_size = batch_size or max(len(self.rows), 1)
        self.seed, self.drop_last = seed, drop_last
        self.prefetch = prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._mapping = _mapping_of(acts) if release_pages else None

    @property
    def steps_per_epoch(self) -> int:
        n, b = len(self.rows), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """The row ids of `epoch` in the order they are served (a pure function of seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        return self.rows[rng.permutation(len(self.rows))]

    def batch_rows(self, epoch: int, step: int) -> np.ndarray:
        """Sorted row ids of batch `step` of `epoch`."""
        order = self.order(epoch)
        return np.sort(order[step * self.batch_size : (step + 1) * self.batch_size])

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """Batches [b, d] float32 of `epoch`, from batch `start_step` on."""
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, not {start_step}")
        order = self.order(epoch)
        steps = range(start_step, self.steps_per_epoch)
        ids = (np.sort(order[s * self.batch_size : (s + 1) * self.batch_size]) for s in steps)
        if self.prefetch == 0:
            return (self._load(i) for i in ids)
        return _prefetched((self._load(i) for i in ids), self.prefetch)

    def _load(self, ids: np.ndarray) -> torch.Tensor:
        batch = np.ascontiguousarray(self.acts[ids], dtype=np.float32)
        if self._mapping is not None:
            self._mapping.madvise(mmap.MADV_DONTNEED)
        out = torch.from_numpy(batch)
        return out.pin_memory() if self.pin_memory else out


_DONE = object()


def _prefetched(batches: Iterator[torch.Tensor], depth: int) -> Iterator[torch.Tensor]:
    """Run `batches` in a daemon thread, `depth` items ahead; errors re-raise in the caller.
    Closing the returned generator (or dropping it) stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in batches:
                if not put(b):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer
            put(e)

    thread = threading.Thread(target=work, name="RowStream-prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[torch.Tensor]:
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    return consume()
