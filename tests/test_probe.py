"""Sparse probing: pooling, selection, the logistic fit, and accuracy on planted/shuffled data."""

from __future__ import annotations

import numpy as np
import pytest
from planted_codes import make_planted

from sae_exp.analysis import probes as probe


def _probe_inputs(planted, specific=None):
    d = planted.data
    labels = sorted(planted.features)
    label_of = np.searchsorted(labels, np.asarray(d.sentences.labels).astype(str))
    pooled = probe.pool_sentences(planted.top_indices, planted.top_acts, d.sentence_index,
                                  len(d.sentences), 200)
    spec = specific if specific is not None else {k: sorted(v) for k, v in
                                                  planted.specific.items()}
    return (pooled, labels, label_of, np.asarray(d.sentences.subsets).astype(str),
            np.asarray(d.sentences.splits).astype(str), spec)


def test_pool_sentences_is_the_mean_over_each_sentences_rows():
    idx = np.array([[0, 1], [1, 0], [2, 0]])
    acts = np.array([[1.0, 2.0], [4.0, 0.0], [3.0, 0.0]], np.float32)
    pooled = probe.pool_sentences(idx, acts, np.array([0, 0, 1]), 3, 3).toarray()
    np.testing.assert_allclose(pooled, [[0.5, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])


def test_selection_picks_the_latent_that_separates_the_label():
    rng = np.random.default_rng(0)
    X = rng.random((200, 10))
    pos = np.arange(200) < 60
    X[pos, 7] += 1.0
    import scipy.sparse as sp

    assert probe.select_by_mean_difference(sp.csr_matrix(X), pos, 1) == [7]


def test_balanced_accuracy_by_hand():
    y = np.array([1, 1, 0, 0, 0, 0])
    pred = np.array([1, 0, 0, 0, 0, 1])
    assert probe.balanced_accuracy(y, pred) == pytest.approx((0.5 + 0.75) / 2)
    assert probe.balanced_accuracy(np.array([], int), np.array([], int)) is None


def test_logistic_probe_separates_separable_data_and_is_deterministic():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    m1 = probe.LogisticProbe(2, l2=1.0).fit(X, y)
    m2 = probe.LogisticProbe(2, l2=1.0).fit(X, y)
    assert (m1.predict(X) == y).mean() > 0.95
    np.testing.assert_array_equal(m1.W, m2.W)


def test_two_class_probe_is_the_optimum_of_the_two_class_softmax_objective():
    """The binary fit (one weight vector, penalty l2/4) must land on the optimum of the
    multinomial objective it replaces: its gradient there is ~0, and W's columns are -v/2, v/2."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 6))
    y = (X[:, 0] - X[:, 2] + rng.standard_normal(400) > 0.5).astype(int)
    for l2 in (0.1, 1.0, 10.0):
        m = probe.LogisticProbe(2, l2=l2).fit(X, y)
        Z = (X - m.mu) / m.sd
        counts = np.bincount(y, minlength=2).astype(float)
        w = len(y) / (2 * counts[y])
        P = np.exp(Z @ m.W + m.b)
        P /= P.sum(1, keepdims=True)
        G = (P - np.eye(2)[y]) * w[:, None]
        grad = np.concatenate([(Z.T @ G + l2 * m.W).ravel(), G.sum(0)])
        assert np.abs(grad).max() < 1e-2, (l2, np.abs(grad).max())  # ~1e-4 seen; 20 if off
        np.testing.assert_allclose(m.W[:, 0], -m.W[:, 1])
        np.testing.assert_allclose(m.b[0], -m.b[1])


def test_probes_reach_high_accuracy_on_planted_data():
    planted = make_planted(k=8, seed=0)
    out = probe.sparse_probing(*_probe_inputs(planted), probe_k=[1, 2, 5])
    for lab, res in out["one_vs_rest"].items():
        assert res["specific"]["balanced_accuracy"] >= 0.95, lab
        assert res["k=5"]["balanced_accuracy"] >= 0.9, lab
        assert res["k=1"]["balanced_accuracy"] > 0.6, lab
        assert len(res["k=5"]["latents"]) == 5
        assert set(res["k=5"]["latents"]) <= planted.features[lab]
        assert set(res["specific"]["by_subset"]) == {f"{x}/{s}" for x in planted.features
                                                     for s in ("plain", "trap")}
    mc = out["multiclass"]
    assert mc["accuracy"] >= 0.95 and mc["balanced_accuracy"] >= 0.95
    assert mc["chance_balanced_accuracy"] == pytest.approx(1 / 3)
    assert out["warnings"] == []


def test_probes_are_at_chance_on_shuffled_labels():
    planted = make_planted(n_per_label=400, k=8, seed=2, shuffle_labels=True, test_fraction=0.4)
    inputs = _probe_inputs(planted)  # planted specific sets, but labels carry no signal
    out = probe.sparse_probing(*inputs, probe_k=[1, 5])
    scores = [res[name]["balanced_accuracy"] for res in out["one_vs_rest"].values()
              for name in ("k=1", "k=5", "specific")]
    assert abs(np.mean(scores) - 0.5) < 0.05, scores
    assert max(scores) < 0.62, scores
    assert abs(out["multiclass"]["balanced_accuracy"] - 1 / 3) < 0.07


def test_probe_reports_what_it_cannot_fit():
    planted = make_planted(n_per_label=40, seed=3)
    pooled, labels, label_of, subsets, splits, spec = _probe_inputs(
        planted, specific={"a": [0], "b": [], "control": []})
    out = probe.sparse_probing(pooled, labels, label_of, subsets, splits, spec, [1])
    assert out["one_vs_rest"]["b"]["specific"] is None
    assert out["multiclass"]["latents"] == [0]
    none = probe.sparse_probing(pooled, labels, label_of, subsets, np.full(len(splits), "train"),
                                spec, [1])
    assert none["one_vs_rest"] == {} and "both the train and the test split" in none["warnings"][0]
