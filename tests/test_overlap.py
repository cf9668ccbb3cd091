"""Association and overlap statistics, checked against planted ground truth and hand values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from conftest import analyze_report
from hypothesis import given, settings
from hypothesis import strategies as st
from planted_codes import make_planted

from sae_exp.analysis import association, firing, overlap
from sae_exp.config import AnalysisConfig
from sae_exp.data.types import ActivationSet, Sentences
from sae_exp.errors import ConfigError

FAST = dict(bootstrap=200, permutations=100)


def _recall(rep: dict, planted) -> dict[str, float]:
    return {lab: len(set(rep["categories"][lab]["specific"]) & ids) / len(ids)
            for lab, ids in planted.specific.items()}


@pytest.fixture(scope="module")
def pitfall():
    """k = 2 x true L0: every token carries 4 weak spare-slot activations (DESIGN pitfall)."""
    return make_planted(k=8)


@pytest.fixture(scope="module")
def pitfall_report(pitfall):
    return analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200,
                           AnalysisConfig(**FAST))


# ----------------------------------------------------------------------------- firing rule


def test_thresholds_match_numpy_percentile_of_nonzero_values():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 30, size=(400, 5))
    acts = rng.exponential(size=(400, 5)).astype(np.float32)
    acts[rng.random(acts.shape) < 0.3] = 0.0  # inactive (relu_l1-style padding)
    thr = firing.firing_thresholds(idx, acts, 32, 0.25, 80.0)
    for j in range(32):
        vals = acts[(idx == j) & (acts > 0)]
        expect = 0.25 * np.percentile(vals, 80.0) if len(vals) else 0.0
        assert thr[j] == pytest.approx(expect, rel=1e-6)
    assert thr[30] == thr[31] == 0.0  # never active


def test_relative_threshold_restores_recall_when_k_exceeds_true_l0(pitfall, pitfall_report):
    """The DESIGN pitfall: with k = 2 x true L0 the spare slots carry weak activations of related
    latents in most sentences, so with fire_fraction = 0 (any act > 0 fires) the baseline rates
    of label latents are inflated and recall collapses; the relative threshold restores it."""
    recall = _recall(pitfall_report, pitfall)
    assert min(recall.values()) >= 0.95, recall
    extra = {lab: set(pitfall_report["categories"][lab]["features"]) - pitfall.features[lab]
             for lab in pitfall.features}
    assert sum(len(v) for v in extra.values()) <= 2, extra
    assert pitfall_report["thresholds"]["kept_fraction"] == pytest.approx(0.5, abs=0.01)

    naive_rule = analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200,
                                 AnalysisConfig(fire_fraction=0.0, bootstrap=0, permutations=0))
    naive_recall = _recall(naive_rule, pitfall)
    assert max(naive_recall.values()) <= 0.5, naive_recall
    assert any("fire_fraction=0" in w for w in naive_rule["warnings"])


def test_without_spare_slots_both_rules_recover_the_planted_sets():
    planted = make_planted(k=None, seed=3)
    for ff in (0.0, 0.2):
        rep = analyze_report(planted.top_indices, planted.top_acts, planted.data, 200,
                              AnalysisConfig(fire_fraction=ff, bootstrap=0, permutations=0))
        assert min(_recall(rep, planted).values()) >= 0.95


def test_inactive_padding_slots_never_count():
    """relu_l1 codes are padded with index 0 and activation 0: latent 0 must stay silent."""
    planted = make_planted(k=None, seed=4)
    idx = np.concatenate([planted.top_indices, np.zeros((len(planted.top_indices), 3), int)], 1)
    acts = np.concatenate([planted.top_acts, np.zeros((len(idx), 3), np.float32)], 1)
    idx[:, :4][idx[:, :4] == 0] = 199  # latent 0 never really active
    rep = analyze_report(idx, acts, planted.data, 200, AnalysisConfig(bootstrap=0,
                                                                      permutations=0))
    assert rep["latents"][0]["density"] == 0.0
    assert all(r == 0.0 for r in rep["latents"][0]["rate"].values())


# ----------------------------------------------------------------------------- overlap


def test_jaccard_and_its_ci_recover_the_planted_overlap(pitfall, pitfall_report):
    for key, truth in pitfall.jaccard.items():
        pr = pitfall_report["pairs"][key]
        lo, hi = pr["jaccard_ci"]
        assert lo - 1e-9 <= truth <= hi + 1e-9, (key, truth, pr["jaccard_ci"])
        assert pr["jaccard"] == pytest.approx(truth, abs=0.05)
        assert pr["overlap_coefficient"] >= pr["jaccard"]
    ab = pitfall_report["pairs"]["a|b"]
    assert set(ab["shared"]) == pitfall.features["a"] & pitfall.features["b"]
    assert ab["p_value"] <= 2 / (FAST["permutations"] + 1)  # beats every permutation
    # every planted latent here is silent on control, so among the latents with its firing
    # rate (the only ones p_shared compares with) a and b share no more than chance: 6 of 16
    assert ab["p_shared"] > 0.5
    assert pitfall_report["pairs"]["a|control"]["p_value"] > 0.5  # J = 0: no evidence


def test_shuffled_labels_give_no_specific_latents_and_no_small_p_value():
    planted = make_planted(k=8, shuffle_labels=True, seed=5)
    rep = analyze_report(planted.top_indices, planted.top_acts, planted.data, 200,
                          AnalysisConfig(**FAST))
    assert sum(c["n_specific"] for c in rep["categories"].values()) <= 2
    # uniform under this null: small p-values only by chance (their calibration: test_calibrate)
    assert all(pr["p_value"] > 0.01 for pr in rep["pairs"].values()), rep["pairs"]
    assert all(c["null_features"] <= 1 for c in rep["categories"].values())


def test_naive_overlap_is_near_one_while_jaccard_is_not(pitfall, pitfall_report):
    naive = pitfall_report["naive_overlap"]
    assert "MISLEADING" in naive["note"]
    assert naive["pairs"]["a|control"]["jaccard"] > 0.9
    assert pitfall_report["pairs"]["a|control"]["jaccard"] == 0.0


def test_analysis_is_reproducible_from_the_seed(pitfall):
    cfg = AnalysisConfig(bootstrap=50, permutations=20, seed=7)
    r1 = analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200, cfg)
    r2 = analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200, cfg)
    assert r1["pairs"] == r2["pairs"]


def test_near_duplicate_decoder_directions_are_flagged(pitfall):
    W = np.random.default_rng(0).standard_normal((200, 16))
    W[2] = 3 * W[12]  # a-specific latent 2 and b-specific latent 12: one direction
    rep = analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200,
                          AnalysisConfig(bootstrap=0, permutations=0), W_dec=W)
    assert [2, 12] in [d[:2] for d in rep["pairs"]["a|b"]["near_duplicates"]]
    assert rep["pairs"]["a|control"]["near_duplicates"] == []


# ----------------------------------------------------------------------------- statistics


def test_benjamini_hochberg_matches_a_hand_computed_example():
    # sorted p: .01 .02 .021 .5 -> p m / rank: .04 .04 .028 .5 -> running min from the top:
    # .028 .028 .028 .5
    q = association.bh_qvalues(np.array([0.5, 0.021, 0.01, 0.02]))
    np.testing.assert_allclose(q, [0.5, 0.028, 0.028, 0.028])
    q2 = association.bh_qvalues(np.array([0.01, 0.04, 0.03, 0.005, 0.5]))
    np.testing.assert_allclose(q2, [0.025, 0.05, 0.05, 0.025, 0.5])
    batched = association.bh_qvalues(np.array([[0.5, 0.021, 0.01, 0.02], [0.9, 0.9, 0.9, 0.9]]))
    np.testing.assert_allclose(batched[1], 0.9)


def test_fisher_greater_equals_scipy_fisher_exact():
    for a, n, b, nb in [(5, 20, 1, 30), (0, 10, 3, 10), (12, 12, 0, 40), (3, 50, 9, 150)]:
        table = [[a, n - a], [b, nb - b]]
        expect = scipy.stats.fisher_exact(table, alternative="greater").pvalue
        assert association.fisher_greater(a, a + b, n, n + nb) == pytest.approx(expect, rel=1e-9)


def test_tail_lower_bound_bounds_the_exact_tail():
    rng = np.random.default_rng(2)
    n, nb = 300, 600
    a = rng.integers(1, n, 2000)
    b = rng.integers(0, nb, 2000)
    exact = association.fisher_greater(a, a + b, n, n + nb)
    lb = association.tail_lower_bound(a, a + b, n, n + nb)
    assert np.all(lb <= exact * (1 + 1e-9) + 1e-300)
    far = exact < 1e-3  # deep in the tail the 16 terms hold nearly all the mass
    np.testing.assert_allclose(lb[far], exact[far], rtol=1e-3)


def test_screened_batch_association_equals_the_exact_one(pitfall):
    """The bootstrap's fast path must make exactly the decisions of the exact analysis."""
    data = pitfall.data
    design = association.label_design(np.asarray(data.sentences.labels), "auto")
    thr = firing.firing_thresholds(pitfall.top_indices, pitfall.top_acts, 200, 0.0, 90.0)
    peaks = firing.sentence_peaks(pitfall.top_indices, pitfall.top_acts, data.sentence_index, 200)
    F = firing.firing_matrix(peaks, thr, len(data.sentences), 200)
    n = np.bincount(design.label_of).astype(float)
    counts = association.label_counts(F, design.label_of, 3)
    rng = np.random.default_rng(0)
    noisy = np.clip(counts + rng.integers(-15, 16, counts.shape), 0, 300)
    for alpha in (0.01, 0.2):
        cfg = AnalysisConfig(alpha=alpha, min_log2_ratio=0.3)
        batch = np.stack([counts, noisy])
        fast = association.associated_sets(batch, n, design, alpha, 0.3)
        for i in range(2):
            exact = association.associate(batch[i], n, design, cfg.alpha,
                                          cfg.min_log2_ratio).associated
            np.testing.assert_array_equal(fast[i], exact)


@pytest.mark.parametrize("huge", [False, True])
def test_screened_p_values_equal_the_exact_ones_where_bh_could_reject(huge):
    """Deduplicated tables (one integer key each, or rows of a 2-D unique when the key would
    overflow int64) give every entry the exact Fisher p-value of its own table wherever the
    tail bound passes alpha, and 1 elsewhere; rows with a = 0 are 1."""
    rng = np.random.default_rng(5)
    n = np.array([40.0, 55.0, 300.0]) * (1e5 if huge else 1.0)  # huge: radix**4 > 2**62
    counts = rng.integers(0, 30, (4, 50, 3)).astype(float)
    counts[:, :5, 1] = 45.0  # strong: these must keep exact p-values
    b = rng.integers(0, 60, counts.shape).astype(float)
    M = n + rng.integers(300, 500, (4, 1, 3))  # M not a function of n: the key needs both
    K = counts + b
    got = association._screened_p(counts, K, n, M, alpha=0.05)
    nn = np.broadcast_to(n, counts.shape)
    MM = np.broadcast_to(M, counts.shape)
    exact = association.fisher_greater(counts, K, nn, MM)
    lb = association.tail_lower_bound(counts, K, nn, MM)
    keep = (counts >= 1) & (lb <= 0.05)
    assert keep.sum() >= 20 and (~keep).sum() >= 20
    np.testing.assert_array_equal(got[keep], exact[keep])
    assert np.all(got[~keep] == 1.0)


def test_specific_needs_a_higher_rate_than_every_other_label():
    """A latent shared by labels c and q whose c association misses BH is associated with q
    only, but it is not q-specific: its q rate does not beat its c rate. A latent firing in q
    alone stays specific."""
    design = association.label_design(np.array(["c"] * 300 + ["control"] * 300 + ["q"] * 300),
                                       "auto")
    n = np.array([300.0, 300.0, 300.0])
    counts = np.zeros((302, 3))  # 300 silent latents: BH over 906 tests, as in a real run
    counts[0] = [18.0, 2.0, 30.0]  # shared: c above control (p ~ 2e-4, misses BH), q clearly
    counts[1] = [0.0, 1.0, 30.0]   # q only
    res = association.associate(counts, n, design, alpha=0.01, min_log2=1.0)
    assert res.associated[0].tolist() == [False, False, True]  # c missed the threshold
    assert res.associated[1].tolist() == [False, False, True]
    assert not res.specific[0].any()
    assert res.specific[1].tolist() == [False, False, True]
    assert not res.specific[2:].any()


# ----------------------------------------------------------------------------- baseline


def test_baseline_control_when_present_else_all_others():
    d = association.label_design(np.array(["q", "control", "c", "c"]), "auto")
    assert d.labels == ["c", "control", "q"]
    assert d.baseline_names(0) == ["control"] and d.baseline_names(2) == ["control"]
    assert d.baseline_names(1) == ["c", "q"]
    d2 = association.label_design(np.array(["x", "y", "z"]), "auto")
    assert d2.baseline_names(1) == ["x", "z"]
    d3 = association.label_design(np.array(["x", "y", "z"]), "z")
    assert d3.baseline_names(0) == ["z"] and d3.baseline_names(2) == ["x", "y"]


def test_unknown_baseline_label_is_a_config_error(pitfall):
    with pytest.raises(ConfigError) as e:
        analyze_report(pitfall.top_indices, pitfall.top_acts, pitfall.data, 200,
                        AnalysisConfig(baseline="x", bootstrap=0, permutations=0))
    assert str(e.value) == ("analysis.baseline='x' is not a label in the data: labels are "
                            "a, b, control.")


def test_small_label_is_warned_about():
    planted = make_planted(n_per_label=15, seed=6)
    rep = analyze_report(planted.top_indices, planted.top_acts, planted.data, 200,
                          AnalysisConfig(bootstrap=10, permutations=10))
    assert sum("min_sentences" in w for w in rep["warnings"]) == 3


# ----------------------------------------------------------------------------- latents


def test_top_examples_name_the_peak_token():
    sents = Sentences(labels=np.array(["a", "b"]), subsets=np.array(["", ""]),
                      splits=np.array(["train", "test"]),
                      texts=np.array(["if it rains", "all dogs"], dtype=object))
    data = ActivationSet(acts=np.zeros((5, 1), np.float32),
                         sentence_index=np.array([0, 0, 0, 1, 1]), sentences=sents,
                         tokens=np.array(["if", "it", "rains", "all", "dogs"], dtype=object))
    idx = np.array([[1, 2], [1, 0], [2, 0], [1, 0], [2, 0]])
    acts = np.array([[0.5, 0.1], [0.9, 0.0], [0.3, 0.0], [0.2, 0.0], [0.7, 0.0]], np.float32)
    peaks = firing.sentence_peaks(idx, acts, data.sentence_index, 3)
    ex = overlap.top_examples(peaks, data, 3, 5)
    assert [(e["text"], e["token"], e["token_position"], e["activation"]) for e in ex[1]] == [
        ("if it rains", "it", 1, pytest.approx(0.9)), ("all dogs", "all", 0, pytest.approx(0.2))]
    assert [e["token"] for e in ex[2]] == ["dogs", "rains"]
    assert ex[0] == []


def test_latent_records_are_complete(pitfall_report):
    lat = pitfall_report["latents"]
    assert [r["id"] for r in lat] == list(range(200))
    r0 = lat[0]
    assert r0["specific_to"] == "a" and r0["associated"] == ["a"]
    assert set(r0["rate"]) == {"a", "b", "control"}
    assert r0["q"]["a"] < 0.01 and 0 < r0["p"]["a"] < 1e-10  # tiny p-values keep their value
    assert len(r0["top_examples"]) == 5 and r0["top_examples"][0]["token"].startswith("tok")
    assert r0["stability"]["a"] == 1.0


# ----------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_sent=st.integers(4, 40), d_sae=st.integers(3, 25),
       k=st.integers(1, 4), n_labels=st.integers(2, 3), max_tokens=st.integers(1, 3))
def test_overlap_properties_on_random_codes(seed, n_sent, d_sae, k, n_labels, max_tokens):
    rng = np.random.default_rng(seed)
    labels = np.array(["x", "y", "control"][:n_labels], dtype=object)[
        rng.integers(0, n_labels, n_sent)]
    sent_idx = np.repeat(np.arange(n_sent), rng.integers(1, max_tokens + 1, n_sent))
    N = len(sent_idx)
    idx = rng.integers(0, d_sae, size=(N, k))
    acts = (rng.exponential(size=(N, k)) * (rng.random((N, k)) < 0.7)).astype(np.float32)
    splits = np.where(rng.random(n_sent) < 0.3, "test", "train")
    splits[0] = "train"  # no train sentence is refused with a DataError (tested elsewhere)
    sents = Sentences(labels=labels, subsets=np.array([""] * n_sent), splits=splits)
    data = ActivationSet(np.zeros((N, 1), np.float32), sent_idx, sents)
    rep = analyze_report(idx, acts, data, d_sae, AnalysisConfig(bootstrap=8, permutations=8,
                                                                 probe_k=[1, 2]))
    json.dumps(rep, allow_nan=False)
    for pr in rep["pairs"].values():
        assert 0.0 <= pr["jaccard"] <= 1.0
        assert pr["overlap_coefficient"] >= pr["jaccard"] - 1e-12
        if pr["jaccard_ci"] is not None:  # None: a label with < 2 train sentences
            lo, hi = pr["jaccard_ci"]
            assert 0.0 <= lo <= pr["jaccard"] <= hi <= 1.0
        assert 0.0 < pr["p_value"] <= 1.0
    specific = [set(c["specific"]) for c in rep["categories"].values()]
    for i, a in enumerate(specific):
        assert a <= set(list(rep["categories"].values())[i]["features"])
        for b in specific[i + 1:]:
            assert not a & b
