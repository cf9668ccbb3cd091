"""On-disk activation cache shared by runs and by concurrent multirun jobs.

An entry is a directory `<cache_dir>/<key>/` with raw `.npy` arrays (so training can
`np.load(..., mmap_mode="r")` without reading everything) and `meta.json` holding each file's
size and sha256, checked before every use; a corrupt entry is rebuilt with a warning.
Entries appear atomically (written to a temp dir, then `os.rename`), and a per-key lock file
(`fcntl.flock`) makes concurrent jobs wait while exactly one of them builds the entry. The kernel
drops the lock when its holder dies, so a killed job never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sae_exp.errors import DataError

log = logging.getLogger("sae_exp.data.cache")

ACTS, INDEX, TOKENS, META = "acts.npy", "sentence_index.npy", "tokens.npy", "meta.json"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json",
                   "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
EDGE_BYTES = 1 << 20  # first and last MB of each weight file go into the model fingerprint


@dataclass
class CacheEntry:
    """A verified entry. acts: [N, d] float32 memmap; sentence_index: [N] int64; tokens: [N]."""

    path: Path
    acts: np.ndarray
    sentence_index: np.ndarray
    tokens: np.ndarray | None
    meta: dict


Builder = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]]


class CorruptEntry(Exception):
    """An entry whose files do not match their recorded sizes or checksums."""


def key_of(parts: dict) -> str:
    """Stable key of a JSON-able dict."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(model_path: str) -> str:
    """Hash of a model directory: config and tokenizer files in full; for each weight file its
    name, size and first and last MB.

    Hashing multi-GB weights in full would cost seconds to minutes on every run; mtimes change
    on every copy and would cause spurious misses. Size plus both ends catches a replaced or
    re-downloaded checkpoint (a safetensors header at the start lists every tensor's dtype,
    shape and offset). Not caught: an in-place edit of middle bytes that keeps the size; delete
    the cache entry after such surgery.
    """
    root = Path(model_path)
    if not root.is_dir():
        raise DataError(f"data.model_path={model_path!r} is not a local directory.")
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (root / name).is_file():
            h.update(name.encode() + b"\0" + (root / name).read_bytes())
    for p in sorted(root.iterdir()):
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json")):
            size = p.stat().st_size
            h.update(f"{p.name}\0{size}\0".encode())
            with open(p, "rb") as f:
                h.update(f.read(EDGE_BYTES))
                f.seek(max(0, size - EDGE_BYTES))
                h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def get_or_build(cache_dir: str | Path, key: str, build: Builder) -> CacheEntry:
    """The entry for `key`, built by `build()` (acts, sentence_index, tokens, meta) on a miss."""
    cache_dir = Path(cache_dir)
    entry_dir = cache_dir / key
    with contextlib.suppress(CorruptEntry, FileNotFoundError):
        entry = _load(entry_dir)
        log.info("cache hit: %s", key)
        return entry
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir / f"{key}.lock", key):
        try:  # another job may have built it while we waited
            entry = _load(entry_dir)
            log.info("cache hit: %s", key)
            return entry
        except FileNotFoundError:
            pass
        except CorruptEntry as e:
            log.warning("cache entry %s is corrupt (%s); rebuilding it", entry_dir, e)
        log.info("cache miss: extracting %s", key)
        acts, sentence_index, tokens, meta = build()
        _write(entry_dir, key, acts, sentence_index, tokens, meta)
    return _load(entry_dir)


def has(cache_dir: str | Path, key: str) -> bool:
    """Whether a valid (checksummed) entry for `key` exists, without building anything."""
    try:
        _load(Path(cache_dir) / key)
    except (CorruptEntry, FileNotFoundError):
        return False
    return True


def put_if_missing(cache_dir: str | Path, key: str, acts: np.ndarray, sentence_index: np.ndarray,
                   tokens: np.ndarray | None, info: dict) -> bool:
    """Write an entry for `key` already computed elsewhere (a layer extracted in the same pass
    as another); True if written. Nothing happens if a valid entry exists, or if another process
    holds the key's lock: that process is building the same entry, and waiting for it while
    holding our own key's lock could deadlock two jobs that each extract the other's layer."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{key}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("cache entry %s is being built by another process; not writing it", key)
            return False
        try:
            if has(cache_dir, key):
                return False
            _write(cache_dir / key, key, acts, sentence_index, tokens, info)
            log.info("cache put: %s", key)
            return True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _lock(path: Path, key: str) -> Iterator[None]:
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to build cache entry %s", key)
            t0 = time.time()
            fcntl.flock(f, fcntl.LOCK_EX)
            log.info("waited %.1f s for cache entry %s", time.time() - t0, key)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load(entry_dir: Path) -> CacheEntry:
    meta_path = entry_dir / META
    if not meta_path.is_file():
        raise FileNotFoundError(meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = meta["files"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise CorruptEntry(f"unreadable {META}: {e}") from None
    for name, rec in files.items():
        p = entry_dir / name
        if not p.is_file():
            raise CorruptEntry(f"{name} is missing")
        if p.stat().st_size != rec["bytes"]:
            raise CorruptEntry(f"{name} has {p.stat().st_size} bytes, expected {rec['bytes']}")
        if sha256_file(p) != rec["sha256"]:
            raise CorruptEntry(f"{name} checksum mismatch")
    try:
        acts = np.load(entry_dir / ACTS, mmap_mode="r")
        index = np.load(entry_dir / INDEX)
        tokens = np.load(entry_dir / TOKENS) if TOKENS in files else None
    except (ValueError, OSError) as e:
        raise CorruptEntry(f"unreadable array: {e}") from None
    return CacheEntry(entry_dir, acts, index, tokens, meta.get("info", {}))


def _write(entry_dir: Path, key: str, acts: np.ndarray, sentence_index: np.ndarray,
           tokens: np.ndarray | None, info: dict) -> None:
    tmp = entry_dir.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        arrays = {ACTS: np.ascontiguousarray(acts, dtype=np.float32),
                  INDEX: np.asarray(sentence_index, dtype=np.int64)}
        if tokens is not None:
            arrays[TOKENS] = np.asarray(tokens, dtype=str)
        files = {}
        for name, arr in arrays.items():
            np.save(tmp / name, arr, allow_pickle=False)
            files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name),
                           "shape": list(arr.shape), "dtype": str(arr.dtype)}
        meta = {"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files,
                "info": info}
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if entry_dir.exists():  # a corrupt entry: move it aside, then swap in the new one
            trash = entry_dir.parent / f".trash-{key}-{uuid.uuid4().hex[:8]}"
            os.rename(entry_dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, entry_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
