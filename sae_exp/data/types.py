"""Plain containers that flow between stages (activations -> train -> overlap -> report).

Rows are tokens (or pooled sentences); several rows can belong to one sentence. Sentence-level
metadata lives once per sentence in `Sentences`; each row points at its sentence by index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sentences:
    """Per-sentence metadata, all arrays of length S (number of sentences).

    labels: category of each sentence (e.g. "conditional"), str.
    subsets: finer grouping inside a label (e.g. "no_if", "lexical_trap"); "" when unknown.
    splits: "train" or "test"; the SAE trains on train rows, held-out metrics use test rows.
    texts: the sentence text, or None when the source has no text (synthetic, .npz without texts).
    ids: the user's own sentence id for each sentence (from the source), int64.
    groups: the group (e.g. sentence frame) of each sentence, str, or None: test sentences
        should come from groups no training sentence uses.
    split_rule: how train and test were separated, in words (report.md states it).
    """

    labels: np.ndarray
    subsets: np.ndarray
    splits: np.ndarray
    texts: np.ndarray | None = None
    ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    split_rule: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def label_names(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({str(x) for x in self.labels})


@dataclass
class ActivationSet:
    """Activations and their provenance.

    acts: [N, d_in] float32 (may be a np.memmap: do not load it all when you do not need to).
    sentence_index: [N] int64, index into `sentences` (0..S-1) of the sentence each row belongs to.
    sentences: per-sentence metadata.
    tokens: [N] str, the token of each row when known (for top-activating examples), else None.
    fingerprint: hash of everything that determined these activations (run_info.json records it).
    meta: free-form provenance (source, model path, layer, pooling, ...), JSON-serialisable.
    planted: ground truth for synthetic data (feature directions etc.), else None.
    """

    acts: np.ndarray
    sentence_index: np.ndarray
    sentences: Sentences
    tokens: np.ndarray | None = None
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)
    planted: dict | None = None

    @property
    def d_in(self) -> int:
        return int(self.acts.shape[1])

    def row_mask(self, split: str) -> np.ndarray:
        """Boolean [N] mask of rows whose sentence is in `split`."""
        return np.asarray(self.sentences.splits)[self.sentence_index] == split
