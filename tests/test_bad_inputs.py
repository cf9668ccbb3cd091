"""Bad inputs, run as a user would: bad configs, bad data files, damaged run dirs, output dirs
that belong to another run. Each case checks the exit code, one clear message without a
traceback, and (at the end) that a good run made first is byte-identical afterwards.

All cases run in one driver process (`cli_batch.py`, written next to the inputs and started with
`python -m cli_batch` through conftest.run_cli) that calls each CLI's entry point in turn with
its own argv: the code path of `python -m sae_exp.run ...` from `cli()` on, but torch, Hydra and
transformers are imported once, so a case costs well under a second instead of a ~4 s process
start. Order inside the batch: a failed try and then a good run in the same dir, `prepare`
(inputs, damaged copies, a corrupted cache entry, digests of the dirs that must not change),
then every bad case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli

from sae_exp import files
from sae_exp.data import cache

TESTS = Path(__file__).resolve().parent

# One process, many CLI calls, each framed by markers in one ordered output stream.
DRIVER = r'''
import importlib, json, os, sys, traceback

os.dup2(1, 2)  # one stream, in order: Hydra logs to stdout, errors go to stderr
sys.stdout.reconfigure(line_buffering=True)
for case in json.load(open(sys.argv[1], encoding="utf-8")):
    print(f"@@BEGIN {case['name']}@@", flush=True)
    os.environ.update(case["env"])
    sys.argv = [case["module"], *case["args"]]
    fn = getattr(importlib.import_module(case["module"]), case["func"])
    try:
        rc = fn() if case["func"] == "cli" else fn(case["args"])
        rc = 0 if rc is None else rc
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = -1
    for key in case["env"]:
        del os.environ[key]
    print(f"@@END rc={rc}@@", flush=True)
'''

RUN = [*TINY, "trainer.num_threads=1"]
FILE = ["data=file", "wandb.mode=disabled", "model.hidden_dim=16", "sparsity.top_k=2",
        "trainer.epochs=2", "trainer.batch_size=64", "analysis.bootstrap=10",
        "analysis.permutations=10", "trainer.num_threads=1"]
MODEL = ["wandb.mode=disabled", "model.hidden_dim=32", "sparsity.top_k=4", "trainer.epochs=2",
         "trainer.batch_size=64", "analysis.bootstrap=10", "analysis.permutations=10",
         "trainer.num_threads=1"]
DAMAGES = ("truncated_weights", "wrong_shape_cfg", "missing_report")
INPUTS = {  # case name -> file name under inputs/
    "not_npz": "notes.npz", "single_array": "array.npy", "no_activations": "no_acts.npz",
    "no_labels": "no_labels.npz", "acts_1d": "acts_1d.npz", "acts_3d": "acts_3d.npz",
    "labels_2d": "labels_2d.npz", "length_mismatch": "short.npz", "nonfinite": "dirty.npz",
    "one_label": "one_label.npz", "no_rows": "empty.npz", "empty_corpus": "empty.jsonl",
    "non_utf8_corpus": "latin1.jsonl", "texts": "texts.txt", "shards_without_meta": "shards",
}
FULL_ERROR = {"full_error_compose", "full_error_value"}  # run with HYDRA_FULL_ERROR=1


@dataclass
class Result:
    rc: int
    out: str  # this case's output: stdout (where Hydra's log lines go) and stderr

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]


def _with(base: list[str], *overrides: str) -> list[str]:
    """`base` with `overrides` replacing entries for the same key (data=x replaces data=y)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [a for a in base if a.split("=", 1)[0] not in keys] + list(overrides)


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- inputs
def _labelled_rows(n_per_label: dict[str, int], d: int = 8, tokens: int = 3):
    """Rows of sentences with a label-specific direction each; `tokens` rows per sentence."""
    rng = np.random.default_rng(0)
    labels, ids, rows = [], [], []
    for li, (lab, n) in enumerate(n_per_label.items()):
        for _ in range(n * tokens):
            x = rng.normal(size=d).astype(np.float32)
            x[li % d] += 3.0
            rows.append(x)
            labels.append(lab)
            ids.append(len(ids) // tokens)
    return np.stack(rows), np.array(labels), np.array(ids, dtype=np.int64)


def make_inputs(d: Path) -> None:
    """Every bad (and one good-but-dirty) input file, named as in INPUTS."""
    d.mkdir(parents=True, exist_ok=True)
    acts, labels, ids = _labelled_rows({"alpha": 40, "beta": 40, "rare": 5})
    dirty = acts.copy()
    dirty[4, 2], dirty[50, 0] = np.nan, np.inf  # two rows, of two sentences
    f = {k: d / v for k, v in INPUTS.items()}
    np.savez(f["no_activations"], labels=labels)
    np.savez(f["no_labels"], activations=acts)
    np.savez(f["acts_1d"], activations=acts[:, 0], labels=labels)
    np.savez(f["acts_3d"], activations=acts[:, :, None], labels=labels)
    np.savez(f["labels_2d"], activations=acts, labels=labels[:, None])
    np.savez(f["length_mismatch"], activations=acts, labels=labels[:-3])
    np.savez(f["nonfinite"], activations=dirty, labels=labels, sentence_ids=ids)
    np.savez(f["one_label"], activations=acts, labels=np.full(len(acts), "alpha"))
    np.savez(f["no_rows"], activations=np.zeros((0, 8), np.float32), labels=np.array([], str))
    np.save(f["single_array"], acts)
    f["not_npz"].write_text("this is a text file, not numpy\n")
    f["empty_corpus"].write_text("\n\n")
    f["non_utf8_corpus"].write_bytes(
        b'{"text": "If it rains, we stay.", "label": "conditional"}\n'
        + '{"text": "Caf\u00e9s close if it snows.", "label": "conditional"}\n'.encode("latin-1"))
    f["texts"].write_text("If it rains, we stay.\n")
    f["shards_without_meta"].mkdir()
    np.save(f["shards_without_meta"] / "acts_0.npy", acts)


def make_corrupt_cache_entry(work: Path) -> None:
    """A cache entry for a tiny random BERT on a small corpus, built and then truncated (as by
    a full disk or a killed copy): the CLI run must notice (checksums) and rebuild it."""
    from test_extract import WORDS, make_tiny_bert

    from sae_exp.config import ModelDataConfig
    from sae_exp.data.sources import load_activations

    bert = make_tiny_bert(work / "bert")
    rng = np.random.default_rng(1)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS, size=4)), "label": lab})
             for lab in ("red", "green", "blue") for _ in range(12)]
    (work / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    cfg = ModelDataConfig(source="hf_model", model_path=bert, layer=1,
                          corpus=str(work / "corpus.jsonl"), cache_dir=str(work / "cache"))
    acts = Path(load_activations(cfg, seed=0).meta["cache_entry"]) / cache.ACTS
    acts.write_bytes(acts.read_bytes()[:-16])


def make_other_runs(work: Path) -> None:
    """Dirs of other runs that must not be written into: a run that crashed after training
    started (metrics.jsonl, no report) and a finished sweep."""
    crashed, sweep = work / "crashed", work / "sweep"
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (crashed / files.METRICS).write_text('{"step": 10, "loss": 0.5}\n')
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "0" / files.REPORT_JSON).write_text('{"metrics": {}}\n')


def make_damaged_copies(good: Path, work: Path) -> None:
    for damage in DAMAGES:
        shutil.copytree(good, work / "damaged" / damage)
    w = work / "damaged" / "truncated_weights" / files.SAE_WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    c = work / "damaged" / "wrong_shape_cfg" / files.SAE_CFG
    c.write_text(json.dumps({**json.loads(c.read_text()), "d_sae": 33}))
    (work / "damaged" / "missing_report" / files.REPORT_JSON).unlink()


def prepare(args: list[str]) -> int:
    """Run inside the driver, after the good run: inputs, then digests of what must not change."""
    work = Path(args[0])
    if not (work / "good" / files.REPORT_JSON).is_file():
        return 1
    make_inputs(work / "inputs")
    make_corrupt_cache_entry(work)
    make_other_runs(work)
    make_damaged_copies(work / "good", work)
    # a run dir with a config snapshot and no checkpoint (a finished run keeps its last one)
    shutil.copytree(work / "good" / files.HYDRA_DIR, work / "no_checkpoint" / files.HYDRA_DIR)
    before = {name: _digest(work / name) for name in ("good", "crashed", "sweep")}
    (work / "before.json").write_text(json.dumps(before))
    return 0


# ----------------------------------------------------------------------------- the batch
def _cases(work: Path) -> list[tuple[str, str, str, list[str]]]:
    """(name, module, function, args) of every case, in order."""
    inp = {k: work / "inputs" / v for k, v in INPUTS.items()}
    good = work / "good"

    def run(name: str, base: list[str], *overrides: str, out: bool = True):
        extra = [f"hydra.run.dir={work / 'runs' / name}"] if out else []
        return name, "sae_exp.run", "cli", _with(base, *overrides, *extra)

    def data(name: str, *overrides: str):
        return run(name, FILE, f"data.path={inp.get(name)}", *overrides)

    model_data = [*MODEL, "data=logic_minilm", f"data.cache_dir={work / 'cache'}"]
    cases = [
        # a failed try, then the good run in the same dir; then the inputs of the rest
        run("typo", RUN, "sparsity.top_k=0", f"hydra.run.dir={good}", out=False),
        run("good", RUN, f"hydra.run.dir={good}", out=False),
        ("prepare", "test_bad_inputs", "prepare", [str(work)]),
        # 1. config values, before any work
        run("top_k_zero", RUN, "sparsity.top_k=0"),
        run("top_k_above_hidden_dim", RUN, "sparsity.top_k=33"),
        run("hidden_dim_zero", RUN, "model.hidden_dim=0"),
        run("lr_zero", RUN, "optimizer.lr=0"),
        run("lr_negative", RUN, "optimizer.lr=-1e-3"),
        run("sparsity_coeff_negative", RUN, "sparsity.sparsity_coeff=-0.1"),
        run("batch_size_zero", RUN, "trainer.batch_size=0"),
        run("unknown_sparsity_kind", RUN, "sparsity.kind=jumprelu"),
        run("baseline_not_a_label", RUN, "analysis.baseline=negation"),
        run("alpha_zero", RUN, "analysis.alpha=0"),
        run("alpha_one", RUN, "analysis.alpha=1"),
        run("ci_level", RUN, "analysis.ci_level=95"),
        run("num_threads_zero", RUN, "trainer.num_threads=0"),
        run("unknown_data_source", RUN, "data=nosuch"),
        run("unknown_sparsity_group", RUN, "sparsity=nosuch"),
        run("unknown_key", RUN, "model.nosuch=1"),
        run("wrong_type", RUN, "trainer.epochs=many"),
        run("full_error_compose", RUN, "data=nosuch"),
        run("full_error_value", RUN, "sparsity.top_k=0"),
        # 2. data
        data("missing_file", f"data.path={work / 'nowhere.npz'}"),
        *[data(n) for n in ("not_npz", "single_array", "no_activations", "no_labels", "acts_1d",
                            "acts_3d", "labels_2d", "length_mismatch", "nonfinite",
                            "one_label", "no_rows", "shards_without_meta")],
        data("drop_nonfinite", f"data.path={inp['nonfinite']}", "data.drop_nonfinite=true"),
        run("empty_corpus", model_data, f"data.corpus={inp['empty_corpus']}"),
        run("non_utf8_corpus", model_data, f"data.corpus={inp['non_utf8_corpus']}"),
        run("missing_corpus", model_data, f"data.corpus={work / 'nowhere.jsonl'}"),
        run("corrupt_cache_entry", MODEL, "data=hf_model", f"data.model_path={work / 'bert'}",
            "data.layer=1", f"data.corpus={work / 'corpus.jsonl'}",
            f"data.cache_dir={work / 'cache'}"),
        # 3. training
        run("nonfinite_loss", RUN, "optimizer.lr=1e30", "trainer.checkpoint_every=1",
            "trainer.log_every=1"),
        # 4. output dirs of other runs
        run("into_finished_run", RUN, "sparsity.top_k=0", f"hydra.run.dir={good}", out=False),
        run("resume_into_itself", [f"resume={good}", f"hydra.run.dir={good}"], out=False),
        run("resume_without_checkpoint", [f"resume={work / 'no_checkpoint'}"]),
        run("into_crashed_run", RUN, f"hydra.run.dir={work / 'crashed'}", out=False),
        run("into_finished_sweep", RUN, f"hydra.sweep.dir={work / 'sweep'}", "-m", out=False),
        run("search_into_finished_sweep", RUN, "hparams_search=topk_optuna",
            f"hydra.sweep.dir={work / 'sweep'}", out=False),
        # 5. damaged run dirs
        ("inspect_not_a_text_run", "sae_exp.inspect", "main", [str(good), "--input",
                                                               str(inp["texts"])]),
    ]
    for damage in DAMAGES:
        d = str(work / "damaged" / damage)
        cases.append((f"inspect_{damage}", "sae_exp.inspect", "main",
                      [d, "--input", str(inp["texts"])]))
        cases.append((f"rerun_{damage}", "sae_exp.rerun", "main",
                      [d, "--out", str(work / "reruns" / damage)]))
    return cases


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The batch's working dir: inputs, run dirs, the driver."""
    return tmp_path_factory.mktemp("bad_inputs")


def run_batch(work: Path, cases: list[tuple], env_of=lambda name: {}) -> dict[str, Result]:
    """Run (name, module, func, args) cases one after another in one driver process (one
    interpreter start-up for all of them); each case's exit code and output by name."""
    (work / "cli_batch.py").write_text(DRIVER)
    spec = work / "cases.json"
    spec.write_text(json.dumps([{"name": n, "module": m, "func": f, "args": a,
                                 "env": env_of(n)} for n, m, f, a in cases]))
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    proc = run_cli("cli_batch", [str(spec)], cwd=work, env={"PYTHONPATH": path}, timeout=600)
    out: dict[str, Result] = {}
    for chunk in proc.stdout.split("@@BEGIN ")[1:]:
        name, rest = chunk.split("@@\n", 1)
        body, _, tail = rest.rpartition("@@END rc=")
        out[name] = Result(int(tail.split("@@", 1)[0]), body)
    missing = [n for n, *_ in cases if n not in out]
    assert not missing, f"cases without a result: {missing}\n{proc.stdout[-3000:]}"
    return out


@pytest.fixture(scope="module")
def results(work) -> dict[str, Result]:
    out = run_batch(work, _cases(work),
                    lambda n: {"HYDRA_FULL_ERROR": "1"} if n in FULL_ERROR else {})
    for setup in ("typo", "good", "prepare"):
        assert out[setup].rc == (2 if setup == "typo" else 0), out[setup].out[-3000:]
    return out


# ----------------------------------------------------------------------------- expectations
# name -> (exit code, substrings of the message). Our own errors are one line "error: ...";
# Hydra's compose errors (unknown group option or key, wrong type) are Hydra's few lines.
EXPECT: dict[str, tuple[int, list[str]]] = {
    "top_k_zero": (2, ["sparsity.top_k=0", "1 <= top_k <= model.hidden_dim (32)"]),
    "top_k_above_hidden_dim": (2, ["sparsity.top_k=33", "model.hidden_dim (32)"]),
    "hidden_dim_zero": (2, ["model.hidden_dim=0", "integer >= 1"]),
    "lr_zero": (2, ["optimizer.lr=0.0", "> 0"]),
    "lr_negative": (2, ["optimizer.lr=-0.001", "> 0"]),
    "sparsity_coeff_negative": (2, ["sparsity.sparsity_coeff=-0.1", ">= 0"]),
    "batch_size_zero": (2, ["trainer.batch_size=0", ">= 1", "null for full batch"]),
    "unknown_sparsity_kind": (2, ["sparsity.kind='jumprelu'", "topk, batchtopk, relu_l1"]),
    "baseline_not_a_label": (2, ["analysis.baseline='negation'",
                                 "conditional, control, quantifier"]),
    "alpha_zero": (2, ["analysis.alpha=0.0", "strictly between 0 and 1"]),
    "alpha_one": (2, ["analysis.alpha=1.0", "strictly between 0 and 1"]),
    "ci_level": (2, ["analysis.ci_level=95.0", "(0, 1)"]),
    "num_threads_zero": (2, ["trainer.num_threads=0", ">= 1"]),
    "unknown_data_source": (2, ["Could not find 'data/nosuch'", "synthetic", "file"]),
    "unknown_sparsity_group": (2, ["Could not find 'sparsity/nosuch'", "topk", "relu_l1"]),
    "unknown_key": (2, ["model.nosuch", "not in 'ModelConfig'"]),
    "wrong_type": (2, ["'many'", "trainer.epochs"]),
    "full_error_compose": (2, ["Traceback", "Could not find 'data/nosuch'"]),
    "full_error_value": (2, ["Traceback", "error: sparsity.top_k=0 is invalid"]),
    "missing_file": (2, ["data.path=", "nowhere.npz does not exist"]),
    "not_npz": (2, ["notes.npz is not a readable .npz file", "np.savez"]),
    "single_array": (2, ["array.npy holds a single array, not an .npz", "np.savez"]),
    "no_activations": (2, ["missing key 'activations'", "found keys: labels"]),
    "no_labels": (2, ["missing key 'labels'", "found keys: activations"]),
    "acts_1d": (2, ["activations has shape (255,)", "expected [N, d]"]),
    "acts_3d": (2, ["activations has shape (255, 8, 1)", "expected [N, d]"]),
    "labels_2d": (2, ["labels has shape (255, 1)", "expected [N] = [255]"]),
    "length_mismatch": (2, ["labels has 252 entries but activations has 255 rows"]),
    "nonfinite": (2, ["2 of 255 activation rows hold NaN or Inf", "data.drop_nonfinite=true"]),
    "one_label": (2, ["1 label (alpha)", "at least two"]),
    "no_rows": (2, ["no rows"]),
    "shards_without_meta": (2, ["shards has no meta.npz or meta.json"]),
    "drop_nonfinite": (0, ["dropped 2 of 255 activation rows holding NaN or Inf"]),
    "empty_corpus": (2, ["empty.jsonl has no sentences"]),
    "non_utf8_corpus": (2, ["latin1.jsonl line 2", "not UTF-8", "save the file as UTF-8"]),
    "missing_corpus": (2, ["nowhere.jsonl does not exist", "data.corpus"]),
    "corrupt_cache_entry": (0, ["is corrupt", "rebuilding"]),
    "nonfinite_loss": (3, ["non-finite loss", "last good checkpoint (step", "is kept",
                        "optimizer.lr"]),
    "into_finished_run": (2, ["already holds a finished run", "nothing was changed"]),
    "resume_into_itself": (2, ["already holds a finished run", "nothing was changed"]),
    "resume_without_checkpoint": (2, ["no checkpoint.pt there; nothing to resume"]),
    "into_crashed_run": (2, ["holds another run's metrics.jsonl", "resume="]),
    "into_finished_sweep": (2, ["already holds a sweep", "hydra.sweep.dir"]),
    "search_into_finished_sweep": (2, ["already holds a sweep", "hydra.sweep.dir"]),
    "inspect_not_a_text_run": (2, ["data=synthetic", "data=logic_minilm or data=hf_model"]),
    "inspect_truncated_weights": (2, ["sae.safetensors is not a valid safetensors file"]),
    "rerun_truncated_weights": (2, ["sae.safetensors is not a valid safetensors file"]),
    "inspect_wrong_shape_cfg": (2, ["sae.safetensors: W_enc should have shape (16, 33)"]),
    "rerun_wrong_shape_cfg": (2, ["sae.safetensors: W_enc should have shape (16, 33)"]),
    "inspect_missing_report": (2, ["report.json is missing", "did not finish"]),
    "rerun_missing_report": (2, ["report.json is missing", "did not finish"]),
}
HYDRA_ERRORS = {"unknown_data_source", "unknown_sparsity_group", "unknown_key", "wrong_type"}


@pytest.mark.parametrize("name", list(EXPECT))
def test_message_and_exit_code(results, name):
    res = results[name]
    rc, needles = EXPECT[name]
    assert res.rc == rc, f"{name}: exit {res.rc}\n{res.out[-3000:]}"
    if name in FULL_ERROR:  # HYDRA_FULL_ERROR=1 asks for the trace; the exit code stays 2
        assert all(n in res.out for n in needles), res.out[-3000:]
        return
    assert "Traceback" not in res.out, res.out[-3000:]
    for needle in needles:
        assert needle in res.out, f"{name}: {needle!r} not in\n{res.out[-3000:]}"
    if rc == 0:
        return
    if name in HYDRA_ERRORS:  # Hydra's own lines: short, with the hint about a full trace
        assert len(res.lines) <= 20 and "HYDRA_FULL_ERROR" in res.out, res.out
        return
    errors = [line for line in res.lines if line.startswith("error: ")]
    assert len(errors) == 1, res.out  # one line that holds the whole message
    assert all(n in errors[0] for n in needles), errors[0]


def test_good_run_and_other_runs_are_byte_identical(results, work):
    before = json.loads((work / "before.json").read_text())
    assert not (work / "good" / "error.json").exists()  # the failed try's error.json is gone
    assert {name: _digest(work / name) for name in before} == before


def test_refused_reruns_create_nothing(results, work):
    assert not (work / "reruns").exists()


def test_dropped_rows_are_counted_and_small_labels_warned(results, work):
    out = work / "runs" / "drop_nonfinite"
    info = json.loads((out / files.RUN_INFO).read_text())
    assert info["data"]["dropped_nonfinite_rows"] == 2
    rep = json.loads((out / files.REPORT_JSON).read_text())
    assert rep["categories"]["rare"]["n_sentences"] == 5
    assert any("label 'rare' has 5 sentences" in w and "analysis.min_sentences=20" in w
               for w in rep["warnings"]), rep["warnings"]
    assert "label 'rare' has 5 sentences" in (out / files.REPORT_MD).read_text()


def test_corrupt_cache_entry_was_rebuilt(results, work):
    out = work / "runs" / "corrupt_cache_entry"
    entry = Path(json.loads((out / files.RUN_INFO).read_text())["data"]["cache_entry"])
    assert cache._load(entry).acts.shape[0] > 0  # every checksum verified again
    assert (out / files.REPORT_JSON).is_file()


def test_nonfinite_loss_keeps_the_last_good_checkpoint(results, work):
    out = work / "runs" / "nonfinite_loss"
    state = torch.load(out / files.CHECKPOINT, weights_only=True)
    assert state["step"] >= 1
    assert all(torch.isfinite(t).all() for t in state["sae"].values())
    assert not (out / files.REPORT_JSON).exists() and not (out / files.SAE_WEIGHTS).exists()
    assert "non-finite loss" in json.loads((out / "error.json").read_text())["error"]
    assert not list(out.glob(".*.tmp"))


def test_config_errors_stop_before_any_work(results, work):
    for name in ("top_k_zero", "lr_zero", "alpha_one", "ci_level", "baseline_not_a_label"):
        out = work / "runs" / name
        assert not (out / files.METRICS).exists() and not (out / files.CHECKPOINT).exists()
        assert json.loads((out / "error.json").read_text())["status"] == "failed"
