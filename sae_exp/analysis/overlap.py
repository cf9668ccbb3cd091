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
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import NamedTuple

import numpy as np

from sae_exp.analysis import probes as probe
from sae_exp.analysis.association import (
    Association,
    LabelDesign,
    associate,
    label_counts,
    label_design,
)
from sae_exp.analysis.decoder import unit_rows
from sae_exp.analysis.definitions import NEAR_DUPLICATE_COS
from sae_exp.analysis.firing import Peaks, firing_matrix, firing_thresholds, sentence_peaks
from sae_exp.analysis.uncertainty import (
    PermutationNull,
    Subsamples,
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
    cos = unit_rows(W_dec[only_a]) @ unit_rows(W_dec[only_b]).T
    ia, ib = np.nonzero(cos >= NEAR_DUPLICATE_COS)
    order = np.argsort(-cos[ia, ib])[:MAX_NEAR_DUPLICATES]
    return [[int(only_a[ia[i]]), int(only_b[ib[i]]), round(float(cos[ia[i], ib[i]]), 4)]
            for i in order]


@dataclass
class NaiveOverlap:
    """The notebook's overlap: Jaccard of 'latents ever non-zero in the label'. Misleading,
    kept for comparison. latents_per_label [L]; jaccard, shared [P] over `pairs`."""

    pairs: list[tuple[int, int]]
    latents_per_label: np.ndarray
    jaccard: np.ndarray
    shared: np.ndarray


def naive_overlap(peaks: Peaks, design: LabelDesign, d_sae: int) -> NaiveOverlap:
    L = len(design.labels)
    ever = np.zeros((d_sae, L), dtype=bool)
    ever[peaks.latent, design.label_of[peaks.sentence]] = True
    pairs = list(combinations(range(L), 2))
    shared = np.array([(ever[:, a] & ever[:, b]).sum() for a, b in pairs], dtype=np.int64)
    return NaiveOverlap(pairs, ever.sum(0), pair_overlap(ever, pairs)[0], shared)


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
    per_token = (None if top_indices is None else
                 _token_acts(peaks.sentence[keep], peaks.latent[keep], sent_index, len(sents),
                             top_indices, top_acts, data.tokens))
    for n_ex, i in enumerate(keep):
        s, r, j = int(peaks.sentence[i]), int(peaks.row[i]), int(peaks.latent[i])
        ex = {
            "sentence": s,
            "label": str(sents.labels[s]),
            "subset": str(sents.subsets[s]),
            "split": str(sents.splits[s]),
            "activation": round(float(peaks.value[i]), 5),
            "token_position": int(pos[r]),
            "token": None if data.tokens is None else str(data.tokens[r]),
            "text": None if sents.texts is None else short_text(str(sents.texts[s])),
        }
        if sents.ids is not None:
            ex["sentence_id"] = int(sents.ids[s])
        if per_token is not None:
            ex["token_acts"], ex["tokens"] = per_token[0][n_ex], per_token[1][n_ex]
        out[j].append(ex)
    return out


def _token_acts(sents: np.ndarray, lats: np.ndarray, sentence_index: np.ndarray,
                n_sentences: int, top_indices: np.ndarray, top_acts: np.ndarray,
                tokens: np.ndarray | None) -> tuple[list, list]:
    """For each (sentence, latent) example: the latent's activation on every row of the
    sentence (row order, rounded to 5 places) and the rows' tokens (None without tokens), in
    one gather over all examples instead of a few numpy calls per example."""
    rows_of = _SentenceRows(sentence_index, n_sentences)
    starts, ends = rows_of.offsets[sents], rows_of.offsets[sents + 1]
    lens = ends - starts
    bounds = np.cumsum(lens)[:-1]
    at = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(int(lens.sum()))
    rows = rows_of.order[at]
    hit = np.asarray(top_indices[rows]) == np.repeat(lats, lens)[:, None]
    vals = np.round((np.asarray(top_acts[rows]) * hit).sum(1), 5)
    acts = [v.tolist() for v in np.split(vals, bounds)]
    if tokens is None:
        return acts, [None] * len(sents)
    toks = np.asarray(tokens)[rows].astype(str).tolist()
    cuts = np.r_[0, np.cumsum(lens)]
    return acts, [toks[cuts[e]:cuts[e + 1]] for e in range(len(sents))]


MAX_TEXT = 300  # characters of a sentence a report shows (the model saw at most max_length)


def short_text(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters with a note of the full length: a 5 MB sentence would
    otherwise be copied into every file and table that shows it."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text):,} characters]"


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


@dataclass
class PairResult:
    """The overlap of labels a and b (indices into the labels): Jaccard and overlap
    coefficient of their train-selected association sets, intervals (None without
    subsamples), the shared latents, the shared-enrichment score and its permutation p-value,
    p_shared given firing rates (None with two labels), near-duplicate decoder pairs."""

    a: int
    b: int
    jaccard: float
    jaccard_ci: list[float] | None
    overlap_coefficient: float
    overlap_coefficient_ci: list[float] | None
    shared: np.ndarray
    shared_score: float
    p_value: float | None
    null_score_mean: float | None
    p_shared: float | None
    near_duplicates: list[list]


@dataclass
class Overlap:
    """Everything the analysis measured, as plain arrays (latent x label unless said);
    report.sections turns it into report.json's fields."""

    design: LabelDesign
    assoc: Association  # selected on the train split
    n: np.ndarray  # [L] sentences per label, all splits
    n_rows: np.ndarray  # [L] activation rows per label
    n_train: np.ndarray  # [L] train sentences per label
    n_test: np.ndarray  # [L]
    split_rule: str
    thresholds: np.ndarray  # [d_sae] firing threshold per latent
    density: np.ndarray  # [d_sae] share of rows where the latent is active (> 0)
    fire_density: np.ndarray  # [d_sae] share of rows where it fires (above its threshold)
    active_entries: int
    firing_entries: int
    null: PermutationNull
    subsamples: Subsamples | None  # None when analysis.bootstrap = 0
    pairs: list[PairResult]
    naive: NaiveOverlap
    probes: dict
    examples: list[list[dict]]
    act_max: np.ndarray  # [d_sae] largest activation
    act_hist: np.ndarray  # [d_sae, HIST_BINS] counts of non-zero activations, 0 .. act_max
    baseline_setting: str
    settings: dict
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    """Seconds per analysis step, for the log line and report.json's timings_s."""

    def __init__(self):
        self.t0 = self.t = time.perf_counter()
        self.times: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = now - self.t
        self.t = now


def _split(data: ActivationSet) -> tuple[np.ndarray, np.ndarray]:
    splits = np.asarray(data.sentences.splits).astype(str)
    train = splits == "train"
    if not train.any():
        raise DataError("the data has no train-split sentences: association sets are selected "
                        "on the train split.")
    return splits, train


@dataclass
class _Firing:
    """Which codes fire: per-latent thresholds (taken on train rows only: label-blind, yet
    not fitted on test rows), the active and firing masks [N, k], per-sentence peaks."""

    thresholds: np.ndarray
    active: np.ndarray
    fires: np.ndarray
    peaks: Peaks


def _firing(top_indices, top_acts, sent_idx, train_rows, d_sae, cfg) -> _Firing:
    thr = firing_thresholds(top_indices[train_rows], top_acts[train_rows], d_sae,
                            cfg.fire_fraction, cfg.fire_percentile)
    active = top_acts > 0
    return _Firing(thr, active, active & (top_acts > thr[top_indices]),
                   sentence_peaks(top_indices, top_acts, sent_idx, d_sae))


def _settings(cfg: AnalysisConfig, S: int, N: int, d_sae: int, subs: Subsamples) -> dict:
    return {
        "alpha": cfg.alpha, "min_log2_ratio": cfg.min_log2_ratio, "pseudo_count": 0.5,
        "bootstrap": cfg.bootstrap, "permutations": cfg.permutations,
        "ci_level": cfg.ci_level, "seed": cfg.seed, "probe_k": list(cfg.probe_k),
        "probe_l2": cfg.probe_l2, "n_sentences": S, "n_rows": N, "d_sae": d_sae,
        "subsample_fraction": float(subs.m.sum() / max(subs.n.sum(), 1)),
        "fire_fraction": cfg.fire_fraction, "fire_percentile": cfg.fire_percentile,
    }


def analyze(
    top_indices: np.ndarray,
    top_acts: np.ndarray,
    data: ActivationSet,
    d_sae: int,
    cfg: AnalysisConfig,
    W_dec: np.ndarray | None = None,
) -> Overlap:
    """Association, overlap, probing and per-latent statistics of an SAE's sparse codes.

    top_indices/top_acts [N, k]: codes of every row of `data` in row order; activation 0 marks
    an inactive slot. W_dec [d_sae, d_in] (optional) flags near-duplicate decoder directions.
    Sets are selected on train sentences; probes are scored on test sentences.
    """
    _check_cfg(cfg)
    clock = _Timer()
    top_indices = np.asarray(top_indices, dtype=np.int64)
    top_acts = np.asarray(top_acts, dtype=np.float32)
    sent_idx = np.asarray(data.sentence_index, dtype=np.int64)
    S, N = len(data.sentences), len(top_acts)
    design = label_design(np.asarray(data.sentences.labels), cfg.baseline)
    L = len(design.labels)
    splits, train = _split(data)
    fire = _firing(top_indices, top_acts, sent_idx, train[sent_idx], d_sae, cfg)
    tr = _associate_on_train(fire, design, train, S, d_sae, cfg)
    clock.lap("association")
    w_rows = None if W_dec is None else np.shape(W_dec)[0]
    subs, null, pairs, examples, hists, probes = _beside_probes(
        top_indices, top_acts, data, design, splits, fire, tr, d_sae, cfg, clock,
        W_dec if w_rows == d_sae else None)
    _log_timings(clock, S, d_sae, L)
    n = np.bincount(design.label_of, minlength=L).astype(np.float64)
    warnings = _warnings(design, n, data, cfg) + probes.pop("warnings", [])
    if w_rows is not None and w_rows != d_sae:
        warnings.append(f"W_dec has {w_rows} rows, not d_sae={d_sae}: ignored.")
    count = lambda mask: np.bincount(design.label_of[mask], minlength=L)  # noqa: E731
    return Overlap(
        design=design, assoc=tr.assoc, n=n, n_rows=count(sent_idx), n_train=count(train),
        n_test=count(splits == "test"),
        split_rule=data.sentences.split_rule or "not recorded by the data source",
        thresholds=fire.thresholds,
        density=np.bincount(top_indices[fire.active], minlength=d_sae) / max(N, 1),
        fire_density=np.bincount(top_indices[fire.fires], minlength=d_sae) / max(N, 1),
        active_entries=int(fire.active.sum()), firing_entries=int(fire.fires.sum()),
        null=null, subsamples=subs if cfg.bootstrap else None, pairs=pairs,
        naive=naive_overlap(fire.peaks, design, d_sae), probes=probes, examples=examples,
        act_max=hists[0], act_hist=hists[1],
        baseline_setting=cfg.baseline, settings=_settings(cfg, S, N, d_sae, subs),
        warnings=warnings, timings=clock.times)


def _beside_probes(top_indices, top_acts, data, design, splits, fire, tr, d_sae, cfg, clock,
                   W_dec) -> tuple:
    """Resampling, pairs and per-latent records here, the probes on the other core.

    The probes need only the association sets; they fit (in their own threads) while the
    single-threaded resampling runs: the same results, less wall time."""
    with ThreadPoolExecutor(max_workers=1) as beside:
        probing = beside.submit(_timed, _probe_on_test, top_indices, top_acts, data, design,
                                splits, tr.assoc, d_sae, cfg)
        subs, null = _resample_on_train(tr, cfg, clock)
        pairs = _pairs(design, tr.assoc.associated, tr.counts, tr.n, subs, null, cfg, W_dec)
        clock.lap("pairs")
        examples = top_examples(fire.peaks, data, d_sae, cfg.top_examples, top_indices,
                                top_acts)
        hists = activation_histograms(top_indices, top_acts, d_sae)
        clock.lap("latents")
        probes, clock.times["probe_beside"] = probing.result()
    clock.lap("probe")  # only the wait after the rest: the probes ran beside it
    return subs, null, pairs, examples, hists, probes


class _TrainAssociation(NamedTuple):
    """Association on train sentences, and what resampling it needs."""

    assoc: Association
    F: object  # [train sentences, d_sae] firing matrix (sparse)
    design: LabelDesign  # labels of the train sentences
    counts: np.ndarray  # [L, d_sae] train sentences of each label in which a latent fires
    n: np.ndarray  # [L] train sentences per label


def _associate_on_train(fire: _Firing, design: LabelDesign, train: np.ndarray, S: int,
                        d_sae: int, cfg: AnalysisConfig) -> _TrainAssociation:
    """Association sets from train sentences only."""
    L = len(design.labels)
    F_tr = firing_matrix(fire.peaks, fire.thresholds, S, d_sae)[np.flatnonzero(train)]
    design_tr = LabelDesign(design.labels, design.label_of[train], design.base)
    n_tr = np.bincount(design_tr.label_of, minlength=L).astype(np.float64)
    counts_tr = label_counts(F_tr, design_tr.label_of, L)
    assoc = associate(counts_tr, n_tr, design, cfg.alpha, cfg.min_log2_ratio)
    return _TrainAssociation(assoc, F_tr, design_tr, counts_tr, n_tr)


def _resample_on_train(tr: _TrainAssociation, cfg: AnalysisConfig,
                       clock: _Timer) -> tuple[Subsamples, PermutationNull]:
    """Subsamples and permutation null of the train-split association."""
    rng = np.random.default_rng(cfg.seed)
    subs = subsample_sets(tr.F, tr.design, cfg.bootstrap, cfg.alpha, cfg.min_log2_ratio, rng)
    clock.lap("subsamples")
    null = permutation_null(tr.F, tr.design, cfg.permutations, cfg.alpha, cfg.min_log2_ratio,
                            rng)
    clock.lap("permutations")
    return subs, null


def _probe_on_test(top_indices: np.ndarray, top_acts: np.ndarray, data: ActivationSet,
                   design: LabelDesign, splits: np.ndarray, assoc: Association, d_sae: int,
                   cfg: AnalysisConfig) -> dict:
    """Sparse probes on sentence-pooled codes (and the dense baseline), scored on test."""
    sent_idx, S = np.asarray(data.sentence_index, dtype=np.int64), len(data.sentences)
    return probe.sparse_probing(
        probe.pool_sentences(top_indices, top_acts, sent_idx, S, d_sae), design.labels,
        design.label_of, np.asarray(data.sentences.subsets).astype(str), splits,
        {lab: np.flatnonzero(assoc.specific[:, li]).tolist()
         for li, lab in enumerate(design.labels)},
        list(cfg.probe_k), cfg.probe_l2, dense=probe.pool_dense(data.acts, sent_idx, S),
        threads=max(1, (os.cpu_count() or 1) - 1))  # the resampling holds one core


def _timed(fn, *args):
    """(fn(*args), its wall seconds): the probes' own time, though they run beside the rest."""
    t = time.perf_counter()
    return fn(*args), time.perf_counter() - t


def _log_timings(clock: _Timer, S: int, d_sae: int, L: int) -> None:
    clock.times["total"] = time.perf_counter() - clock.t0
    beside = clock.times.get("probe_beside")
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in clock.times.items() if k != "probe_beside")
    log.info("overlap analysis: %d sentences, %d latents, %d labels in %.1fs (%s%s)", S, d_sae, L,
             clock.times["total"], steps,
             "" if beside is None else f"; the probes took {beside:.1f}s on the other core, "
             "beside subsamples to latents; probe is the wait after those")


def _pairs(design, assoc, counts, n, subs, null, cfg, W_dec) -> list[PairResult]:
    """Per pair of labels: overlap with intervals, shared ids, p-values.

    counts [d_sae, L], n [L]: train-split firing counts and sentences, the ones the sets came
    from."""
    pairs = list(combinations(range(len(design.labels)), 2))
    jac, ovl = pair_overlap(assoc, pairs)
    score = shared_score(enrichment_z(counts, n, design), pairs)
    live = counts.sum(1) > 0
    out = []
    for i, (a, b) in enumerate(pairs):
        A, B = assoc[:, a], assoc[:, b]
        others = [m for m in range(len(design.labels)) if m not in (a, b)]
        m, nn = subs.m[[a, b]].sum(), subs.n[[a, b]].sum()
        ci_j, ci_o = ((subsample_interval(jac[i], subs.jaccard[:, i], m, nn, cfg.ci_level),
                       subsample_interval(ovl[i], subs.overlap[:, i], m, nn, cfg.ci_level))
                      if cfg.bootstrap else (None, None))
        out.append(PairResult(
            a=a, b=b, jaccard=float(jac[i]), jaccard_ci=ci_j,
            overlap_coefficient=float(ovl[i]), overlap_coefficient_ci=ci_o,
            shared=np.flatnonzero(A & B), shared_score=float(score[i]),
            p_value=permutation_p(score[i], null.score[:, i]),
            null_score_mean=float(null.score[:, i].mean()) if len(null.score) else None,
            p_shared=shared_given_rates_p(A[live], B[live], counts[live][:, others].sum(1))
            if others else None,
            near_duplicates=_near_duplicates(W_dec, np.flatnonzero(A & ~B).tolist(),
                                             np.flatnonzero(B & ~A).tolist())))
    return out
