"""Data-parallel training of one SAE under torchrun (2 CPU processes, gloo): the same result as
one process within float tolerance; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from tiny_sweep import ARGS, tiny_sweep

from sae_exp.errors import ConfigError
from sae_exp.train import distributed


def test_two_processes_match_one(tmp_path):
    """torchrun, 2 ranks on gloo, against job 1 (top_k=4) of the tiny sweep (one process)."""
    single_dir = tiny_sweep() / "1"
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    ddp_dir = work / "ddp"
    env = {**os.environ, "WANDB_SILENT": "true", "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sae_exp.run", "trainer.ddp=true", *ARGS, "sparsity.top_k=4",
           f"hydra.run.dir={ddp_dir}"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    # rank 0 wrote one run dir; rank 1 wrote nothing (its Hydra dir was a temp dir, removed)
    assert [p.name for p in work.iterdir()] == ["ddp"]
    assert not list(tmp.glob("sae_exp_rank*"))
    info = json.loads((ddp_dir / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "complete"

    a = load_file(str(single_dir / "sae.safetensors"))
    b = load_file(str(ddp_dir / "sae.safetensors"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=0), (
            name, float((a[name] - b[name]).abs().max()))
    ma = json.loads((single_dir / "report.json").read_text())["metrics"]
    mb = json.loads((ddp_dir / "report.json").read_text())["metrics"]
    assert mb["fvu"] == pytest.approx(ma["fvu"], rel=1e-3)
    assert mb["l0"] == pytest.approx(ma["l0"])
    # the training log is averaged over ranks and has the same steps
    log_a = [json.loads(x) for x in (single_dir / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (ddp_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log_a] == [x["step"] for x in log_b]
    assert log_b[-1]["loss"] == pytest.approx(log_a[-1]["loss"], rel=1e-3)


def test_ddp_setting_is_checked_against_the_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup(None, torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="trainer.ddp=True"):
        distributed.setup(True, torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="trainer.ddp=False"):
        distributed.setup(False, torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: an ordinary run
    assert distributed.setup(True, torch.device("cpu")) is None


def test_shard_is_disjoint_and_weights_sum_to_one():
    x = torch.arange(7.0).unsqueeze(1)
    parts = [distributed.DistContext(r, 3, r).shard(x) for r in range(3)]
    assert torch.equal(torch.cat([p for p, _ in parts]), x)
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    small = [distributed.DistContext(r, 3, r).shard(x[:2]) for r in range(3)]
    assert all(torch.equal(p, x[:2]) for p, _ in small)  # too few rows: all, weight 1/3 each
    assert sum(w for _, w in small) == pytest.approx(1.0)


def test_batchtopk_is_refused_under_ddp_on_two_gloo_ranks(tmp_path):
    """Each rank would select its own top k*B and threshold: refused before any work, one line."""
    env = {**os.environ, "WANDB_SILENT": "true", "TMPDIR": str(tmp_path)}
    run_dir = tmp_path / "ddp_btk"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sae_exp.run", *ARGS, "sparsity=batchtopk", "sparsity.top_k=4",
           f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors and "sparsity.kind='batchtopk' is invalid under DDP (WORLD_SIZE=2)" in errors[0]
    assert "sae_exp/" not in proc.stderr.split("error: ", 1)[0]  # no traceback of ours before it
    assert not (run_dir / "metrics.jsonl").exists()  # refused before training


def test_batchtopk_check_allows_one_process():
    distributed.check_sparsity("batchtopk", None)
    distributed.check_sparsity("batchtopk", 1)
    distributed.check_sparsity("topk", 2)
    with pytest.raises(ConfigError, match="batchtopk"):
        distributed.check_sparsity("batchtopk", 2)
