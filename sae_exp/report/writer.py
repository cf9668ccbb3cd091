"""Writes a run's report files: report.json, features.jsonl, report.md and figures/*.png.

Every file is written atomically (temp file in the same directory, then os.replace); a figure
that cannot be drawn is listed in the report's warnings instead of costing the run its report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sae_exp import files
from sae_exp.report.figures import write_figures
from sae_exp.report.markdown import render_markdown


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy -> Python, NaN/Inf -> null (JSON has no NaN), sets sorted."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [_jsonable(v) for v in sorted(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_bytes(path: Path, write: Callable[[str], None]) -> None:
    files.atomic_write(path, write)  # temp file + rename, with the permissions of a plain open()


def write_report(run_dir: Path, report: dict, history: list[dict]) -> None:
    """Write figures/, report.json, features.jsonl and report.md into `run_dir`.

    Figures come first: one that cannot be drawn is logged and listed in the report's
    warnings instead of costing the run its report."""
    run_dir = Path(run_dir)
    rep = _jsonable(report)
    rep.setdefault("warnings", [])
    for name, error in write_figures(run_dir / files.FIGURES, rep, history or []):
        rep["warnings"].append(f"figure {name} could not be drawn: {error}")
    # per-latent records live in features.jsonl (one line each); report.json stays small
    slim = {k: v for k, v in rep.items() if k != "latents"}
    slim["features_file"] = files.FEATURES
    text = json.dumps(slim, indent=1, allow_nan=False) + "\n"
    files.atomic_write_text(run_dir / files.REPORT_JSON, text)
    lines = [json.dumps(rec, allow_nan=False) for rec in rep.get("latents", [])]
    files.atomic_write_text(run_dir / files.FEATURES, "\n".join(lines) + ("\n" if lines else ""))
    files.atomic_write_text(run_dir / files.REPORT_MD, render_markdown(rep, figure_paths(run_dir)))


def figure_paths(run_dir: Path) -> list[Path]:
    """The report's figures (PNG) in `run_dir`/figures, sorted by name, for W&B logging."""
    return sorted((Path(run_dir) / files.FIGURES).glob("*.png"))
