"""Shared fixtures: every test starts from seeded RNGs; helpers to run the CLI."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
# Subprocesses (the CLI, torchrun) import the package of this checkout, not whichever checkout
# an editable install points at (a second worktree would otherwise test the wrong code).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

# Tiny settings: a run of the real app in a few seconds on 2 cores.
TINY = [
    "data=synthetic",
    "wandb.mode=disabled",
    "data.n_sentences=60",
    "data.d_in=16",
    "data.n_specific=3",
    "data.n_shared=2",
    "data.n_common=6",
    "data.features_per_token=2",
    "model.hidden_dim=32",
    "sparsity.top_k=4",
    "trainer.epochs=3",
    "trainer.batch_size=256",
    "analysis.bootstrap=20",
    "analysis.permutations=20",
]


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def run_cli(module: str, args: list[str], cwd: Path, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` as a user would, in `cwd`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_"))}
    full_env["WANDB_SILENT"] = "true"
    # the checkout under test, also from a worktree whose editable install points elsewhere
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                             if p)
    for key, value in (env or {}).items():  # None removes a variable
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def analyze_report(*args, **kwargs) -> dict:
    """overlap.analyze's typed result laid out as report.json's fields (report.sections)."""
    from sae_exp.analysis import overlap
    from sae_exp.report.sections import overlap_report
    return overlap_report(overlap.analyze(*args, **kwargs))
