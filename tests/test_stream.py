"""RowStream: every row once per epoch, reproducible order, exact resume, memmaps, bounded RSS."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from sae_exp import bench
from sae_exp.data.stream import RowStream


def _acts(n: int = 103, d: int = 5) -> np.ndarray:
    """Row i holds i in every column, so a batch tells which rows it came from."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], d, axis=1)


def _ids(batches) -> list[np.ndarray]:
    return [b[:, 0].numpy().astype(np.int64) for b in batches]


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("batch_size", [1, 10, 37, 103, 500])
def test_every_row_exactly_once_per_epoch(batch_size, prefetch):
    rows = np.arange(3, 103, 2)  # a subset of the rows, e.g. a training split
    stream = RowStream(_acts(), rows, batch_size, seed=1, prefetch=prefetch)
    for epoch in range(2):
        batches = list(stream.epoch(epoch))
        assert len(batches) == stream.steps_per_epoch == -(-len(rows) // batch_size)
        assert all(b.dtype == torch.float32 and b.shape[1] == 5 for b in batches)
        got = np.concatenate(_ids(batches))
        assert np.array_equal(np.sort(got), rows)
        assert all(np.all(np.diff(i) > 0) for i in _ids(batches))  # sorted within a batch


def test_drop_last_drops_only_the_short_batch():
    stream = RowStream(_acts(), np.arange(103), 10, seed=0, drop_last=True)
    batches = list(stream.epoch(0))
    assert stream.steps_per_epoch == 10 and len(batches) == 10
    assert all(len(b) == 10 for b in batches)
    assert len(np.unique(np.concatenate(_ids(batches)))) == 100


def test_full_batch_is_one_step():
    stream = RowStream(_acts(), np.arange(103), None, seed=0)
    (batch,) = list(stream.epoch(7))
    assert stream.steps_per_epoch == 1 and batch.shape == (103, 5)


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = RowStream(_acts(), np.arange(103), 16, seed=5)
    b = RowStream(_acts(), np.arange(103), 16, seed=5, prefetch=0)
    ids = [np.concatenate(_ids(a.epoch(e))) for e in range(3)]
    for e in range(3):
        assert np.array_equal(np.concatenate(_ids(b.epoch(e))), ids[e])
        assert np.array_equal(np.concatenate(_ids(a.epoch(e))), ids[e])  # again, same stream
    assert not np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[1], ids[2])
    c = RowStream(_acts(), np.arange(103), 16, seed=6)
    assert not np.array_equal(np.concatenate(_ids(c.epoch(0))), ids[0])


@pytest.mark.parametrize("start", [0, 1, 4, 6, 7, 20])
def test_resume_yields_exactly_the_remaining_batches(start):
    stream = RowStream(_acts(), np.arange(103), 16, seed=3)
    full = _ids(stream.epoch(2))
    resumed = _ids(stream.epoch(2, start_step=start))
    assert len(resumed) == max(len(full) - start, 0)
    assert all(np.array_equal(x, y) for x, y in zip(resumed, full[start:], strict=True))
    with pytest.raises(ValueError, match="start_step"):
        list(stream.epoch(0, start_step=-1))


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="batch_size"):
        RowStream(_acts(), np.arange(10), 0, seed=0)
    with pytest.raises(ValueError, match="prefetch"):
        RowStream(_acts(), np.arange(10), 4, seed=0, prefetch=-1)


@pytest.mark.parametrize("how", ["np.memmap", "np.load"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_reads_a_memmap(tmp_path: Path, how, dtype):
    data = np.random.default_rng(0).standard_normal((257, 12)).astype(dtype)
    if how == "np.memmap":
        path = tmp_path / "acts.bin"
        data.tofile(path)
        acts = np.memmap(path, dtype=dtype, mode="r", shape=data.shape)
    else:
        path = tmp_path / "acts.npy"
        np.save(path, data)
        acts = np.load(path, mmap_mode="r")
    rows = np.arange(0, 257, 3)
    mem = RowStream(data, rows, 20, seed=9)
    mapped = RowStream(acts, rows, 20, seed=9)
    for x, y in zip(mem.epoch(1), mapped.epoch(1), strict=True):
        assert y.dtype == torch.float32
        assert torch.equal(x, y)
    assert np.array_equal(np.concatenate([b.numpy() for b in mapped.epoch(0)]).shape, (86, 12))


_status_kib, _reset_peak = bench._proc_status_kib, bench._reset_peak_rss  # one copy


@pytest.mark.skipif(_status_kib("RssFile") is None or not _reset_peak(),
                    reason="needs Linux /proc/self/status RssFile and clear_refs")
def test_an_epoch_over_a_memmap_keeps_the_file_out_of_the_process(tmp_path: Path):
    """Peak RSS while reading a 48 MiB file stays far below its size; indexing the mapping
    instead (file_reads=False) leaves most of the file resident in the process."""
    n, d = 16384, 768
    path = tmp_path / "acts.bin"
    np.random.default_rng(0).standard_normal((n, d), dtype=np.float32).tofile(path)
    file_kib = n * d * 4 // 1024
    acts = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    stream = RowStream(acts, np.arange(n), 1024, seed=0, prefetch=0)
    _reset_peak()
    before = _status_kib("VmRSS")
    for _ in stream.epoch(0):
        pass
    assert _status_kib("VmHWM") - before < file_kib // 4
    mapped = RowStream(acts, np.arange(n), 1024, seed=0, file_reads=False)
    before = _status_kib("RssFile")
    for _ in mapped.epoch(0):
        pass
    assert _status_kib("RssFile") - before > file_kib // 2


def test_file_reads_find_rows_of_views_and_offsets(tmp_path: Path):
    """preadv locates rows for .npy headers, explicit offsets, row slices and column slices."""
    data = np.random.default_rng(1).standard_normal((300, 10)).astype(np.float32)
    path = tmp_path / "raw.bin"
    path.write_bytes(b"x" * 7 + data.tobytes())
    raw = np.memmap(path, dtype=np.float32, mode="r", offset=7, shape=data.shape)
    np.save(tmp_path / "a.npy", data)
    npy = np.load(tmp_path / "a.npy", mmap_mode="r")
    for acts, ref in ((raw, data), (npy, data), (raw[37:250], data[37:250]),
                      (npy[::3], data[::3]), (raw[:, 2:7], data[:, 2:7]),
                      (npy[5:][::-2], data[5:][::-2])):
        stream = RowStream(acts, np.arange(len(ref)), 16, seed=2)
        assert stream._file is not None
        for x, y in zip(stream.epoch(0), RowStream(ref, np.arange(len(ref)), 16, seed=2)
                        .epoch(0), strict=True):
            assert torch.equal(x, y)


def test_copy_on_write_memmaps_keep_their_pages(tmp_path: Path):
    """mode="c" pages may hold private edits: they must never be dropped."""
    path = tmp_path / "acts.bin"
    _acts(40, 3).tofile(path)
    acts = np.memmap(path, dtype=np.float32, mode="c", shape=(40, 3))
    acts[5] = -1.0  # a private edit
    batches = list(RowStream(acts, np.arange(40), 8, seed=0).epoch(0))
    assert any((b == -1.0).all(dim=1).any() for b in batches)
    assert (acts[5] == -1.0).all()


def test_prefetch_thread_stops_when_the_consumer_stops():
    stream = RowStream(_acts(), np.arange(103), 4, seed=0, prefetch=2)
    it = stream.epoch(0)
    next(it)
    it.close()
    alive = [t for t in threading.enumerate() if t.name == "RowStream-prefetch"]
    for t in alive:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in alive)


def test_prefetch_errors_reach_the_consumer():
    stream = RowStream(_acts(10), np.array([0, 1, 50]), 2, seed=0, prefetch=1)
    with pytest.raises(IndexError):
        list(stream.epoch(0))


def test_pin_memory_is_ignored_without_cuda():
    stream = RowStream(_acts(), np.arange(20), 8, seed=0, pin_memory=True)
    batch = next(iter(stream.epoch(0)))
    assert batch.is_pinned() == torch.cuda.is_available()
