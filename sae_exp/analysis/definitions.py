"""What every number of the overlap analysis means: the text report.md and report.json carry."""

from __future__ import annotations

NEAR_DUPLICATE_COS = 0.9  # decoder cosine above which two label-only latents look like one

DEFINITIONS: dict[str, str] = {
    "fires": (
        "a latent fires on a token when its activation exceeds fire_fraction x the "
        "fire_percentile-th percentile of that latent's non-zero activations over the train "
        "split's rows; it fires in a sentence when it fires on any of the sentence's tokens"
    ),
    "threshold": "the per-latent activation a token must exceed for the latent to fire",
    "kept_fraction": (
        "share of non-zero (latent, token) activations above the firing threshold; the "
        "rest are weak spare-slot activations that do not count as firing"
    ),
    "n_sentences": "number of sentences with this label (train and test)",
    "n_train_sentences": "sentences of the label in the train split: the ones association uses",
    "n_test_sentences": "sentences of the label in the test split: the ones probes are scored on",
    "n_rows": "number of activation rows (tokens) of those sentences",
    "rate": "firing rate: share of the label's train sentences in which the latent fires",
    "baseline_rate": "share of the baseline's train sentences in which the latent fires",
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
    "specific": ("latents associated with this label and with no other label, and firing in a "
                 "larger share of this label's sentences than of each other label's (one-sided "
                 "Fisher test against every other label at alpha, all must reject)"),
    "n_features": "number of latents in the label's `features` set",
    "n_specific": "number of latents in the label's `specific` set",
    "n_shared": "number of latents in the pair's `shared` set",
    "stability": (
        "share of subsamples (half of each label's train sentences, drawn without "
        "replacement) in which the latent is associated with the label"
    ),
    "null_features": (
        "mean number of latents called associated with the label when labels are randomly "
        "permuted across sentences: an empirical count of false discoveries (should be ~0)"
    ),
    "jaccard": (
        "|A & B| / |A | B| for the two labels' associated sets A and B (0 when both are empty)"
    ),
    "jaccard_ci": (
        "interval at ci_level for the expected Jaccard of the association sets this selection "
        "rule gives on a train split of this size from the same population of sentences "
        "(latents too weak to be detected at this size are not part of that quantity): "
        "jaccard +- z se, se = sd of the Jaccard over subsamples of m of the n train sentences "
        "of each label drawn without replacement (no sentence repeated) x sqrt(m / (n - m)), "
        "clipped to [0, 1]; coverage measured on planted data by `python -m sae_exp.calibrate`"
    ),
    "overlap_coefficient_ci": "the same interval for the overlap coefficient",
    "overlap_coefficient": "|A & B| / min(|A|, |B|) (0 when either set is empty)",
    "shared": "latents associated with both labels",
    "p_value": (
        "label-permutation p-value of the pair's shared_score, (1 + #{null >= observed}) / "
        "(1 + permutations), labels permuted across train sentences. Null: labels are "
        "exchangeable, i.e. latent firing carries no label information. Small says some latents "
        "are enriched in both labels beyond what noise gives; it does NOT say the labels share "
        "more than their set sizes and firing rates explain (see p_shared). Uniform under the "
        "null (measured by `python -m sae_exp.calibrate`)"
    ),
    "shared_score": (
        "sum over latents of min(z_a, z_b) where both are positive, z_l = two-proportion "
        "z-score of the latent's train firing rate in label l against l's baseline: evidence "
        "of latents enriched in both labels, continuous (unlike the Jaccard, which is 0 in "
        "almost every permutation)"
    ),
    "null_shared_score_mean": "mean shared_score over the label permutations",
    "p_shared": (
        "conditional p-value that |A & B| is at least the observed value if the two labels "
        "selected latents independently given each latent's train firing count outside both "
        "labels (each label's selection probability a logistic curve in log(count + 0.5), "
        "|A & B| Poisson-binomial): rare latents enter association sets more easily, so "
        "treating every latent alike overstates sharing. null when the pair has no third label "
        "to measure firing rates on. Small means the labels share more latents than their "
        "set sizes and the latents' firing rates explain"
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
        "one-vs-rest probe on the test split (held-out frames for the shipped corpus): mean of "
        "the true-positive rate and the true-negative rate (0.5 = chance whatever the class "
        "balance)"
    ),
    "accuracy": (
        "share of the test sentences in the group that the probe classifies correctly "
        "(one-vs-rest: label vs not-label; multi-class: the right label)"
    ),
    "probe_k": (
        "probe on the k latents with the largest mean activation difference label minus rest "
        "(mean-pooled over tokens, selected on the train split); 'specific' uses the label's "
        "specific set (selected on the train split); 'dense' is the baseline: the same probe "
        "on all raw activations, mean-pooled per sentence"
    ),
    "near_duplicates": (
        "pairs (latent only in A, latent only in B) whose decoder directions have cosine >= "
        f"{NEAR_DUPLICATE_COS}: candidates for one feature split in two"
    ),
    "token_acts": (
        "in a top example: the latent's activation on every token of the sentence, in token "
        "order (0 where it is not among the token's top-k); `tokens` holds the tokens"
    ),
    "act_hist": (
        "histogram of the latent's non-zero activations over all rows: `counts` in equal bins "
        "from 0 to `max`"
    ),
}
