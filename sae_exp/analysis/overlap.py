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
4. Overlap of every pair of labels, with an interval from subsamples without replacement, a
   label-permutation p-value and a conditional p_shared (uncertainty.py; calibration measured
   by `python -m sae_exp.calibrate`).
5. Selection on train, evaluation on test: association sets (and everything derived from
   them: specific sets, intervals, p-values) use only train-split sentences; every probe
   accuracy is measured on test-split sentences only.

All randomness comes from `np.random.default_rng(cfg.seed)`.
"""

from __future__ import annotations

import logging
import time
from itertools import combinations

import numpy as np

from sae_exp.analysis import probes as probe
from sae_exp.analysis.association import (
    LabelDesign,
    associate,
    label_counts,
    label_design,
)
from sae_exp.analysis.definitions import DEFINITIONS, NEAR_DUPLICATE_COS
from sae_exp.analysis.firing import Peaks, firing_matrix, firing_thresholds, sentence_peaks
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
from sae_exp.config import AnalysisConfig
from sae_exp.data.types import ActivationSet
from sae_exp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_NEAR_DUPLICATES = 20


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


def top_examples(peaks: Peaks, data: ActivationSet, d_sae: int, n_top: int,
                 top_indices: np.ndarray | None = None,
                 top_acts: np.ndarray | None = None) -> list[list[dict]]:
    """For each latent, its `n_top` sentences with the highest peak activation.

    With the codes (`top_indices`/`top_acts` [N, k]) each example also carries the latent's
    activation on every token of the sentence (`token_acts`, row order) and the sentence's
    `tokens` (None when the data has none): the feature browser colours tokens by them."""
    out: list[list[dict]] = [[] for _ in range(d_sae)]
    if n_top <= 0 or len(peaks.latent) == 0:
        return out
    order = np.lexsort((-peaks.value, peaks.latent))
    lat = peaks.latent[order]
    starts = np.r_[0, np.flatnonzero(lat[1:] != lat[:-1]) + 1]
    rank = np.arange(len(lat)) - np.repeat(starts, np.diff(np.r_[starts, len(lat)]))
    keep = order[rank < n_top]
    sents = data.sentences
    sent_index = np.asarray(data.sentence_index)
    pos = _sentence_positions(sent_index)
    rows_of = _SentenceRows(sent_index, len(sents)) if top_indices is not None else None
    for i in keep:
        s, r, j = int(peaks.sentence[i]), int(peaks.row[i]), int(peaks.latent[i])
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
        if rows_of is not None:
            rows = rows_of(s)
            hit = np.asarray(top_indices[rows]) == j
            ex["token_acts"] = np.round((np.asarray(top_acts[rows]) * hit).sum(1), 5).tolist()
            ex["tokens"] = None if data.tokens is None else [str(t) for t in data.tokens[rows]]
        out[j].append(ex)
    return out


class _SentenceRows:
    """The rows of each sentence, in row order (rows of a sentence need not be contiguous)."""

    def __init__(self, sentence_index: np.ndarray, n_sentences: int) -> None:
        self.order = np.argsort(sentence_index, kind="stable")
        self.offsets = np.r_[0, np.cumsum(np.bincount(sentence_index, minlength=n_sentences))]

    def __call__(self, s: int) -> np.ndarray:
        return self.order[self.offsets[s]:self.offsets[s + 1]]


HIST_BINS = 24


def activation_histograms(top_indices: np.ndarray, top_acts: np.ndarray, d_sae: int,
                          bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, counts of its non-zero activations in `bins` equal bins from 0 to its
    maximum: (max [d_sae], counts [d_sae, bins]). The browser draws them as its histogram."""
    active = top_acts > 0
    lat, val = top_indices[active].astype(np.int64), top_acts[active].astype(np.float64)
    vmax = np.zeros(d_sae)
    np.maximum.at(vmax, lat, val)
    b = np.minimum((val / np.maximum(vmax[lat], 1e-30) * bins).astype(np.int64), bins - 1)
    counts = np.bincount(lat * bins + b, minlength=d_sae * bins).reshape(d_sae, bins)
    return vmax, counts


def _round(x, sig: int = 6) -> float | None:
    """`sig` significant digits (p-values of 1e-80 must not round to 0); None for NaN/Inf."""
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.{sig}g}")


def latent_records(stats, design, density, fire_density, thresholds, stability, examples,
                   hists: tuple[np.ndarray, np.ndarray] | None = None) -> list:
    """One dict per latent (features.jsonl): density, per-label rates, p, q, examples and
    (with `hists`) the histogram of its non-zero activations."""
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
            **({} if hists is None else {"act_hist": {
                "max": _round(hists[0][j]), "counts": hists[1][j].tolist()}}),
        })
    return recs


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
        out.append("analysis.bootstrap=0: no intervals.")
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

    splits = np.asarray(data.sentences.splits).astype(str)
    train = splits == "train"
    if not train.any():
        raise DataError("the data has no train-split sentences: association sets are selected "
                        "on the train split.")
    train_rows = train[sent_idx]
    # thresholds are label-blind, but still taken on train rows only
    thr = firing_thresholds(top_indices[train_rows], top_acts[train_rows], d_sae,
                            cfg.fire_fraction, cfg.fire_percentile)
    active = top_acts > 0
    density = np.bincount(top_indices[active], minlength=d_sae) / max(N, 1)
    fires = active & (top_acts > thr[top_indices])
    fire_density = np.bincount(top_indices[fires], minlength=d_sae) / max(N, 1)
    peaks = sentence_peaks(top_indices, top_acts, sent_idx, d_sae)
    F = firing_matrix(peaks, thr, S, d_sae)
    F_tr = F[np.flatnonzero(train)]
    design_tr = LabelDesign(design.labels, design.label_of[train], design.base)
    n = np.bincount(design.label_of, minlength=L).astype(np.float64)
    n_tr = np.bincount(design_tr.label_of, minlength=L).astype(np.float64)
    counts_tr = label_counts(F_tr, design_tr.label_of, L)
    stats = associate(counts_tr, n_tr, design, cfg)
    timings["association"] = time.perf_counter() - t0

    t = time.perf_counter()
    subs = subsample_sets(F_tr, design_tr, cfg.bootstrap, cfg.alpha, cfg.min_log2_ratio, rng)
    timings["subsamples"] = time.perf_counter() - t
    t = time.perf_counter()
    null = permutation_null(F_tr, design_tr, cfg.permutations, cfg.alpha, cfg.min_log2_ratio,
                            rng)
    timings["permutations"] = time.perf_counter() - t

    assoc = stats["associated"]
    categories = _categories(design, assoc, n, sent_idx, data, null.sizes)
    t = time.perf_counter()
    pairs = _pairs(design, assoc, counts_tr, n_tr, subs, null, cfg, W_dec, d_sae)
    timings["pairs"] = time.perf_counter() - t

    t = time.perf_counter()
    pooled = probe.pool_sentences(top_indices, top_acts, sent_idx, S, d_sae)
    dense = probe.pool_dense(data.acts, sent_idx, S)
    probes = probe.sparse_probing(
        pooled, design.labels, design.label_of, np.asarray(data.sentences.subsets).astype(str),
        splits, {lab: categories[lab]["specific"] for lab in labels}, list(cfg.probe_k),
        cfg.probe_l2, dense=dense,
    )
    timings["probe"] = time.perf_counter() - t

    t = time.perf_counter()
    examples = top_examples(peaks, data, d_sae, cfg.top_examples, top_indices, top_acts)
    latents = latent_records(stats, design, density, fire_density, thr,
                             subs.stability if cfg.bootstrap else None, examples,
                             activation_histograms(top_indices, top_acts, d_sae))
    timings["latents"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    log.info("overlap analysis: %d sentences, %d latents, %d labels in %.1fs (%s)", S, d_sae, L,
             timings["total"], ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    warnings = _warnings(design, n, data, cfg) + probes.pop("warnings", [])
    if W_dec is not None and np.shape(W_dec)[0] != d_sae:
        warnings.append(f"W_dec has {np.shape(W_dec)[0]} rows, not d_sae={d_sae}: ignored.")
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
            "subsample_fraction": float(subs.m.sum() / max(subs.n.sum(), 1)),
        },
        "split": {
            "n_train_sentences": int(train.sum()),
            "n_test_sentences": int((splits == "test").sum()),
            "rule": data.sentences.split_rule or "not recorded by the data source",
            "use": ("association sets (features, specific), their intervals and p-values: train "
                    "sentences only; every probe accuracy: test sentences only"),
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
            "n_test_sentences": int(((design.label_of == li) & ~is_train).sum()),
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


def _pairs(design, assoc, counts, n, subs, null, cfg, W_dec, d_sae) -> dict:
    """Per pair of labels: Jaccard and overlap coefficient with intervals, shared ids, p-values.

    counts [d_sae, L], n [L]: train-split firing counts and sentences, the ones the sets came
    from."""
    pairs = list(combinations(range(len(design.labels)), 2))
    jac, ovl = pair_overlap(assoc, pairs)
    score = shared_score(enrichment_z(counts, n, design), pairs)
    live = counts.sum(1) > 0
    if W_dec is not None and np.shape(W_dec)[0] != d_sae:
        W_dec = None
    out = {}
    for i, (a, b) in enumerate(pairs):
        A, B = assoc[:, a], assoc[:, b]
        shared = np.flatnonzero(A & B)
        others = [m for m in range(len(design.labels)) if m not in (a, b)]
        p_shared = None
        if others:
            p_shared = shared_given_rates_p(A[live], B[live], counts[live][:, others].sum(1))
        m, nn = subs.m[[a, b]].sum(), subs.n[[a, b]].sum()
        out[_pair_key(design.labels, a, b)] = {
            "jaccard": float(jac[i]),
            "jaccard_ci": subsample_interval(jac[i], subs.jaccard[:, i], m, nn, cfg.ci_level)
            if cfg.bootstrap else None,
            "overlap_coefficient": float(ovl[i]),
            "overlap_coefficient_ci": subsample_interval(ovl[i], subs.overlap[:, i], m, nn,
                                                         cfg.ci_level)
            if cfg.bootstrap else None,
            "shared": shared.tolist(),
            "n_shared": int(len(shared)),
            "n_features": {design.labels[a]: int(A.sum()), design.labels[b]: int(B.sum())},
            "shared_score": _round(score[i]),
            "p_value": permutation_p(score[i], null.score[:, i]),
            "null_shared_score_mean": _round(null.score[:, i].mean(), 4)
            if len(null.score) else None,
            "p_shared": _round(p_shared) if p_shared is not None else None,
            "near_duplicates": _near_duplicates(
                W_dec, np.flatnonzero(A & ~B).tolist(), np.flatnonzero(B & ~A).tolist()),
        }
    return out
