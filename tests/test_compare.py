"""Sweep comparison: a table per job (swept keys, L0, FVU, Jaccard with CI, probe, wall time),
figures, failed jobs reported; and on a real multirun of the app, L0 tracks top_k."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from tiny_sweep import TOP_K, tiny_sweep

from sae_exp import compare
from sae_exp.train.metrics import objective

PAIRS = ("conditional|control", "conditional|quantifier")


def _job(sweep: Path, num: int, overrides: list[str], metrics: dict | None, *,
         error: str | None = None, wall: float = 3.0, wandb_mode: str = "disabled") -> Path:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    cfg = {"data": {"source": "synthetic"}, "wandb": {"mode": wandb_mode, "group": None},
           "objective": {"l0_max": None, "l0_penalty": 1.0}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if error:
        (d / "error.json").write_text(json.dumps({"status": "failed", "error": error}))
    if metrics is not None:
        k = metrics["l0"]
        rep = {
            "metrics": metrics,
            "pairs": {p: {"jaccard": 0.1 * i + k / 100, "jaccard_ci": [0.1 * i, 0.1 * i + 0.2]}
                      for i, p in enumerate(PAIRS)},
            "probe": {"one_vs_rest": {"conditional": {"k=1": {"balanced_accuracy": 0.7}},
                                      "control": {"k=1": {"balanced_accuracy": 0.9}}},
                      "multiclass": {"accuracy": 0.8}},
            "incomplete": False,
        }
        (d / "report.json").write_text(json.dumps(rep))
        (d / "run_info.json").write_text(json.dumps({"wall_time_s": wall}))
    return d


@pytest.fixture
def sweep(tmp_path) -> Path:
    s = tmp_path / "2025-01-01_00-00-00_000000_default"
    s.mkdir()
    (s / "multirun.yaml").write_text("hydra: {}\n")
    for i, k in enumerate([10, 30, 50]):
        _job(s, i, [f"sparsity.top_k={k}", "data=synthetic"],
             {"l0": float(k), "fvu": 0.5 / k, "dead_fraction": 0.01 * i}, wall=1.5 + i)
    _job(s, 3, ["sparsity.top_k=70", "data=synthetic"], None,
         error="trainer.batch_size=0 is invalid")
    _job(s, 4, ["sparsity.top_k=90", "data=synthetic"], None)  # killed: no report
    (s / ".submitit").mkdir()  # launcher folders are not jobs
    return s


def test_table_has_a_row_per_job_with_swept_keys_and_metrics(sweep):
    result = compare.compare([sweep])
    rows = {r["job"]: r for r in result["rows"]}
    assert list(rows) == ["0", "1", "2", "3", "4"]
    assert "sparsity.top_k" in result["columns"] and "data" not in result["columns"]
    assert [rows[j]["sparsity.top_k"] for j in "012"] == [10, 30, 50]
    assert [rows[j]["l0"] for j in "012"] == [10.0, 30.0, 50.0]
    assert rows["1"]["fvu"] == pytest.approx(0.5 / 30)
    assert rows["2"]["dead_fraction"] == pytest.approx(0.02)
    assert rows["0"]["jaccard[conditional|quantifier]"] == pytest.approx(0.2)
    assert (rows["0"]["jaccard_lo[conditional|quantifier]"],
            rows["0"]["jaccard_hi[conditional|quantifier]"]) == pytest.approx((0.1, 0.3))
    assert rows["0"]["probe_bacc[k=1]"] == pytest.approx(0.8)  # mean over labels
    assert rows["0"]["probe_multiclass_acc"] == pytest.approx(0.8)
    assert rows["2"]["wall_time_s"] == 3.5


def test_failed_and_missing_jobs_are_reported_not_fatal(sweep):
    result = compare.compare([sweep])
    rows = {r["job"]: r for r in result["rows"]}
    assert rows["3"]["status"] == "failed" and "batch_size" in rows["3"]["reason"]
    assert rows["4"]["status"] == "missing" and rows["4"]["l0"] is None
    assert rows["3"]["sparsity.top_k"] == 70
    md = (sweep / compare.MD_NAME).read_text()
    assert "3 complete, 1 failed, 1 missing" in md
    assert "trainer.batch_size=0 is invalid" in md
    assert "0.2 [0.1, 0.3]" in md  # Jaccard with its CI


def test_files_are_written_to_the_sweep_dir(sweep):
    compare.compare([sweep])
    with open(sweep / compare.CSV_NAME, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["complete"] * 3 + ["failed", "missing"]
    assert float(table[1]["fvu"]) == pytest.approx(0.5 / 30)
    figs = sorted(p.name for p in (sweep / "figures").glob("*.png"))
    assert figs == ["l0_fvu_frontier.png", "overlap_vs_sparsity.top_k.png"]
    for name in figs:
        assert (sweep / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(sweep.rglob(".*.tmp"))  # atomic writes leave no temp files


def test_cli_several_sweeps_and_bad_dirs(sweep, tmp_path, capsys):
    other = tmp_path / "other_sweep"
    _job(other, 0, ["sparsity.top_k=30", "model.hidden_dim=64"],
         {"l0": 30.0, "fvu": 0.02, "dead_fraction": 0.0})
    out = tmp_path / "both"
    assert compare.main([str(sweep), str(other), "--out", str(out)]) == 0
    with open(out / compare.CSV_NAME, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and {r["sweep"] for r in table} == {sweep.name, "other_sweep"}
    assert compare.main([str(tmp_path / "nope")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare.main([str(empty)]) == 2
    assert "holds no job dirs" in capsys.readouterr().err


def test_wandb_failure_only_warns(sweep, monkeypatch, caplog):
    import sys
    import types

    fake = types.ModuleType("wandb")

    def init(**kwargs):
        fake.kwargs = kwargs
        raise RuntimeError("no network")

    fake.init = init
    fake.Settings = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "wandb", fake)
    result = compare.compare([sweep], wandb_mode="offline")
    assert (sweep / compare.CSV_NAME).exists() and len(result["rows"]) == 5
    assert fake.kwargs["group"] == sweep.name and fake.kwargs["job_type"] == "compare"
    assert "W&B logging of the comparison failed" in caplog.text


def test_objective_penalises_l0_above_the_limit():
    assert objective({"fvu": 0.2, "l0": 50}) == 0.2
    assert objective({"fvu": 0.2, "l0": 30}, l0_max=32) == 0.2
    assert objective({"fvu": 0.2, "l0": 64}, l0_max=32, l0_penalty=1.0) == pytest.approx(1.2)


def test_multirun_then_compare_l0_tracks_top_k(tmp_path):
    """The real app: a 3-job multirun over top_k, then the compare CLI on its sweep dir."""
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep(), sweep)
    proc = run_cli("sae_exp.compare", [str(sweep)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| sparsity.top_k | l0 | fvu |" in proc.stdout  # the table is printed too
    with open(sweep / compare.CSV_NAME, newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["sparsity.top_k"]) for r in table] == list(TOP_K)
    assert all(r["status"] == "complete" for r in table)
    l0 = [float(r["l0"]) for r in table]
    fvu = [float(r["fvu"]) for r in table]
    assert l0 == pytest.approx(list(TOP_K), abs=0.5)  # top-k at inference: L0 follows k
    assert fvu[0] > fvu[1] > fvu[2]
    pair_cols = [c for c in table[0] if c.startswith("jaccard[")]
    assert pair_cols and all(r[c] != "" for r in table for c in pair_cols)
    assert all(float(r["wall_time_s"]) > 0 for r in table)
    assert (sweep / "figures" / compare.FRONTIER_FIG).is_file()
    # jobs of one multirun share a W&B group: the sweep dir's name
    groups = {json.loads((sweep / r["job"] / "run_info.json").read_text())["wandb_group"]
              for r in table}
    assert groups == {"sweep"}
