"""The shipped logic corpus (invariants, determinism) and the corpus reader (user files, errors)."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from sae_exp.corpora import shipped_corpus_path
from sae_exp.corpora.make_logic_corpus import (
    IF_RE,
    MAX_WORDS,
    MIN_WORDS,
    NUMBER_RE,
    QUANT_RE,
    generate,
)
from sae_exp.data.corpus import load_corpus
from sae_exp.errors import DataError

REQUIRED_SUBSETS = {
    "conditional": {"canonical", "no_if"},
    "quantifier": {"canonical", "no_canonical"},
    "control": {"plain", "lexical_trap"},
}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with open(shipped_corpus_path(), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_shipped_corpus_counts_labels_and_subsets(records):
    labels = Counter(r["label"] for r in records)
    assert set(labels) == set(REQUIRED_SUBSETS)
    assert all(n >= 1000 for n in labels.values()), labels
    for label, subsets in REQUIRED_SUBSETS.items():
        have = Counter(r["subset"] for r in records if r["label"] == label)
        assert set(have) == subsets
        assert min(have.values()) >= 300, (label, have)
    assert shipped_corpus_path().stat().st_size < 2_000_000


def test_shipped_corpus_has_no_duplicates_and_short_sentences(records):
    keys = [re.sub(r"\W+", " ", r["text"].lower()).strip() for r in records]
    assert len(set(keys)) == len(keys)
    assert len({r["id"] for r in records}) == len(records)
    words = [len(r["text"].split()) for r in records]
    assert MIN_WORDS <= min(words) and max(words) <= MAX_WORDS


def test_subsets_hold_what_their_names_promise(records):
    def texts(label, subset):
        return [r["text"] for r in records if (r["label"], r["subset"]) == (label, subset)]

    assert not any(IF_RE.search(t) for t in texts("conditional", "no_if"))
    assert not any(QUANT_RE.search(t) for t in texts("quantifier", "no_canonical"))
    for t in texts("control", "plain"):
        assert not (IF_RE.search(t) or QUANT_RE.search(t) or NUMBER_RE.search(t)), t
    traps = " ".join(texts("control", "lexical_trap"))
    for cue in (r"\bif\b", "Somerset", "Everyman", r"\beveryday\b", "as long as",
                "provided", r"^Should |\. Should ", r"\bsomehow\b"):
        assert re.search(cue, traps, re.M), cue
    no_if_forms = {r["form"] for r in records if r["subset"] == "no_if"}
    assert {"unless", "provided", "as_long_as", "inverted_had", "imperative_and"} <= no_if_forms


def test_split_is_by_frame_and_frames_are_disjoint(records):
    """No test sentence uses a frame that any training sentence uses, in every label and
    subset (traps included), and every marker (form) is still seen in training."""
    splits = Counter(r["split"] for r in records)
    assert set(splits) == {"train", "test"}
    assert 0.15 < splits["test"] / len(records) < 0.35
    train_frames = {r["group"] for r in records if r["split"] == "train"}
    test_frames = {r["group"] for r in records if r["split"] == "test"}
    assert train_frames and test_frames and not train_frames & test_frames
    for r in records:  # the frame is the template without its subset
        label, _, form, name = r["template"].split(".")
        assert r["group"] == f"{label}.{form}.{name}"
    for label, subsets in REQUIRED_SUBSETS.items():
        for subset in subsets:
            rows = [r for r in records if (r["label"], r["subset"]) == (label, subset)]
            share = sum(r["split"] == "test" for r in rows) / len(rows)
            assert 0.1 < share < 0.4, (label, subset, share)
            train_forms = {r["form"] for r in rows if r["split"] == "train"}
            assert {r["form"] for r in rows} == train_forms, (label, subset)
    # the reader keeps the stored split whatever the seed or test_fraction
    a = load_corpus(None, test_fraction=0.2, seed=0)
    b = load_corpus(None, test_fraction=0.5, seed=7)
    assert np.array_equal(a.splits, b.splits)
    assert list(a.splits) == [r["split"] for r in records]


def test_generator_is_deterministic_and_file_is_current(records):
    regenerated = generate(seed=0)
    assert [(r["text"], r["label"], r["subset"], r["split"]) for r in regenerated] == [
        (r["text"], r["label"], r["subset"], r["split"]) for r in records]


def test_shipped_corpus_loads_as_sentences():
    s = load_corpus(None, 0.2, 0)
    assert len(s) >= 3000
    assert s.label_names == ["conditional", "control", "quantifier"]
    assert s.texts is not None and s.ids is not None and len(s.ids) == len(s)
    assert "no_if" in set(s.subsets.tolist())


def _write_csv(path, rows, header="text,label,subset"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_user_csv_with_four_labels_gets_a_stratified_seeded_split(tmp_path):
    rows = [f"sentence number {i} about {lab},{lab},s{i % 2}"
            for lab in ("a", "b", "c", "d") for i in range(20)]
    p = _write_csv(tmp_path / "four.csv", rows)
    s = load_corpus(str(p), test_fraction=0.25, seed=3)
    assert s.label_names == ["a", "b", "c", "d"]
    for lab in s.label_names:
        in_label = s.splits[s.labels == lab]
        assert (in_label == "test").sum() == 5  # 25% of each (label, subset) group of 10, rounded
    again = load_corpus(str(p), test_fraction=0.25, seed=3)
    other = load_corpus(str(p), test_fraction=0.25, seed=4)
    assert np.array_equal(s.splits, again.splits)
    assert not np.array_equal(s.splits, other.splits)


def test_user_csv_with_groups_is_split_by_group(tmp_path):
    """A `group` column (frame, source document) makes the split hold out whole groups."""
    rows = [f"sentence {i} from frame {g} about {lab},{lab},,{lab}{g}"
            for lab in ("a", "b") for g in range(8) for i in range(5)]
    p = _write_csv(tmp_path / "groups.csv", rows, header="text,label,subset,group")
    s = load_corpus(str(p), test_fraction=0.25, seed=1)
    train, test = set(s.groups[s.splits == "train"]), set(s.groups[s.splits == "test"])
    assert test and not train & test
    for lab in ("a", "b"):
        assert ((s.labels == lab) & (s.splits == "test")).sum() == 10  # 2 of 8 groups
    assert s.split_rule.startswith("by group")
    assert load_corpus(str(p), 0.25, 1).splits.tolist() == s.splits.tolist()
    no_groups = _write_csv(tmp_path / "plain.csv", [r.rsplit(",", 1)[0] for r in rows])
    plain = load_corpus(str(no_groups), 0.25, 1)
    assert plain.split_rule.startswith("by sentence") and plain.groups is None
    assert "disjoint" in load_corpus(None, 0.2, 0).split_rule


def test_user_jsonl_keeps_given_split_ids_and_extra_fields(tmp_path):
    p = tmp_path / "c.jsonl"
    lines = [{"text": f"t {i}", "label": "xy"[i % 2], "split": "test" if i < 2 else "train",
              "id": 100 + i, "note": "ignored"} for i in range(6)]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    s = load_corpus(str(p), 0.5, 0)
    assert list(s.splits) == ["test", "test", "train", "train", "train", "train"]
    assert list(s.ids) == [100, 101, 102, 103, 104, 105]
    assert list(s.subsets) == [""] * 6


@pytest.mark.parametrize("content, name, match", [
    (None, "missing.csv", "does not exist"),
    ("text,label\nhello,a\n", "c.txt", "unsupported extension '.txt'"),
    ("text,category\nhello,a\n", "c.csv", "missing column 'label'; found columns: text, category"),
    ("text,label\n", "c.csv", "has no sentences"),
    ("", "c.jsonl", "has no sentences"),
    ("text,label\nhello,a\n ,b\n", "c.csv", "line 3: empty text"),
    ('{"text": "hi", "label": "a"}\n{"text": "yo"}\n', "c.jsonl",
     "line 2: missing column 'label'; found columns: text"),
    ('{"text": "hi", "label": "a", "split": "valid"}\n', "c.jsonl",
     "split 'valid' is invalid; use train or test"),
    ('{"text": "hi", "label": "a"}\nnot json\n', "c.jsonl", "line 2: not valid JSON"),
])
def test_corpus_errors_are_one_clear_line(tmp_path, content, name, match):
    p = tmp_path / name
    if content is not None:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(match)) as e:
        load_corpus(str(p), 0.2, 0)
    assert "\n" not in str(e.value)


def test_non_utf8_bytes_name_the_line(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\nfine,a\ncaf\xe9 au lait,b\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 3: bytes that are not UTF-8"):
        load_corpus(str(p), 0.2, 0)
