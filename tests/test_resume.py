"""Resume: a run stopped mid-training and continued from its checkpoint ends with exactly the
weights of an uninterrupted run (CPU): RNG, batch order, LR schedule, L1 warm-up, dead-latent
counters (AuxK) and the batchtopk threshold are all restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from safetensors.torch import load_file

from sae_exp.config import OptimizerConfig, SparsityConfig, SyntheticDataConfig, TrainerConfig
from sae_exp.data.stream import RowStream
from sae_exp.data.synthetic import make_synthetic
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import Interrupted, Trainer


def _trainer(data, kind: str, seed: int) -> tuple[Trainer, RowStream]:
    torch.manual_seed(seed)
    sae = SAE(data.d_in, 48, kind=kind, k=3)
    tr = Trainer(
        sae,
        OptimizerConfig(lr=3e-3, warmup_steps=7, schedule="cosine", min_lr_ratio=0.1),
        SparsityConfig(kind=kind, top_k=3, sparsity_coeff=0.05, l1_warmup_epochs=3,
                       dead_after_rows=300, aux_coeff=1 / 16),
        TrainerConfig(epochs=5, batch_size=100, log_every=1),
        torch.device("cpu"),
    )
    rows = np.flatnonzero(data.row_mask("train"))
    tr.init_b_dec(torch.as_tensor(data.acts[rows]))
    return tr, RowStream(data.acts, rows, 100, seed=7)


# stopped mid-epoch: early, and later with dead latents and AuxK on
@pytest.mark.parametrize("kind, stop_at", [("topk", 23), ("batchtopk", 5)])
def test_trainer_resumes_exactly(tmp_path, kind, stop_at):
    data = make_synthetic(SyntheticDataConfig(n_sentences=40, d_in=12, n_specific=2,
                                              n_shared=1, n_common=5, features_per_token=2))
    full, stream = _trainer(data, kind, seed=0)
    assert stream.steps_per_epoch * 5 > stop_at and len(stream.rows) % 100  # a short last batch
    full.fit(stream)

    first, stream = _trainer(data, kind, seed=0)

    def stop_after(row):
        if row["step"] == stop_at:
            first.stop_requested = True

    first.on_log = stop_after
    with pytest.raises(Interrupted):
        first.fit(stream)
    path = tmp_path / "checkpoint.pt"
    torch.save(first.state_dict(), path)

    resumed, stream = _trainer(data, kind, seed=123)  # different init, RNG moved on
    torch.rand(17)
    resumed.load_state_dict(torch.load(path, weights_only=True))  # as run.py loads it
    assert resumed.state.step == stop_at
    resumed.fit(stream)

    assert any(r["aux"] > 0 for r in full.state.history)  # AuxK was active
    for name, t in full.sae.state_dict().items():
        assert torch.equal(t, resumed.sae.state_dict()[name]), name
    assert torch.equal(full.state.rows_since_fired, resumed.state.rows_since_fired)
    assert full.state.history == resumed.state.history


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "sae.safetensors"))


def test_sigterm_then_resume_equals_uninterrupted(tmp_path):
    """The app, end to end: SIGTERM mid-training, `resume=<run dir>`, same weights."""
    args = [*TINY, "trainer.epochs=8", "trainer.batch_size=16", "trainer.log_every=1",
            "trainer.checkpoint_every=50", "trainer.num_threads=1"]
    killed, resumed, straight = tmp_path / "killed", tmp_path / "resumed", tmp_path / "straight"
    env = {**os.environ, "WANDB_SILENT": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "sae_exp.run", *args,
                             f"hydra.run.dir={killed}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 40:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    info = json.loads((killed / "run_info.json").read_text())
    assert info["status"] == "incomplete", "training finished before SIGTERM arrived"
    assert json.loads((killed / "report.json").read_text())["incomplete"] is True
    assert (killed / "checkpoint.pt").exists()
    steps_done = json.loads(metrics.read_text().splitlines()[-1])["step"]

    r = run_cli("sae_exp.run", [f"resume={killed}", f"hydra.run.dir={resumed}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli("sae_exp.run", [*args, f"hydra.run.dir={straight}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    total = json.loads((straight / "report.json").read_text())["run"]["steps"]
    assert 40 <= steps_done < total
    # the resumed dir is a complete record: full training log, same metrics, its own snapshot
    assert (resumed / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
    ra = json.loads((straight / "report.json").read_text())["metrics"]
    rb = json.loads((resumed / "report.json").read_text())["metrics"]
    assert ra == rb
    snap = (resumed / ".hydra" / "config.yaml").read_text()
    assert "source: synthetic" in snap and str(killed) in snap
    assert json.loads((resumed / "run_info.json").read_text())["status"] == "complete"
