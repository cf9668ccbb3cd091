"""Synthetic activations with planted features and a known category structure.

Each label owns `n_specific` feature directions; the first two labels also share `n_shared`;
`n_common` background features are used by every label. A token is a sum of
`features_per_token` features (true L0) with positive magnitudes plus Gaussian noise; with
probability `marker_prob` one of them is drawn from its sentence's label features, the rest
from the background. The planted Jaccard of the first two labels' feature sets is
n_shared / (2 n_specific + n_shared); tests check that the SAE and the report recover it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np

from sae_exp.config import SyntheticDataConfig
from sae_exp.data.types import ActivationSet, Sentences


def planted_structure(cfg: SyntheticDataConfig) -> dict:
    """Feature ids per label: {label: ids}, plus `common` and the planted pair Jaccards."""
    labels = list(cfg.labels)
    next_id = 0
    label_feats: dict[str, list[int]] = {}
    specific: dict[str, list[int]] = {}
    for lab in labels:
        specific[lab] = list(range(next_id, next_id + cfg.n_specific))
        label_feats[lab] = list(specific[lab])
        next_id += cfg.n_specific
    shared = list(range(next_id, next_id + cfg.n_shared))
    next_id += cfg.n_shared
    for lab in labels[:2]:
        label_feats[lab] += shared
    common = list(range(next_id, next_id + cfg.n_common))
    next_id += cfg.n_common
    jaccard = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            sa, sb = set(label_feats[a]), set(label_feats[b])
            key = "|".join(sorted([a, b]))
            jaccard[key] = len(sa & sb) / max(len(sa | sb), 1)
    return {
        "n_features": next_id,
        "label_features": label_feats,
        "specific": specific,
        "shared": shared,
        "common": common,
        "jaccard": jaccard,
    }


def make_synthetic(cfg: SyntheticDataConfig) -> ActivationSet:
    """Build the planted data set, deterministically from `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    plant = planted_structure(cfg)
    n_feat = plant["n_features"]
    directions = rng.standard_normal((n_feat, cfg.d_in)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)

    labels = np.repeat(np.array(cfg.labels, dtype=object), cfg.n_sentences)
    n_sent = len(labels)
    t = cfg.tokens_per_sentence
    sentence_index = np.repeat(np.arange(n_sent), t)
    codes = _planted_codes(cfg, rng, plant, labels)
    acts = codes @ directions + cfg.noise * rng.standard_normal((n_sent * t, cfg.d_in))
    acts = acts.astype(np.float32)
    splits = _test_split(cfg, rng, labels)
    sentences = Sentences(
        labels=labels.astype(str),
        subsets=np.full(n_sent, "", dtype=object).astype(str),
        splits=splits.astype(str),
        texts=None,
        ids=np.arange(n_sent, dtype=np.int64),
        split_rule=(f"by sentence: test_fraction={cfg.test_fraction} of each label's synthetic "
                    "sentences (independent draws, so no frames to share)"),
    )
    params = {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}
    fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return ActivationSet(
        acts=acts,
        sentence_index=sentence_index.astype(np.int64),
        sentences=sentences,
        tokens=None,
        fingerprint=fingerprint,
        meta={"source": "synthetic", **params},
        planted={**plant, "directions": directions, "codes": codes},
    )


def _planted_codes(cfg: SyntheticDataConfig, rng: np.random.Generator, plant: dict,
                   labels: np.ndarray) -> np.ndarray:
    """True codes [sentences * tokens_per_sentence, n_features]: each token gets its label's
    marker with probability marker_prob, and common features up to features_per_token."""
    t = cfg.tokens_per_sentence
    common = np.array(plant["common"])
    codes = np.zeros((len(labels) * t, plant["n_features"]), dtype=np.float32)
    for s in range(len(labels)):
        marker_pool = np.array(plant["label_features"][labels[s]])
        for r in range(s * t, (s + 1) * t):
            n_bg = cfg.features_per_token
            if rng.random() < cfg.marker_prob:
                codes[r, rng.choice(marker_pool)] = rng.uniform(0.5, 1.5)
                n_bg -= 1
            chosen = rng.choice(common, size=min(n_bg, len(common)), replace=False)
            codes[r, chosen] = rng.uniform(0.5, 1.5, size=len(chosen))
    return codes


def _test_split(cfg: SyntheticDataConfig, rng: np.random.Generator,
                labels: np.ndarray) -> np.ndarray:
    """"train"/"test" per sentence: test_fraction of each label (at least one) drawn at random."""
    splits = np.full(len(labels), "train", dtype=object)
    for lab in cfg.labels:
        where = np.flatnonzero(labels == lab)
        n_test = max(1, round(cfg.test_fraction * len(where)))
        splits[rng.choice(where, size=n_test, replace=False)] = "test"
    return splits
