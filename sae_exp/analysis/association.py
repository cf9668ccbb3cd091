"""Association of latents with labels: per-label firing counts, one-sided Fisher exact tests
(the hypergeometric upper tail), Benjamini-Hochberg across latents x labels, and a minimum
log2 rate ratio (+0.5 pseudo-count) so that tiny but "significant" effects do not count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln
from scipy.stats import hypergeom

from sae_exp.errors import ConfigError

CONTROL = "control"
TAIL_TERMS = 16  # pmf terms summed for the cheap lower bound that screens resampled tests


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


@dataclass
class Association:
    """Association statistics, arrays [..., d_sae, L] (latent x label).

    rate / baseline_rate: share of the label's / its baseline's sentences where the latent
    fires; log2_ratio: log2 of their ratio (+0.5 pseudo-count); p: one-sided Fisher p-value;
    q: Benjamini-Hochberg q over all latents x labels; associated: q < alpha and
    log2_ratio >= min_log2_ratio; specific: see `specific_mask`. With `screen`, p (and q) are
    exact only where a test could pass BH; elsewhere p stands in as 1 (same `associated`,
    tested), and `specific` is left all False (the resampling loops do not use it)."""

    rate: np.ndarray
    baseline_rate: np.ndarray
    log2_ratio: np.ndarray
    p: np.ndarray
    q: np.ndarray
    associated: np.ndarray
    specific: np.ndarray


def specific_mask(associated: np.ndarray, counts: np.ndarray, n: np.ndarray,
                  alpha: float) -> np.ndarray:
    """[..., d_sae, L] bool: associated with label l and no other, AND firing in a larger
    share of l's sentences than of every other label's (one-sided Fisher test of l against
    each other label at `alpha`; all must reject, an intersection-union test, so no further
    correction). Without the second part a latent shared by two labels whose second test
    just missed BH (absence of evidence) was called specific to the first."""
    out = associated & (associated.sum(-1, keepdims=True) == 1)
    where = np.nonzero(out)
    if not where[0].size:
        return out
    nn = np.broadcast_to(n, counts.shape)
    head, lab = where[:-1], where[-1]
    a, n_l = counts[where], nn[where]
    keep = np.ones(lab.shape, dtype=bool)
    for m in range(counts.shape[-1]):
        other = lab != m
        c_m, n_m = counts[(*head, np.full_like(lab, m))], nn[(*head, np.full_like(lab, m))]
        p = fisher_greater(a, a + c_m, n_l, n_l + n_m)
        keep &= ~other | (p < alpha)
    out[where] = keep
    return out


def _screened_p(counts, K, n, M, alpha: float) -> np.ndarray:
    """Fisher p-values where the cheap tail bound says BH could reject; 1 elsewhere. BH
    rejects nothing with p > alpha, and such p-values do not change the ranks of the smaller
    ones, so they can stand in as 1.

    A test is a function of its table (a, K, n, M) alone, and resampled tables repeat (n and M
    are fixed per label, a and K small counts), so the bound and the exact tail are computed
    once per distinct table: the same values, a fraction of the work."""
    p = np.ones_like(counts, dtype=np.float64)
    maybe = counts >= 1
    nn, MM = np.broadcast_to(n, counts.shape), np.broadcast_to(M, counts.shape)
    tables = [v[maybe] for v in (counts, K, nn, MM)]
    uniq, inv = _distinct_tables(tables)
    lb = tail_lower_bound(*uniq)
    cand = lb <= alpha
    p_u = np.ones(len(lb))
    if cand.any():
        p_u[cand] = fisher_greater(*(u[cand] for u in uniq))
    p[maybe] = p_u[inv]
    return p


def _distinct_tables(tables: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the columns (a, K, n, M), all whole numbers, and each row's index
    among them: one integer key per row (mixed radix) where it fits in int64."""
    if not len(tables[0]):
        return tables, np.zeros(0, dtype=np.int64)
    cols = [np.asarray(t).astype(np.int64) for t in tables]
    radix = int(max(c.max() for c in cols)) + 1
    if radix ** len(cols) < 2**62:
        key = cols[0]
        for c in cols[1:]:
            key = key * radix + c
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        return [np.asarray(t, dtype=np.float64)[first] for t in tables], inv.ravel()
    uniq, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return [uniq[:, i].astype(np.float64) for i in range(len(cols))], inv.ravel()


def associate(counts: np.ndarray, n: np.ndarray, design: LabelDesign, alpha: float,
              min_log2: float, screen: bool = False) -> Association:
    """Association of latents with labels from per-label firing counts [..., d_sae, L]
    (a leading batch axis: resampled or permuted counts, BH within each batch item).

    screen: compute exact p-values only where a test could pass (resampling loops)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    b, nb = _rates(counts, n, design.base)
    M, K = n + nb, counts + b
    p = _screened_p(counts, K, n, M, alpha) if screen else fisher_greater(counts, K, n, M)
    flat = p.reshape(*p.shape[:-2], -1)
    q = bh_qvalues(flat).reshape(p.shape)
    l2r = _log2_ratio(counts, n, b, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, counts / np.maximum(n, 1), np.nan)
        brate = np.where(nb > 0, b / np.maximum(nb, 1), np.nan)
    associated = (q < alpha) & (l2r >= min_log2)
    # the resampling loops (screen) use only `associated`: skip the pairwise tests there
    specific = associated & False if screen else specific_mask(associated, counts, n, alpha)
    return Association(rate, brate, l2r, p, q, associated, specific)


def associated_sets(counts: np.ndarray, n: np.ndarray, design: LabelDesign, alpha: float,
                    min_log2: float) -> np.ndarray:
    """Only the association sets [..., d_sae, L] (bool), screened: the resampling loops' call."""
    return associate(counts, n, design, alpha, min_log2, screen=True).associated


def label_counts(F: sp.csr_matrix, label_of: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-label firing counts [d_sae, L]: in how many sentences of each label a latent fires."""
    onehot = np.zeros((F.shape[0], n_labels))
    onehot[np.arange(F.shape[0]), label_of] = 1.0
    return np.asarray(F.T @ onehot)
