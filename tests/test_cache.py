"""Activation cache: hit/miss, invalidation, corruption, concurrent jobs, memory mapping."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time

import numpy as np
import pytest

from sae_exp.config import ModelDataConfig
from sae_exp.data import cache
from sae_exp.data.sources import load_activations
from sae_exp.errors import DataError

ROWS = np.arange(12, dtype=np.float32).reshape(6, 2)


def _builder(calls: list | None = None):
    def build():
        if calls is not None:
            calls.append(1)
        return ROWS, np.array([0, 0, 1, 1, 2, 2]), np.array(list("abcdef")), {"why": "test"}
    return build


def test_miss_then_hit_and_entries_are_memory_mapped(tmp_path, caplog):
    calls: list = []
    with caplog.at_level(logging.INFO, logger="sae_exp.data.cache"):
        first = cache.get_or_build(tmp_path, "k1", _builder(calls))
        second = cache.get_or_build(tmp_path, "k1", _builder(calls))
    assert len(calls) == 1
    assert "cache miss: extracting k1" in caplog.text and "cache hit: k1" in caplog.text
    assert isinstance(second.acts, np.memmap) and second.acts.dtype == np.float32
    np.testing.assert_array_equal(second.acts, ROWS)
    assert list(second.tokens) == list("abcdef") and second.meta == {"why": "test"}
    assert first.path == second.path == tmp_path / "k1"
    assert not list(tmp_path.glob(".tmp-*"))  # the temp dir was renamed into place


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "bad_meta", "missing_file"])
def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    calls: list = []
    entry = cache.get_or_build(tmp_path, "k", _builder(calls)).path
    acts = entry / cache.ACTS
    if damage == "flip_byte":
        data = bytearray(acts.read_bytes())
        data[-1] ^= 0xFF
        acts.write_bytes(bytes(data))
    elif damage == "truncate":
        acts.write_bytes(acts.read_bytes()[:-8])
    elif damage == "bad_meta":
        (entry / cache.META).write_text("{not json")
    else:
        (entry / cache.TOKENS).unlink()
    with caplog.at_level(logging.WARNING, logger="sae_exp.data.cache"):
        again = cache.get_or_build(tmp_path, "k", _builder(calls))
    assert len(calls) == 2
    assert "corrupt" in caplog.text
    np.testing.assert_array_equal(again.acts, ROWS)


def _slow_build(marker: str):
    def build():
        with open(marker, "a") as f:
            f.write("extracted\n")
        time.sleep(1.0)
        return ROWS, np.arange(6), None, {}
    return build


def _job(cache_dir: str, marker: str, barrier, out) -> None:
    barrier.wait()
    entry = cache.get_or_build(cache_dir, "shared", _slow_build(marker))
    out.put(float(np.asarray(entry.acts).sum()))


def test_concurrent_jobs_extract_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    marker = tmp_path / "extractions.txt"
    procs = [ctx.Process(target=_job, args=(str(tmp_path / "c"), str(marker), barrier, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert marker.read_text().count("extracted") == 1
    assert results == [float(ROWS.sum())] * 3


def test_model_fingerprint_tracks_config_and_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 4}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    a = cache.model_fingerprint(str(tmp_path))
    assert cache.model_fingerprint(str(tmp_path)) == a
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 99 + b"\1")
    b = cache.model_fingerprint(str(tmp_path))
    (tmp_path / "config.json").write_text('{"hidden_size": 5}')
    c = cache.model_fingerprint(str(tmp_path))
    assert len({a, b, c}) == 3


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    from test_extract import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def _corpus(path, extra: str = "") -> str:
    rows = [("the cat sat on the mat", "a"), ("if every dog ran", "b"), ("some red house", "a"),
            ("unless the tree", "b"), ("a big dog", "a"), ("the blue mat", "b")]
    path.write_text("\n".join(json.dumps({"text": t + extra, "label": lab}) for t, lab in rows))
    return str(path)


def test_load_activations_caches_and_invalidates(tmp_path, bert, caplog):
    corpus = _corpus(tmp_path / "c.jsonl")
    cfg = ModelDataConfig(source="hf_model", model_path=bert, corpus=corpus, layer=1,
                          cache_dir=str(tmp_path / "cache"), test_fraction=0.5, batch_size=4)

    def load(c, seed=0):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="sae_exp.data.cache"):
            data = load_activations(c, seed=seed)
        return data, ("cache hit" in caplog.text), ("cache miss" in caplog.text)

    first, hit, miss = load(cfg)
    assert miss and not hit
    assert first.fingerprint == first.meta["cache_key"]
    assert isinstance(first.acts, np.memmap)
    assert first.tokens is not None and len(first.tokens) == len(first.acts)
    again, hit, miss = load(cfg, seed=1)  # another seed re-draws the split, same activations
    assert hit and not miss and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.acts, first.acts)
    cfg.layer = 2
    other_layer, hit, miss = load(cfg)
    assert miss and other_layer.fingerprint != first.fingerprint
    cfg.layer, cfg.corpus = 1, _corpus(tmp_path / "c2.jsonl", extra=" fast")
    other_corpus, hit, miss = load(cfg)
    assert miss and other_corpus.fingerprint not in (first.fingerprint, other_layer.fingerprint)
    cfg.pooling = "mean"
    pooled, hit, miss = load(cfg)
    assert miss and pooled.acts.shape == (6, 16)


def test_hf_model_needs_a_model_path(tmp_path):
    cfg = ModelDataConfig(source="hf_model", model_path=None, corpus=_corpus(tmp_path / "c.jsonl"),
                          cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="data=hf_model needs data.model_path"):
        load_activations(cfg, seed=0)
