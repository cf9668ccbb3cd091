"""Token injection: a latent that follows one token is flagged, one that follows a construction
is not; skips and report rendering; a seed multirun on a tiny model shares one cache entry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from sae_exp.analysis import injection as inj
from sae_exp.report.markdown import render_markdown
from tests.conftest import run_cli

NOUNS = "cat dog mat tree house car bird lake".split()
FILLER = "the a red big sat ran on near old blue".split()
TOKEN_LATENT, CONSTRUCTION_LATENT, NOISE_LATENT, EVERYWHERE_LATENT = 0, 1, 2, 3


def planted_encoder(texts: list[str]):
    """One row per word. Latent 0 follows the token "unless"; latent 1 fires on the last word
    of a sentence whose first word is "if" (a construction, not a token); latent 2 is weak
    noise on every word (below any firing threshold); latent 3 fires on the first word of
    every sentence (as often in control sentences as in the label: not made by tokens)."""
    idx, val, sent = [], [], []
    for s, text in enumerate(texts):
        words = text.split()
        for w, word in enumerate(words):
            row_i, row_v = [NOISE_LATENT, 4, 5], [0.05, 0.0, 0.0]
            if w == 0:
                row_i[2], row_v[2] = EVERYWHERE_LATENT, 1.0
            if word == "unless":
                row_i[1], row_v[1] = TOKEN_LATENT, 2.0
            elif word == "if":  # weaker: "unless" is where it peaks when both are present
                row_i[1], row_v[1] = TOKEN_LATENT, 0.6
            elif w == len(words) - 1 and words[0] == "if":
                row_i[1], row_v[1] = CONSTRUCTION_LATENT, 2.0
            idx.append(row_i)
            val.append(row_v)
            sent.append(s)
    return np.array(idx), np.array(val, dtype=np.float32), np.array(sent)


def _corpus(rng, n: int = 60):
    cond = []
    for _ in range(n):
        mid = list(rng.choice(FILLER, 4))
        if rng.random() < 0.6:
            mid.insert(int(rng.integers(0, 5)), "unless")
        cond.append(" ".join(["if", *mid, str(rng.choice(NOUNS))]))
    ctrl = [" ".join([*rng.choice(FILLER, 5), str(rng.choice(NOUNS))]) for _ in range(n)]
    return cond, ctrl


def _run_planted(settings: inj.InjectionSettings | None = None) -> dict:
    rng = np.random.default_rng(0)
    cond, ctrl = _corpus(rng)
    idx, val, sent = planted_encoder(cond)
    tokens = np.array([w for t in cond for w in t.split()])
    thr = np.full(6, 0.5)
    fires = [set(idx[sent == s][val[sent == s] > 0.5].tolist()) for s in range(len(cond))]
    rates = {j: float(np.mean([j in f for f in fires])) for j in (0, 1, 3)}
    return inj.token_injection(
        {"conditional": [TOKEN_LATENT, CONSTRUCTION_LATENT, EVERYWHERE_LATENT]},
        {"conditional": rates},
        {"conditional": np.ones(len(idx), bool)}, {"conditional": ctrl}, idx, val, sent,
        tokens, thr, planted_encoder, settings or inj.InjectionSettings())


def test_token_latent_is_flagged_and_construction_latent_is_not():
    out = _run_planted()["labels"]["conditional"]
    by = {x["latent"]: x for x in out["latents"]}
    assert by[TOKEN_LATENT]["peak_tokens"] == ["unless", "if"]  # by peaks: 60% vs 40%
    assert by[TOKEN_LATENT]["token_driven"] and by[TOKEN_LATENT]["injected_rate"] == 1.0
    assert by[TOKEN_LATENT]["control_rate"] == 0.0
    assert set(by[CONSTRUCTION_LATENT]["peak_tokens"]) <= set(NOUNS)
    assert len(by[CONSTRUCTION_LATENT]["peak_tokens"]) == 3
    assert not by[CONSTRUCTION_LATENT]["token_driven"]
    assert by[CONSTRUCTION_LATENT]["injected_rate"] == 0.0
    # fires in every control sentence with or without the tokens: not token-driven
    assert by[EVERYWHERE_LATENT]["control_rate"] == by[EVERYWHERE_LATENT]["injected_rate"] == 1
    assert not by[EVERYWHERE_LATENT]["token_driven"]
    assert (out["n_tested"], out["n_flagged"], out["flagged"]) == (3, 1, [TOKEN_LATENT])
    assert out["share_flagged"] == pytest.approx(1 / 3)


def test_max_latents_samples_and_settings_are_recorded():
    res = _run_planted(inj.InjectionSettings(max_latents=1, n_sentences=5))
    assert res["labels"]["conditional"]["n_tested"] == 1
    assert res["settings"]["n_sentences"] == 5
    assert res["n_encoded_sentences"] == 5 + 5  # injected + the same sentences plain


def test_injection_places_every_token_once():
    rng = np.random.default_rng(0)
    out = inj.inject("a b c", ["x", "y"], rng).split()
    assert sorted(out) == ["a", "b", "c", "x", "y"]
    assert [w for w in out if w in "abc"] == ["a", "b", "c"]
    assert inj.clean_token("##ing") == "ing" and inj.clean_token("[CLS]") is None


def test_non_model_sources_skip_with_one_line_and_report_md_renders():
    data = SimpleNamespace(meta={"source": "synthetic"})
    skip = inj.for_report({}, None, None, data, None, inj.InjectionSettings())
    assert skip["status"] == "skipped" and "data=synthetic" in skip["reason"]
    md = render_markdown({"token_injection": skip})
    assert "## Token injection" in md and "Not run: data=synthetic" in md
    done = _run_planted()
    md = render_markdown({"token_injection": done, "definitions": dict(inj.DEFINITIONS)})
    assert "| conditional | 3 | 3 | 1 | 0.333 |" in md
    assert "- latent 0: tokens 'unless', 'if'" in md
    for term in ("n_tested", "n_flagged", "share_flagged", "token_driven", "injected_rate"):
        assert f"- `{term}`:" in md


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from tests.test_extract import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def test_seed_multirun_extracts_once_and_runs_injection(tiny_bert, tmp_path):
    rng = np.random.default_rng(0)
    cond, ctrl = _corpus(rng, 40)
    lines = [{"text": t, "label": lab, "split": "test" if i % 4 == 0 else "train"}
             for lab, texts in (("conditional", cond), ("control", ctrl))
             for i, t in enumerate(texts)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    res = run_cli("sae_exp.run", [
        "data=hf_model", f"data.model_path={tiny_bert}", f"data.corpus={corpus}", "data.layer=1",
        f"data.cache_dir={cache}", "wandb.mode=disabled", "model.hidden_dim=32",
        "sparsity.top_k=4", "trainer.epochs=2", "trainer.batch_size=128",
        "analysis.bootstrap=10", "analysis.permutations=10", "analysis.min_log2_ratio=0.3",
        "analysis.alpha=0.5", "seed=0,1", f"hydra.sweep.dir={sweep}", "-m"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len([p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1
    log = res.stdout + res.stderr
    assert log.count("cache miss") == 1 and log.count("cache hit") == 1
    for job in ("0", "1"):
        rep = json.loads((sweep / job / "report.json").read_text())
        assert rep["token_injection"]["status"] == "done"
        # its wall time is with the other timings (rerun ignores those), not in the result
        assert "seconds" not in rep["token_injection"] and "token_injection" in rep["timings_s"]
        assert set(rep["token_injection"]["labels"]) == {"conditional"}  # control is the base
        assert "## Token injection" in (sweep / job / "report.md").read_text()
