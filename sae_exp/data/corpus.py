"""Labelled sentence corpora: the shipped logic corpus or a user's .jsonl / .csv file.

Columns: `text`, `label` (required); `subset`, `split` (train|test), `id`, `group` (optional).
Any number of labels. Without a `split` column the split is drawn here and fixed by the seed, so
every run of one config sees the same held-out sentences: by `group` when there is one (whole
groups, e.g. sentence frames or source documents, go to test, so no test sentence shares a
group with a training sentence), else by sentence, stratified by label and subset. The rule
used is kept in `Sentences.split_rule` for the report.
Every problem is a one-line `DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sae_exp.corpora import shipped_corpus_path
from sae_exp.data.types import Sentences
from sae_exp.errors import DataError

log = logging.getLogger(__name__)

REQUIRED = ("text", "label")
SPLITS = ("train", "test")


def load_corpus(path: str | None, test_fraction: float, seed: int) -> Sentences:
    """Read a corpus (None = the shipped logic corpus) into `Sentences` with texts."""
    p = shipped_corpus_path() if path is None else Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"corpus file {p} does not exist; check data.corpus.")
    ext = p.suffix.lower()
    if ext not in (".jsonl", ".csv"):
        raise DataError(f"corpus {p}: unsupported extension {ext!r}; use .jsonl or .csv.")
    text = _decode(p)
    rows = _read_jsonl(p, text) if ext == ".jsonl" else _read_csv(p, text)
    if not rows:
        raise DataError(f"corpus {p} has no sentences; add lines with text and label.")
    return _to_sentences(p, rows, test_fraction, seed)


def _decode(p: Path) -> str:
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"corpus {p} line {line}: bytes that are not UTF-8; "
                        "save the file as UTF-8.") from None


def _read_jsonl(p: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"corpus {p} line {n}: not valid JSON ({e.msg}).") from None
        if not isinstance(obj, dict):
            raise DataError(f"corpus {p} line {n}: expected a JSON object with text and label.")
        rows.append((n, obj))
    return rows


def _read_csv(p: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    for col in REQUIRED:
        if col not in columns:
            raise DataError(f"corpus {p}: missing column {col!r}; found columns: "
                            f"{', '.join(columns) or '(none)'}.")
    # line numbers: header is line 1; DictReader.line_num counts physical lines read so far
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, dict(row)))
    except csv.Error as e:
        raise DataError(f"corpus {p} line {reader.line_num + 1}: {e} (a field may hold at most "
                        "128 KiB, or a quote is not closed); shorten or fix that line.") from None
    return rows


class _Row(NamedTuple):
    """One corpus line after checking; optional columns are None when the corpus lacks them."""

    text: str
    label: str
    subset: str
    group: str | None
    split: str | None
    id: int | None


def _to_sentences(p: Path, rows: list[tuple[int, dict]], test_fraction: float,
                  seed: int) -> Sentences:
    has_split, has_id, has_group = (any(c in r for _, r in rows) for c in ("split", "id", "group"))
    parsed = [_parse_row(p, line, r, has_split, has_id, has_group) for line, r in rows]
    texts = [row.text for row in parsed]
    labels_a = np.array([row.label for row in parsed], dtype=str)
    subsets_a = np.array([row.subset for row in parsed], dtype=str)
    groups_a = np.array([row.group for row in parsed], dtype=str) if has_group else None
    if has_split:
        splits_a, rule = _own_split(p, np.array([row.split for row in parsed], dtype=str), groups_a)
    else:
        splits_a, rule = _drawn_split(labels_a, subsets_a, groups_a, test_fraction, seed)
    n_dup = len(texts) - len(set(texts))
    if n_dup:
        log.warning("corpus %s: %d duplicate texts (they may fall in both splits)", p, n_dup)
    ids_a = np.array([row.id for row in parsed] if has_id else range(len(texts)), dtype=np.int64)
    return Sentences(labels=labels_a, subsets=subsets_a, splits=splits_a,
                     texts=np.array(texts, dtype=str), ids=ids_a, groups=groups_a,
                     split_rule=rule)


def _parse_row(p: Path, line: int, r: dict, has_split: bool, has_id: bool,
               has_group: bool) -> _Row:
    """Check one line; a column present anywhere in the corpus must be valid on every line."""
    for col in REQUIRED:
        if col not in r:
            raise DataError(f"corpus {p} line {line}: missing column {col!r}; found "
                            f"columns: {', '.join(map(str, r)) or '(none)'}.")
    t = "" if r["text"] is None else str(r["text"]).strip()
    if not t:
        raise DataError(f"corpus {p} line {line}: empty text; remove the line or fill it.")
    lab = "" if r["label"] is None else str(r["label"]).strip()
    if not lab:
        raise DataError(f"corpus {p} line {line}: empty label; every sentence needs one.")
    subset = str(r.get("subset") or "").strip()
    g = s = i = None
    if has_group:
        g = "" if r.get("group") is None else str(r["group"]).strip()
        if not g:
            raise DataError(f"corpus {p} line {line}: empty group; give every line a "
                            "group or drop the group column everywhere.")
    if has_split:
        s = str(r.get("split") or "").strip().lower()
        if s not in SPLITS:
            raise DataError(f"corpus {p} line {line}: split {r.get('split')!r} is invalid; "
                            "use train or test (or drop the split column everywhere).")
    if has_id:
        try:
            i = int(r["id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"corpus {p} line {line}: id {r.get('id')!r} is not an "
                            "integer; give every line an integer id or none.") from None
    return _Row(t, lab, subset, g, s, i)


def _own_split(p: Path, splits_a: np.ndarray, groups_a: np.ndarray | None
               ) -> tuple[np.ndarray, str]:
    """The corpus's split column, checked, and a rule saying whether its groups leak."""
    for s in SPLITS:
        if not (splits_a == s).any():
            raise DataError(f"corpus {p}: no sentence has split {s!r}; the SAE needs train "
                            "and test sentences.")
    rule = "the corpus's own split column"
    if groups_a is not None:
        both = set(groups_a[splits_a == "train"]) & set(groups_a[splits_a == "test"])
        rule += (f"; its groups are disjoint between train and test ({len(set(groups_a))} "
                 "groups)" if not both else f"; {len(both)} groups occur in both train and "
                 "test, so test accuracy partly measures recall of seen groups")
        if both:
            log.warning("corpus %s: %d groups occur in both splits", p, len(both))
    else:
        rule += " (no group column: whether test sentences resemble training ones is unknown)"
    return splits_a, rule


def _drawn_split(labels_a: np.ndarray, subsets_a: np.ndarray, groups_a: np.ndarray | None,
                 test_fraction: float, seed: int) -> tuple[np.ndarray, str]:
    """A seeded split for a corpus without a split column: by group when it has groups."""
    if groups_a is not None:
        splits_a = group_split(labels_a, groups_a, test_fraction, seed)
        rule = (f"by group: whole groups drawn at random (seed {seed}) until test_fraction="
                f"{test_fraction} of each label's sentences are test; no group is in both splits")
    else:
        splits_a = stratified_split(labels_a, subsets_a, test_fraction, seed)
        rule = (f"by sentence: test_fraction={test_fraction} of each label's sentences drawn at "
                f"random (seed {seed}), stratified by subset; the corpus has no group column, so "
                "test sentences may share frames or sources with training ones")
    return splits_a, rule


def group_split(labels: np.ndarray, groups: np.ndarray, test_fraction: float,
                seed: int) -> np.ndarray:
    """"train"/"test" per sentence with whole groups held out: groups in a seeded random order
    go to test until test_fraction of the label's sentences are test (at least one group per
    label that has >= 2 groups). A group spanning labels goes to test as a whole; the label
    that picks it first decides. Deterministic in (seed, labels, groups)."""
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    rng = np.random.default_rng(seed)
    test_groups: set[str] = set()
    for lab in sorted(set(labels.tolist())):
        in_label = labels == lab
        names = sorted(set(groups[in_label].tolist()))
        if len(names) < 2:
            continue
        target = test_fraction * in_label.sum()
        for g in (names[i] for i in rng.permutation(len(names))):
            n_test = np.isin(groups[in_label], sorted(test_groups)).sum()
            if n_test >= max(target, 1) or len(test_groups & set(names)) == len(names) - 1:
                break
            test_groups.add(g)
    return np.where(np.isin(groups, sorted(test_groups)), "test", "train").astype("<U5")


def stratified_split(labels: np.ndarray, subsets: np.ndarray, test_fraction: float,
                     seed: int) -> np.ndarray:
    """"train"/"test" per sentence: round(test_fraction * n) test sentences of each label (at
    least one where a label has >= 2), spread over its subsets in proportion to their sizes.
    Deterministic in (seed, labels, subsets)."""
    labels, subsets = np.asarray(labels).astype(str), np.asarray(subsets).astype(str)
    splits = np.full(len(labels), "train", dtype="<U5")
    rng = np.random.default_rng(seed)
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2:
            continue
        n_test = min(len(idx) - 1, max(1, int(np.floor(test_fraction * len(idx) + 0.5))))
        # each subset's members get evenly spaced positions in [0, 1) in random order, so
        # taking the n_test smallest positions samples every subset proportionally
        pos = np.empty(len(idx))
        for sub in sorted(set(subsets[idx].tolist())):
            members = np.flatnonzero(subsets[idx] == sub)
            pos[members[rng.permutation(len(members))]] = (
                np.arange(len(members)) + rng.random()) / len(members)
        splits[idx[np.argsort(pos, kind="stable")[:n_test]]] = "test"
    return splits
