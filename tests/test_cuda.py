"""The CUDA path: training on a GPU (float32 and bf16 autocast) agrees with the CPU, top-k
selection and the pinned stream work there. Skipped without a CUDA GPU (CI has none); the
device tool's GPU machine runs them (README, Speed: GPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli

from sae_exp import files
from sae_exp.data.stream import RowStream
from sae_exp.model import sparse_ops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _run(tmp_path, name: str, extra: list[str]) -> dict:
    out = tmp_path / name
    res = run_cli("sae_exp.run", [*TINY, "trainer.epochs=20", *extra, f"hydra.run.dir={out}"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"report": json.loads((out / files.REPORT_JSON).read_text()),
            "info": json.loads((out / files.RUN_INFO).read_text())}


@pytest.mark.parametrize("autocast", ["none", "bf16"])
def test_a_run_on_cuda_reconstructs_as_well_as_on_cpu(tmp_path, autocast):
    """Same config, same seed: the GPU run is recorded as such and its held-out FVU is within
    0.05 of the CPU run's (kernels and bf16 rounding differ, so not bit-equal)."""
    cpu = _run(tmp_path, "cpu", ["trainer.device=cpu"])
    gpu = _run(tmp_path, "gpu", ["trainer.device=cuda", f"trainer.autocast={autocast}"])
    assert gpu["info"]["device"].startswith("cuda"), gpu["info"]["device"]
    assert cpu["info"]["device"] == "cpu"
    f_cpu, f_gpu = cpu["report"]["metrics"]["fvu"], gpu["report"]["metrics"]["fvu"]
    assert np.isfinite(f_gpu) and abs(f_gpu - f_cpu) < 0.05, (f_cpu, f_gpu)
    assert gpu["report"]["metrics"]["l0"] == pytest.approx(cpu["report"]["metrics"]["l0"], rel=0.1)


def test_topk_indices_on_cuda_select_what_torch_topk_selects():
    pre = torch.randn(512, 4096 + 23, device="cuda")
    got = sparse_ops.topk_indices(pre, 32)
    want = pre.topk(32, dim=1)
    assert got.device.type == "cuda"
    assert torch.equal(got.sort(1).values, want.indices.sort(1).values)


def test_stream_pins_batches_for_cuda_and_keeps_every_row():
    acts = np.repeat(np.arange(300, dtype=np.float32)[:, None], 4, axis=1)
    stream = RowStream(acts, np.arange(300), 64, seed=0, prefetch=1, pin_memory=True)
    batches = list(stream.epoch(0))
    assert all(b.is_pinned() for b in batches)
    seen = np.concatenate([b[:, 0].numpy() for b in batches]).astype(int)
    assert sorted(seen.tolist()) == list(range(300))
