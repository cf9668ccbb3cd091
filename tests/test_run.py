"""The app end to end, run as a user would: files of a run, multirun, W&B offline, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, run_cli
from safetensors.torch import load_file

from sae_exp import files


def _single_run(tmp_path, extra=()):
    out = tmp_path / "run"
    res = run_cli("sae_exp.run", [*TINY, *extra, f"hydra.run.dir={out}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_run_writes_every_contract_file(tmp_path):
    out = _single_run(tmp_path)
    for name in [".hydra/config.yaml", ".hydra/overrides.yaml", files.RUN_INFO, files.METRICS,
                 files.SAE_WEIGHTS, files.SAE_CFG, files.REPORT_JSON, files.REPORT_MD,
                 files.FEATURES, files.PROBE]:
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png"))
    tensors = load_file(str(out / files.SAE_WEIGHTS))
    assert tensors["W_enc"].shape == (16, 32) and tensors["W_dec"].shape == (32, 16)
    assert tensors["b_enc"].shape == (32,) and tensors["b_dec"].shape == (16,)
    info = json.loads((out / files.RUN_INFO).read_text())
    for key in ["git", "packages", "device", "data_fingerprint", "seed", "wall_time_s"]:
        assert key in info
    assert info["packages"]["torch"]
    rep = json.loads((out / files.REPORT_JSON).read_text())
    for key in ["fvu", "mse", "explained_variance", "l0", "dead_fraction", "dense_fraction"]:
        assert isinstance(rep["metrics"][key], (int, float)), key
    assert rep["metrics"]["explained_variance"] == pytest.approx(1 - rep["metrics"]["fvu"])
    cats = rep["categories"]
    assert set(cats) == {"conditional", "quantifier", "control"}
    split = rep["split"]
    assert sum(c["n_sentences"] for c in cats.values()) == (
        split["n_train_sentences"] + split["n_test_sentences"])
    for c in cats.values():  # the contract fields mean what DESIGN.md says
        assert c["n_sentences"] == c["n_train_sentences"] + c["n_test_sentences"]
        assert set(c["specific"]) <= set(c["features"]) and c["n_rows"] >= c["n_sentences"]
    for key, pair in rep["pairs"].items():
        A, B = (set(cats[lab]["features"]) for lab in key.split("|"))
        assert set(pair["shared"]) == A & B
        assert pair["jaccard"] == (len(A & B) / len(A | B) if A | B else 0.0)
        assert pair["overlap_coefficient"] == (
            len(A & B) / min(len(A), len(B)) if A and B else 0.0)
        lo, hi = pair["jaccard_ci"]
        assert 0.0 <= lo <= pair["jaccard"] <= hi <= 1.0
        assert 0.0 < pair["p_value"] <= 1.0
    lines = (out / files.METRICS).read_text().splitlines()
    keys = {"step", "loss", "l0", "batch_fvu", "auxk_dead_fraction"}
    assert lines and keys <= set(json.loads(lines[-1]))


def test_multirun_sweeps_top_k(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("sae_exp.run", [*TINY, "sparsity.top_k=1,3,6", f"hydra.sweep.dir={sweep}", "-m"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    reports = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        top_k = json.loads((job / files.SAE_CFG).read_text())["k"]
        rep = json.loads((job / files.REPORT_JSON).read_text())
        assert rep["metrics"]["l0"] <= top_k
        reports[top_k] = rep["metrics"]
    assert sorted(reports) == [1, 3, 6]
    assert reports[1]["fvu"] > reports[6]["fvu"]  # more latents per row reconstruct better


def test_wandb_offline_writes_local_run_files(tmp_path):
    out = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("wandb.mode")]
    res = run_cli("sae_exp.run", [*args, "wandb.mode=offline", f"hydra.run.dir={out}"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the offline run holds its history file"
    media = runs[0] / "files" / "media"
    assert list(media.glob("table/report/pairs_*.table.json"))  # report tables
    assert list(media.glob("images/figures/*.png"))  # report figures


def test_bad_value_is_one_line_exit_2_and_no_traceback(tmp_path):
    res = run_cli("sae_exp.run", [*TINY, "sparsity.top_k=0", f"hydra.run.dir={tmp_path / 'r'}"],
                  cwd=tmp_path)
    assert res.returncode == 2
    assert "sparsity.top_k=0" in res.stderr and "Traceback" not in res.stderr


def test_a_finished_run_dir_is_never_overwritten(tmp_path):
    out = _single_run(tmp_path)
    before = (out / files.REPORT_JSON).read_bytes()
    res = run_cli("sae_exp.run", [*TINY, "seed=5", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert res.returncode == 2 and "already holds a finished run" in res.stderr
    assert (out / files.REPORT_JSON).read_bytes() == before


def test_report_recovers_planted_overlap(tmp_path):
    """Train on planted data; the report's Jaccard and specific latents match the ground truth.

    Planted: 8 specific features per label, 4 shared by conditional and quantifier, so
    Jaccard(conditional, quantifier) = 4 / 20 = 0.2 and 0 for the pairs with control. Tolerance:
    the point estimate within 0.05 (one latent more or less in a 20-latent union moves it by
    ~0.01-0.04). The interval is about resampling sentences for this SAE's latents; a latent the
    SAE split or missed moves the estimate without any sentence noise, so the interval need
    not hold the planted value (its coverage is measured by `python -m sae_exp.calibrate`)."""
    import numpy as np

    from sae_exp.config import SyntheticDataConfig
    from sae_exp.data.synthetic import make_synthetic

    out = tmp_path / "run"
    res = run_cli("sae_exp.run", [
        "data=synthetic", "wandb.mode=disabled", "data.n_sentences=300", "model.hidden_dim=96",
        "sparsity.top_k=4", "optimizer.lr=3e-3", "trainer.epochs=60", "trainer.batch_size=256",
        "analysis.bootstrap=200", "analysis.permutations=50", f"hydra.run.dir={out}"],
        cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads((out / files.REPORT_JSON).read_text())
    truth = make_synthetic(SyntheticDataConfig(n_sentences=300)).planted
    for pair, planted in truth["jaccard"].items():
        got = rep["pairs"][pair]
        lo, hi = got["jaccard_ci"]
        assert lo <= got["jaccard"] <= hi and hi - lo < 0.2, (pair, got)
        assert abs(got["jaccard"] - planted) <= 0.05, (pair, got["jaccard"], planted)
    W_dec = load_file(str(out / files.SAE_WEIGHTS))["W_dec"].numpy()
    nearest = (W_dec @ truth["directions"].T).argmax(axis=1)  # planted feature of each latent
    for label, ids in truth["specific"].items():
        found = rep["categories"][label]["specific"]
        assert len(found) >= 0.75 * len(ids)
        assert np.isin(nearest[found], ids).mean() >= 0.85, label


EXPERIMENTS = Path(__file__).resolve().parent.parent / "conf" / "experiment"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_runs_on_a_tiny_budget(tmp_path, experiment):
    out = tmp_path / "run"
    res = run_cli("sae_exp.run", [f"experiment={experiment}", *TINY, "trainer.epochs=2",
                                  f"hydra.run.dir={out}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads((out / files.REPORT_JSON).read_text())
    assert rep["metrics"]["l0"] <= 4
