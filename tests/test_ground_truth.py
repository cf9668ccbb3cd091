"""The ground-truth benchmark: the generator plants what it says, and the default trainer learns
the rare (~1%) label-specific features and the report names them.

The defaults were chosen on generator seed 7 (README, "Training defaults and the ground-truth
benchmark"); these tests use other seeds. Each training test is one benchmark run (~1,000 steps
at the benchmark's scale), under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from sae_exp import synth
from sae_exp.analysis import recovery
from sae_exp.data import ground_truth
from sae_exp.data.sources import load_activations

SPEC = ground_truth.GroundTruthSpec


def test_generator_plants_rare_specific_features_at_one_percent(tmp_path):
    spec = SPEC(seed=3)
    fields, truth = ground_truth.generate(spec)
    kind, member = truth["kind"], truth["member"]
    freq = truth["observed_frequency"]
    spec_ids = np.flatnonzero(kind == "specific")
    assert len(spec_ids) == 3 * spec.n_specific
    assert np.all(np.abs(freq[spec_ids] - 0.01) < 0.003)  # ~1% of all rows each
    bg = kind == "background"
    assert truth["frequency"][bg].min() >= 0.002 and truth["frequency"][bg].max() <= 0.05
    assert np.all(member[spec_ids].sum(1) == 1) and np.all(member[bg].all(1))
    assert fields["activations"].shape == (3 * 1500 * 4, 128)
    # the data=file source reads the truth written beside the data
    path = ground_truth.write(spec, tmp_path / "gt.npz")
    cfg = type("C", (), {"source": "file", "path": str(path), "test_fraction": 0.2,
                         "drop_nonfinite": False})()
    aset = load_activations(cfg, seed=0)
    assert aset.planted is not None
    assert aset.planted["jaccard"]["conditional|quantifier"] == pytest.approx(4 / 20)
    assert aset.planted["specific"]["control"] == list(range(16, 24))
    assert np.array_equal(np.asarray(aset.acts), fields["activations"])


def test_specific_features_fire_only_in_their_label():
    spec = SPEC(seed=4, n_sentences=600)
    fields, truth = ground_truth.generate(spec)
    fires = truth["fires"]
    for j, lab in enumerate(spec.labels):
        ids = np.flatnonzero((truth["kind"] == "specific") & truth["member"][:, j])
        rows = fields["labels"] == lab
        assert not fires[~rows][:, ids].any()  # never outside its label
        assert np.all(np.abs(fires[rows][:, ids].mean(0) - 0.03) < 0.012)  # 3 labels x 1%
    shared = np.flatnonzero(truth["kind"] == "shared")
    assert not fires[fields["labels"] == "control"][:, shared].any()
    # a row is the sum of its firing features' directions (magnitudes 0.5-1.5) plus small noise
    proj = fields["activations"] @ truth["directions"].T
    assert np.median(proj[fires]) > 0.8 and np.median(proj[~fires]) < 0.1


def test_recovery_metrics_on_a_known_decoder():
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((6, 16))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    W = np.vstack([directions[:4] + 0.01 * rng.standard_normal((4, 16)),  # 4 recovered
                   rng.standard_normal((3, 16)),
                   directions[1] + 0.9 * directions[4]])  # latent 7: a partial copy of feature 1
    planted = {"directions": directions, "frequency": np.array([0.003, 0.01, 0.01, 0.03, 0.03,
                                                                0.001]),
               "kind": np.array(["specific"] * 3 + ["background"] * 3),
               "specific": {"a": [0, 1], "b": [2]}}
    cats = {"a": {"specific": [0, 1, 5, 7]}, "b": {"specific": []}}
    rec = recovery.evaluate(W, planted, {"fvu": 0.1, "dead_fraction": 0.0}, cats)
    assert rec["recovered"] == pytest.approx(4 / 6)
    assert rec["by_kind"]["specific"] == 1.0
    assert rec["by_kind"]["background"] == pytest.approx(1 / 3)
    # latent 7 (cosine ~0.74 to feature 1) is attributed to a, latent 5 (noise) is not
    assert rec["specific_match"]["a"] == {"n_reported": 4, "n_planted": 2,
                                          "precision": pytest.approx(3 / 4), "recall": 1.0}
    assert rec["specific_match"]["b"]["recall"] == 0.0


def _bench(tmp_path, seed: int, *overrides: str) -> dict:
    rep = synth.benchmark(SPEC(seed=seed), list(overrides), tmp_path)
    return rep["recovery"]


@pytest.mark.parametrize("seed", [1, 2])
def test_default_trainer_recovers_rare_specific_features(tmp_path, seed):
    """~1%-frequency label-specific features: >= 90% learned in ~1,000 steps, <= 10% dead.

    d_sae 768 (2.2x the 352 true features). At the benchmark's 1024 the specific features are
    all learned too, but the dead fraction sits at the limit (0.085-0.104 over seeds 1, 2, 7,
    8, 9; README)."""
    rec = _bench(tmp_path, seed, "model.hidden_dim=768", "trainer.epochs=34")  # 986 steps
    assert rec["by_kind"]["specific"] >= 0.9, rec["by_kind"]
    assert rec["dead_fraction"] <= 0.10
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["run"]["steps"] <= 1000
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Recovery of the known dictionary" in md


@pytest.mark.parametrize("factor", [1, 2])
def test_report_specific_latents_match_planted_ones(tmp_path, factor):
    """On seed 5 (not tuned on), at top_k = the true L0 and twice it."""
    spec = SPEC(seed=5)
    k = max(1, round(float(ground_truth.generate(spec)[1]["true_l0"]))) * factor
    rec = _bench(tmp_path, 5, f"sparsity.top_k={k}")
    for label, m in rec["specific_match"].items():
        assert m["precision"] >= 0.9, (label, m)
        assert m["recall"] >= 0.8, (label, m)


def test_synth_cli_prints_the_recovery_table(tmp_path):
    proc = run_cli("sae_exp.synth", ["--out", str(tmp_path / "b"), "gt.n_sentences=100",
                                     "gt.n_background=40", "model.hidden_dim=64",
                                     "trainer.epochs=2", "gt.nonsense=1"], cwd=tmp_path)
    assert proc.returncode == 2 and "gt.nonsense" in proc.stderr
    proc = run_cli("sae_exp.synth", ["--out", str(tmp_path / "b"), "--json", "r.json",
                                     "gt.n_sentences=100", "gt.n_background=40",
                                     "model.hidden_dim=64", "trainer.epochs=2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((tmp_path / "r.json").read_text())
    n = 3 * 8 + 4 + 40
    assert f"| features recovered (cos > 0.9) | {rec['recovered']:.3f} of {n} |" in proc.stdout
    assert (tmp_path / "b" / "data" / "gt_seed0.truth.npz").is_file()
