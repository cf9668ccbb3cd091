"""Which latents belong to which category of sentences, and how much categories share them.

The numbers a researcher reads in report.md come from here:

1. Firing rule. With top-k every token has exactly k active latents; when k exceeds the true
   number of features per token the spare slots carry weak activations that "fire" in almost
   every sentence. A latent therefore fires on a row only when its activation exceeds
   `fire_fraction` x the `fire_percentile` percentile of *its own non-zero* activations
   (DESIGN.md, measured on planted data). `fire_fraction = 0` is the naive rule (any act > 0).
2. Per-sentence firing: a latent fires in a sentence if it fires on any of its rows. Everything
   below works on the sentence x latent matrix `F` (scipy CSR), so resampling only needs
   sparse matrix products with sentence-weight vectors.
3. Association: one-sided Fisher exact test (label enriched over its baseline) computed as the
   hypergeometric upper tail, Benjamini-Hochberg over all latents x labels, and a minimum
   log2 rate ratio (+0.5 pseudo-count) so that tiny but "significant" effects do not count.
4. Overlap of every pair of labels, with a stratified bootstrap CI over sentences and a
   label-permutation p-value (what it does and does not test is in DEFINITIONS).

All randomness comes from `np.random.default_rng(cfg.seed)`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln
from scipy.stats import hypergeom

from sae_exp import probe
from sae_exp.config import AnalysisConfig
from sae_exp.data_types import ActivationSet
from sae_exp.errors import ConfigError

log = logging.getLogger(__name__)

CONTROL = "control"
TAIL_TERMS = 16  # pmf terms summed for the cheap lower bound that screens resampled tests
MAX_BATCH_CELLS = 1_500_000  # resamples per batch x d_sae x labels held in memory at once
NEAR_DUPLICATE_COS = 0.9  # decoder cosine above which two label-only latents look like one
MAX_NEAR_DUPLICATES = 20

DEFINITIONS: dict[str, str] = {
    "fires": (
        "a latent fires on a token when its activation exceeds fire_fraction x the "
        "fire_percentile-th percentile of that latent's non-zero activations over all rows; it "
        "fires in a sentence when it fires on any of the sentence's tokens"
    ),
    "threshold": "the per-latent activation a token must exceed for the latent to fire",
    "kept_fraction": (
        "share of non-zero (latent, token) activations above the firing threshold; the "
        "rest are weak spare-slot activations that do not count as firing"
    ),
    "n_sentences": "number of sentences with this label (train and test)",
    "n_rows": "number of activation rows (tokens) of those sentences",
    "rate": "firing rate: share of the label's sentences in which the latent fires",
    "baseline_rate": "share of the baseline sentences in which the latent fires",
    "log2_ratio": (
        "log2 of the firing-rate ratio label / baseline, each rate computed as "
        "(count + 0.5) / (sentences + 1) so that zero counts give a finite value"
    ),
    "p": (
        "one-sided Fisher exact p-value (hypergeometric upper tail) that the latent fires in "
        "more of the label's sentences than in the baseline's"
    ),
    "q": "Benjamini-Hochberg adjusted p-value over all latents x labels",
    "features": (
        "latents associated with the label: q < alpha and log2_ratio >= min_log2_ratio "
        "against the label's baseline"
    ),
    "specific": "latents associated with this label and with no other label",
    "n_features": "number of latents in the label's `features` set",
    "n_specific": "number of latents in the label's `specific` set",
    "n_shared": "number of latents in the pair's `shared` set",
    "stability": (
        "share of bootstrap resamples (sentences resampled within each label) in which the "
        "latent is associated with the label"
    ),
    "null_features": (
        "mean number of latents called associated with the label when labels are randomly "
        "permuted across sentences: an empirical count of false discoveries (should be ~0)"
    ),
    "jaccard": (
        "|A & B| / |A | B| for the two labels' associated sets A and B (0 when both are empty)"
    ),
    "jaccard_ci": (
        "percentile bootstrap CI of the Jaccard index at ci_level: sentences resampled with "
        "replacement within each label, association sets recomputed from scratch"
    ),
    "overlap_coefficient": "|A & B| / min(|A|, |B|) (0 when either set is empty)",
    "shared": "latents associated with both labels",
    "p_value": (
        "label-permutation p-value, (1 + #{null Jaccard >= observed}) / (1 + permutations). "
        "Null: labels are exchangeable across sentences, i.e. latent firing carries no label "
        "information; under it association sets are near-empty and Jaccard ~ 0. A small value "
        "says the observed shared structure is not produced by noise; it does NOT say the two "
        "labels share more latents than two unrelated categories with as many latents would "
        "(see p_shared). An observed Jaccard of 0 gives p = 1"
    ),
    "p_shared": (
        "hypergeometric p-value that |A & B| is at least the observed value if A and B were "
        "random sets of their sizes among the latents that fire in at least one sentence: "
        "small means the labels share more latents than set sizes alone explain"
    ),
    "naive_jaccard": (
        "the notebook's overlap: Jaccard of the sets of latents with any non-zero activation "
        "anywhere in each label. Misleading: with top-k nearly every live latent is active "
        "somewhere in every large enough label, so it measures SAE coverage and corpus size, "
        "not shared features; it rises towards 1 as labels get more sentences"
    ),
    "density": "share of all rows (tokens) on which the latent is non-zero",
    "fire_density": "share of all rows on which the latent fires (above its threshold)",
    "balanced_accuracy": (
        "one-vs-rest probe on the test split: mean of the true-positive rate and the "
        "true-negative rate (0.5 = chance whatever the class balance)"
    ),
    "accuracy": (
        "share of the test sentences in the group that the probe classifies correctly "
        "(one-vs-rest: label vs not-label; multi-class: the right label)"
    ),
    "probe_k": (
        "probe on the k latents with the largest mean activation difference label minus rest "
        "(mean-pooled over tokens, selected on the train split); 'specific' uses the label's "
        "specific set"
    ),
    "near_duplicates": (
        "pairs (latent only in A, latent only in B) whose decoder directions have cosine >= "
        f"{NEAR_DUPLICATE_COS}: candidates for one feature split in two"
    ),
}


@dataclass
class LabelDesign:
    """Label structure that stays fixed across bootstrap resamples and permutations.

    labels: sorted label names (L). label_of: [S] label index of each sentence.
    base: [L, L] bool, base[l, m] = label m is part of label l's baseline (l, m: label indices).
    """

    labels: list[str]
    label_of: np.ndarray
    base: np.ndarray

    def baseline_names(self, li: int) -> list[str]:
        return [self.labels[m] for m in np.flatnonzero(self.base[li])]


# ----------------------------------------------------------------------------- firing rule


def firing_thresholds(
    top_indices: np.ndarray, top_acts: np.ndarray, d_sae: int, fraction: float, percentile: float
) -> np.ndarray:
    """Per-latent threshold [d_sae]: fraction x percentile of the latent's non-zero activations.

    Taken over non-zero values only, because a rare latent is zero on ~98% of rows: a
    percentile over all rows would sit among the weak spare-slot firings (DESIGN.md).
    Linear interpolation, as np.percentile. Latents never active get 0 (they never fire).
    """
    active = top_acts > 0
    lat = top_indices[active]
    val = top_acts[active].astype(np.float64)
    order = np.lexsort((val, lat))
    lat, val = lat[order], val[order]
    counts = np.bincount(lat, minlength=d_sae)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    pos = (counts[has] - 1) * (percentile / 100.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    frac = pos - lo
    q = val[starts[has] + lo] * (1 - frac) + val[starts[has] + hi] * frac
    thr = np.zeros(d_sae)
    thr[has] = fraction * q
    return thr


@dataclass
class Peaks:
    """One entry per (sentence, latent) with any non-zero activation: its maximum and where.

    sentence, latent, row: int64 arrays; value: float64 maximum activation over the rows.
    """

    sentence: np.ndarray
    latent: np.ndarray
    value: np.ndarray
    row: np.ndarray


def sentence_peaks(
    top_indices: np.ndarray, top_acts: np.ndarray, sentence_index: np.ndarray, d_sae: int
) -> Peaks:
    """Max activation of every latent in every sentence, and the row where it peaks.

    A latent fires in a sentence iff its peak there exceeds its threshold, so this one pass
    serves the firing matrix, the naive overlap and the top examples."""
    rows, slots = np.nonzero(top_acts > 0)
    lat = top_indices[rows, slots].astype(np.int64)
    val = top_acts[rows, slots].astype(np.float64)
    sent = np.asarray(sentence_index, dtype=np.int64)[rows]
    key = sent * d_sae + lat
    order = np.lexsort((val, key))
    ks = key[order]
    last = np.r_[ks[1:] != ks[:-1], True] if len(ks) else np.zeros(0, bool)
    pick = order[last]
    return Peaks(sent[pick], lat[pick], val[pick], rows[pick].astype(np.int64))


def firing_matrix(peaks: Peaks, thresholds: np.ndarray, n_sentences: int, d_sae: int):
    """Sentence x latent firing matrix [S, d_sae] as float64 CSR with 1.0 where it fires."""
    fires = peaks.value > thresholds[peaks.latent]
    s, j = peaks.sentence[fires], peaks.latent[fires]
    return sp.csr_matrix((np.ones(len(s)), (s, j)), shape=(n_sentences, d_sae))


# ----------------------------------------------------------------------------- labels


def label_design(labels_per_sentence: np.ndarray, baseline: str) -> LabelDesign:
    """Resolve `analysis.baseline` into each label's baseline labels.

    auto: the `control` label where there is one, else all other labels. A named label is the
    baseline of every other label. The baseline label itself is compared against all others
    (its own features are what makes it different from the rest)."""
    names = sorted({str(x) for x in labels_per_sentence})
    label_of = np.searchsorted(names, np.asarray(labels_per_sentence).astype(str))
    n_lab = len(names)
    ref = None
    if baseline == "auto":
        ref = CONTROL if CONTROL in names else None
    elif baseline in names:
        ref = baseline
    else:
        raise ConfigError(
            f"analysis.baseline={baseline!r} is not a label in the data: labels are "
            + ", ".join(names) + "."
        )
    others = ~np.eye(n_lab, dtype=bool)
    base = others.copy()
    if ref is not None:
        r = names.index(ref)
        base = np.zeros((n_lab, n_lab), dtype=bool)
        base[:, r] = True
        base[r] = others[r]
    return LabelDesign(names, label_of.astype(np.int64), base)


# ----------------------------------------------------------------------------- statistics


def bh_qvalues(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along `axis`: q_(i) = min_{j>=i} p_(j) m / j."""
    p = np.moveaxis(np.asarray(p, dtype=np.float64), axis, -1)
    m = p.shape[-1]
    if m == 0:
        return np.moveaxis(p.copy(), -1, axis)
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, -1)
    qs = ps * m / np.arange(1, m + 1)
    qs = np.minimum.accumulate(qs[..., ::-1], axis=-1)[..., ::-1]
    qs = np.minimum(qs, 1.0)
    q = np.empty_like(qs)
    np.put_along_axis(q, order, qs, -1)
    return np.moveaxis(q, -1, axis)


def fisher_greater(a, K, n, M) -> np.ndarray:
    """One-sided Fisher exact p-value P(X >= a), X ~ Hypergeom(M total, K firing, n drawn).

    Same value as scipy.stats.fisher_exact(alternative="greater") on the 2x2 table
    [[a, n - a], [K - a, M - n - K + a]], vectorised (fisher_exact loops in Python)."""
    p = hypergeom.sf(np.asarray(a) - 1, M, K, n)
    return np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)


def _log_comb(n, k):
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def tail_lower_bound(a, K, n, M, terms: int = TAIL_TERMS) -> np.ndarray:
    """Sum of the first `terms` pmf terms of P(X >= a): a cheap lower bound of the p-value.

    Resampled tests whose bound already exceeds alpha cannot be rejected by BH (q >= p), so
    only the rest need the exact (slow) tail. Terms follow pmf(x+1)/pmf(x) =
    (K-x)(n-x) / ((x+1)(M-K-n+x+1)), which reaches 0 past the support."""
    a, K, n, M = (np.asarray(v, dtype=np.float64) for v in (a, K, n, M))
    term = np.exp(_log_comb(K, a) + _log_comb(M - K, n - a) - _log_comb(M, n))
    total = term.copy()
    x = a.copy()
    for _ in range(terms - 1):
        num = np.maximum(K - x, 0) * np.maximum(n - x, 0)
        term = term * num / ((x + 1) * (M - K - n + x + 1))
        total += term
        x += 1
    return total


def _rates(counts, n, base):
    """Baseline counts and sizes for [..., d, L] label counts."""
    b = counts @ base.T.astype(np.float64)
    nb = base.astype(np.float64) @ n
    return b, nb


def _log2_ratio(a, n, b, nb):
    return np.log2((a + 0.5) / (n + 1.0)) - np.log2((b + 0.5) / (nb + 1.0))


def associate(counts: np.ndarray, n: np.ndarray, design: LabelDesign, cfg: AnalysisConfig) -> dict:
    """Exact association statistics for [d_sae, L] per-label firing counts.

    Returns arrays [d_sae, L]: rate, baseline_rate, log2_ratio, p, q, associated (bool)."""
    n = np.asarray(n, dtype=np.float64)
    b, nb = _rates(counts, n, design.base)
    p = fisher_greater(counts, counts + b, n, n + nb)
    q = bh_qvalues(p.ravel()).reshape(p.shape)
    l2r = _log2_ratio(counts, n, b, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, counts / np.maximum(n, 1), np.nan)
        brate = np.where(nb > 0, b / np.maximum(nb, 1), np.nan)
    assoc = (q < cfg.alpha) & (l2r >= cfg.min_log2_ratio)
    return {"rate": rate, "baseline_rate": brate, "log2_ratio": l2r, "p": p, "q": q,
            "associated": assoc}


def associate_batch(
    counts: np.ndarray, n: np.ndarray, design: LabelDesign, alpha: float, min_log2: float
) -> np.ndarray:
    """Association sets [B, d_sae, L] for a batch of resampled counts [B, d_sae, L].

    Same decisions as `associate` (tested), but only tests that could pass BH get an exact
    p-value: BH rejects nothing with p > alpha, and such p-values do not change the ranks of
    the smaller ones, so they can stand in as 1."""
    n = np.asarray(n, dtype=np.float64)
    b, nb = _rates(counts, n, design.base)
    M = n + nb
    K = counts + b
    p = np.ones_like(counts)
    maybe = counts >= 1
    nn = np.broadcast_to(n, counts.shape)
    MM = np.broadcast_to(M, counts.shape)
    lb = tail_lower_bound(counts[maybe], K[maybe], nn[maybe], MM[maybe])
    cand = np.zeros_like(maybe)
    cand[maybe] = lb <= alpha
    if cand.any():
        keys = np.stack([counts[cand], K[cand], nn[cand], MM[cand]], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        exact = fisher_greater(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3])
        p[cand] = exact[inv.ravel()]
    q = bh_qvalues(p.reshape(len(p), -1)).reshape(p.shape)
    return (q < alpha) & (_log2_ratio(counts, n, b, nb) >= min_log2)


def label_counts(F: sp.csr_matrix, label_of: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-label firing counts [d_sae, L]: in how many sentences of each label a latent fires."""
    onehot = np.zeros((F.shape[0], n_labels))
    onehot[np.arange(F.shape[0]), label_of] = 1.0
    return np.asarray(F.T @ onehot)


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


# ----------------------------------------------------------------------------- report pieces


def _ci(values: np.ndarray, level: float) -> list[float] | None:
    if len(values) == 0:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def _near_duplicates(W_dec, only_a: list[int], only_b: list[int]) -> list[list]:
    """(latent only in A, latent only in B, cosine) with decoder cosine >= NEAR_DUPLICATE_COS."""
    if W_dec is None or not only_a or not only_b:
        return []
    Wa, Wb = W_dec[only_a].astype(np.float64), W_dec[only_b].astype(np.float64)
    Wa /= np.maximum(np.linalg.norm(Wa, axis=1, keepdims=True), 1e-12)
    Wb /= np.maximum(np.linalg.norm(Wb, axis=1, keepdims=True), 1e-12)
    cos = Wa @ Wb.T
    ia, ib = np.nonzero(cos >= NEAR_DUPLICATE_COS)
    order = np.argsort(-cos[ia, ib])[:MAX_NEAR_DUPLICATES]
    return [[int(only_a[ia[i]]), int(only_b[ib[i]]), round(float(cos[ia[i], ib[i]]), 4)]
            for i in order]


def naive_overlap(peaks: Peaks, design: LabelDesign, d_sae: int) -> dict:
    """The notebook's overlap: Jaccard of 'latents ever non-zero in the label'. Misleading."""
    L = len(design.labels)
    ever = np.zeros((d_sae, L), dtype=bool)
    ever[peaks.latent, design.label_of[peaks.sentence]] = True
    pairs = list(combinations(range(L), 2))
    jac = pair_overlap(ever, pairs)[0]
    return {
        "note": "MISLEADING, kept for comparison with the notebook: "
        + DEFINITIONS["naive_jaccard"],
        "latents_per_label": {lab: int(ever[:, li].sum()) for li, lab in enumerate(design.labels)},
        "pairs": {
            _pair_key(design.labels, a, b): {
                "jaccard": float(jac[i]), "shared": int((ever[:, a] & ever[:, b]).sum())}
            for i, (a, b) in enumerate(pairs)
        },
    }


def _pair_key(labels: list[str], a: int, b: int) -> str:
    return "|".join(sorted([labels[a], labels[b]]))


def _sentence_positions(sentence_index: np.ndarray) -> np.ndarray:
    """Position of each row within its sentence (rows of a sentence in row order)."""
    order = np.argsort(sentence_index, kind="stable")
    s = sentence_index[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1] if len(s) else np.zeros(0, int)
    group_start = np.zeros(len(s), dtype=np.int64)
    if len(s):
        group_start[starts] = starts
        group_start = np.maximum.accumulate(group_start)
    pos = np.empty(len(s), dtype=np.int64)
    pos[order] = np.arange(len(s)) - group_start
    return pos


def top_examples(peaks: Peaks, data: ActivationSet, d_sae: int, n_top: int) -> list[list[dict]]:
    """For each latent, its `n_top` sentences with the highest peak activation."""
    out: list[list[dict]] = [[] for _ in range(d_sae)]
    if n_top <= 0 or len(peaks.latent) == 0:
        return out
    order = np.lexsort((-peaks.value, peaks.latent))
    lat = peaks.latent[order]
    starts = np.r_[0, np.flatnonzero(lat[1:] != lat[:-1]) + 1]
    rank = np.arange(len(lat)) - np.repeat(starts, np.diff(np.r_[starts, len(lat)]))
    keep = order[rank < n_top]
    sents = data.sentences
    pos = _sentence_positions(np.asarray(data.sentence_index))
    for i in keep:
        s, r = int(peaks.sentence[i]), int(peaks.row[i])
        ex = {
            "sentence": s,
            "label": str(sents.labels[s]),
            "subset": str(sents.subsets[s]),
            "split": str(sents.splits[s]),
            "activation": round(float(peaks.value[i]), 5),
            "token_position": int(pos[r]),
            "token": None if data.tokens is None else str(data.tokens[r]),
            "text": None if sents.texts is None else str(sents.texts[s]),
        }
        if sents.ids is not None:
            ex["sentence_id"] = int(sents.ids[s])
        out[int(peaks.latent[i])].append(ex)
    return out


def _round(x, sig: int = 6) -> float | None:
    """`sig` significant digits (p-values of 1e-80 must not round to 0); None for NaN/Inf."""
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.{sig}g}")


def latent_records(stats, design, density, fire_density, thresholds, stability, examples) -> list:
    """One dict per latent (features.jsonl): density, per-label rates, p, q, examples."""
    labels = design.labels
    assoc = stats["associated"]
    n_assoc = assoc.sum(1)
    recs = []
    for j in range(len(density)):
        per = {k: {lab: _round(stats[k][j, li]) for li, lab in enumerate(labels)}
               for k in ("rate", "baseline_rate", "log2_ratio", "p", "q")}
        associated = [lab for li, lab in enumerate(labels) if assoc[j, li]]
        recs.append({
            "id": j,
            "density": _round(density[j]),
            "fire_density": _round(fire_density[j]),
            "threshold": float(thresholds[j]),  # full precision: inspect re-applies it
            **per,
            "stability": None if stability is None else
            {lab: _round(stability[j, li], 4) for li, lab in enumerate(labels)},
            "associated": associated,
            "specific_to": associated[0] if n_assoc[j] == 1 else None,
            "top_examples": examples[j],
        })
    return recs


# ----------------------------------------------------------------------------- entry point


def _check_cfg(cfg: AnalysisConfig) -> None:
    if not 0 < cfg.ci_level < 1:
        raise ConfigError(f"analysis.ci_level={cfg.ci_level!r} is invalid: use a value in (0, 1).")
    if cfg.probe_l2 < 0:
        raise ConfigError(f"analysis.probe_l2={cfg.probe_l2!r} is invalid: use a value >= 0.")


def _warnings(design: LabelDesign, n: np.ndarray, data: ActivationSet, cfg) -> list[str]:
    out = []
    for li, lab in enumerate(design.labels):
        if n[li] < cfg.min_sentences:
            out.append(f"label {lab!r} has {int(n[li])} sentences (< analysis.min_sentences="
                       f"{cfg.min_sentences}): its statistics are unreliable.")
    if cfg.fire_fraction == 0:
        out.append("analysis.fire_fraction=0: every non-zero activation counts as firing; with "
                   "top-k wider than the true L0 this inflates baseline rates and hides "
                   "label-specific latents (see DESIGN.md).")
    if data.sentences.texts is None:
        out.append("the data has no sentence texts: top examples show sentence indices only.")
    if cfg.bootstrap == 0:
        out.append("analysis.bootstrap=0: no confidence intervals.")
    if cfg.permutations == 0:
        out.append("analysis.permutations=0: no permutation p-values.")
    return out


def analyze(
    top_indices: np.ndarray,
    top_acts: np.ndarray,
    data: ActivationSet,
    d_sae: int,
    cfg: AnalysisConfig,
    W_dec: np.ndarray | None = None,
) -> dict:
    """Association, overlap, probing and per-latent statistics of an SAE's sparse codes.

    top_indices/top_acts [N, k]: codes of every row of `data` in row order; activation 0 marks
    an inactive slot. W_dec [d_sae, d_in] (optional) flags near-duplicate decoder directions.
    Returns a JSON-serialisable dict (fields in DESIGN.md; every number named in DEFINITIONS).
    """
    _check_cfg(cfg)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    top_indices = np.asarray(top_indices, dtype=np.int64)
    top_acts = np.asarray(top_acts, dtype=np.float32)
    sent_idx = np.asarray(data.sentence_index, dtype=np.int64)
    S, N = len(data.sentences), len(top_acts)
    design = label_design(np.asarray(data.sentences.labels), cfg.baseline)
    labels, L = design.labels, len(design.labels)
    rng = np.random.default_rng(cfg.seed)

    thr = firing_thresholds(top_indices, top_acts, d_sae, cfg.fire_fraction, cfg.fire_percentile)
    active = top_acts > 0
    density = np.bincount(top_indices[active], minlength=d_sae) / max(N, 1)
    fires = active & (top_acts > thr[top_indices])
    fire_density = np.bincount(top_indices[fires], minlength=d_sae) / max(N, 1)
    peaks = sentence_peaks(top_indices, top_acts, sent_idx, d_sae)
    F = firing_matrix(peaks, thr, S, d_sae)
    n = np.bincount(design.label_of, minlength=L).astype(np.float64)
    stats = associate(label_counts(F, design.label_of, L), n, design, cfg)
    timings["association"] = time.perf_counter() - t0

    t = time.perf_counter()
    boot_j, boot_o, stability = bootstrap_sets(F, design, n, cfg, rng)
    timings["bootstrap"] = time.perf_counter() - t
    t = time.perf_counter()
    null_j, null_sizes = permutation_null(F, design, n, cfg, rng)
    timings["permutations"] = time.perf_counter() - t

    assoc = stats["associated"]
    categories = _categories(design, assoc, n, sent_idx, data, null_sizes)
    pairs = _pairs(design, assoc, F, boot_j, boot_o, null_j, cfg, W_dec, d_sae)

    t = time.perf_counter()
    pooled = probe.pool_sentences(top_indices, top_acts, sent_idx, S, d_sae)
    probes = probe.sparse_probing(
        pooled, design.labels, design.label_of, np.asarray(data.sentences.subsets).astype(str),
        np.asarray(data.sentences.splits).astype(str),
        {lab: categories[lab]["specific"] for lab in labels}, list(cfg.probe_k), cfg.probe_l2,
    )
    timings["probe"] = time.perf_counter() - t

    t = time.perf_counter()
    examples = top_examples(peaks, data, d_sae, cfg.top_examples)
    latents = latent_records(stats, design, density, fire_density, thr,
                             stability if cfg.bootstrap else None, examples)
    timings["latents"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    log.info("overlap analysis: %d sentences, %d latents, %d labels in %.1fs (%s)", S, d_sae, L,
             timings["total"], ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    warnings = _warnings(design, n, data, cfg) + probes.pop("warnings", [])
    if W_dec is not None and np.shape(W_dec)[0] != d_sae:
        warnings.append(f"W_dec has {np.shape(W_dec)[0]} rows, not d_sae={d_sae}: ignored.")
    warnings += _ci_warnings(pairs)
    return {
        "categories": categories,
        "pairs": pairs,
        "naive_overlap": naive_overlap(peaks, design, d_sae),
        "probe": probes,
        "latents": latents,
        "baseline": _baseline_summary(design, cfg.baseline),
        "thresholds": _threshold_summary(cfg, thr, active, fires, density),
        "settings": {
            "alpha": cfg.alpha, "min_log2_ratio": cfg.min_log2_ratio, "pseudo_count": 0.5,
            "bootstrap": cfg.bootstrap, "permutations": cfg.permutations,
            "ci_level": cfg.ci_level, "seed": cfg.seed, "probe_k": list(cfg.probe_k),
            "probe_l2": cfg.probe_l2, "n_sentences": S, "n_rows": N, "d_sae": d_sae,
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings,
        "definitions": dict(DEFINITIONS),
    }


def _categories(design, assoc, n, sent_idx, data, null_sizes) -> dict:
    """Per label: sizes, baseline, associated and specific latent ids, null false positives."""
    specific = assoc & (assoc.sum(1, keepdims=True) == 1)
    row_label = design.label_of[sent_idx]
    is_train = np.asarray(data.sentences.splits).astype(str) == "train"
    return {
        lab: {
            "n_sentences": int(n[li]),
            "n_rows": int((row_label == li).sum()),
            "n_train_sentences": int(((design.label_of == li) & is_train).sum()),
            "baseline": design.baseline_names(li),
            "features": np.flatnonzero(assoc[:, li]).tolist(),
            "specific": np.flatnonzero(specific[:, li]).tolist(),
            "n_features": int(assoc[:, li].sum()),
            "n_specific": int(specific[:, li].sum()),
            "null_features": _round(null_sizes[:, li].mean(), 3) if len(null_sizes) else None,
        }
        for li, lab in enumerate(design.labels)
    }


def _baseline_summary(design: LabelDesign, setting: str) -> dict:
    per = {lab: design.baseline_names(li) for li, lab in enumerate(design.labels)}
    refs = {tuple(v) for v in per.values() if len(v) == 1}
    if len(refs) == 1 and len(design.labels) > 2:
        ref = next(iter(refs))[0]
        text = f"each label is compared with {ref!r}; {ref!r} itself with all other labels"
    else:
        text = "each label is compared with all other labels"
    return {"setting": setting, "per_label": per, "description": text}


def _threshold_summary(cfg, thr, active, fires, density) -> dict:
    live = density > 0
    return {
        "rule": DEFINITIONS["fires"],
        "fire_fraction": cfg.fire_fraction,
        "fire_percentile": cfg.fire_percentile,
        "active_entries": int(active.sum()),
        "firing_entries": int(fires.sum()),
        "kept_fraction": _round(fires.sum() / max(active.sum(), 1), 4),
        "median_threshold": _round(np.median(thr[live])) if live.any() else None,
    }


def _ci_warnings(pairs: dict) -> list[str]:
    """A Jaccard outside its own bootstrap CI means the association sets are unstable at this
    sample size: resamples repeat sentences, which makes each resample's tests more liberal."""
    out = []
    for key, pr in pairs.items():
        ci = pr.get("jaccard_ci")
        if ci is not None and not (ci[0] - 1e-9 <= pr["jaccard"] <= ci[1] + 1e-9):
            out.append(
                f"{key}: Jaccard {pr['jaccard']:.3f} lies outside its bootstrap CI "
                f"[{ci[0]:.3f}, {ci[1]:.3f}]: the association sets are unstable at this sample "
                "size (read the CI as a sign of that, not as an interval around the estimate); "
                "add sentences per label."
            )
    return out


def _pairs(design, assoc, F, boot_j, boot_o, null_j, cfg, W_dec, d_sae) -> dict:
    """Per pair of labels: Jaccard with CI, overlap coefficient, shared ids, p-values."""
    pairs = list(combinations(range(len(design.labels)), 2))
    jac, ovl = pair_overlap(assoc, pairs)
    universe = int((np.asarray(F.sum(0)).ravel() > 0).sum())
    if W_dec is not None and np.shape(W_dec)[0] != d_sae:
        W_dec = None
    out = {}
    for i, (a, b) in enumerate(pairs):
        A, B = assoc[:, a], assoc[:, b]
        shared = np.flatnonzero(A & B)
        p_val = None
        if len(null_j):
            p_val = float((1 + (null_j[:, i] >= jac[i] - 1e-12).sum()) / (1 + len(null_j)))
        out[_pair_key(design.labels, a, b)] = {
            "jaccard": float(jac[i]),
            "jaccard_ci": _ci(boot_j[:, i], cfg.ci_level),
            "overlap_coefficient": float(ovl[i]),
            "overlap_coefficient_ci": _ci(boot_o[:, i], cfg.ci_level),
            "shared": shared.tolist(),
            "n_shared": int(len(shared)),
            "n_features": {design.labels[a]: int(A.sum()), design.labels[b]: int(B.sum())},
            "p_value": p_val,
            "null_jaccard_mean": _round(null_j[:, i].mean(), 4) if len(null_j) else None,
            "p_shared": shared_enrichment_p(int(A.sum()), int(B.sum()), len(shared), universe),
            "near_duplicates": _near_duplicates(
                W_dec, np.flatnonzero(A & ~B).tolist(), np.flatnonzero(B & ~A).tolist()),
        }
    return out
