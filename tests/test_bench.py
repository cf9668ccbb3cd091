"""Smoke runs of `python -m sae_exp.bench` at tiny sizes: the table and JSON carry their fields."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from sae_exp import bench
from sae_exp.model.notebook_port import NotebookSAE

ROW_FIELDS = {"d_in", "d_sae", "k", "batch", "speedup_vs_notebook", "ratio_to_floor",
              "speedup_vs_dense", "process_peak_mb", "notes"}
PER_IMPL = ("_s", "_rows_per_s", "_step_mem_mb", "_status", "_times", "_adam")


def test_quick_run_writes_table_and_json(tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--json", str(out)])
    printed = capsys.readouterr().out
    for column in ("notebook", "dense", "sparse", "floor", "rows/s", "vs_nb", "to_floor"):
        assert column in printed
    data = json.loads(out.read_text())
    hw = data["hardware"]
    assert {"cpu_model", "cpu_count", "torch", "date", "device"} <= hw.keys()
    assert hw["torch"] == torch.__version__
    assert len(data["rows"]) == len(bench.GRIDS["quick"])
    for row in data["rows"]:
        assert ROW_FIELDS <= row.keys()
        for impl in bench.IMPLS:
            assert {impl + suffix for suffix in PER_IMPL} <= row.keys(), impl
            assert row[f"{impl}_status"] == "ok", row["notes"]
            assert row[f"{impl}_s"] > 0
        for impl in bench.IMPLS:  # each reported step time is the median of its rounds
            assert row[f"{impl}_s"] == statistics.median(row[f"{impl}_times"])
            assert row[f"{impl}_rows_per_s"] == row["batch"] / row[f"{impl}_s"]
        assert len(row["sparse_times"]) == len(row["floor_times"]) == data["settings"]["steps"]
        assert row["sparse_adam"] in ("fused", "default") and row["notebook_adam"] == "default"
        assert row["sparse_step_mem_mb"] is None or row["sparse_step_mem_mb"] >= 0


def test_ratios_are_medians_of_per_round_ratios_not_ratios_of_medians(monkeypatch):
    """Load that changes between rounds hits every implementation of a round alike, so speedups
    are taken within a round: with these times the ratio of medians would be 3 and 8/3."""
    times = {"floor": [1.0, 4.0, 1.0], "sparse": [2.0, 4.0, 3.0], "notebook": [6.0, 8.0, 9.0]}
    monkeypatch.setattr(bench, "_build", lambda impl, case, x: (impl, "default"))
    monkeypatch.setattr(bench, "_timed", lambda step, device: (times[step].pop(0), None))
    res = bench.run_config({"impls": ["floor", "sparse", "notebook"], "batch": 4, "d_in": 2,
                            "steps": 3, "warmup": 0, "device": "cpu"})
    assert res["ratio_to_floor"] == 2.0  # per round: 2, 1, 3
    assert res["speedup_vs_notebook"] == 3.0  # per round: 3, 2, 3
    assert res["impls"]["sparse"]["step_s"] == 3.0 and res["speedup_vs_dense"] is None


def test_cases_over_the_limits_are_skipped_and_said_so():
    opts = {"device": "cpu", "autocast": "none", "threads": 1, "steps": 1, "warmup": 1,
            "max_step_s": 30.0, "mem_limit_gb": 1e-4, "isolate": False}
    # all four in one process: ~1.5e-4 GiB estimated; without the notebook ~1.1e-4; sparse and
    # floor alone ~0.5e-4
    row = bench.bench_config(16, 64, 4, 32, opts)
    assert row["notebook_status"] == "skipped" and row["notebook_s"] is None
    assert row["dense_status"] == "skipped"
    assert row["sparse_status"] == "ok" and row["floor_status"] == "ok"
    assert "GiB limit" in row["notes"] and row["speedup_vs_notebook"] is None
    assert row["ratio_to_floor"] is not None
    assert "skipped" in bench.format_table([row])
    slow = bench.bench_config(16, 64, 4, 32, {**opts, "mem_limit_gb": 1.0, "max_step_s": 0.0})
    assert slow["notebook_status"] == "skipped" and "s/step" in slow["notes"]


def test_a_size_runs_in_a_fresh_process():
    res = bench._run_isolated({"impls": ["sparse", "floor"], "d_in": 8, "d_sae": 32, "k": 2,
                               "batch": 16, "steps": 1, "warmup": 1, "threads": 1}, timeout=120)
    assert res["status"] == "ok", res
    assert res["impls"]["sparse"]["step_s"] > 0 and res["process_peak_mb"] > 0
    assert res["ratio_to_floor"] > 0


def test_quick_stream_run(tmp_path: Path, capsys):
    res = bench.main(["--quick", "--stream", "--stream-dir", str(tmp_path)])
    s = res["stream"]
    for key in ("read_file", "read_mapped", "train"):
        assert s[key]["status"] == "ok", s[key]
        assert s[key]["rows"] > 0 and s[key]["peak_rss_mb"] > 0
    assert s["train"]["steps"] > 0
    assert list(tmp_path.iterdir()) == []  # the activation file is removed afterwards
    assert "peak RSS" in capsys.readouterr().out


def test_notebook_port_keeps_the_notebook_behaviour():
    torch.manual_seed(0)
    sae = NotebookSAE(6, 20, sparsity_coeff=0.1, top_k=3)
    with torch.no_grad():
        sae.encoder.bias.fill_(1.0)  # every latent positive
    x = torch.randn(4, 6)
    assert ((sae.encode(x) > 0).sum(1) == 3).all()  # top-k in training
    sae.eval()
    assert ((sae.encode(x) > 0).sum(1) == 20).all()  # ... and not at inference (its bug)
    assert torch.equal(sae.decoder.weight, sae.encoder.weight.t())  # starts as the transpose
    assert sae.decoder.weight.data_ptr() != sae.encoder.weight.data_ptr()  # but is a copy


def test_breakdown_times_the_trainers_auxk_and_every_piece():
    """The breakdown's AuxK is the trainer's (same value on the same dead latents), and every
    piece is timed in every round."""
    import torch

    from sae_exp.bench_breakdown import PIECES, _aux_loss, breakdown
    from sae_exp.config import OptimizerConfig, SparsityConfig, TrainerConfig
    from sae_exp.model.sae import SAE
    from sae_exp.train.trainer import Trainer

    torch.manual_seed(0)
    sae = SAE(16, 64, k=4)
    tr = Trainer(sae, OptimizerConfig(), SparsityConfig(top_k=4, aux_k=8, dead_after_rows=10),
                 TrainerConfig(epochs=1, batch_size=32), torch.device("cpu"))
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    tr.state.rows_since_fired = torch.where(dead, 100, 0)
    x = torch.randn(32, 16)
    out = sae(x)
    want = tr._aux_loss(x, out)
    got = _aux_loss(sae, x, out.x_hat, out.enc.pre_acts, dead, 8)
    assert float(got) == pytest.approx(float(want), rel=1e-6)

    res = breakdown(d_in=16, d_sae=64, k=4, batch=32, rounds=3, aux_k=8)
    assert set(res["pieces"]) == set(PIECES)
    assert all(len(p["times"]) == 3 for p in res["pieces"].values())
    s = res["step_s"]
    assert 0 < s["min"] <= s["median"] <= s["max"]


def test_analysis_bench_changes_one_size_and_reports_each_stage(tmp_path):
    """bench_analysis --quick: the second row doubles the sentences (and so the rows) of the
    first, every stage the analysis reports is there, and the JSON holds the same rows."""
    from sae_exp import bench_analysis

    out = bench_analysis.main(["--quick", "--json", str(tmp_path / "a.json")])
    first, second = out["rows"]
    assert second["sentences"] == 2 * first["sentences"] and second["rows"] == 2 * first["rows"]
    assert (second["d_sae"], second["labels"]) == (first["d_sae"], first["labels"])
    for row in out["rows"]:
        assert {"association", "subsamples", "permutations", "probe",
                "probe_beside"} <= set(row["stages"])
        # the probes run beside the resampling: their own time lies inside the total, and
        # the total is not the sum of the stages
        assert row["seconds"] >= row["stages"]["probe_beside"] > 0
        assert row["seconds"] >= row["stages"]["probe"] >= 0
    assert json.loads((tmp_path / "a.json").read_text())["rows"] == out["rows"]
