"""Writes a run's report files: report.json, features.jsonl, report.md, report.html and
figures/*.png.

Every file is written atomically (temp file in the same directory, then os.replace); a figure
or a page that cannot be drawn is listed in the report's warnings instead of costing the run its
report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from sae_exp import files
from sae_exp.report import html
from sae_exp.report.figures import write_figures
from sae_exp.report.markdown import render_markdown
from sae_exp.report.numbers import jsonable

log = logging.getLogger(__name__)


def write_report(run_dir: Path, report: dict, history: list[dict]) -> None:
    """Write figures/, features.jsonl, report.md, report.html and report.json (last) into
    `run_dir`.

    Figures come first: one that cannot be drawn is logged and listed in the report's
    warnings instead of costing the run its report."""
    run_dir = Path(run_dir)
    rep = jsonable(report)
    rep.setdefault("warnings", [])
    for name, error in write_figures(run_dir / files.FIGURES, rep, history or []):
        rep["warnings"].append(f"figure {name} could not be drawn: {error}")
    # per-latent records live in features.jsonl (one line each); report.json stays small
    slim = {k: v for k, v in rep.items() if k != "latents"}
    slim["features_file"] = files.FEATURES
    page = _page(run_dir, slim, rep.get("latents", []))
    text = json.dumps(slim, indent=1, allow_nan=False) + "\n"
    lines = [json.dumps(rec, allow_nan=False) for rec in rep.get("latents", [])]
    files.atomic_write_text(run_dir / files.FEATURES, "\n".join(lines) + ("\n" if lines else ""))
    files.atomic_write_text(run_dir / files.REPORT_MD, render_markdown(rep, figure_paths(run_dir)))
    if page is not None:
        files.atomic_write_text(run_dir / html.PAGE, page)
    files.atomic_write_text(run_dir / files.REPORT_JSON, text)  # last: never without the others


def _page(run_dir: Path, slim: dict, latents: list[dict]) -> str | None:
    """report.html's text, or None (and a warning in `slim`) when it cannot be built."""
    try:
        return html.build_run_page(run_dir, slim, latents, html.load_decoder(run_dir))
    except Exception as e:  # the page is a view of the report: it never costs the run its report
        log.warning("report.html could not be built: %s: %s", type(e).__name__, e)
        slim["warnings"].append(f"report.html could not be built: {type(e).__name__}: {e}")
        return None


def figure_paths(run_dir: Path) -> list[Path]:
    """The report's figures (PNG) in `run_dir`/figures, sorted by name, for W&B logging."""
    return sorted((Path(run_dir) / files.FIGURES).glob("*.png"))


def save_label_probe(run_dir: Path, rep: dict) -> None:
    """Save the report's multi-class probe (mean-pooled latents of the union of the labels'
    specific sets, fitted on the train split) as probe.safetensors for `inspect`."""
    mc = (rep.get("probe") or {}).get("multiclass") or {}
    model = mc.get("model")
    if not model:
        return
    tensors = {k: torch.as_tensor(np.asarray(model[k], dtype=np.float64))
               for k in ("W", "b", "mu", "sd")}
    tensors["latents"] = torch.as_tensor(np.asarray(mc["latents"], dtype=np.int64))
    files.atomic_save_safetensors(run_dir / files.PROBE, tensors,
                                  metadata={"labels": json.dumps(model["labels"])})


def log_tables(tracker, rep: dict) -> None:
    """The report's pair and category tables as W&B tables (no-ops when W&B is off)."""
    tracker.log_table("report/pairs", ["pair", "jaccard", "ci_lo", "ci_hi", "overlap_coefficient",
                                       "n_shared", "p_value", "p_shared"], [
        [k, p["jaccard"], *(p["jaccard_ci"] or [None, None]), p["overlap_coefficient"],
         len(p["shared"]), p.get("p_value"), p.get("p_shared")]
        for k, p in rep.get("pairs", {}).items()])
    tracker.log_table("report/categories", ["label", "n_sentences", "n_features", "n_specific"], [
        [k, c.get("n_sentences"), len(c.get("features", [])), len(c.get("specific", []))]
        for k, c in rep.get("categories", {}).items()])
