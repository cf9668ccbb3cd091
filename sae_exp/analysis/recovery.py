"""How well a trained SAE recovers a known dictionary (the ground-truth benchmark's metrics).

    best cosine of a true feature  = max over latents of cos(W_dec[latent], direction)
    recovered                      = best cosine > RECOVERED_COS (0.9)
    mean_max_cosine                = mean of the best cosines over true features
    recovery per frequency bucket  = recovered share among features of that firing frequency
    dead_fraction / fvu            = the report's (latents active on no row; held-out FVU)

The report's label-specific latents are matched to planted specific features.
precision = share of a label's reported specific latents whose decoder row is closest to one of
that label's planted specific features (cosine > ATTRIBUTED_COS: mostly that direction; a
partial second copy of a feature, as top-k at 2x the true L0 makes, is attributed correctly,
not counted as a false latent); recall = share of the label's planted specific features that a
reported specific latent recovers (cosine > RECOVERED_COS).
"""

from __future__ import annotations

import numpy as np

from sae_exp.analysis.decoder import unit_rows

RECOVERED_COS = 0.9
ATTRIBUTED_COS = 0.5
BUCKET_EDGES = (0.005, 0.01, 0.02)  # firing frequency buckets: <0.5%, 0.5-1%, 1-2%, >=2%


def cosine_matrix(W_dec: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """[d_sae, n_features] cosines between decoder rows and true directions."""
    w = unit_rows(W_dec, np.asarray(W_dec).dtype)  # normalised in its own precision
    d = unit_rows(directions, np.asarray(directions).dtype)
    return w.astype(np.float64) @ d.astype(np.float64).T


def bucket_names() -> list[str]:
    e = [f"{x * 100:g}%" for x in BUCKET_EDGES]
    return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in zip(e, e[1:], strict=False)] + [f">={e[-1]}"]


def by_bucket(freq: np.ndarray, recovered: np.ndarray, best: np.ndarray) -> list[dict]:
    """Recovered share and mean best cosine per firing-frequency bucket."""
    which = np.searchsorted(np.asarray(BUCKET_EDGES), freq, side="right")
    out = []
    for b, name in enumerate(bucket_names()):
        m = which == b
        if m.any():
            out.append({"bucket": name, "n": int(m.sum()),
                        "recovered": float(recovered[m].mean()),
                        "mean_max_cosine": float(best[m].mean())})
    return out


def match_specific(cos: np.ndarray, planted: dict, categories: dict) -> dict:
    """Precision and recall of each label's reported specific latents against planted ones."""
    best_feat, best = cos.argmax(1), cos.max(1)
    out = {}
    for label, true_ids in planted["specific"].items():
        reported = [int(i) for i in (categories.get(label) or {}).get("specific", [])]
        true_set = set(int(i) for i in true_ids)
        hits = [i for i in reported if best[i] > ATTRIBUTED_COS and int(best_feat[i]) in true_set]
        found = {int(best_feat[i]) for i in hits if best[i] > RECOVERED_COS}
        out[label] = {"n_reported": len(reported), "n_planted": len(true_set),
                      "precision": len(hits) / len(reported) if reported else 0.0,
                      "recall": len(found) / len(true_set) if true_set else 1.0}
    return out


def evaluate(W_dec: np.ndarray, planted: dict, quality: dict, categories: dict | None = None) \
        -> dict:
    """The recovery section of report.json (see the module docstring)."""
    cos = cosine_matrix(W_dec, planted["directions"])
    best = cos.max(0)
    rec = best > RECOVERED_COS
    kind = np.asarray(planted["kind"]).astype(str)
    freq = np.asarray(planted["frequency"], dtype=np.float64)
    out = {
        "threshold": RECOVERED_COS,
        "n_features": int(len(best)),
        "recovered": float(rec.mean()),
        "mean_max_cosine": float(best.mean()),
        "by_kind": {k: float(rec[kind == k].mean()) for k in ("specific", "shared", "background")
                    if (kind == k).any()},
        "by_frequency": by_bucket(freq, rec, best),
        "dead_fraction": quality.get("dead_fraction"),
        "fvu": quality.get("fvu"),
        "true_l0": planted.get("true_l0"),
        "best_cosine": [round(float(c), 4) for c in best],
    }
    if categories is not None:
        per = match_specific(cos, planted, categories)
        out["specific_match"] = per
        out["specific_precision"] = float(np.mean([v["precision"] for v in per.values()]))
        out["specific_recall"] = float(np.mean([v["recall"] for v in per.values()]))
    return out


def table(rec: dict) -> str:
    """The recovery figures as a markdown table (printed by `synth`, included in report.md)."""
    lines = ["| metric | value |", "|---|---|",
             f"| features recovered (cos > {rec['threshold']}) | {rec['recovered']:.3f} "
             f"of {rec['n_features']} |",
             f"| mean max cosine | {rec['mean_max_cosine']:.3f} |"]
    lines += [f"| recovered, {k} features | {v:.3f} |" for k, v in rec["by_kind"].items()]
    lines += [f"| recovered, frequency {b['bucket']} ({b['n']}) | {b['recovered']:.3f} |"
              for b in rec["by_frequency"]]
    if rec.get("dead_fraction") is not None:
        lines.append(f"| dead_fraction (latents active on no row) | {rec['dead_fraction']:.3f} |")
    if rec.get("fvu") is not None:
        lines.append(f"| held-out fvu | {rec['fvu']:.4f} |")
    if "specific_match" in rec:
        lines.append(f"| report's specific latents: precision / recall (mean over labels) | "
                     f"{rec['specific_precision']:.3f} / {rec['specific_recall']:.3f} |")
        for lab, v in rec["specific_match"].items():
            lines.append(f"| {lab}: {v['n_reported']} reported, {v['n_planted']} planted: "
                         f"precision / recall | {v['precision']:.3f} / {v['recall']:.3f} |")
    return "\n".join(lines)
