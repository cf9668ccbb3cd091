"""report.md, written for a reader who did not run the experiment.

Every number it shows is named by a term that its Definitions section explains (tests check
this), the naive overlap is shown only beside an explanation of why it misleads, and an
interrupted run says so at the top.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sae_exp import files
from sae_exp.report.numbers import fmt, num

log = logging.getLogger(__name__)

TOP_LATENTS = 10  # associated latents listed per label in report.md
EXAMPLES_SHOWN = 3  # example sentences per listed latent
IDS_SHOWN = 40  # shared latent ids listed per pair

METRIC_DEFINITIONS: dict[str, str] = {
    "fvu": ("fraction of variance unexplained on held-out rows: sum ||x - x_hat||^2 / "
            "sum ||x - mean(x)||^2 (0 = perfect, 1 = no better than the mean)"),
    "mse": "mean squared reconstruction error per element on held-out rows",
    "explained_variance": "1 - fvu",
    "l0": "mean number of active latents per row, measured with the inference encoder",
    "dead_fraction": ("share of latents active on no row (train and test splits) with the "
                      "inference encoder; not the training log's `auxk_dead_fraction` (latents "
                      "silent for more than sparsity.dead_after_rows training rows, which AuxK "
                      "trains) nor its `batch_fvu` (FVU of the current training minibatch)"),
    "dense_fraction": "share of latents active on a large share of rows (too dense to mean much)",
}
RUN_DEFINITIONS: dict[str, str] = {
    "d_in": "width of the activations the SAE reconstructs",
    "d_sae": "number of SAE latents",
    "top_k": "active latents kept per row by the top-k encoder",
    "steps": "optimiser steps taken",
    "planted_jaccard": "Jaccard of the planted feature sets (synthetic data: the true answer)",
    "naive_shared": "number of latents non-zero somewhere in both labels (naive overlap)",
    "latents_ever_active": "number of latents non-zero somewhere in the label (naive overlap)",
    "n_test": "number of test-split sentences the accuracy is computed on",
    "k=N": "one-vs-rest probe on N latents chosen as described under `probe_k`",
    "alpha": "Benjamini-Hochberg false discovery rate level for association",
    "min_log2_ratio": "minimum log2_ratio for a latent to count as associated",
    "fire_fraction": "multiplier of the per-latent percentile in the firing rule",
    "fire_percentile": "percentile of a latent's non-zero activations used by the firing rule",
    "median_threshold": "median of the per-latent firing thresholds over latents ever active",
    "bootstrap": ("number of subsamples (without replacement) behind each interval; the key keeps "
                  "its old name"),
    "subsample_fraction": "share m / n of each label's train sentences in one subsample",
    "permutations": "number of label permutations behind each p_value",
    "ci_level": "nominal coverage of the intervals",
    "dense": ("baseline probe on all raw activations (mean-pooled per sentence), same recipe "
              "as the sparse probes"),
    "multiclass_dense_accuracy": "the multi-class probe on the raw activations (`dense`)",
    "n_train": "number of train-split sentences (association sets are selected on these)",
    "activation": "the latent's highest activation in that sentence",
    "multiclass_accuracy": "multi-class probe: share of all test sentences given the right label",
    "multiclass_balanced_accuracy": ("multi-class probe: mean over labels of the share of the "
                                     "label's test sentences given the right label"),
}


# ----------------------------------------------------------------------------- writing



def _cell(v: Any) -> str:
    return fmt(v).replace("|", "\\|")  # a pair key "a|b" must not split the column


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:IDS_SHOWN])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > IDS_SHOWN else "") or "none"


def _ci_text(ci: list | None) -> str:
    return "n/a" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def render_markdown(rep: dict, figures: list[Path] | None = None) -> str:
    """report.md text from a (JSON-clean) report dict."""
    lines: list[str] = []
    run = rep.get("run", {})
    lines += [f"# SAE feature-overlap report: {run.get('name', 'run')}", ""]
    if rep.get("incomplete") or run.get("incomplete"):
        lines += ["> **INCOMPLETE RUN**: training was interrupted before its last step; every "
                  "number below describes a partially trained SAE. Resume it with "
                  f"`resume={run.get('dir', '<run dir>')}`.", ""]
    for section in (_run_section, _quality_section, _recovery_section, _method_section,
                    _category_section, _pair_section, _naive_section, _probe_section,
                    _injection_section, _latent_section, _warning_section):
        try:
            lines += section(rep)
        except Exception as e:  # one malformed field must not cost the whole report
            log.warning("report.md section %s failed: %s: %s", section.__name__,
                        type(e).__name__, e)
            lines += [f"*(section {section.__name__.strip('_')} could not be rendered: "
                      f"{type(e).__name__}: {e}; the data is in report.json)*", ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({files.FIGURES}/{p.name})" for p in figures] + [""]
    lines += _definitions_section(rep)
    return "\n".join(lines)


def _run_section(rep: dict) -> list[str]:
    run = rep.get("run", {})
    rows = [[k, run[k]] for k in ("d_in", "d_sae", "top_k", "steps") if k in run]
    head = ["## Run", ""]
    if run.get("kind"):
        head += [f"SAE kind: {run['kind']}; run directory: `{run.get('dir', '')}`.", ""]
    return head + (_table(["field", "value"], rows) if rows else [])


def _quality_section(rep: dict) -> list[str]:
    m = rep.get("metrics") or {}
    rows = [[k, m[k]] for k in METRIC_DEFINITIONS if k in m]
    if not rows:
        return []
    return ["## Reconstruction quality (held-out rows)", ""] + _table(["metric", "value"], rows)


RECOVERY_DEFINITIONS: dict[str, str] = {
    "recovered": ("share of the known dictionary's features whose best decoder cosine (max over "
                  "latents of cos(W_dec row, true direction)) exceeds 0.9"),
    "mean_max_cosine": "mean over true features of the best decoder cosine",
    "recovered_specific": "`recovered` among the label-specific features",
    "recovered_shared": "`recovered` among the features shared by two labels",
    "recovered_background": "`recovered` among the background features (every label)",
    "frequency_bucket": "true features grouped by the share of rows they fire on",
    "n_features": "number of true features in the group",
    "true_l0": "mean number of true features firing per row",
    "n_reported": "latents the report calls specific to the label",
    "n_planted": "features planted as specific to the label",
    "precision": ("share of the reported specific latents whose closest true feature (cosine > "
                  "0.5) is one of the label's planted specific features"),
    "recall": ("share of the label's planted specific features recovered (cosine > 0.9) by a "
               "reported specific latent"),
}


def _recovery_section(rep: dict) -> list[str]:
    rec = rep.get("recovery")
    if not rec:
        return []
    rows = [["n_features", rec["n_features"]], ["true_l0", rec.get("true_l0")],
            ["recovered", rec["recovered"]], ["mean_max_cosine", rec["mean_max_cosine"]]]
    rows += [[f"recovered_{k}", v] for k, v in rec.get("by_kind", {}).items()]
    out = ["## Recovery of the known dictionary (ground-truth data)", ""]
    out += _table(["metric", "value"], rows)
    out += _table(["frequency_bucket", "n_features", "recovered", "mean_max_cosine"],
                  [[b["bucket"], b["n"], b["recovered"], b["mean_max_cosine"]]
                   for b in rec.get("by_frequency", [])])
    match = rec.get("specific_match") or {}
    if match:
        out += _table(["label", "n_reported", "n_planted", "precision", "recall"],
                      [[lab, v["n_reported"], v["n_planted"], v["precision"], v["recall"]]
                       for lab, v in match.items()])
    return out


def _method_section(rep: dict) -> list[str]:
    s, th, base = rep.get("settings", {}), rep.get("thresholds", {}), rep.get("baseline", {})
    out = ["## How latents are assigned to labels", ""]
    out.append(f"- Firing rule: {th.get('rule', 'n/a')}.")
    out += [f"- `fire_fraction` = {fmt(th.get('fire_fraction'))}, `fire_percentile` = "
            f"{fmt(th.get('fire_percentile'))}, `median_threshold` = "
            f"{fmt(th.get('median_threshold'))}, `kept_fraction` = "
            f"{fmt(th.get('kept_fraction'))}."]
    out.append(f"- Baseline: {base.get('description', 'n/a')}.")
    out.append(f"- Associated: one-sided Fisher exact test, Benjamini-Hochberg over all latents "
               f"x labels with `alpha` = {fmt(s.get('alpha'))}, and `min_log2_ratio` = "
               f"{fmt(s.get('min_log2_ratio'))} (rates with a +0.5 pseudo-count).")
    sp = rep.get("split") or {}
    if sp:
        out.append(f"- Split: {sp.get('rule', 'n/a')}. Train: {fmt(sp.get('n_train_sentences'))} "
                   f"sentences (`n_train`), test: {fmt(sp.get('n_test_sentences'))} (`n_test`). "
                   f"Rule: {sp.get('use', '')}.")
    out.append(f"- Uncertainty: intervals from `bootstrap` = {fmt(s.get('bootstrap'))} subsamples "
               f"of `subsample_fraction` = {fmt(s.get('subsample_fraction'))} of each label's "
               f"train sentences, without replacement (`ci_level` = {fmt(s.get('ci_level'))}); "
               f"`permutations` = {fmt(s.get('permutations'))} label permutations. The interval "
               "is for the Jaccard this selection rule gives, in expectation, on a train split "
               "of this size (see `jaccard_ci`); its coverage and the p-values' calibration are "
               "measured by `python -m sae_exp.calibrate` (README).")
    return out + [""]


def _category_section(rep: dict) -> list[str]:
    cats = rep.get("categories", {})
    if not cats:
        return []
    rows = [[lab, c.get("n_sentences"), c.get("n_rows"), c.get("n_features"), c.get("n_specific"),
             c.get("null_features"), ", ".join(c.get("baseline", []))] for lab, c in cats.items()]
    out = ["## Categories", ""]
    out += _table(["label", "n_sentences", "n_rows", "n_features", "n_specific", "null_features",
                   "baseline"], rows)
    for lab, c in cats.items():
        out.append(f"- **{lab}** specific latents: {_ids(c.get('specific', []))}")
    return out + [""]


def _pair_section(rep: dict) -> list[str]:
    pairs = rep.get("pairs", {})
    if not pairs:
        return []
    planted = (rep.get("planted") or {}).get("jaccard") or {}
    naive = (rep.get("naive_overlap") or {}).get("pairs", {})
    header = ["pair", "jaccard", "jaccard_ci", "overlap_coefficient", "n_shared", "p_value",
              "p_shared"]
    if planted:
        header.append("planted_jaccard")
    rows = []
    for key, p in pairs.items():
        row = [f"{key}", p.get("jaccard"), _ci_text(p.get("jaccard_ci")),
               p.get("overlap_coefficient"), p.get("n_shared"), p.get("p_value"), p.get("p_shared")]
        if planted:
            row.append(planted.get(key))
        rows.append(row)
    out = ["## Overlap between labels", ""] + _table(header, rows)
    out.append("`p_value` tests only whether the shared structure could come from randomly "
               "assigned labels; whether two labels share more than their set sizes and the "
               "latents' firing rates explain is `p_shared` (see Definitions).")
    out.append("")
    for key, p in pairs.items():
        out.append(f"- **{key}** shared latents: {_ids(p.get('shared', []))}")
        if p.get("near_duplicates"):
            dup = ", ".join(f"{a}~{b} ({fmt(c)})" for a, b, c in p["near_duplicates"])
            out.append(f"  - `near_duplicates` (latent ~ latent (decoder cosine)): {dup}")
    if naive:
        out.append("")
        out.append("The naive overlap (next section) of the same pairs, for contrast: "
                   + ", ".join(f"**{k}** {fmt(v.get('jaccard'))}" for k, v in naive.items())
                   + " (`naive_jaccard`).")
    return out + [""]


def _naive_section(rep: dict) -> list[str]:
    naive = rep.get("naive_overlap")
    if not naive:
        return []
    out = ["## Naive overlap (the notebook's measure; misleading)", ""]
    out.append("Why it misleads: it counts a latent for a label if the latent is non-zero on "
               "any token of any of the label's sentences. With a top-k SAE every token has k "
               "active latents, so almost every live latent is non-zero somewhere in every "
               "label of a few hundred sentences; the number measures how much of the SAE a "
               "corpus touches, grows towards 1 with more sentences, and ignores how often a "
               "latent fires in one label compared with another. Use `jaccard` above instead.")
    out.append("")
    rows = [[k, v.get("jaccard"), v.get("shared")] for k, v in naive.get("pairs", {}).items()]
    out += _table(["pair", "naive_jaccard", "naive_shared"], rows)
    per = naive.get("latents_per_label", {})
    if per:
        out += _table(["label", "latents_ever_active"], [[k, v] for k, v in per.items()])
    return out


def _probe_section(rep: dict) -> list[str]:
    pr = rep.get("probe") or {}
    ovr = pr.get("one_vs_rest") or {}
    if not ovr and not pr.get("multiclass"):
        return []
    out = ["## Probing (test split only)", ""]
    out.append(f"Fitted on {fmt(pr.get('n_train'))} train sentences (`n_train`), scored on "
               f"{fmt(pr.get('n_test'))} test sentences (`n_test`) only. "
               f"{pr.get('metric', '')}. Latents: {pr.get('selection', '')}; `specific` uses the "
               "label's specific set; `dense` is the baseline on the raw activations. Cells are "
               "`balanced_accuracy` (n/a: no latents to probe).")
    out.append("")
    if pr.get("comparison"):
        out += [f"**Sparse against dense:** {pr['comparison']}", ""]
    names = sorted({n for res in ovr.values() for n in res}, key=_probe_order)
    rows = [[lab] + [(res.get(n) or {}).get("balanced_accuracy") for n in names]
            for lab, res in ovr.items()]
    out += _table(["label"] + names, rows)
    header, subset_rows = _subset_table(ovr)
    if subset_rows:
        out.append("Per subset: `accuracy` (label vs rest) of each label's probe on the subset's "
                   "test sentences; each label's sparse probe is its `specific` one, else its "
                   "largest k, beside its `dense` probe.")
        out.append("")
        out += _table(header, subset_rows)
    mc = pr.get("multiclass")
    if mc:
        out.append(f"Multi-class probe on the union of specific sets ({len(mc.get('latents', []))} "
                   f"latents): `multiclass_accuracy` = {fmt(mc.get('accuracy'))}, "
                   f"`multiclass_balanced_accuracy` = {fmt(mc.get('balanced_accuracy'))} "
                   f"(chance {fmt(mc.get('chance_balanced_accuracy'))}).")
        out.append("")
        rows = [[g, v.get("accuracy"), v.get("n")] for g, v in mc.get("by_subset", {}).items()]
        rows += [[g, v.get("accuracy"), v.get("n")] for g, v in mc.get("by_label", {}).items()]
        out += _table(["label or subset", "accuracy", "n_test"], rows)
    md = pr.get("multiclass_dense")
    if md:
        out.append(f"Multi-class probe on the raw activations (`dense`): "
                   f"`multiclass_dense_accuracy` = {fmt(md.get('accuracy'))}, "
                   f"`multiclass_balanced_accuracy` = {fmt(md.get('balanced_accuracy'))}.")
        out.append("")
    return out


def _probe_order(name: str) -> tuple[int, int]:
    if name in ("specific", "dense"):
        return (1 if name == "specific" else 2, 0)
    return (0, int(name.split("=")[-1]) if "=" in name else 0)


def _subset_table(ovr: dict) -> tuple[list[str], list[list[Any]]]:
    """Rows: subsets; columns: each label's probe (specific set, else largest k)."""
    chosen = {}
    for lab, res in ovr.items():
        names = sorted((n for n in res if n != "dense"), key=_probe_order)
        pick = next((n for n in reversed(names) if res.get(n)), None)
        if pick is not None:
            chosen[f"{lab} probe"] = res[pick]
        if res.get("dense"):
            chosen[f"{lab} dense"] = res["dense"]
    groups: dict[str, int] = {}
    for res in chosen.values():
        for g, v in res.get("by_subset", {}).items():
            groups[g] = v.get("n")
    header = ["subset", "n_test"] + [f"accuracy ({name})" for name in chosen]
    rows = [[g, n] + [(res.get("by_subset", {}).get(g) or {}).get("accuracy")
                      for res in chosen.values()] for g, n in sorted(groups.items())]
    return header, rows


def _latent_section(rep: dict) -> list[str]:
    lats = rep.get("latents") or []
    cats = rep.get("categories", {})
    if not lats or not cats:
        return []
    out = ["## Top latents per label", "",
           f"Up to {TOP_LATENTS} associated latents per label, strongest evidence first (lowest "
           "`q`, then highest `log2_ratio`), with the sentences where each peaks "
           "(`activation`)."]
    out.append("")
    for lab, c in cats.items():
        ids = c.get("features", [])
        ranked = sorted(ids, key=lambda j: (num(lats[j]["q"].get(lab)),
                                            -num(lats[j]["log2_ratio"].get(lab))))[:TOP_LATENTS]
        out += [f"### {lab}", ""]
        if not ranked:
            out += ["No associated latents.", ""]
            continue
        rows = [[j, lats[j]["rate"].get(lab), lats[j]["baseline_rate"].get(lab),
                 lats[j]["log2_ratio"].get(lab), lats[j]["q"].get(lab),
                 (lats[j].get("stability") or {}).get(lab), lats[j].get("specific_to") == lab]
                for j in ranked]
        out += _table(["latent", "rate", "baseline_rate", "log2_ratio", "q", "stability",
                       "specific"], rows)
        for j in ranked:
            for ex in lats[j].get("top_examples", [])[:EXAMPLES_SHOWN]:
                out.append(f"- latent {j}: {_example_text(ex)}")
        out.append("")
    return out


def _example_text(ex: dict) -> str:
    text = ex.get("text")
    where = f"sentence {ex.get('sentence')} ({ex.get('label')}"
    where += f"/{ex['subset']})" if ex.get("subset") else ")"
    body = f"\"{text}\"" if text is not None else where
    peak = f"peak at token {ex['token']!r} (#{ex.get('token_position')})" if ex.get(
        "token") is not None else f"peak at token #{ex.get('token_position')}"
    tail = f" [{where}]" if text is not None else ""
    return f"{body}: {peak}, activation {fmt(ex.get('activation'))}{tail}"


def _injection_section(rep: dict) -> list[str]:
    """Token injection (sae_exp.analysis.injection): per label the share of token-driven
    specific latents, and the flagged ones with their tokens."""
    ti = rep.get("token_injection")
    if not ti:
        return []
    out = ["## Token injection", ""]
    if ti.get("status") != "done":
        return out + [f"Not run: {ti.get('reason', 'unknown reason')}.", ""]
    st = ti.get("settings") or {}
    out += [f"Each tested specific latent's {st.get('n_tokens')} `peak_tokens` were inserted "
            f"into {st.get('n_sentences')} held-out baseline sentences; it is `token_driven` "
            f"when its `injected_rate` is at least {st.get('flag_ratio')} x its "
            f"`in_label_rate` and above its `control_rate`. At most {st.get('max_latents')} "
            "latents tested per label "
            "(0 = all).", ""]
    rows = [[lab, v["n_specific"], v["n_tested"], v["n_flagged"], v["share_flagged"]]
            for lab, v in (ti.get("labels") or {}).items()]
    out += _table(["label", "n_specific", "n_tested", "n_flagged", "share_flagged"], rows)
    for lab, v in (ti.get("labels") or {}).items():
        flagged = [x for x in v["latents"] if x["token_driven"]]
        if flagged:
            out += [f"Flagged for {lab}:", ""] + [
                f"- latent {x['latent']}: tokens {', '.join(map(repr, x['peak_tokens']))}; "
                f"in_label_rate {fmt(x['in_label_rate'])}, injected_rate "
                f"{fmt(x['injected_rate'])}, control_rate {fmt(x['control_rate'])}"
                for x in flagged[:TOP_LATENTS]] + [""]
    return out


def _warning_section(rep: dict) -> list[str]:
    warns = rep.get("warnings") or []
    if not warns:
        return ["## Warnings", "", "None.", ""]
    return ["## Warnings", ""] + [f"- {w}" for w in warns] + [""]


def _definitions_section(rep: dict) -> list[str]:
    defs = {**METRIC_DEFINITIONS, **RUN_DEFINITIONS, **(rep.get("definitions") or {})}
    if rep.get("recovery"):
        defs.update(RECOVERY_DEFINITIONS)
    out = ["## Definitions", ""]
    out += [f"- `{k}`: {v}." for k, v in defs.items()]
    return out + [""]
