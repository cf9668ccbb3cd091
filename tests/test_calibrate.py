"""Small versions of `python -m sae_exp.calibrate`: the interval covers its quantity, the
p-values are uniform under their nulls and small on planted sharing (README has the full runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sae_exp import calibrate
from sae_exp.analysis import calibration as cal
from sae_exp.analysis.uncertainty import poisson_binomial_sf, subsample_interval


def test_interval_covers_the_expected_jaccard_on_planted_data():
    res = cal.coverage_study(n_sets=40, n=300, resamples=100, n_truth=100, seed=11)
    assert 0.8 <= res["coverage_jaccard"] <= 1.0, res["coverage_jaccard"]  # 0.92 at 200 sets
    assert 0.8 <= res["coverage_overlap_coefficient"] <= 1.0
    r = np.asarray(res["rows"])
    assert np.all(r[:, 5] <= r[:, 3] + 1e-12) and np.all(r[:, 3] <= r[:, 6] + 1e-12)
    assert 0.02 < res["mean_width"] < 0.3  # informative, not [0, 1]


def test_pair_p_value_is_uniform_with_shuffled_labels():
    res = cal.null_pvalue_study(n_sets=120, permutations=49, seed=12, d=300)
    p = np.asarray(res["p_values"])
    assert 0.0 < res["share_below_0.05"] <= 0.11, res["share_below_0.05"]
    assert 0.4 < p.mean() < 0.6 and 0.15 < (p <= 0.25).mean() < 0.35
    assert res["mean_associated_latents"] <= 0.3  # essentially nothing is associated


def test_p_shared_is_uniform_under_independent_selection_and_small_on_planted_sharing():
    null = cal.shared_study(n_sets=120, seed=13)
    assert null["share_below_0.05"] <= 0.11, null["share_below_0.05"]
    assert 0.3 < np.mean(null["p_values"]) < 0.7
    planted = cal.shared_study(n_sets=20, n_shared=10, seed=14)
    assert planted["share_below_0.05"] >= 0.9


def test_poisson_binomial_tail_matches_enumeration():
    p = np.array([0.1, 0.5, 0.7, 0.2])
    sums = np.array([[int(b) for b in f"{i:04b}"] for i in range(16)])
    prob = np.prod(np.where(sums == 1, p, 1 - p), axis=1)
    for x in range(6):
        assert poisson_binomial_sf(p, x) == pytest.approx(prob[sums.sum(1) >= x].sum())


def test_interval_is_estimate_plus_minus_z_rescaled_sd():
    vals = np.array([0.1, 0.2, 0.3, 0.2])
    lo, hi = subsample_interval(0.2, vals, m=30, n=120, level=0.95)
    se = np.std(vals, ddof=1) * np.sqrt(30 / 90)
    assert (lo, hi) == pytest.approx((0.2 - 1.959964 * se, 0.2 + 1.959964 * se), abs=1e-6)
    assert subsample_interval(0.0, vals, 30, 120, 0.95)[0] == 0.0  # clipped to [0, 1]


def test_calibrate_command_writes_numbers_and_figures(tmp_path, capsys):
    res = calibrate.main(["--sets", "4", "--quick", "--out", str(tmp_path)])
    assert {p.name for p in tmp_path.iterdir()} == {
        "calibration.json", "coverage_regime1.png", "coverage_regime2.png", "pvalues.png"}
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["coverage"]["n_sets"] == 4 and len(saved["null_p_value"]["p_values"]) == 4
    assert "interval coverage (nominal 95%)" in capsys.readouterr().out
    assert res["summary"] == saved["summary"]


def test_pipeline_coverage_counts_intervals_that_hold_the_planted_value():
    from sae_exp.calibrate import pipeline_coverage

    pair = lambda j, ci: {"a|b": {"jaccard": j, "ci": ci, "planted": 0.2}}  # noqa: E731
    rows = [{"pairs": pair(0.2, [0.18, 0.22])}, {"pairs": pair(0.1, [0.05, 0.15])},
            {"pairs": pair(0.2, None)}, {"pairs": pair(0.25, [0.2, 0.3])}]
    d = pipeline_coverage(rows)["a|b"]
    assert (d["covered"], d["n"]) == (3, 4)  # the second misses; no interval = the point 0.2
    assert d["coverage"] == 0.75 and d["mean_jaccard"] == pytest.approx(0.1875)
