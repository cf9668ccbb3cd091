"""Shuffled minibatches from an activation array (in memory or memory-mapped).

The order of an epoch is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen: `stream.epoch(e, start_step=s)` yields batches
s, s+1, ... of `stream.epoch(e)`.

Memory stays bounded when `acts` is a `np.memmap` (or `np.load(..., mmap_mode="r")`) larger
than RAM: each batch's row ids are sorted (reads run forward through the file) and the rows are
read with `os.preadv` straight into the batch array, so nothing of the file is mapped into the
process; the kernel's page cache may hold the file, but that is not the process's memory and is
given back under pressure. Indexing the memmap instead would map pages into the process: a batch
of 4096 random rows of a 2 GiB file touches every large page-cache folio of it, and the process
RSS reaches the file size (measured: `python -m sae_exp.bench --stream`).

A background thread can prepare the next batches while the model trains on the current one
(`prefetch`), and can pin them in page-locked memory for asynchronous copies to a GPU
(`pin_memory`, ignored when CUDA is unavailable).
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch


class _FileRows:
    """Reads rows of a 2-D np.memmap with `os.preadv`, bypassing the mapping."""

    def __init__(self, acts: np.memmap) -> None:
        mm = acts._mmap
        map_start = np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0]
        first = acts.__array_interface__["data"][0]
        map_offset = acts.offset - acts.offset % mmap.ALLOCATIONGRANULARITY  # numpy's map start
        self.path, self.shape, self.dtype = acts.filename, acts.shape, acts.dtype
        self.pos0 = map_offset + (first - map_start)  # file position of acts[0, 0]
        self.row_stride = acts.strides[0]
        self.row_bytes = acts.shape[1] * acts.dtype.itemsize

    @staticmethod
    def supports(acts) -> bool:
        return (isinstance(acts, np.memmap) and hasattr(os, "preadv")
                and getattr(acts, "_mmap", None) is not None and acts.filename is not None
                and acts.mode in ("r", "r+", "w+")  # never "c": private edits live in memory
                and acts.ndim == 2 and acts.size > 0 and acts.dtype.isnative
                and acts.strides[1] == acts.dtype.itemsize)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` (sorted ascending) as a fresh [len(ids), d] array of the file's dtype."""
        out = np.empty((len(ids), self.shape[1]), dtype=self.dtype)
        if len(ids) == 0:
            return out
        if ids[0] < 0 or ids[-1] >= self.shape[0]:
            raise IndexError(f"row ids out of range [0, {self.shape[0]})")
        view = memoryview(out).cast("B")
        contiguous = self.row_stride == self.row_bytes
        # runs of consecutive ids are read with one call when rows are adjacent in the file
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1 if contiguous else np.arange(1, len(ids))
        starts = np.concatenate(([0], breaks)).tolist()
        ends = np.concatenate((breaks, [len(ids)])).tolist()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(starts, ends, strict=True):
                want = (b - a) * self.row_bytes
                pos = self.pos0 + int(ids[a]) * self.row_stride
                buf = view[a * self.row_bytes : b * self.row_bytes]
                got = os.preadv(fd, [buf], pos)
                while got < want:  # short reads are legal
                    n = os.preadv(fd, [buf[got:]], pos + got)
                    if n == 0:
                        raise OSError(f"{self.path}: file ends before row {ids[a]}")
                    got += n
        finally:
            os.close(fd)
        return out


class RowStream:
    """Minibatches of float32 rows of `acts` [N, d], drawn from `rows` in a shuffled order.

    acts: np.ndarray or np.memmap, [N, d] (any float dtype; batches come out float32).
    rows: 1-D int array of the row ids of `acts` to use (e.g. a training split).
    batch_size: rows per batch; None = all rows in one batch (one step per epoch).
    seed: with the epoch number, determines the order (`order(epoch)`).
    drop_last: skip the final short batch.
    prefetch: batches a background thread prepares ahead (0: read in the caller's thread).
    pin_memory: pin each batch (page-locked) for fast non-blocking copies to CUDA.
    file_reads: read a memmap's rows with os.preadv rather than through the mapping (bounded
        RSS); memmaps in copy-on-write mode ("c") or with non-contiguous rows are indexed.
    """

    def __init__(self, acts, rows: np.ndarray, batch_size: int | None, seed: int,
                 drop_last: bool = False, *, prefetch: int = 1, pin_memory: bool = False,
                 file_reads: bool = True) -> None:
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer or None, not {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, not {prefetch}")
        self.acts, self.rows = acts, np.asarray(rows, dtype=np.int64).reshape(-1)
        self.batch_size = batch_size or max(len(self.rows), 1)
        self.seed, self.drop_last = seed, drop_last
        self.prefetch = prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._file = _FileRows(acts) if file_reads and _FileRows.supports(acts) else None

    @property
    def steps_per_epoch(self) -> int:
        n, b = len(self.rows), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """The row ids of `epoch` in the order they are served (a pure function of seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        return self.rows[rng.permutation(len(self.rows))]

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
        raw = self._file.read(ids) if self._file is not None else self.acts[ids]
        out = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
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
