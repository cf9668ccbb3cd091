"""What every number of the overlap analysis means: the text report.md and report.json carry."""

from __future__ import annotations

NEAR_DUPLICATE_COS = 0.9  # decoder cosine above which two label-only latents look like one

DEFINITIONS: dict[str, str] = {
    "fires": (
        "a latent fires on a token when its activation exceeds fire_fraction x the "
        "fire_percentile-th percentile of that latent's non-zero activations over all rows; it "
        "fires in a sentence when it fires on any of the sentence's tokens"
    ),
    "threshold": "the per-latent activation a token must exceed for the latent to fire",
    "kept_fraction": (
        "share of non-zero (latent, token) activations above the firing threshold; the "
        "rest are weak spare-slot activations that do not count as firing"
    ),
    "n_sentences": "number of sentences with this label (train and test)",
    "n_rows": "number of activation rows (tokens) of those sentences",
    "rate": "firing rate: share of the label's sentences in which the latent fires",
    "baseline_rate": "share of the baseline sentences in which the latent fires",
    "log2_ratio": (
        "log2 of the firing-rate ratio label / baseline, each rate computed as "
        "(count + 0.5) / (sentences + 1) so that zero counts give a finite value"
    ),
    "p": (
        "one-sided Fisher exact p-value (hypergeometric upper tail) that the latent fires in "
        "more of the label's sentences than in the baseline's"
    ),
    "q": "Benjamini-Hochberg adjusted p-value over all latents x labels",
    "features": (
        "latents associated with the label: q < alpha and log2_ratio >= min_log2_ratio "
        "against the label's baseline"
    ),
    "specific": "latents associated with this label and with no other label",
    "n_features": "number of latents in the label's `features` set",
    "n_specific": "number of latents in the label's `specific` set",
    "n_shared": "number of latents in the pair's `shared` set",
    "stability": (
        "share of bootstrap resamples (sentences resampled within each label) in which the "
        "latent is associated with the label"
    ),
    "null_features": (
        "mean number of latents called associated with the label when labels are randomly "
        "permuted across sentences: an empirical count of false discoveries (should be ~0)"
    ),
    "jaccard": (
        "|A & B| / |A | B| for the two labels' associated sets A and B (0 when both are empty)"
    ),
    "jaccard_ci": (
        "percentile bootstrap CI of the Jaccard index at ci_level: sentences resampled with "
        "replacement within each label, association sets recomputed from scratch"
    ),
    "overlap_coefficient": "|A & B| / min(|A|, |B|) (0 when either set is empty)",
    "shared": "latents associated with both labels",
    "p_value": (
        "label-permutation p-value, (1 + #{null Jaccard >= observed}) / (1 + permutations). "
        "Null: labels are exchangeable across sentences, i.e. latent firing carries no label "
        "information; under it association sets are near-empty and Jaccard ~ 0. A small value "
        "says the observed shared structure is not produced by noise; it does NOT say the two "
        "labels share more latents than two unrelated categories with as many latents would "
        "(see p_shared). An observed Jaccard of 0 gives p = 1"
    ),
    "p_shared": (
        "hypergeometric p-value that |A & B| is at least the observed value if A and B were "
        "random sets of their sizes among the latents that fire in at least one sentence: "
        "small means the labels share more latents than set sizes alone explain"
    ),
    "naive_jaccard": (
        "the notebook's overlap: Jaccard of the sets of latents with any non-zero activation "
        "anywhere in each label. Misleading: with top-k nearly every live latent is active "
        "somewhere in every large enough label, so it measures SAE coverage and corpus size, "
        "not shared features; it rises towards 1 as labels get more sentences"
    ),
    "density": "share of all rows (tokens) on which the latent is non-zero",
    "fire_density": "share of all rows on which the latent fires (above its threshold)",
    "balanced_accuracy": (
        "one-vs-rest probe on the test split: mean of the true-positive rate and the "
        "true-negative rate (0.5 = chance whatever the class balance)"
    ),
    "accuracy": (
        "share of the test sentences in the group that the probe classifies correctly "
        "(one-vs-rest: label vs not-label; multi-class: the right label)"
    ),
    "probe_k": (
        "probe on the k latents with the largest mean activation difference label minus rest "
        "(mean-pooled over tokens, selected on the train split); 'specific' uses the label's "
        "specific set"
    ),
    "near_duplicates": (
        "pairs (latent only in A, latent only in B) whose decoder directions have cosine >= "
        f"{NEAR_DUPLICATE_COS}: candidates for one feature split in two"
    ),
}
