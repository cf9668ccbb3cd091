"""Calibration studies of the overlap statistics on planted sentence x latent firing data.

A planted population gives every latent a firing rate per label (sentence level, latents
independent), so the truth is known and fresh data sets are cheap:

- `coverage_study`: does the nominal interval of uncertainty.py cover its quantity, the
  expected Jaccard of the sets the selection rule gives at this train size (estimated here by
  `n_truth` fresh data sets per population)? The planted Jaccard is reported beside it. A
  percentile bootstrap with replacement (the previous method) is scored on the same data.
- `null_pvalue_study`: labels shuffled; is the pair p-value uniform (share below 0.05 near
  0.05) and are association sets near empty?
- `shared_study`: a and b pick latents independently, rare latents more often (as measured on
  the default run); is p_shared uniform? With planted shared latents, is it small?

Every study uses the analysis's own functions (association, subsamples, permutations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sae_exp.analysis.association import LabelDesign, associated_sets, label_counts, label_design
from sae_exp.analysis.uncertainty import (
    enrichment_z,
    pair_overlap,
    permutation_null,
    permutation_p,
    shared_given_rates_p,
    shared_score,
    subsample_interval,
    subsample_sets,
)

LABELS = ("a", "b", "control")
PAIRS = [(0, 1), (0, 2), (1, 2)]  # label indices in sorted order: a, b, control


@dataclass
class Population:
    """Firing rates [3, d] of labels a, b, control and the planted sets of a and b."""

    rates: np.ndarray
    A: np.ndarray
    B: np.ndarray

    @property
    def jaccard(self) -> float:
        u = (self.A | self.B).sum()
        return float((self.A & self.B).sum() / u) if u else 0.0


def graded_population(rng: np.random.Generator, d: int = 600, n_a: int = 30, n_b: int = 30,
                      n_shared: int = 10, effect: tuple[float, float] = (2.0, 8.0),
                      rate: tuple[float, float] = (0.003, 0.15),
                      rate_driven: bool = False) -> Population:
    """Control rates log-uniform in `rate`; planted latents fire `effect`-fold more (log-uniform,
    so some are near the detection limit) in their labels. rate_driven: a and b pick their own
    latents independently with probability ~ 1 / control rate (n_a, n_b are then expected
    counts), and n_shared more latents are planted in both."""
    rc = np.exp(rng.uniform(np.log(rate[0]), np.log(rate[1]), d))
    if rate_driven:
        w = 1.0 / rc
        A = rng.random(d) < np.minimum(1, w / w.sum() * n_a)
        B = rng.random(d) < np.minimum(1, w / w.sum() * n_b)
        free = np.flatnonzero(~A & ~B)
        both = rng.choice(free, size=min(n_shared, len(free)), replace=False)
    else:
        ids = rng.permutation(d)
        both = ids[:n_shared]
        A = np.zeros(d, bool)
        B = np.zeros(d, bool)
        A[ids[n_shared:n_shared + n_a]] = True
        B[ids[n_shared + n_a:n_shared + n_a + n_b]] = True
    A[both] = B[both] = True
    rates = np.tile(rc, (3, 1))
    lo, hi = np.log(effect[0]), np.log(effect[1])
    rates[0, A] *= np.exp(rng.uniform(lo, hi, A.sum()))
    rates[1, B] *= np.exp(rng.uniform(lo, hi, B.sum()))
    return Population(np.minimum(rates, 0.9), A, B)


def draw(pop: Population, n: int, rng: np.random.Generator) -> tuple[sp.csr_matrix, np.ndarray]:
    """One data set: firing matrix [3 n, d] (CSR) and label index per sentence (a, b, control)."""
    label_of = np.repeat(np.arange(3), n)
    F = rng.random((3 * n, pop.rates.shape[1])) < pop.rates[label_of]
    return sp.csr_matrix(F.astype(np.float64)), label_of


def _design(label_of: np.ndarray) -> LabelDesign:
    d = label_design(np.asarray(LABELS)[label_of], "auto")
    return d


def expected_overlap(pop: Population, n: int, n_truth: int, alpha: float, min_log2: float,
                     rng: np.random.Generator) -> tuple[float, float]:
    """Mean Jaccard and overlap coefficient of a|b over `n_truth` fresh data sets of size n.

    Latents are independent, so a fresh data set's counts are binomial draws."""
    design = _design(np.repeat(np.arange(3), 2))
    counts = rng.binomial(n, pop.rates.T[None].repeat(n_truth, 0)).astype(np.float64)
    assoc = associated_sets(counts, np.full(3, float(n)), design, alpha, min_log2)
    j, o = pair_overlap(assoc, PAIRS[:1])
    return float(j.mean()), float(o.mean())


def _percentile_bootstrap(F, design, R, alpha, min_log2, level, rng) -> list[float]:
    """The previous interval: percentile bootstrap, sentences resampled with replacement."""
    L, n = 3, np.bincount(design.label_of, minlength=3).astype(np.float64)
    counts = np.empty((R, F.shape[1], L))
    for li in range(L):
        g = np.flatnonzero(design.label_of == li)
        w = np.stack([np.bincount(rng.integers(0, len(g), len(g)), minlength=len(g))
                      for _ in range(R)]).astype(np.float64)
        counts[:, :, li] = (F[g].T @ w.T).T
    j = pair_overlap(associated_sets(counts, n, design, alpha, min_log2), PAIRS[:1])[0][:, 0]
    return [float(v) for v in np.quantile(j, [(1 - level) / 2, (1 + level) / 2])]


def coverage_study(n_sets: int = 200, n: int = 300, resamples: int = 200, n_truth: int = 200,
                   alpha: float = 0.01, min_log2: float = 1.0, level: float = 0.95,
                   seed: int = 0, progress: Callable | None = None, **population) -> dict:
    """Coverage of the a|b Jaccard and overlap-coefficient intervals over planted data sets."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in (progress or iter)(range(n_sets)):
        pop = graded_population(rng, **population)
        theta_j, theta_o = expected_overlap(pop, n, n_truth, alpha, min_log2, rng)
        F, label_of = draw(pop, n, rng)
        design = _design(label_of)
        counts = label_counts(F, label_of, 3)
        assoc = associated_sets(counts[None], np.full(3, float(n)), design, alpha, min_log2)[0]
        j, o = (v[0] for v in pair_overlap(assoc, PAIRS[:1]))
        subs = subsample_sets(F, design, resamples, alpha, min_log2, rng)
        m, nn = subs.m[:2].sum(), subs.n[:2].sum()
        ci_j = subsample_interval(j, subs.jaccard[:, 0], m, nn, level)
        ci_o = subsample_interval(o, subs.overlap[:, 0], m, nn, level)
        boot = _percentile_bootstrap(F, design, resamples, alpha, min_log2, level, rng)
        rows.append([theta_j, theta_o, pop.jaccard, j, o, *ci_j, *ci_o, *boot])
    r = np.array(rows)
    inside = lambda t, lo, hi: (r[:, lo] - 1e-9 <= r[:, t]) & (r[:, t] <= r[:, hi] + 1e-9)  # noqa: E731
    return {
        "n_sets": n_sets, "n_per_label": n, "resamples": resamples, "n_truth": n_truth,
        "level": level, "population": population,
        "coverage_jaccard": float(inside(0, 5, 6).mean()),
        "coverage_overlap_coefficient": float(inside(1, 7, 8).mean()),
        "coverage_planted_jaccard": float(inside(2, 5, 6).mean()),
        "coverage_bootstrap_percentile": float(inside(0, 9, 10).mean()),
        "mean_width": float((r[:, 6] - r[:, 5]).mean()),
        "mean_expected_jaccard": float(r[:, 0].mean()),
        "mean_planted_jaccard": float(r[:, 2].mean()),
        "rows": r.tolist(),
        "columns": ["expected_jaccard", "expected_overlap", "planted_jaccard", "jaccard",
                    "overlap", "jaccard_lo", "jaccard_hi", "overlap_lo", "overlap_hi",
                    "bootstrap_lo", "bootstrap_hi"],
    }


def null_pvalue_study(n_sets: int = 200, n: int = 300, permutations: int = 199,
                      alpha: float = 0.01, min_log2: float = 1.0, seed: int = 1,
                      progress: Callable | None = None, **population) -> dict:
    """Labels shuffled across sentences: the a|b p-value and the association-set sizes."""
    rng = np.random.default_rng(seed)
    p, sizes = [], []
    for _ in (progress or iter)(range(n_sets)):
        pop = graded_population(rng, **population)
        F, label_of = draw(pop, n, rng)
        label_of = rng.permutation(label_of)
        design = _design(label_of)
        counts = label_counts(F, label_of, 3)
        nn = np.full(3, float(n))
        score = shared_score(enrichment_z(counts, nn, design), PAIRS[:1])[0]
        null = permutation_null(F, design, permutations, alpha, min_log2, rng)
        p.append(permutation_p(score, null.score[:, 0]))
        sizes.append(int(associated_sets(counts[None], nn, design, alpha, min_log2)[0].sum()))
    p = np.array(p)
    return {"n_sets": n_sets, "permutations": permutations, "p_values": p.tolist(),
            "share_below_0.05": float((p <= 0.05).mean()),
            "share_below_0.01": float((p <= 0.01).mean()),
            "mean_associated_latents": float(np.mean(sizes))}


def shared_study(n_sets: int = 200, n: int = 300, n_shared: int = 0, alpha: float = 0.01,
                 min_log2: float = 1.0, seed: int = 2, progress: Callable | None = None,
                 **population) -> dict:
    """p_shared (conditional) and the old hypergeometric p_shared when rare latents are
    likelier to be selected; n_shared = 0 is the null, > 0 plants latents shared by a and b."""
    from scipy.stats import hypergeom

    rng = np.random.default_rng(seed)
    defaults = dict(d=1000, n_a=150, n_b=150, effect=(3.0, 12.0), rate=(0.002, 0.2))
    defaults.update(population)
    cond, naive = [], []
    for _ in (progress or iter)(range(n_sets)):
        pop = graded_population(rng, n_shared=n_shared, rate_driven=True, **defaults)
        F, label_of = draw(pop, n, rng)
        design = _design(label_of)
        counts = label_counts(F, label_of, 3)
        assoc = associated_sets(counts[None], np.full(3, float(n)), design, alpha, min_log2)[0]
        live = counts.sum(1) > 0
        A, B = assoc[live, 0], assoc[live, 1]
        cond.append(shared_given_rates_p(A, B, counts[live, 2]))
        x = int((A & B).sum())
        naive.append(float(hypergeom.sf(x - 1, live.sum(), A.sum(), B.sum())) if x else 1.0)
    cond, naive = np.array(cond), np.array(naive)
    return {"n_sets": n_sets, "n_shared": n_shared, "p_values": cond.tolist(),
            "share_below_0.05": float((cond <= 0.05).mean()),
            "share_below_0.05_hypergeometric": float((naive <= 0.05).mean()),
            "median_p": float(np.median(cond))}
