"""Cross-seed matching, consensus latents, overlap across seeds and the seeds command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from sae_exp.analysis import seeds as S
from tests.conftest import TINY, run_cli

D_IN, N_PLANTED, D_SAE = 64, 48, 80


def _planted(rng) -> np.ndarray:
    return S.unit_rows(rng.standard_normal((N_PLANTED, D_IN)))


def _seed_decoder(planted: np.ndarray, rng, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """A decoder that learned every planted feature (noisy) plus seed-specific junk, in a random
    order. Returns (W_dec [D_SAE, D_IN], where [N_PLANTED]: the row holding each feature)."""
    rows = np.vstack([planted + noise * rng.standard_normal(planted.shape),
                      rng.standard_normal((D_SAE - N_PLANTED, D_IN))])
    perm = rng.permutation(D_SAE)  # row perm[i] of the result is rows[i]
    W = np.empty_like(rows)
    W[perm] = rows
    return S.unit_rows(W), perm[:N_PLANTED]


def test_matching_undoes_a_permutation_exactly():
    rng = np.random.default_rng(0)
    W = S.unit_rows(rng.standard_normal((30, 16)))
    perm = rng.permutation(30)
    partner, cos = S.match_pair(W, W[perm])
    np.testing.assert_array_equal(perm[partner], np.arange(30))
    np.testing.assert_allclose(cos, 1.0)


def test_consensus_of_three_seeds_recovers_the_planted_features():
    rng = np.random.default_rng(1)
    planted = _planted(rng)
    decs, where = zip(*[_seed_decoder(planted, rng) for _ in range(3)], strict=True)
    m = S.match_all(list(decs), threshold=0.7)
    names = ["s0", "s1", "s2"]
    cons = S.consensus(m, names, min_seeds=2)
    for i in range(3):
        got = {c["latent"] for c in cons[i]["latents"]}
        assert got == set(where[i].tolist())  # exactly the planted rows, no junk
    # members name the same planted feature in every seed
    by_row = {int(r): f for f, r in enumerate(where[0])}
    for c in cons[0]["latents"]:
        f = by_row[c["latent"]]
        assert c["n_seeds"] == 3
        assert c["members"] == {"s0": int(where[0][f]), "s1": int(where[1][f]),
                                "s2": int(where[2][f])}
    fr = S.pair_fractions(m, names)
    for p in fr:
        assert p["frac_above_0.9"] == pytest.approx(N_PLANTED / D_SAE)


def test_an_unrelated_dictionary_matches_few_latents():
    rng = np.random.default_rng(2)
    planted = _planted(rng)
    learned, _ = _seed_decoder(planted, rng)
    unrelated = S.unit_rows(rng.standard_normal((D_SAE, D_IN)))
    m = S.match_all([learned, unrelated], threshold=0.7)
    (p,) = S.pair_fractions(m, ["a", "b"])
    assert p["frac_above_0.7"] < 0.05 and p["frac_above_0.9"] == 0
    assert S.consensus(m, ["a", "b"], min_seeds=2)[0]["n_consensus"] <= 0.05 * D_SAE


def _report(features: dict[str, list[int]], specific: dict[str, list[int]]) -> dict:
    labels = sorted(features)
    pairs = {f"{a}|{b}": {} for i, a in enumerate(labels) for b in labels[i + 1:]}
    return {"categories": {lab: {"features": features[lab], "specific": specific.get(lab, [])}
                           for lab in labels}, "pairs": pairs}


def test_overlap_across_seeds_mean_sd_range_and_consensus_only():
    reps = [_report({"a": [0, 1, 2, 3], "b": [2, 3, 4, 5]}, {}),  # J = 2/6
            _report({"a": [0, 1], "b": [1, 2]}, {})]              # J = 1/3
    res = S.overlap_across_seeds(reps)["a|b"]
    assert res["jaccard"]["values"] == pytest.approx([1 / 3, 1 / 3])
    assert res["jaccard"]["sd"] == pytest.approx(0.0)
    assert res["overlap_coefficient"]["values"] == pytest.approx([0.5, 0.5])
    reps[1] = _report({"a": [0, 1], "b": [0, 1]}, {})  # J = 1
    res = S.overlap_across_seeds(reps)["a|b"]["jaccard"]
    assert res["mean"] == pytest.approx(2 / 3)
    assert res["sd"] == pytest.approx(np.std([1 / 3, 1.0], ddof=1))
    assert (res["min"], res["max"]) == pytest.approx((1 / 3, 1.0))
    masks = [np.array([1, 1, 1, 0, 1, 1], bool), np.array([1, 0, 1, 1, 1, 1], bool)]
    only = S.overlap_across_seeds(reps, masks)["a|b"]["jaccard"]["values"]
    assert only == pytest.approx([1 / 5, 1.0])  # {0,1,2} vs {2,4,5}; {0} vs {0}


def test_specific_recurrence_counts_seeds_with_a_matched_specific_latent():
    rng = np.random.default_rng(3)
    W = S.unit_rows(rng.standard_normal((6, 16)))
    decs = [W, W[[1, 0, 2, 3, 4, 5]], W]  # seed 1 swaps latents 0 and 1
    m = S.match_all(decs, threshold=0.7)
    reps = [_report({"x": [0, 1], "y": [5]}, {"x": [0, 1]}),
            _report({"x": [0, 1], "y": [5]}, {"x": [1]}),   # seed 1's row 1 is seed 0's row 0
            _report({"x": [0], "y": [5]}, {"x": [0]})]
    rec = S.specific_recurrence(m, reps, ["s0", "s1", "s2"], min_seeds=2)["x"]
    assert rec["per_seed"][0]["found_in"] == {0: 3, 1: 1}
    assert rec["per_seed"][0]["n_recurring"] == 1
    assert rec["recurring_share"]["values"] == pytest.approx([0.5, 1.0, 1.0])


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    """A three-seed sweep of the tiny synthetic run (one multirun)."""
    root = tmp_path_factory.mktemp("seeds")
    sweep = root / "sweep"
    res = run_cli("sae_exp.run", [*TINY, "seed=0,1,2", f"hydra.sweep.dir={sweep}", "-m"],
                  cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    return sweep


def test_seeds_command_end_to_end(seed_sweep, tmp_path):
    sweep = tmp_path / "s"
    shutil.copytree(seed_sweep, sweep)
    res = run_cli("sae_exp.seeds", [str(sweep)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((sweep / "seeds.json").read_text())
    assert out["n_seeds"] == 3 and out["min_seeds"] == 2
    assert [r["seed"] for r in out["runs"]] == [0, 1, 2]
    assert len(out["pairs_of_seeds"]) == 3
    assert out["chance"]["n_matched"] == 32 and out["chance"]["median_cos"] < 0.7
    reports = [json.loads((sweep / str(i) / "report.json").read_text()) for i in range(3)]
    for key, v in out["overlap"].items():  # per-seed Jaccards are the runs' own
        assert v["jaccard"]["values"] == pytest.approx([r["pairs"][key]["jaccard"]
                                                        for r in reports])
    for c in out["consensus"]:
        assert all(lat["n_seeds"] >= 2 for lat in c["latents"])
        assert c["n_consensus"] == len(c["latents"])
    md = (sweep / "seeds.md").read_text()
    assert "frac_above_0.7" in md and "## Definitions" in md and "Not logged to W&B" in md
    assert (sweep / "figures" / "seed_matching.png").stat().st_size > 1000
    # compare on a sweep that differs only in seed writes the seed analysis too
    (sweep / "seeds.json").unlink()
    res = run_cli("sae_exp.compare", [str(sweep)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((sweep / "seeds.json").read_text())["n_seeds"] == 3


def test_seeds_refuses_runs_that_differ_in_more_than_seed(seed_sweep, tmp_path):
    sweep = tmp_path / "s"
    shutil.copytree(seed_sweep, sweep)
    snap = sweep / "2" / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(snap.read_text())
    cfg["sparsity"]["top_k"] = 3
    snap.write_text(yaml.safe_dump(cfg))
    res = run_cli("sae_exp.seeds", [str(sweep)], cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "differ in more than seed (sparsity.top_k)" in err[0]
    assert not (sweep / "seeds.json").exists()
    # and compare then stays a plain comparison
    res = run_cli("sae_exp.compare", [str(sweep)], cwd=tmp_path)
    assert res.returncode == 0 and not (sweep / "seeds.json").exists()
