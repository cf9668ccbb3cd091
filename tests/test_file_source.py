"""data=file: .npz files and shard directories, their validation, and the shared checks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from sae_exp.config import FileDataConfig, SyntheticDataConfig
from sae_exp.data.sources import load_activations
from sae_exp.errors import DataError

RNG = np.random.default_rng(0)
ACTS = RNG.normal(size=(7, 4)).astype(np.float32)
LABELS = np.array(["a", "a", "b", "b", "b", "a", "a"])
IDS = np.array([10, 10, 3, 3, 3, 10, 8])  # rows of one sentence need not be adjacent
TEXTS = np.array(["s ten"] * 2 + ["s three"] * 3 + ["s ten", "s eight"])


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _load(path, **kw):
    return load_activations(FileDataConfig(path=str(path), **kw), seed=0)


def test_npz_with_sentence_ids_groups_rows_into_sentences(tmp_path):
    p = _npz(tmp_path / "d.npz", activations=ACTS, labels=LABELS, sentence_ids=IDS, texts=TEXTS)
    data = _load(p)
    s = data.sentences
    assert list(s.ids) == [10, 3, 8]  # order of first appearance
    assert list(s.labels) == ["a", "b", "a"]
    assert list(s.texts) == ["s ten", "s three", "s eight"]
    assert list(data.sentence_index) == [0, 0, 1, 1, 1, 0, 2]
    np.testing.assert_array_equal(data.acts, ACTS)
    assert set(s.splits) <= {"train", "test"} and len(s.splits) == 3
    assert len(data.fingerprint) == 32 and data.meta["source"] == "file"


def test_npz_without_sentence_ids_makes_each_row_a_sentence(tmp_path):
    data = _load(_npz(tmp_path / "d.npz", activations=ACTS, labels=LABELS))
    assert len(data.sentences) == len(ACTS)
    assert list(data.sentence_index) == list(range(len(ACTS)))
    assert data.sentences.texts is None


def test_fingerprint_follows_file_contents(tmp_path):
    p = tmp_path / "d.npz"
    a = _load(_npz(p, activations=ACTS, labels=LABELS)).fingerprint
    assert _load(p).fingerprint == a
    b = _load(_npz(p, activations=ACTS + 1, labels=LABELS)).fingerprint
    assert a != b


def test_given_splits_and_subsets_are_kept(tmp_path):
    splits = np.array(["train", "train", "test", "test", "test", "train", "test"])
    subsets = np.array(["x"] * 7)
    data = _load(_npz(tmp_path / "d.npz", activations=ACTS, labels=LABELS, sentence_ids=IDS,
                      splits=splits, subsets=subsets))
    assert list(data.sentences.splits) == ["train", "test", "test"]
    assert list(data.sentences.subsets) == ["x", "x", "x"]


@pytest.mark.parametrize("arrays, match", [
    ({"labels": LABELS}, "missing key 'activations'; found keys: labels"),
    ({"activations": ACTS}, "missing key 'labels'"),
    ({"activations": ACTS[0], "labels": LABELS},
     r"activations has shape \(4,\); expected \[N, d\]"),
    ({"activations": ACTS, "labels": LABELS[:5]}, "labels has 5 entries but activations has 7"),
    ({"activations": ACTS, "labels": LABELS[:, None]}, "labels has shape"),
    ({"activations": ACTS, "labels": np.array(["a", "b", "b", "b", "b", "a", "a"]),
      "sentence_ids": IDS}, "sentence id 10 has rows with different labels"),
    ({"activations": ACTS, "labels": np.array(["a"] * 7)}, "1 label .*needs at least two"),
    ({"activations": ACTS, "labels": LABELS, "splits": np.array(["train", "val"] * 3 + ["test"])},
     "splits holds 'val'; use train or test"),
    ({"activations": ACTS.astype(int), "labels": LABELS}, "expected floats"),
    ({"activations": ACTS, "labels": LABELS.astype(object)}, "holds Python objects"),
])
def test_npz_validation_errors(tmp_path, arrays, match):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match) as e:
        _load(p)
    assert "\n" not in str(e.value)


def test_missing_or_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="not a readable .npz"):
        _load(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", ACTS)
    with pytest.raises(DataError, match="holds a single array, not an .npz"):
        _load(tmp_path / "single.npy")


def test_nonfinite_rows_fail_or_are_dropped(tmp_path, caplog):
    acts = ACTS.copy()
    acts[1, 2], acts[6, 0] = np.nan, np.inf
    p = _npz(tmp_path / "d.npz", activations=acts, labels=LABELS, sentence_ids=IDS)
    with pytest.raises(DataError, match="2 of 7 activation rows hold NaN or Inf.*"
                                        "data.drop_nonfinite=true"):
        _load(p)
    with caplog.at_level(logging.WARNING):
        data = _load(p, drop_nonfinite=True)
    assert "dropped 2 of 7" in caplog.text
    assert len(data.acts) == 5 and np.isfinite(data.acts).all()
    assert list(data.sentences.ids) == [10, 3]  # sentence 8 lost its only row
    assert list(data.sentence_index) == [0, 1, 1, 1, 0]


def test_shard_dir_of_npy_with_meta_json(tmp_path):
    np.save(tmp_path / "acts_0.npy", ACTS[:3])
    np.save(tmp_path / "acts_1.npy", ACTS[3:5])
    np.save(tmp_path / "acts_10.npy", ACTS[5:])  # natural order: 0, 1, 10
    meta = {"labels": LABELS.tolist(), "sentence_ids": IDS.tolist(), "texts": TEXTS.tolist()}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    data = _load(tmp_path)
    np.testing.assert_array_equal(data.acts, ACTS)
    assert list(data.sentences.ids) == [10, 3, 8]
    assert data.meta["files"] == ["acts_0.npy", "acts_1.npy", "acts_10.npy", "meta.json"]


def test_single_npy_shard_stays_memory_mapped(tmp_path):
    np.save(tmp_path / "acts_0.npy", ACTS)
    np.savez(tmp_path / "meta.npz", labels=LABELS)
    data = _load(tmp_path)
    assert isinstance(data.acts, np.memmap)


def test_shard_dir_of_safetensors(tmp_path):
    from safetensors.numpy import save_file

    save_file({"activations": ACTS[:4]}, str(tmp_path / "acts_0.safetensors"))
    save_file({"activations": ACTS[4:]}, str(tmp_path / "acts_1.safetensors"))
    np.savez(tmp_path / "meta.npz", labels=LABELS)
    np.testing.assert_array_equal(_load(tmp_path).acts, ACTS)


def test_shard_dir_errors(tmp_path):
    with pytest.raises(DataError, match="without acts_"):
        _load(tmp_path)
    np.save(tmp_path / "acts_0.npy", ACTS)
    with pytest.raises(DataError, match="no meta.npz or meta.json"):
        _load(tmp_path)
    np.save(tmp_path / "acts_1.npy", ACTS[:, :3])
    np.savez(tmp_path / "meta.npz", labels=np.concatenate([LABELS, LABELS]))
    with pytest.raises(DataError, match=r"acts_1.npy has shape \(7, 3\)"):
        _load(tmp_path)


def test_synthetic_source_dispatches_to_the_generator():
    cfg = SyntheticDataConfig(n_sentences=10, d_in=8, n_specific=2, n_shared=1, n_common=3,
                              features_per_token=2, tokens_per_sentence=3)
    data = load_activations(cfg, seed=0)
    assert data.acts.shape[1] == 8 and len(data.sentences.label_names) == 3
