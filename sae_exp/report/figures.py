"""The report's figures, drawn with matplotlib's Agg canvas directly (no global pyplot state)."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sae_exp import files
from sae_exp.errors import WriteError
from sae_exp.report.numbers import finite, fmt, num

log = logging.getLogger(__name__)

# training-log keys: batch_fvu is the current minibatch's FVU (the held-out one is the report's);
# auxk_dead_fraction the share of latents AuxK counts as dead (silent > dead_after_rows rows)
CURVE_KEYS = ("loss", "mse", "batch_fvu", "l0", "l1", "aux", "auxk_dead_fraction", "lr")


def _save(fig: Figure, path: Path) -> None:
    """Render into memory, then write the bytes: the temp file beside `path` lives for the
    few milliseconds of one write, not for the drawing (a killed run leaves no empty temp)."""
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    files.atomic_write_bytes(path, buf.getvalue())


def write_figures(fig_dir: Path, rep: dict, history: list[dict]) -> list[tuple[str, str]]:
    failures = []
    for name, draw in [
        ("training_curves.png", lambda: _training_curves(history)),
        ("latent_density.png", lambda: _density_histogram(rep)),
        ("jaccard_heatmap.png", lambda: _jaccard_heatmap(rep)),
        ("firing_rates.png", lambda: _firing_rate_scatter(rep)),
    ]:
        try:
            fig = draw()
            if fig is not None:
                _save(fig, fig_dir / name)
        except WriteError:  # a full or read-only disk: not a figure's fault
            raise
        except Exception as e:  # a figure must never cost the run its report
            log.warning("figure %s failed: %s: %s", name, type(e).__name__, e)
            failures.append((name, f"{type(e).__name__}: {e}"))
    return failures


def _training_curves(history: list[dict]) -> Figure | None:
    keys = [k for k in CURVE_KEYS if any(finite(h.get(k)) for h in history)]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * rows))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        pts = [(h.get("step", n), h[key]) for n, h in enumerate(history) if finite(h.get(key))]
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, lw=1.2)
        if key in ("loss", "mse", "l1", "aux") and min(y) > 0:
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return fig


def _density_histogram(rep: dict) -> Figure | None:
    dens = [d["density"] for d in rep.get("latents", []) if d.get("density") is not None]
    if not dens:
        dens = (rep.get("metrics") or {}).get("density") or []
    if not dens:
        return None
    d = np.asarray(dens, dtype=float)
    live = d[d > 0]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    if len(live):
        ax.hist(np.log10(live), bins=50, color="tab:blue")
    ax.set_xlabel("log10 density (share of rows where the latent is active)")
    ax.set_ylabel("latents")
    ax.set_title(f"latent density: {len(live)} live, {int((d == 0).sum())} never active")
    return fig


def _jaccard_heatmap(rep: dict) -> Figure | None:
    labels = list(rep.get("categories", {}))
    pairs = rep.get("pairs", {})
    if len(labels) < 2:
        return None
    L = len(labels)
    mat = np.eye(L)
    fig = Figure(figsize=(1.9 * L + 2, 1.6 * L + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    texts = {}
    for key, pr in pairs.items():
        a, b = key.split("|", 1)
        if a not in labels or b not in labels:
            continue
        i, j = labels.index(a), labels.index(b)
        mat[i, j] = mat[j, i] = pr.get("jaccard") or 0.0
        ci = pr.get("jaccard_ci")
        txt = f"{fmt(pr.get('jaccard'))}\n[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(
            pr.get("jaccard"))
        texts[(i, j)] = texts[(j, i)] = txt
    for i, lab in enumerate(labels):
        texts[(i, i)] = f"{rep['categories'][lab].get('n_features', '')} latents"
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    for (i, j), txt in texts.items():
        ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                color="white" if mat[i, j] < 0.6 else "black")
    ax.set_xticks(range(L), labels, rotation=30, ha="right")
    ax.set_yticks(range(L), labels)
    ax.set_title("Jaccard of associated latents (train split) [interval]")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _firing_rate_scatter(rep: dict) -> Figure | None:
    labels = list(rep.get("categories", {}))
    lats = rep.get("latents", [])
    if not labels or not lats:
        return None
    fig = Figure(figsize=(4 * len(labels), 4))
    for i, lab in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), i + 1)
        n = max(rep["categories"][lab].get("n_sentences", 1), 1)
        floor = 0.5 / n
        x = np.array([num(d["baseline_rate"].get(lab)) for d in lats])
        y = np.array([num(d["rate"].get(lab)) for d in lats])
        assoc = np.array([lab in d.get("associated", []) for d in lats])
        x, y = np.maximum(x, floor), np.maximum(y, floor)
        ax.scatter(x[~assoc], y[~assoc], s=5, c="grey", alpha=0.4, label="not associated")
        ax.scatter(x[assoc], y[assoc], s=9, c="tab:red", label="associated")
        ax.plot([floor, 1], [floor, 1], "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("baseline firing rate")
        ax.set_ylabel(f"firing rate in {lab}")
        ax.set_title(lab)
        ax.legend(fontsize=7, loc="lower right")
    return fig
