"""Which latents survive a reseed, and how much a label-pair overlap moves between seeds.

SAEs that differ only in their seed learn different dictionaries (Paulo & Belrose 2025, arXiv
2501.16615: ~30% of latents shared at scale), so one seed's overlap can be a property of the
seed. This module works on plain values (decoder matrices and report dicts):

- `match_pair`: one-to-one matching of two decoders' rows by cosine (Hungarian algorithm,
  scipy's `linear_sum_assignment`, maximising the summed cosine).
- `match_all`: the matching of every pair of seeds, and per seed which of its latents are
  matched above `threshold` in each other seed.
- `consensus`: latents matched above `threshold` in at least `min_seeds` of the n seeds
  (counting their own), per seed, with the latent ids each other seed matched them to.
- `overlap_across_seeds`: every label pair's Jaccard and overlap coefficient per seed, with
  mean, sample standard deviation and range; optionally restricted to consensus latents.
- `specific_recurrence`: per label and seed, in how many seeds each specific latent was found
  (matched above `threshold` to a latent that is specific to the same label there).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import linear_sum_assignment

from sae_exp.analysis.decoder import unit_rows

MATCH_LEVELS = (0.7, 0.9)  # the matched-cosine levels whose fractions are reported


def match_pair(W_a: np.ndarray, W_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match rows of W_a [d_a, d_in] to rows of W_b [d_b, d_in] one-to-one by cosine.

    Returns (partner [d_a] int: the matched row of W_b, -1 when d_a > d_b leaves a row
    unmatched; cos [d_a] float: the matched cosine, nan where unmatched)."""
    cos = unit_rows(W_a) @ unit_rows(W_b).T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    partner = np.full(len(cos), -1, dtype=np.int64)
    matched = np.full(len(cos), np.nan)
    partner[rows], matched[rows] = cols, cos[rows, cols]
    return partner, matched


@dataclass
class Matching:
    """Pairwise matchings of n decoders.

    partner[i][j] [d_i]: row of decoder j matched to each row of decoder i (-1: none);
    cos[i][j] [d_i]: its cosine (nan: none); both empty for i == j."""

    partner: list[list[np.ndarray]]
    cos: list[list[np.ndarray]]
    threshold: float
    sizes: list[int]  # d_sae of each decoder

    @property
    def n(self) -> int:
        return len(self.partner)

    def found(self, i: int, j: int) -> np.ndarray:
        """[d_i] bool: the latent of seed i has a partner in seed j with cosine > threshold."""
        if i == j:
            return np.ones(self.sizes[i], dtype=bool)
        c = self.cos[i][j]
        return np.nan_to_num(c, nan=-1.0) > self.threshold


def match_all(decoders: list[np.ndarray], threshold: float = 0.7) -> Matching:
    """Hungarian matching of every pair of decoders (each unordered pair solved once)."""
    n = len(decoders)
    partner = [[np.zeros(0, np.int64) for _ in range(n)] for _ in range(n)]
    cos = [[np.zeros(0) for _ in range(n)] for _ in range(n)]
    for i, j in combinations(range(n), 2):
        p_ij, c_ij = match_pair(decoders[i], decoders[j])
        partner[i][j], cos[i][j] = p_ij, c_ij
        back = np.full(len(decoders[j]), -1, dtype=np.int64)
        back_cos = np.full(len(decoders[j]), np.nan)
        ok = p_ij >= 0
        back[p_ij[ok]], back_cos[p_ij[ok]] = np.flatnonzero(ok), c_ij[ok]
        partner[j][i], cos[j][i] = back, back_cos
    return Matching(partner, cos, threshold, [len(W) for W in decoders])


def pair_fractions(m: Matching, names: list[str]) -> list[dict]:
    """Per pair of seeds: share of matched latents with cosine above each MATCH_LEVELS level,
    over min(d_i, d_j) matched pairs, and the median matched cosine."""
    out = []
    for i, j in combinations(range(m.n), 2):
        c = m.cos[i][j][~np.isnan(m.cos[i][j])]
        row = {"a": names[i], "b": names[j], "n_matched": int(len(c)),
               "median_cos": float(np.median(c)) if len(c) else None}
        for level in MATCH_LEVELS:
            row[f"frac_above_{level}"] = float((c > level).mean()) if len(c) else None
        out.append(row)
    return out


def consensus(m: Matching, names: list[str], min_seeds: int) -> list[dict]:
    """Per seed: its latents found (cos > threshold) in at least `min_seeds` seeds, itself
    included, each with the latent id it was matched to in every seed that has it."""
    per_seed = []
    for i in range(m.n):
        hits = np.stack([m.found(i, j) for j in range(m.n)])  # [n, d_i]
        count = hits.sum(0)
        ids = np.flatnonzero(count >= min_seeds)
        latents = []
        for lat in ids:
            members = {names[j]: int(lat) if j == i else int(m.partner[i][j][lat])
                       for j in range(m.n) if hits[j, lat]}
            latents.append({"latent": int(lat), "n_seeds": int(count[lat]), "members": members})
        per_seed.append({"seed_run": names[i], "n_latents": int(len(count)),
                         "n_consensus": int(len(ids)), "mask": count >= min_seeds,
                         "latents": latents})
    return per_seed


def _set_overlap(a: set[int], b: set[int]) -> tuple[float | None, float | None]:
    union, small = len(a | b), min(len(a), len(b))
    inter = len(a & b)
    return (inter / union if union else None), (inter / small if small else None)


def spread(values: list[float | None]) -> dict:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"values": values, "n": int(len(v)),
            "mean": float(v.mean()) if len(v) else None,
            "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()) if len(v) else None,
            "max": float(v.max()) if len(v) else None}


def overlap_across_seeds(reports: list[dict], masks: list[np.ndarray] | None = None) -> dict:
    """Per label pair: Jaccard and overlap coefficient of the labels' `features` sets in each
    seed, with mean, sd (ddof 1) and range. With `masks` ([d_sae] bool per seed) only the
    latents where the mask is True count (the consensus-only overlap)."""
    pairs = sorted({p for r in reports for p in (r.get("pairs") or {})})
    out = {}
    for key in pairs:
        a, b = key.split("|", 1)
        jac, ovl = [], []
        for s, rep in enumerate(reports):
            cats = rep.get("categories") or {}
            if a not in cats or b not in cats:
                jac.append(None)
                ovl.append(None)
                continue
            keep = None if masks is None else masks[s]
            A = {j for j in cats[a]["features"] if keep is None or keep[j]}
            B = {j for j in cats[b]["features"] if keep is None or keep[j]}
            ja, ov = _set_overlap(A, B)
            jac.append(ja)
            ovl.append(ov)
        out[key] = {"jaccard": spread(jac), "overlap_coefficient": spread(ovl)}
    return out


def specific_recurrence(m: Matching, reports: list[dict], names: list[str],
                        min_seeds: int) -> dict:
    """Per label: for each seed, its specific latents and in how many seeds each was found
    (itself included): matched above threshold to a latent specific to the same label there."""
    labels = sorted({lab for r in reports for lab in (r.get("categories") or {})})
    out = {}
    for lab in labels:
        spec = [set((r.get("categories") or {}).get(lab, {}).get("specific", [])) for r in reports]
        per_seed, shares = [], []
        for i in range(m.n):
            others = [(j, m.found(i, j), m.partner[i][j]) for j in range(m.n) if j != i]
            found = {int(lat): 1 + sum(1 for j, hit, part in others
                                       if hit[lat] and int(part[lat]) in spec[j])
                     for lat in sorted(spec[i])}
            recurring = sum(v >= min_seeds for v in found.values())
            shares.append(recurring / len(found) if found else None)
            per_seed.append({"seed_run": names[i], "n_specific": len(found),
                             "n_recurring": int(recurring), "found_in": found})
        out[lab] = {"per_seed": per_seed, "recurring_share": spread(shares),
                    "n_specific": spread([float(len(s)) for s in spec])}
    return out


def matched_cosines(m: Matching) -> dict[str, np.ndarray]:
    """Matched cosines of every pair of seeds (for the histogram), keyed "i-j"."""
    return {f"{i}-{j}": m.cos[i][j][~np.isnan(m.cos[i][j])] for i, j in combinations(range(m.n), 2)}


def chance_pair(d_a: int, d_b: int, d_in: int, seed: int = 0) -> dict:
    """The same statistics for two random Gaussian dictionaries of the given shapes: what the
    matching finds when the seeds share nothing (the matched cosine's chance level)."""
    rng = np.random.default_rng(seed)
    m = match_all([rng.standard_normal((d_a, d_in)), rng.standard_normal((d_b, d_in))])
    (row,) = pair_fractions(m, ["random", "random"])
    return row
