"""`python -m sae_exp.inspect`: new sentences through a trained MiniLM run, from a file or stdin."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import run_cli

from sae_exp import files
from sae_exp.corpora import shipped_corpus_path

NEW = [
    {"text": "Unless the ferry is late, we will be home by nine.", "label": "conditional"},
    {"text": "Not a single guest stayed after midnight.", "label": "quantifier"},
    {"text": "The gardener painted the fence green on Sunday.", "label": "control"},
]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    """A small but real run: MiniLM layer 3 on 40 sentences per label of the shipped corpus."""
    root = tmp_path_factory.mktemp("inspect")
    rows = [json.loads(x) for x in shipped_corpus_path().read_text().splitlines()]
    keep, seen = [], {}
    for r in rows:
        key = (r["label"], r["split"])
        if seen.get(key, 0) < (30 if r["split"] == "train" else 10):
            seen[key] = seen.get(key, 0) + 1
            keep.append({k: r[k] for k in ("text", "label", "subset", "split")})
    corpus = root / "small.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in keep))
    out = root / "run"
    res = run_cli("sae_exp.run", [
        "data=logic_minilm", f"data.corpus={corpus}", "wandb.mode=disabled",
        "model.hidden_dim=64", "sparsity.top_k=8", "trainer.epochs=5", "trainer.batch_size=256",
        "analysis.bootstrap=20", "analysis.permutations=20", f"hydra.run.dir={out}"], cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_inspect_jsonl_file(minilm_run, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in NEW))
    res = run_cli("sae_exp.inspect", [str(minilm_run), "--input", str(src), "--output", str(dst)],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [o["text"] for o in out] == [r["text"] for r in NEW]  # input order kept
    assert [o["label"] for o in out] == [r["label"] for r in NEW]  # extra fields passed through
    labels = {"conditional", "quantifier", "control"}
    for o in out:
        assert set(o["scores"]) == labels and all(0 <= v <= 1 for v in o["scores"].values())
        probs = o["probabilities"]  # the run's saved multi-class probe
        assert set(probs) == labels and abs(sum(probs.values()) - 1) < 1e-3
        assert o["predicted"] == max(probs, key=probs.get)
        acts = [a for _, a in o["latents"]]
        assert acts == sorted(acts, reverse=True) and all(a > 0 for a in acts)
        assert all(0 <= j < 64 for j, _ in o["latents"])
    # the printed accuracy is the share of labelled inputs whose prediction is their label
    shown = re.search(r"accuracy on the (\d+) inputs with a known label: ([0-9.]+)", res.stderr)
    assert shown, res.stderr
    right = sum(o["predicted"] == o["label"] for o in out)
    assert int(shown.group(1)) == 3 and float(shown.group(2)) == pytest.approx(right / 3, abs=5e-4)


def test_inspect_stdin_plain_text_matches_file(minilm_run, tmp_path):
    text = "\n".join(r["text"] for r in NEW) + "\n"
    res = subprocess.run([sys.executable, "-m", "sae_exp.inspect", str(minilm_run)], input=text,
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    from_stdin = [json.loads(x) for x in res.stdout.splitlines()]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in NEW))
    res2 = run_cli("sae_exp.inspect", [str(minilm_run), "--input", str(src)], cwd=tmp_path)
    assert from_stdin == [json.loads(x) for x in res2.stdout.splitlines()]


def test_inspect_refuses_a_damaged_run(minilm_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(minilm_run, bad)
    weights = bad / files.SAE_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    res = subprocess.run([sys.executable, "-m", "sae_exp.inspect", str(bad)], input="If so.\n",
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "sae.safetensors" in res.stderr and "Traceback" not in res.stderr


def test_inspect_refuses_a_run_without_a_text_model(tmp_path):
    from conftest import TINY

    out = tmp_path / "syn"
    assert run_cli("sae_exp.run", [*TINY, f"hydra.run.dir={out}"], cwd=tmp_path).returncode == 0
    res = subprocess.run([sys.executable, "-m", "sae_exp.inspect", str(out)], input="If so.\n",
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "data=synthetic" in res.stderr
