"""report.json's overlap sections from the analysis's typed result (analysis.overlap.Overlap).

The statistics are computed in sae_exp.analysis; here they are only named, rounded and laid out
as DESIGN.md's report fields (categories, pairs, latents, ...)."""

from __future__ import annotations

import numpy as np

from sae_exp.analysis.definitions import DEFINITIONS
from sae_exp.analysis.overlap import Overlap

THRESHOLD_KEYS = ("fire_fraction", "fire_percentile")  # reported under "thresholds"


def rounded(x, sig: int = 6) -> float | None:
    """`sig` significant digits (p-values of 1e-80 must not round to 0); None for NaN/Inf."""
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.{sig}g}")


def pair_key(labels: list[str], a: int, b: int) -> str:
    return "|".join(sorted([labels[a], labels[b]]))


def overlap_report(ov: Overlap) -> dict:
    """The report.json fields the overlap analysis fills (every number named in DEFINITIONS)."""
    settings = {k: v for k, v in ov.settings.items() if k not in THRESHOLD_KEYS}
    return {
        "categories": categories(ov),
        "pairs": pairs(ov),
        "naive_overlap": naive_overlap(ov),
        "probe": ov.probes,
        "latents": latent_records(ov),
        "baseline": baseline_summary(ov),
        "thresholds": threshold_summary(ov),
        "settings": settings,
        "split": {
            "n_train_sentences": int(ov.n_train.sum()),
            "n_test_sentences": int(ov.n_test.sum()),
            "rule": ov.split_rule,
            "use": ("association sets (features, specific), their intervals and p-values: train "
                    "sentences only; every probe accuracy: test sentences only"),
        },
        "timings_s": {k: round(v, 3) for k, v in ov.timings.items()},
        "warnings": list(ov.warnings),
        "definitions": dict(DEFINITIONS),
    }


def categories(ov: Overlap) -> dict:
    """Per label: sizes, baseline, associated and specific latent ids, null false positives."""
    assoc, specific, sizes = ov.assoc.associated, ov.assoc.specific, ov.null.sizes
    return {
        lab: {
            "n_sentences": int(ov.n[li]),
            "n_rows": int(ov.n_rows[li]),
            "n_train_sentences": int(ov.n_train[li]),
            "n_test_sentences": int(ov.n_test[li]),
            "baseline": ov.design.baseline_names(li),
            "features": np.flatnonzero(assoc[:, li]).tolist(),
            "specific": np.flatnonzero(specific[:, li]).tolist(),
            "n_features": int(assoc[:, li].sum()),
            "n_specific": int(specific[:, li].sum()),
            "null_features": rounded(sizes[:, li].mean(), 3) if len(sizes) else None,
        }
        for li, lab in enumerate(ov.design.labels)
    }


def pairs(ov: Overlap) -> dict:
    labels, assoc = ov.design.labels, ov.assoc.associated
    return {
        pair_key(labels, p.a, p.b): {
            "jaccard": p.jaccard,
            "jaccard_ci": p.jaccard_ci,
            "overlap_coefficient": p.overlap_coefficient,
            "overlap_coefficient_ci": p.overlap_coefficient_ci,
            "shared": p.shared.tolist(),
            "n_shared": int(len(p.shared)),
            "n_features": {labels[p.a]: int(assoc[:, p.a].sum()),
                           labels[p.b]: int(assoc[:, p.b].sum())},
            "shared_score": rounded(p.shared_score),
            "p_value": p.p_value,
            "null_shared_score_mean": None if p.null_score_mean is None
            else rounded(p.null_score_mean, 4),
            "p_shared": None if p.p_shared is None else rounded(p.p_shared),
            "near_duplicates": p.near_duplicates,
        }
        for p in ov.pairs
    }


def naive_overlap(ov: Overlap) -> dict:
    nv, labels = ov.naive, ov.design.labels
    return {
        "note": "MISLEADING, kept for comparison with the notebook: "
        + DEFINITIONS["naive_jaccard"],
        "latents_per_label": {lab: int(nv.latents_per_label[li]) for li, lab in enumerate(labels)},
        "pairs": {pair_key(labels, a, b): {"jaccard": float(nv.jaccard[i]),
                                           "shared": int(nv.shared[i])}
                  for i, (a, b) in enumerate(nv.pairs)},
    }


def latent_records(ov: Overlap) -> list[dict]:
    """One dict per latent (features.jsonl): density, per-label rates, p, q, examples."""
    labels, st = ov.design.labels, ov.assoc
    stability = None if ov.subsamples is None else ov.subsamples.stability
    recs = []
    for j in range(len(ov.density)):
        per = {k: {lab: rounded(getattr(st, k)[j, li]) for li, lab in enumerate(labels)}
               for k in ("rate", "baseline_rate", "log2_ratio", "p", "q")}
        associated = [lab for li, lab in enumerate(labels) if st.associated[j, li]]
        recs.append({
            "id": j,
            "density": rounded(ov.density[j]),
            "fire_density": rounded(ov.fire_density[j]),
            "threshold": float(ov.thresholds[j]),  # full precision: inspect re-applies it
            **per,
            "stability": None if stability is None else
            {lab: rounded(stability[j, li], 4) for li, lab in enumerate(labels)},
            "associated": associated,
            "specific_to": next((lab for li, lab in enumerate(labels)
                                 if st.specific[j, li]), None),
            "top_examples": ov.examples[j],
            "act_hist": {"max": rounded(ov.act_max[j]), "counts": ov.act_hist[j].tolist()},
        })
    return recs


def baseline_summary(ov: Overlap) -> dict:
    design = ov.design
    per = {lab: design.baseline_names(li) for li, lab in enumerate(design.labels)}
    refs = {tuple(v) for v in per.values() if len(v) == 1}
    if len(refs) == 1 and len(design.labels) > 2:
        ref = next(iter(refs))[0]
        text = f"each label is compared with {ref!r}; {ref!r} itself with all other labels"
    else:
        text = "each label is compared with all other labels"
    return {"setting": ov.baseline_setting, "per_label": per, "description": text}


def threshold_summary(ov: Overlap) -> dict:
    live = ov.density > 0
    return {
        "rule": DEFINITIONS["fires"],
        "fire_fraction": ov.settings["fire_fraction"],
        "fire_percentile": ov.settings["fire_percentile"],
        "active_entries": ov.active_entries,
        "firing_entries": ov.firing_entries,
        "kept_fraction": rounded(ov.firing_entries / max(ov.active_entries, 1), 4),
        "median_threshold": rounded(np.median(ov.thresholds[live])) if live.any() else None,
    }
