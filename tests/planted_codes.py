"""Planted sparse codes for the statistics tests: no SAE, the ground truth is known.

Each label owns `n_specific` latents; the first two labels also share `n_shared`; `n_common`
latents are used by every label and the rest are rare background. Every token carries
`true_l0` strong activations (Gumbel-top-k draws, so no latent repeats in a token), where the
label's own latents are likelier than the others. Optionally each token is padded to
`k > true_l0` with weak "spare slot" activations of related latents (any label's planted
latents), as a top-k SAE does when k exceeds the true L0: the next-highest pre-activations
belong to latents whose directions resemble the input. That is the DESIGN.md pitfall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sae_exp.data.types import ActivationSet, Sentences


@dataclass
class Planted:
    top_indices: np.ndarray  # [N, k] int64
    top_acts: np.ndarray  # [N, k] float32
    data: ActivationSet
    features: dict[str, set[int]]  # planted latents of each label (specific + shared)
    specific: dict[str, set[int]]  # planted latents of one label only
    jaccard: dict[str, float]  # planted Jaccard of every pair "a|b"


def _gumbel_top(logw: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k draws without replacement per row, with probabilities ~ exp(logw) (Gumbel-top-k)."""
    keys = logw + rng.gumbel(size=logw.shape)
    return np.argsort(-keys, axis=1)[:, :k]


def make_planted(
    n_per_label: int = 300,
    tokens: int = 6,
    d_sae: int = 200,
    true_l0: int = 4,
    k: int | None = None,
    labels: tuple[str, ...] = ("a", "b", "control"),
    n_specific: int = 10,
    n_shared: int = 6,
    n_common: int = 20,
    seed: int = 0,
    shuffle_labels: bool = False,
    test_fraction: float = 0.2,
) -> Planted:
    """Build planted codes; k = None means k = true_l0 (no spare slots)."""
    rng = np.random.default_rng(seed)
    k = true_l0 if k is None else k
    nxt = 0
    specific: dict[str, set[int]] = {}
    for lab in labels:
        specific[lab] = set(range(nxt, nxt + n_specific))
        nxt += n_specific
    shared = set(range(nxt, nxt + n_shared))
    nxt += n_shared
    common = np.arange(nxt, nxt + n_common)
    features = {lab: set(specific[lab]) | (shared if i < 2 else set())
                for i, lab in enumerate(labels)}
    planted_any = np.array(sorted(set().union(*features.values())))

    S = n_per_label * len(labels)
    label_of = np.repeat(np.arange(len(labels)), n_per_label)
    sent_idx = np.repeat(np.arange(S), tokens)
    N = len(sent_idx)
    strong_w = np.full((len(labels), d_sae), np.log(0.5))
    strong_w[:, common] = np.log(3.0)
    strong_w[:, planted_any] = -np.inf
    for i, lab in enumerate(labels):  # equal planted mass per label: the rest is label-blind
        strong_w[i, sorted(features[lab])] = np.log(96.0 / len(features[lab]))
    idx = np.zeros((N, k), dtype=np.int64)
    acts = np.zeros((N, k), dtype=np.float32)
    chunk = 4096
    for s in range(0, N, chunk):
        rows = slice(s, min(N, s + chunk))
        logw = strong_w[label_of[sent_idx[rows]]]
        strong = _gumbel_top(logw, true_l0, rng)
        idx[rows, :true_l0] = strong
        acts[rows, :true_l0] = rng.uniform(0.5, 1.5, size=strong.shape)
        if k > true_l0:
            spare_w = np.full_like(logw, -np.inf)
            spare_w[:, planted_any] = 0.0
            np.put_along_axis(spare_w, strong, -np.inf, axis=1)
            spare = _gumbel_top(spare_w, k - true_l0, rng)
            idx[rows, true_l0:] = spare
            acts[rows, true_l0:] = rng.uniform(0.01, 0.05, size=spare.shape)
    # top-k codes come sorted by activation, strongest first
    order = np.argsort(-acts, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, 1)
    acts = np.take_along_axis(acts, order, 1)

    names = np.array(labels, dtype=object)[label_of]
    if shuffle_labels:
        names = rng.permutation(names)
    splits = np.where(rng.random(S) < test_fraction, "test", "train")
    subsets = np.array(["plain"] * S, dtype=object)
    subsets[::5] = "trap"
    sents = Sentences(
        labels=names, subsets=subsets, splits=splits,
        texts=np.array([f"sentence {i} about {names[i]}" for i in range(S)], dtype=object),
        ids=np.arange(S, dtype=np.int64) + 1000,
    )
    data = ActivationSet(
        acts=np.zeros((N, 1), dtype=np.float32), sentence_index=sent_idx, sentences=sents,
        tokens=np.array([f"tok{t}" for t in np.tile(np.arange(tokens), S)], dtype=object),
    )
    jac = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            fa, fb = features[a], features[b]
            jac["|".join(sorted([a, b]))] = len(fa & fb) / len(fa | fb)
    return Planted(idx, acts, data, features, specific, jac)
