"""report.html: one self-contained, offline feature browser page per run (and per sweep).

The page holds everything it needs: its script and styles inline (sae_exp/report/assets), the
overview as plain JSON, and the per-latent records as zlib-compressed, base64 chunks of
`CHUNK` latents that the page decompresses (DecompressionStream) only when a card needs one, so
a run with 16,384 latents opens as fast as a small one. Cards are built one at a time, on
demand: every associated latent and the `TOP_BY_DENSITY` densest live latents are listed
(each says why); any other latent opens by id from the search box.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from sae_exp import files
from sae_exp.analysis.decoder import unit_rows
from sae_exp.report.numbers import jsonable

PAGE = "report.html"
SWEEP_PAGE = "comparison.html"
CHUNK = 256  # latents per compressed chunk
TOP_BY_DENSITY = 20  # live latents listed for their density, beside the associated ones
N_NEIGHBORS = 5  # nearest latents by decoder cosine shown on a card
TOKENS_PER_ENTRY = 60  # latents kept per token in the token search index
Z_95 = 1.959964
_EXAMPLE_KEYS = ("label", "split", "subset", "activation", "token_position", "token", "text",
                 "tokens", "token_acts", "sentence_id")


def wilson(rate: float | None, n: float) -> list[float] | None:
    """95% Wilson score interval of a proportion `rate` observed in `n` sentences."""
    if rate is None or not n:
        return None
    z2 = Z_95 * Z_95
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def norm_token(token: str) -> str:
    """Search key of a token: lower case, without WordPiece/BPE/SentencePiece markers."""
    return re.sub(r"^(##|\u0120|\u2581)", "", str(token)).strip().lower()


def card_set(latents: list[dict], top_by_density: int = TOP_BY_DENSITY) -> dict[int, list[str]]:
    """The latents listed as cards, each with why: its associations, or its density rank."""
    why: dict[int, list[str]] = {}
    for rec in latents:
        if rec.get("associated"):
            tag = "specific to" if rec.get("specific_to") else "associated with"
            why[rec["id"]] = [f"{tag} {', '.join(rec['associated'])}"]
    live = [r for r in latents if (r.get("density") or 0) > 0]
    live.sort(key=lambda r: -(r.get("density") or 0))
    for rank, rec in enumerate(live[:top_by_density], 1):
        why.setdefault(rec["id"], []).append(f"density rank {rank}")
    return dict(sorted(why.items()))


def nearest_latents(W_dec: np.ndarray | None, ids: list[int], k: int = N_NEIGHBORS,
                    block: int = 512) -> dict[int, list[list]]:
    """For each latent in `ids`, its `k` nearest other latents by decoder cosine [[id, cos]]."""
    if W_dec is None or not ids or len(W_dec) < 2:
        return {}
    W = unit_rows(W_dec, np.float32)
    k = min(k, len(W) - 1)
    out: dict[int, list[list]] = {}
    for lo in range(0, len(ids), block):
        part = np.asarray(ids[lo:lo + block])
        cos = W[part] @ W.T
        cos[np.arange(len(part)), part] = -np.inf
        top = np.argpartition(-cos, k - 1, axis=1)[:, :k]
        for row, j in enumerate(part):
            order = top[row][np.argsort(-cos[row, top[row]])]
            out[int(j)] = [[int(i), round(float(cos[row, i]), 4)] for i in order]
    return out


def _slim_latent(rec: dict, n_train: dict[str, float], neighbors, why) -> dict:
    """What a card shows of one features.jsonl record (plus intervals, neighbours, flags)."""
    rate = rec.get("rate") or {}
    out = {k: rec.get(k) for k in ("id", "density", "fire_density", "threshold", "rate",
                                   "baseline_rate", "log2_ratio", "q", "stability",
                                   "associated", "specific_to", "act_hist", "flags")}
    out["rate_ci"] = {lab: wilson(r, n_train.get(lab, 0)) for lab, r in rate.items()}
    out["examples"] = [{k: ex.get(k) for k in _EXAMPLE_KEYS if k in ex}
                       for ex in rec.get("top_examples", [])]
    out["neighbors"] = neighbors
    out["listed"] = why
    return out


def token_index(latents: list[dict]) -> dict[str, list[list]]:
    """Token -> latents whose top examples peak on it: [[id, n peaks, max activation]]."""
    hits: dict[str, dict[int, list]] = {}
    for rec in latents:
        for ex in rec.get("top_examples", []):
            if ex.get("token") is None:
                continue
            entry = hits.setdefault(norm_token(ex["token"]), {}).setdefault(rec["id"], [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], float(ex.get("activation") or 0))
    return {tok: sorted(([j, n, round(a, 4)] for j, (n, a) in per.items()),
                        key=lambda e: (-e[1], -e[2]))[:TOKENS_PER_ENTRY]
            for tok, per in sorted(hits.items()) if tok}


def _specific_rows(rep: dict, by_id: dict[int, dict]) -> dict[str, list[list]]:
    """Per label, its specific latents: [id, log2 ratio, q, density, rate]."""
    out = {}
    for lab, cat in rep.get("categories", {}).items():
        rows = []
        for j in cat.get("specific", []):
            rec = by_id.get(j, {})
            rows.append([j, (rec.get("log2_ratio") or {}).get(lab), (rec.get("q") or {}).get(lab),
                         rec.get("density"), (rec.get("rate") or {}).get(lab)])
        out[lab] = rows
    return out


def _figures(run_dir: Path) -> dict[str, str]:
    """The run's PNG figures as base64, by file name."""
    return {p.name: base64.b64encode(p.read_bytes()).decode("ascii")
            for p in sorted((run_dir / files.FIGURES).glob("*.png"))}


def _config_text(run_dir: Path) -> str | None:
    path = run_dir / files.HYDRA_DIR / "config.yaml"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def overview(rep: dict, latents: list[dict], run_dir: Path, cards: dict[int, list[str]]) -> dict:
    """The page's always-loaded part: config, quality, overlap, specific sets, search index."""
    by_id = {r["id"]: r for r in latents}
    return {
        "run": rep.get("run", {}), "metrics": rep.get("metrics", {}),
        "settings": rep.get("settings", {}), "thresholds": rep.get("thresholds", {}),
        "split": rep.get("split", {}), "baseline": rep.get("baseline", {}),
        "labels": sorted(rep.get("categories", {})),
        "categories": {lab: {k: c.get(k) for k in ("n_sentences", "n_train_sentences",
                                                   "n_features", "n_specific")}
                       for lab, c in rep.get("categories", {}).items()},
        "pairs": {key: {k: p.get(k) for k in ("jaccard", "jaccard_ci", "overlap_coefficient",
                                              "overlap_coefficient_ci", "n_shared", "p_value")}
                  for key, p in rep.get("pairs", {}).items()},
        "planted": rep.get("planted"), "warnings": rep.get("warnings", []),
        "incomplete": rep.get("incomplete", False),
        "specific": _specific_rows(rep, by_id),
        "cards": [[j, why] for j, why in cards.items()],
        "n_latents": len(latents), "chunk": CHUNK, "top_by_density": TOP_BY_DENSITY,
        "config_yaml": _config_text(run_dir), "figures": _figures(run_dir),
    }


def _pack(obj) -> str:
    """JSON -> zlib -> base64: what the page's `unpack` reverses."""
    raw = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def page_data(rep: dict, latents: list[dict], run_dir: Path,
              W_dec: np.ndarray | None = None) -> tuple[dict, str, list[str]]:
    """(overview, packed token index, packed latent chunks) for a run's page."""
    cards = card_set(latents)
    neighbors = nearest_latents(W_dec, list(cards))
    n_train = {lab: c.get("n_train_sentences") or c.get("n_sentences") or 0
               for lab, c in rep.get("categories", {}).items()}
    ordered = sorted(latents, key=lambda r: r["id"])
    chunks = []
    for lo in range(0, len(ordered), CHUNK):
        part = [_slim_latent(r, n_train, neighbors.get(r["id"]), cards.get(r["id"]))
                for r in ordered[lo:lo + CHUNK]]
        chunks.append(_pack(part))
    return overview(rep, ordered, run_dir, cards), _pack(token_index(ordered)), chunks


def _asset(name: str) -> str:
    return resources.files("sae_exp.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(obj) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(title: str, kind: str, data: dict, packed: dict[str, str] | None = None) -> str:
    """The HTML document: styles, data blocks (`data` as JSON, `packed` as base64) and script."""
    blocks = [f'<script type="application/json" id="sae-data" data-kind="{kind}">'
              f"{_script_json(data)}</script>"]
    for key, text in (packed or {}).items():
        blocks.append(f'<script type="text/plain" id="sae-{key}">{text}</script>')
    safe_title = (title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{safe_title}</title>", '<link rel="icon" href="data:,">',
        f"<style>\n{_asset('browser.css')}</style>",
        '</head><body><div id="app"><p class="loading">Loading...</p></div>', *blocks,
        f"<script>\n{_asset('browser.js')}</script>", "</body></html>", ""])


def build_run_page(run_dir: Path, rep: dict, latents: list[dict],
                   W_dec: np.ndarray | None = None) -> str:
    """The run's report.html text from its report (report.json's fields) and latent records."""
    data, tokens, chunks = page_data(rep, latents, Path(run_dir), W_dec)
    packed = {"tokens": tokens, **{f"chunk-{i}": c for i, c in enumerate(chunks)}}
    name = (rep.get("run") or {}).get("name", "run")
    return render_page(f"sae_exp: {name} ({Path(run_dir).name})", "run", data, packed)


def write_run_page(run_dir: Path, rep: dict, latents: list[dict],
                   W_dec: np.ndarray | None = None) -> Path:
    """Write report.html into `run_dir` (atomically) and return its path."""
    path = Path(run_dir) / PAGE
    files.atomic_write_text(path, build_run_page(run_dir, rep, latents, W_dec))
    return path


def build_sweep_page(title: str, columns: list[str], rows: list[dict], job_dirs: list[Path],
                     out_dir: Path, figures: list[Path]) -> str:
    """The sweep page: the comparison table (one row per job, in `rows` order, with a relative
    link to each job's report.html where it has one) and the figures embedded as PNG."""
    data_rows = []
    for row, job in zip(rows, job_dirs, strict=True):
        page = Path(job) / PAGE
        link = os.path.relpath(page, out_dir) if page.is_file() else None
        data_rows.append({**row, "_page": None if link is None else Path(link).as_posix()})
    figs = [(Path(f).name, base64.b64encode(Path(f).read_bytes()).decode("ascii"))
            for f in figures if Path(f).is_file()]
    data = {"title": title, "columns": columns, "rows": data_rows, "figures": figs}
    return render_page(title, "sweep", jsonable(data))


def load_decoder(run_dir: Path) -> np.ndarray | None:
    """W_dec [d_sae, d_in] from the run's sae.safetensors, or None when it is missing."""
    path = Path(run_dir) / files.SAE_WEIGHTS
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    return load_file(str(path)).get("W_dec")
