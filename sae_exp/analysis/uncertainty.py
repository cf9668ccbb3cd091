"""Uncertainty of the overlap between association sets: resampling over sentences and
label permutations, vectorised as sparse products of the sentence x latent firing matrix with
weight vectors. All randomness comes from the `rng` passed in."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from sae_exp.analysis.association import associate_batch, fisher_greater

MAX_BATCH_CELLS = 1_500_000  # resamples per batch x d_sae x labels held in memory at once


def pair_overlap(assoc: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """Jaccard and overlap coefficient [..., P] of association sets assoc [..., d_sae, L]."""
    ia = [a for a, _ in pairs]
    ib = [b for _, b in pairs]
    A, B = assoc[..., ia], assoc[..., ib]
    inter = (A & B).sum(-2)
    union = (A | B).sum(-2)
    smaller = np.minimum(A.sum(-2), B.sum(-2))
    jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    ovl = np.where(smaller > 0, inter / np.maximum(smaller, 1), 0.0)
    return jac, ovl


def _batches(total: int, d_sae: int, n_labels: int) -> list[int]:
    size = int(max(1, min(256, MAX_BATCH_CELLS // max(1, d_sae * n_labels))))
    return [min(size, total - s) for s in range(0, total, size)]


def bootstrap_sets(F, design, n, cfg, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified bootstrap over sentences: Jaccard, overlap coefficient [B, P], stability.

    Sentences are resampled with replacement within each label (label sizes stay fixed, so
    every resample answers the same question); a resample's per-label counts are
    F_l^T @ w with w the multiplicity of each sentence."""
    L, d = len(design.labels), F.shape[1]
    pairs = list(combinations(range(L), 2))
    groups = [np.flatnonzero(design.label_of == li) for li in range(L)]
    FT = [F[g].T.tocsr() for g in groups]
    jac, ovl, stab = [], [], np.zeros((d, L))
    for B in _batches(cfg.bootstrap, d, L):
        counts = np.empty((B, d, L))
        for li, g in enumerate(groups):
            m = len(g)
            draws = rng.integers(0, m, size=(B, m)) + (np.arange(B) * m)[:, None]
            w = np.bincount(draws.ravel(), minlength=B * m).reshape(B, m)
            counts[:, :, li] = (FT[li] @ w.T.astype(np.float64)).T
        assoc = associate_batch(counts, n, design, cfg.alpha, cfg.min_log2_ratio)
        j, o = pair_overlap(assoc, pairs)
        jac.append(j)
        ovl.append(o)
        stab += assoc.sum(0)
    empty = np.zeros((0, len(pairs)))
    return (np.concatenate(jac) if jac else empty, np.concatenate(ovl) if ovl else empty,
            stab / max(cfg.bootstrap, 1))


def permutation_null(F, design, n, cfg, rng) -> tuple[np.ndarray, np.ndarray]:
    """Jaccard [R, P] and association-set sizes [R, L] with labels permuted across sentences."""
    L, (S, d) = len(design.labels), F.shape
    pairs = list(combinations(range(L), 2))
    FT = F.T.tocsr()
    jac, sizes = [], []
    for B in _batches(cfg.permutations, d, L):
        perm = np.stack([rng.permutation(design.label_of) for _ in range(B)])  # [B, S]
        onehot = np.zeros((S, B, L))
        onehot[np.arange(S)[:, None], np.arange(B)[None, :], perm.T] = 1.0
        counts = np.asarray(FT @ onehot.reshape(S, B * L)).reshape(d, B, L).transpose(1, 0, 2)
        assoc = associate_batch(counts, n, design, cfg.alpha, cfg.min_log2_ratio)
        jac.append(pair_overlap(assoc, pairs)[0])
        sizes.append(assoc.sum(1))
    if not jac:
        return np.zeros((0, len(pairs))), np.zeros((0, L))
    return np.concatenate(jac), np.concatenate(sizes)


def shared_enrichment_p(n_a: int, n_b: int, n_shared: int, universe: int) -> float:
    """P(|A & B| >= observed) for random sets of sizes |A|, |B| among `universe` latents."""
    if n_shared == 0 or universe == 0:
        return 1.0
    return float(fisher_greater(n_shared, n_a, n_b, universe))
