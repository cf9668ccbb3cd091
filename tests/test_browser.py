"""report.html, the feature browser: its data (plain Python) and the page in a real headless
chromium (selenium + chromedriver; skipped with a reason when either is missing).

The run is TINY's synthetic data written as a data=file .npz that adds tokens and texts: every
row carrying the first planted conditional feature is the token "unless", so the search for
"unless" must find latents, and the card of a conditional latent must show coloured tokens.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli

from sae_exp import compare
from sae_exp.analysis import firing, overlap
from sae_exp.analysis.overlap import HIST_BINS
from sae_exp.config import SyntheticDataConfig
from sae_exp.data.synthetic import make_synthetic
from sae_exp.data.types import ActivationSet, Sentences
from sae_exp.report import headless, html

PLANTED = "unless"
WORDS = ["the", "a", "of", "it", "is", "was", "to", "and"]


def _tiny_npz(path: Path) -> None:
    """TINY's synthetic data with a token per row: PLANTED on every row carrying a planted
    conditional-specific feature, the label's marker name on rows with another label feature,
    else a background word."""
    opts = dict(a.split("=", 1) for a in TINY if a.startswith("data."))
    # 150 sentences, not TINY's 60: with 20 per label no latent passes the pairwise tests that
    # `specific` needs, and the tables below need a label with two specific latents
    opts["data.n_sentences"] = "150"
    cfg = SyntheticDataConfig(**{k[5:]: int(v) for k, v in opts.items() if k != "data"})
    data = make_synthetic(cfg)
    plant, codes = data.planted, data.planted["codes"]
    owner = {f: lab for lab, fs in plant["specific"].items() for f in fs}
    planted = (codes[:, plant["specific"]["conditional"]] > 0).any(1)
    strongest = codes.argmax(1)
    tokens = np.array([PLANTED if p else f"{owner[f][:4]}{f}" if f in owner
                       else WORDS[f % len(WORDS)] for f, p in zip(strongest, planted,
                                                                  strict=True)], dtype=object)
    sidx = data.sentence_index
    texts = np.array([" ".join(tokens[sidx == s]) for s in range(len(data.sentences))])
    np.savez(path, activations=data.acts, labels=data.sentences.labels[sidx],
             sentence_ids=sidx, splits=data.sentences.splits[sidx], texts=texts[sidx],
             tokens=tokens.astype(str))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    _tiny_npz(tmp / "tiny.npz")
    args = ["data=file", f"data.path={tmp / 'tiny.npz'}",
            *[a for a in TINY if not a.startswith("data.") and a != "data=synthetic"],
            f"hydra.run.dir={tmp / 'run'}"]
    res = run_cli("sae_exp.run", args, cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp / "run"


def _embedded(page: str, key: str):
    """A data block of the page, decoded as the page's script does."""
    m = re.search(rf'<script type="[^"]+" id="sae-{key}"[^>]*>(.*?)</script>', page, re.S)
    assert m, f"no block sae-{key}"
    if key == "data":
        return json.loads(m.group(1))
    return json.loads(zlib.decompress(base64.b64decode(m.group(1))))


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "features.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ plain Python
def test_run_writes_a_self_contained_page(tiny_run):
    page = (tiny_run / "report.html").read_text()
    # offline: no external script, style, image or font
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "DecompressionStream" in page and "<style>" in page


def test_embedded_data_matches_report(tiny_run):
    page = (tiny_run / "report.html").read_text()
    rep = json.loads((tiny_run / "report.json").read_text())
    recs = _records(tiny_run)
    data = _embedded(page, "data")
    assert data["metrics"] == rep["metrics"] and data["labels"] == sorted(rep["categories"])
    for key, pair in rep["pairs"].items():
        assert data["pairs"][key]["jaccard"] == pair["jaccard"]
        assert data["pairs"][key]["jaccard_ci"] == pair["jaccard_ci"]
    for lab, cat in rep["categories"].items():
        assert [r[0] for r in data["specific"][lab]] == cat["specific"]
    listed = {j for j, _ in data["cards"]}
    assocd = {r["id"] for r in recs if r["associated"]}
    assert assocd and assocd <= listed
    n_chunks = -(-len(recs) // data["chunk"])
    latents = [x for i in range(n_chunks) for x in _embedded(page, f"chunk-{i}")]
    assert [x["id"] for x in latents] == [r["id"] for r in recs]
    for x, r in zip(latents, recs, strict=True):
        assert x["rate"] == r["rate"] and x["q"] == r["q"] and x["density"] == r["density"]
        assert [e["token_acts"] for e in x["examples"]] == [
            e["token_acts"] for e in r["top_examples"]]


def test_a_page_that_cannot_be_built_costs_only_the_page(tiny_run, tmp_path, monkeypatch):
    from sae_exp.report import writer

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(html, "build_run_page", broken)
    rep = {**json.loads((tiny_run / "report.json").read_text()), "latents": _records(tiny_run)}
    writer.write_report(tmp_path, rep, [])
    assert not (tmp_path / "report.html").exists()
    written = json.loads((tmp_path / "report.json").read_text())
    assert "report.html could not be built: ValueError: boom" in written["warnings"]
    assert len(_records(tmp_path)) == len(rep["latents"])


def test_top_examples_carry_per_token_activations(tiny_run):
    recs = _records(tiny_run)
    ex = next(e for r in recs for e in r["top_examples"])
    assert {"sentence", "label", "activation", "token_position", "token", "text"} <= set(ex)
    assert len(ex["tokens"]) == len(ex["token_acts"]) == len(ex["text"].split())
    # the peak token is the sentence's largest activation and equals the example's activation
    assert ex["tokens"][ex["token_position"]] == ex["token"]
    assert max(ex["token_acts"]) == pytest.approx(ex["activation"], abs=1e-4)
    assert ex["token_acts"][ex["token_position"]] == pytest.approx(ex["activation"], abs=1e-4)
    n_rows = json.loads((tiny_run / "report.json").read_text())["settings"]["n_rows"]
    for r in recs:  # the histogram counts every non-zero activation of the latent
        assert len(r["act_hist"]["counts"]) == HIST_BINS
        assert sum(r["act_hist"]["counts"]) == pytest.approx(r["density"] * n_rows, abs=0.5)


def test_token_activations_follow_the_sentence_rows_in_order():
    """Rows of a sentence need not be contiguous: tokens and activations follow row order."""
    sents = Sentences(labels=np.array(["a", "b"]), subsets=np.array(["", ""]),
                      splits=np.array(["train", "train"]))
    data = ActivationSet(acts=np.zeros((5, 1), np.float32),
                         sentence_index=np.array([0, 1, 0, 1, 0]), sentences=sents,
                         tokens=np.array(["if", "all", "it", "dogs", "rains"], dtype=object))
    idx = np.array([[1, 2], [1, 0], [2, 1], [2, 0], [2, 0]])
    acts = np.array([[0.5, 0.1], [0.2, 0.0], [0.3, 0.9], [0.4, 0.0], [0.7, 0.0]], np.float32)
    peaks = firing.sentence_peaks(idx, acts, data.sentence_index, 3)
    ex = overlap.top_examples(peaks, data, 3, 5, idx, acts)
    first = ex[1][0]
    assert first["tokens"] == ["if", "it", "rains"] and first["token"] == "it"
    assert first["token_acts"] == pytest.approx([0.5, 0.9, 0.0])
    assert ex[2][0]["tokens"] == ["if", "it", "rains"]
    assert ex[2][0]["token_acts"] == pytest.approx([0.1, 0.3, 0.7])
    assert ex[2][1]["tokens"] == ["all", "dogs"]
    assert ex[2][1]["token_acts"] == pytest.approx([0.0, 0.4])
    vmax, counts = overlap.activation_histograms(idx, acts, 3, bins=4)
    assert vmax.tolist() == pytest.approx([0.0, 0.9, 0.7])
    assert counts[1].tolist() == [1, 0, 1, 1] and counts[2].tolist() == [1, 1, 1, 1]


def test_token_index_finds_the_planted_token(tiny_run):
    index = html.token_index(_records(tiny_run))
    assert PLANTED in index and "The" not in index and "the" in index  # keys are lower case
    for j, n, _ in index[PLANTED]:
        rec = _records(tiny_run)[j]
        assert sum(e["token"] == PLANTED for e in rec["top_examples"]) == n


def test_wilson_interval_covers_the_rate():
    lo, hi = html.wilson(0.3, 50)
    assert lo < 0.3 < hi and hi - lo == pytest.approx(0.25, abs=0.01)
    assert html.wilson(0.0, 10)[0] == 0.0 and html.wilson(None, 10) is None


def test_nearest_latents_by_decoder_cosine():
    W = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    nn = html.nearest_latents(W, [0, 2], k=2)
    assert [j for j, _ in nn[0]] == [1, 2] and nn[0][0][1] == pytest.approx(0.9939, abs=1e-3)
    assert nn[2][0][0] == 1


def test_browse_rebuilds_the_page_and_rejects_unfinished_dirs(tiny_run, tmp_path):
    out = tmp_path / "page.html"
    res = run_cli("sae_exp.browse", [str(tiny_run), "--output", str(out)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _embedded(out.read_text(), "data")["metrics"] == _embedded(
        (tiny_run / "report.html").read_text(), "data")["metrics"]
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.jsonl").write_text("{}\n")
    for bad, words in [(tmp_path / "nope", "does not exist"), (tmp_path / "half", "not finished")]:
        res = run_cli("sae_exp.browse", [str(bad)], cwd=tmp_path)
        assert res.returncode == 2 and words in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def sweep(tiny_run, tmp_path_factory) -> Path:
    """A sweep of two finished jobs (copies of the tiny run) and a failed one, compared."""
    root = tmp_path_factory.mktemp("sweep") / "sweep"
    for i, k in enumerate([4, 8]):
        shutil.copytree(tiny_run, root / str(i))
        (root / str(i) / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"sparsity.top_k={k}"]))
    (root / "2" / ".hydra").mkdir(parents=True)
    (root / "2" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["sparsity.top_k=0"]))
    (root / "2" / "error.json").write_text(json.dumps({"status": "failed", "error": "bad k"}))
    compare.compare([root], wandb_mode="disabled")
    return root


def test_sweep_page_links_each_run_and_embeds_the_frontier(sweep):
    data = _embedded((sweep / html.SWEEP_PAGE).read_text(), "data")
    assert [r["job"] for r in data["rows"]] == ["0", "1", "2"]
    assert [r["_page"] for r in data["rows"]] == ["0/report.html", "1/report.html", None]
    assert [r["sparsity.top_k"] for r in data["rows"]] == [4, 8, 0]
    names = [name for name, _ in data["figures"]]
    assert compare.FRONTIER_FIG in names
    png = base64.b64decode(dict(data["figures"])[compare.FRONTIER_FIG])
    assert png == (sweep / "figures" / compare.FRONTIER_FIG).read_bytes()


# ------------------------------------------------------------------ real browser
@pytest.fixture(scope="module")
def browser():
    why = headless.missing()
    if why:
        pytest.skip(why)
    driver = headless.open_driver()
    yield driver
    driver.quit()


def _open(driver, page: Path) -> float:
    return headless.load(driver, page, timeout=20.0)


def _wait(driver, script: str, timeout: float = 10.0):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


_errors = headless.console_errors


def test_page_loads_without_console_errors(browser, tiny_run):
    _open(browser, tiny_run / "report.html")
    assert _errors(browser) == []
    assert browser.find_element("id", "heatmap").text.count("[") >= 3  # pairs with intervals
    assert browser.find_elements("css selector", "#card-list li")


def test_clicking_a_latent_opens_its_card_with_coloured_tokens(browser, tiny_run):
    _open(browser, tiny_run / "report.html")
    row = browser.find_element("css selector", "[data-latent]")
    latent = int(row.get_attribute("data-latent"))
    row.click()
    _wait(browser, f"return document.querySelector('#card[data-card=\"{latent}\"] .tok')")
    toks = browser.find_elements("css selector", "#card .tok")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#card .tok')].map(t => [t.dataset.act, "
        "getComputedStyle(t).backgroundColor, t.classList.contains('peak'), t.title])")
    clear = "rgba(0, 0, 0, 0)"
    # a token is coloured exactly when the latent is active on it; its value is on hover
    assert all((float(a) > 0) == (bg != clear) for a, bg, _, _ in shown)
    assert any(bg != clear for _, bg, _, _ in shown)
    assert all(float(title.rsplit(": ", 1)[1]) == pytest.approx(float(a), rel=1e-3, abs=1e-4)
               for a, _, _, title in shown)
    peaks = [(a, bg) for a, bg, peak, _ in shown if peak]
    assert len(peaks) == len(browser.find_elements("css selector", "#card .examples > li"))
    assert all(float(a) > 0 and bg != clear for a, bg in peaks) and len(toks) > len(peaks)
    # firing rate per label with its interval, and the activation histogram
    rows = browser.find_elements("css selector", "#card table.firing tr")[1:]
    assert len(rows) == 3 and all(re.search(r"\[\d\.\d+, \d\.\d+\]", r.text) for r in rows)
    assert len(browser.find_elements("css selector", "#card svg.hist rect")) == HIST_BINS
    assert browser.find_elements("css selector", "#card .neighbors li[data-latent]")
    assert _errors(browser) == []


def test_specific_tables_sort_by_effect_q_and_density(browser, tiny_run):
    _open(browser, tiny_run / "report.html")
    script = ("return [...document.querySelectorAll('.spec')].map(t => [...t.querySelectorAll("
              "'tbody tr')].map(r => [...r.children].map(c => c.textContent)))")
    heads = browser.find_elements("css selector", ".spec table")[0].find_elements(
        "css selector", "th")
    assert [h.text for h in heads][:4] == ["latent", "effect (log2 ratio)", "q", "density"]
    sizes = [len(t) for t in browser.execute_script(script)]
    assert max(sizes) >= 2, "no label has two specific latents to sort"
    for col, descending in [(1, True), (2, False), (3, True)]:
        for table in browser.find_elements("css selector", ".spec table"):
            table.find_elements("css selector", "th")[col].click()
        for rows in browser.execute_script(script):
            values = [float(r[col]) for r in rows]
            assert values == sorted(values, reverse=descending)


def test_search_finds_the_planted_token_and_keys_move_between_cards(browser, tiny_run):
    from selenium.webdriver.common.keys import Keys

    _open(browser, tiny_run / "report.html")
    box = browser.find_element("id", "search")
    box.send_keys(PLANTED, Keys.ENTER)
    _wait(browser, "return document.querySelector('#search-results li.link')")
    hits = browser.find_elements("css selector", "#search-results li.link")
    expected = [j for j, _, _ in html.token_index(_records(tiny_run))[PLANTED]]
    assert [int(h.get_attribute("data-latent")) for h in hits] == expected[:20]
    hits[0].click()
    _wait(browser, f"return document.querySelector('#card[data-card=\"{expected[0]}\"]')")
    assert PLANTED in browser.find_element("id", "card").text
    box.send_keys(Keys.ESCAPE)
    cards = [int(li.get_attribute("data-latent"))
             for li in browser.find_elements("css selector", "#card-list li")]
    assert len(cards) >= 3
    browser.find_element("id", f"item-{cards[0]}").click()
    body = browser.find_element("tag name", "body")
    for key, expected_card in [("j", cards[1]), ("j", cards[2]), ("k", cards[1]),
                               (Keys.ARROW_LEFT, cards[0]), (Keys.ARROW_RIGHT, cards[1])]:
        body.send_keys(key)
        _wait(browser, f"return document.querySelector('#card[data-card=\"{expected_card}\"]')")
        assert browser.find_element("css selector", "#card-list li.active").get_attribute(
            "data-latent") == str(expected_card)
    # a latent id opens any latent, listed or not
    last = len(_records(tiny_run)) - 1
    box.clear()
    box.send_keys(f"#{last}", Keys.ENTER)
    _wait(browser, f"return document.querySelector('#search-results li[data-latent=\"{last}\"]')")
    browser.find_element("css selector", f'#search-results li[data-latent="{last}"]').click()
    _wait(browser, f"return document.querySelector('#card[data-card=\"{last}\"] h2')")
    assert browser.find_element("css selector", "#card h2").text == f"Latent {last}"
    assert _errors(browser) == []


def test_sweep_page_shows_the_table_figure_and_working_links(browser, sweep):
    _open(browser, sweep / html.SWEEP_PAGE)
    assert _errors(browser) == []
    assert len(browser.find_elements("css selector", "table.sweep tr")) == 4  # head + 3 jobs
    assert _wait(browser, "const i = document.querySelector('figure img'); "
                 "return i && i.complete && i.naturalWidth > 100")
    links = browser.find_elements("css selector", "table.sweep a")
    assert len(links) == 2
    links[1].click()
    _wait(browser, "return document.body.dataset.ready && document.getElementById('heatmap')")
    assert browser.current_url.endswith("/1/report.html") and _errors(browser) == []


def test_browse_times_the_page_in_chromium(browser, tiny_run, tmp_path):
    out = tmp_path / "timed.html"
    res = run_cli("sae_exp.browse", [str(tiny_run), "--output", str(out), "--time", "2"],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    loads = [float(x) for x in res.stdout.split("load (s):")[1].split()]
    assert len(loads) == 2 and all(0 < t < 20 for t in loads)


def test_flags_from_other_analyses_show_on_the_card(browser, tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    recs = _records(tiny_run)
    j = next(r["id"] for r in recs if r["associated"])
    recs[j]["flags"] = ["token-driven", "consensus 3/5 seeds"]
    rep = json.loads((tiny_run / "report.json").read_text())
    page = html.write_run_page(tmp_path / "run", rep, recs)
    _open(browser, page)
    browser.find_element("id", f"item-{j}").click()
    _wait(browser, f"return document.querySelector('#card[data-card=\"{j}\"]')")
    badges = [b.text for b in browser.find_elements("css selector", "#card .b-flag")]
    assert badges == ["token-driven", "consensus 3/5 seeds"]


def test_screenshot_is_not_blank(browser, tiny_run):
    from PIL import Image

    _open(browser, tiny_run / "report.html")
    img = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"),
                     dtype=np.float64)
    assert img.std() > 10  # a blank (or error) page is one flat colour
