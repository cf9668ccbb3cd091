"""Uncertainty of the overlap between association sets, with calibration measured on planted
data (`python -m sae_exp.calibrate`, numbers in the README).

- Interval for the Jaccard and the overlap coefficient: subsampling without replacement. Each
  subsample keeps `SUBSAMPLE_FRACTION` of every label's train sentences, each at most once, and
  recomputes the association sets from scratch. A bootstrap with replacement repeats sentences,
  which makes every Fisher test more liberal and the sets larger: its Jaccards sit above the
  observed one (86% of them on the default run). The spread of a statistic over subsamples of
  size m drawn from n is sd_m^2 ~ (1/m - 1/n) sigma^2 for a sqrt(n)-regular statistic, so
  se_n = sd_m sqrt(m / (n - m)); the interval is estimate +- z se, clipped to [0, 1]. It is an
  interval for the Jaccard that this selection rule gives, in expectation, on a train split of
  this size from the same population: latents too weak to be detected at this size are not
  part of that quantity.
- Pair p-value: label permutations of the train sentences with a continuous statistic, the
  shared-enrichment score S = sum_j min(z_aj, z_bj)_+ (z: two-proportion z-score of a latent
  in a label against the label's baseline). The Jaccard itself is 0 in almost every permutation,
  so its permutation p-value is a point mass at 1, not uniform.
- p_shared: conditional test of |A & B| given each latent's firing count outside a and b (its
  baseline, when the baseline is a third label). Rare latents are selected far more often, so a
  hypergeometric null that treats every latent alike overstates sharing. Each label's selection
  probability is modelled as a logistic curve in log(count + 0.5) (quadratic), and |A & B| is
  referred to the Poisson-binomial law of sum_j pi_a(j) pi_b(j).

Everything is vectorised as sparse products of the sentence x latent firing matrix with weight
vectors; all randomness comes from the `rng` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm

from sae_exp.analysis.association import LabelDesign, _rates, associated_sets

MAX_BATCH_CELLS = 1_500_000  # resamples per batch x d_sae x labels held in memory at once
SUBSAMPLE_FRACTION = 0.5  # share of each label's sentences in one subsample (m / n)


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


@dataclass
class Subsamples:
    """Jaccard and overlap coefficient [R, P] over R subsamples, their sizes m [L] of n [L]
    sentences per label, and each latent's selection share [d_sae, L] (stability)."""

    jaccard: np.ndarray
    overlap: np.ndarray
    m: np.ndarray
    n: np.ndarray
    stability: np.ndarray


def subsample_sets(F, design: LabelDesign, n_resamples: int, alpha: float, min_log2: float,
                   rng: np.random.Generator, fraction: float = SUBSAMPLE_FRACTION) -> Subsamples:
    """Association sets recomputed on subsamples without replacement, stratified by label.

    F [S, d_sae]: firing matrix of the sentences the sets are selected on (the train split)."""
    L, d = len(design.labels), F.shape[1]
    pairs = list(combinations(range(L), 2))
    groups = [np.flatnonzero(design.label_of == li) for li in range(L)]
    n = np.array([len(g) for g in groups], dtype=np.float64)
    m = np.array([min(len(g) - 1, max(1, round(fraction * len(g)))) if len(g) > 1 else len(g)
                  for g in groups], dtype=np.float64)
    FT = [F[g].T.tocsr() for g in groups]
    jac, ovl, stab = [], [], np.zeros((d, L))
    for B in _batches(n_resamples, d, L):
        counts = np.empty((B, d, L))
        for li, g in enumerate(groups):
            # m of the label's sentences, each at most once: the m smallest of random keys
            w = np.zeros((B, len(g)))
            if m[li] > 0:
                pick = np.argpartition(rng.random((B, len(g))), int(m[li]) - 1, axis=1)
                np.put_along_axis(w, pick[:, : int(m[li])], 1.0, axis=1)
            counts[:, :, li] = (FT[li] @ w.T).T
        assoc = associated_sets(counts, m, design, alpha, min_log2)
        j, o = pair_overlap(assoc, pairs)
        jac.append(j)
        ovl.append(o)
        stab += assoc.sum(0)
    empty = np.zeros((0, len(pairs)))
    return Subsamples(np.concatenate(jac) if jac else empty,
                      np.concatenate(ovl) if ovl else empty, m, n,
                      stab / max(n_resamples, 1))


def subsample_interval(estimate: float, values: np.ndarray, m: float, n: float,
                       level: float) -> list[float] | None:
    """estimate +- z se, se = sd(values) sqrt(m / (n - m)), clipped to [0, 1]."""
    if len(values) < 2 or n - m <= 0:
        return None
    se = float(np.std(values, ddof=1)) * np.sqrt(m / (n - m))
    z = float(norm.ppf(0.5 + level / 2))
    return [float(max(0.0, estimate - z * se)), float(min(1.0, estimate + z * se))]


# ----------------------------------------------------------------------------- pair p-value


def enrichment_z(counts: np.ndarray, n: np.ndarray, design: LabelDesign) -> np.ndarray:
    """Two-proportion z-score [..., d_sae, L] of each latent in each label against the label's
    baseline (pooled variance); 0 where the latent never fires in either."""
    n = np.asarray(n, dtype=np.float64)
    b, nb = _rates(counts, n, design.base)
    pool = (counts + b) / np.maximum(n + nb, 1)
    se = np.sqrt(pool * (1 - pool) * (1 / np.maximum(n, 1) + 1 / np.maximum(nb, 1)))
    diff = counts / np.maximum(n, 1) - b / np.maximum(nb, 1)
    return np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)


def shared_score(z: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """S [..., P] = sum over latents of min(z_a, z_b)_+ for each pair (a, b)."""
    ia = [a for a, _ in pairs]
    ib = [b for _, b in pairs]
    return np.clip(np.minimum(z[..., ia], z[..., ib]), 0, None).sum(-2)


@dataclass
class PermutationNull:
    """Shared-enrichment scores [R, P] and association-set sizes [R, L] under R permutations."""

    score: np.ndarray
    sizes: np.ndarray


def permutation_null(F, design: LabelDesign, n_perm: int, alpha: float, min_log2: float,
                     rng: np.random.Generator) -> PermutationNull:
    """Labels permuted across the sentences of F: the pair score and the set sizes each time."""
    L, (S, d) = len(design.labels), F.shape
    pairs = list(combinations(range(L), 2))
    n = np.bincount(design.label_of, minlength=L).astype(np.float64)
    FT = F.T.tocsr()
    score, sizes = [], []
    for B in _batches(n_perm, d, L):
        perm = np.stack([rng.permutation(design.label_of) for _ in range(B)])  # [B, S]
        onehot = np.zeros((S, B, L))
        onehot[np.arange(S)[:, None], np.arange(B)[None, :], perm.T] = 1.0
        counts = np.asarray(FT @ onehot.reshape(S, B * L)).reshape(d, B, L).transpose(1, 0, 2)
        score.append(shared_score(enrichment_z(counts, n, design), pairs))
        sizes.append(associated_sets(counts, n, design, alpha, min_log2).sum(1))
    if not score:
        return PermutationNull(np.zeros((0, len(pairs))), np.zeros((0, L)))
    return PermutationNull(np.concatenate(score), np.concatenate(sizes))


def permutation_p(observed: float, null: np.ndarray) -> float | None:
    """(1 + #{null >= observed}) / (1 + R): valid at every R under exchangeable labels."""
    if len(null) == 0:
        return None
    return float((1 + (null >= observed - 1e-12).sum()) / (1 + len(null)))


# ----------------------------------------------------------------------------- p_shared


def _logistic_fit(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fitted probabilities of a lightly ridged logistic regression of y [d] on X [d, p]."""
    if y.all() or not y.any():
        return np.full(len(y), float(y.mean()))

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = X @ beta
        val = float(np.sum(np.logaddexp(0, eta) - y * eta) + 1e-3 * beta @ beta)
        return val, X.T @ (expit(eta) - y) + 2e-3 * beta

    beta = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B").x
    return expit(X @ beta)


def poisson_binomial_sf(p: np.ndarray, x: int) -> float:
    """P(sum of independent Bernoulli(p_j) >= x), by dynamic programming truncated at x."""
    if x <= 0:
        return 1.0
    pmf = np.zeros(x + 1)  # pmf[k] for k < x; pmf[x] holds P(sum >= x)
    pmf[0] = 1.0
    for pj in p:
        top = pmf[x]
        pmf[1:] = pmf[1:] * (1 - pj) + pmf[:-1] * pj
        pmf[0] *= 1 - pj
        pmf[x] += top * pj
    return float(min(1.0, max(0.0, pmf[x])))


def shared_given_rates_p(A: np.ndarray, B: np.ndarray, outside: np.ndarray) -> float | None:
    """P(|A & B| >= observed) if A and B were drawn independently given each latent's firing
    count `outside` the two labels (its shared baseline); None without such sentences.

    A, B [d] bool over latents that fire somewhere; outside [d] counts."""
    if len(A) == 0:
        return None
    t = np.log(np.asarray(outside, dtype=np.float64) + 0.5)
    sd = t.std()
    t = (t - t.mean()) / (sd if sd > 0 else 1.0)
    X = np.stack([np.ones_like(t), t, t * t], axis=1)
    pa, pb = _logistic_fit(X, A.astype(np.float64)), _logistic_fit(X, B.astype(np.float64))
    return poisson_binomial_sf(pa * pb, int((A & B).sum()))
