"""report.json / report.md / features.jsonl / figures: contract fields, definitions, atomicity."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from conftest import analyze_report
from planted_codes import make_planted

from sae_exp import files, report
from sae_exp.config import AnalysisConfig

# Column headers that name a row or group, not a number.
NAME_COLUMNS = {"label", "pair", "field", "metric", "value", "subset", "latent", "baseline",
                "label or subset"}
HISTORY = [{"step": s, "epoch": s // 10, "loss": 1 / (s + 1), "mse": 0.5 / (s + 1),
            "batch_fvu": 0.9 / (s + 1) ** 0.5, "l0": 8.0, "auxk_dead_fraction": 0.1, "lr": 1e-3}
           for s in range(0, 100, 10)]


@pytest.fixture(scope="module")
def planted():
    return make_planted(k=8)


@pytest.fixture(scope="module")
def analysis(planted) -> dict:
    rep = analyze_report(planted.top_indices, planted.top_acts, planted.data, 200,
                          AnalysisConfig(bootstrap=50, permutations=30))
    rep["metrics"] = {"fvu": 0.12, "mse": 0.003, "explained_variance": 0.88, "l0": 8.0,
                      "dead_fraction": 0.0, "dense_fraction": 0.01, "density": [0.1] * 200}
    rep["run"] = {"name": "planted", "dir": "/x/run", "d_in": 16, "d_sae": 200, "top_k": 8,
                  "kind": "topk", "steps": 100, "incomplete": False}
    rep["incomplete"] = False
    rep["planted"] = {"jaccard": planted.jaccard}
    return rep


@pytest.fixture(scope="module")
def written(analysis, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    report.write_report(run_dir, analysis, HISTORY)
    return run_dir


def _strict_json(text: str):
    def no_constants(name):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def _defined_terms(md: str) -> set[str]:
    section = md.split("## Definitions", 1)[1]
    return set(re.findall(r"^- `([^`]+)`:", section, flags=re.M))


def _table_headers(md: str) -> set[str]:
    heads = set()
    lines = md.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            heads |= {c.strip() for c in line.strip("|").split(" | ")}
    return heads


def test_report_json_holds_the_planted_truth_and_md_shows_it(written, analysis, planted):
    rep = _strict_json((written / files.REPORT_JSON).read_text())
    assert rep["metrics"]["explained_variance"] == pytest.approx(1 - rep["metrics"]["fvu"])
    md = (written / files.REPORT_MD).read_text()
    for key in ("fvu", "mse", "l0"):  # report.md shows report.json's numbers
        assert f"| {key} | {rep['metrics'][key]:.3f} |" in md
    n_planted = len(planted.data.sentences)
    for lab in ("a", "b", "control"):  # the fields hold the planted truth, not just a shape
        cat = rep["categories"][lab]
        assert cat["n_sentences"] == (np.asarray(planted.data.sentences.labels) == lab).sum()
        assert cat["n_rows"] == 6 * cat["n_sentences"]  # 6 tokens per planted sentence
        assert set(cat["specific"]) == planted.specific[lab]
        assert set(cat["features"]) == planted.features[lab]
    assert sum(c["n_sentences"] for c in rep["categories"].values()) == n_planted
    for key, truth in planted.jaccard.items():
        pr = rep["pairs"][key]
        a, b = key.split("|")
        assert set(pr["shared"]) == planted.features[a] & planted.features[b]
        assert pr["jaccard"] == pytest.approx(truth)
        lo, hi = pr["jaccard_ci"]
        assert lo <= pr["jaccard"] <= hi
        assert f"| {key.replace('|', chr(92) + '|')} | {truth:.3f} | [{lo:.3f}, {hi:.3f}] |" in md
    assert rep["pairs"]["a|b"]["p_value"] < 0.05 and rep["pairs"]["a|control"]["n_shared"] == 0
    for key in ("naive_overlap", "probe", "baseline", "thresholds", "warnings", "definitions"):
        assert key in rep
    assert "latents" not in rep and rep["features_file"] == files.FEATURES  # one line per latent
    lines = (written / files.FEATURES).read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [r["id"] for r in analysis["latents"]]


def test_features_jsonl_has_one_line_per_latent(written):
    lines = (written / files.FEATURES).read_text().splitlines()
    recs = [_strict_json(line) for line in lines]
    assert [r["id"] for r in recs] == list(range(200))
    assert {"density", "rate", "q", "top_examples"} <= set(recs[0])


def test_every_number_in_report_md_is_defined(written):
    md = (written / files.REPORT_MD).read_text()
    defined = _defined_terms(md)
    for head in _table_headers(md) - NAME_COLUMNS:
        term = "k=N" if re.fullmatch(r"k=\d+", head) else head.split(" (")[0]
        assert term in defined, f"table column {head!r} is not defined"
    body = md.split("## Definitions", 1)[0]
    for term in set(re.findall(r"`([a-z_0-9]+)`", body)):
        assert term in defined, f"`{term}` is used but not defined"


def test_report_md_shows_the_pairs_naive_overlap_examples_and_figures(written, analysis):
    md = (written / files.REPORT_MD).read_text()
    ci = analysis["pairs"]["a|b"]["jaccard_ci"]
    assert f"| a\\|b | 0.231 | [{ci[0]:.3f}, {ci[1]:.3f}] |" in md
    assert "## Naive overlap (the notebook's measure; misleading)" in md and "Why it mis" in md
    assert "INCOMPLETE" not in md
    assert re.search(r"- latent \d: \"sentence \d+ about a\": peak at token 'tok\d' \(#\d\), "
                     r"activation 1\.\d+ \[sentence \d+ \(a/(plain|trap)\)\]", md)
    for name in ("training_curves", "latent_density", "jaccard_heatmap", "firing_rates"):
        assert f"(figures/{name}.png)" in md
    assert "## Warnings" in md


def test_figures_are_pngs_and_listed(written):
    paths = report.figure_paths(written)
    assert [p.name for p in paths] == ["firing_rates.png", "jaccard_heatmap.png",
                                       "latent_density.png", "training_curves.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_temporary_files_are_left(written):
    leftovers = [p for p in written.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_incomplete_run_gets_a_banner_and_nan_becomes_null(analysis, tmp_path):
    rep = copy.deepcopy(analysis)
    rep["incomplete"] = True
    rep["metrics"]["fvu"] = float("nan")
    rep["metrics"]["mse"] = np.float32(0.5)
    rep["warnings"] = rep["warnings"] + ["label 'x' has 3 sentences"]
    report.write_report(tmp_path, rep, [])
    md = (tmp_path / files.REPORT_MD).read_text()
    assert md.splitlines()[2].startswith("> **INCOMPLETE RUN**")
    assert "- label 'x' has 3 sentences" in md
    saved = _strict_json((tmp_path / files.REPORT_JSON).read_text())
    assert saved["metrics"]["fvu"] is None and saved["metrics"]["mse"] == 0.5
    assert not (tmp_path / files.FIGURES / "training_curves.png").exists()  # no history


def test_a_broken_section_does_not_cost_the_report(analysis, tmp_path):
    rep = copy.deepcopy(analysis)
    rep["latents"][3]["rate"] = None  # the scatter plot cannot read it
    report.write_report(tmp_path, rep, HISTORY)
    saved = _strict_json((tmp_path / files.REPORT_JSON).read_text())
    assert any("firing_rates.png" in w for w in saved["warnings"])
    md = (tmp_path / files.REPORT_MD).read_text()
    assert "section latent_section could not be rendered" in md
    assert "## Overlap between labels" in md and "## Definitions" in md


def test_a_run_without_resampling_still_renders(tmp_path):
    planted = make_planted(n_per_label=60, seed=1)
    rep = analyze_report(planted.top_indices, planted.top_acts, planted.data, 200,
                          AnalysisConfig(bootstrap=0, permutations=0))
    report.write_report(tmp_path, rep, HISTORY[:1])
    md = (tmp_path / files.REPORT_MD).read_text()
    assert "| a\\|b | 0.231 | n/a |" in md
    assert "- analysis.bootstrap=0: no intervals." in md
    saved = _strict_json((tmp_path / files.REPORT_JSON).read_text())
    assert saved["pairs"]["a|b"]["jaccard_ci"] is None and saved["pairs"]["a|b"]["p_value"] is None
    assert len(report.figure_paths(tmp_path)) == 4
