"""The firing rule: when a latent counts as firing on a token and in a sentence.

With top-k every token has exactly k active latents; when k exceeds the true number of
features per token the spare slots carry weak activations that "fire" in almost every
sentence. A latent therefore fires on a row only when its activation exceeds `fire_fraction` x
the `fire_percentile` percentile of *its own non-zero* activations (DESIGN.md, measured on
planted data). `fire_fraction = 0` is the naive rule (any activation > 0). A latent fires in a
sentence if it fires on any of its rows; training-free consumers (`inspect`) apply the same
thresholds, saved per latent in features.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def firing_thresholds(
    top_indices: np.ndarray, top_acts: np.ndarray, d_sae: int, fraction: float, percentile: float
) -> np.ndarray:
    """Per-latent threshold [d_sae]: fraction x percentile of the latent's non-zero activations.

    Taken over non-zero values only, because a rare latent is zero on ~98% of rows: a
    percentile over all rows would sit among the weak spare-slot firings (DESIGN.md).
    Linear interpolation, as np.percentile. Latents never active get 0 (they never fire).
    """
    active = top_acts > 0
    # sort by (latent, value) as one int64 key: a positive float32's bits order like the
    # float, so latent << 32 | bits is exact (5x faster than a lexsort of the pairs)
    bits = top_acts[active].astype(np.float32).view(np.uint32).astype(np.int64)
    key = np.sort((top_indices[active].astype(np.int64) << 32) | bits)
    lat = key >> 32
    val = (key & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)
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
    if not len(key):
        return Peaks(sent, lat, val, rows.astype(np.int64))
    # group by (sentence, latent) with one stable integer sort (rows come sorted by sentence,
    # so it is mostly runs; 4x faster than a lexsort on (value, key)), then per group the
    # maximum and, among equal maxima, the last row
    order = np.argsort(key, kind="stable")
    ks, vs = key[order], val[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    gmax = np.maximum.reduceat(vs, starts)
    is_max = vs == np.repeat(gmax, np.diff(np.r_[starts, len(ks)]))
    pick = order[np.maximum.reduceat(np.where(is_max, np.arange(len(ks)), -1), starts)]
    return Peaks(sent[pick], lat[pick], val[pick], rows[pick].astype(np.int64))


def firing_matrix(peaks: Peaks, thresholds: np.ndarray, n_sentences: int, d_sae: int):
    """Sentence x latent firing matrix [S, d_sae] as float64 CSR with 1.0 where it fires."""
    fires = peaks.value > thresholds[peaks.latent]
    s, j = peaks.sentence[fires], peaks.latent[fires]
    return sp.csr_matrix((np.ones(len(s)), (s, j)), shape=(n_sentences, d_sae))
