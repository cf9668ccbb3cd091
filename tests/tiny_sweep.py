"""One tiny top_k multirun of the real app, made once per test session and shared read-only by
test_compare (the table), test_rerun (a job re-executed) and test_ddp (the one-process
reference): each app start costs seconds, so the sweep is not repeated per module."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from conftest import TINY, run_cli

TOP_K = (2, 4, 8)
# TINY, trained a little longer and with AuxK active (latents count as dead after 300 rows)
ARGS = [*(a for a in TINY if not a.startswith("sparsity.top_k=")), "model.hidden_dim=48",
        "trainer.epochs=6", "sparsity.dead_after_rows=300"]


@functools.cache
def tiny_sweep() -> Path:
    """`python -m sae_exp.run -m sparsity.top_k=2,4,8 ...`; returns the sweep dir (jobs 0, 1, 2).

    Do not modify it: copy it first (shutil.copytree) to alter files."""
    root = Path(tempfile.mkdtemp(prefix="sae_exp_tiny_sweep_"))
    atexit.register(shutil.rmtree, root, True)
    sweep = root / "multirun" / "sweep"
    args = [*ARGS, "sparsity.top_k=" + ",".join(map(str, TOP_K)), f"hydra.sweep.dir={sweep}",
            "-m"]
    proc = run_cli("sae_exp.run", args, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError("the tiny sweep failed:\n" + proc.stderr[-3000:])
    return sweep
