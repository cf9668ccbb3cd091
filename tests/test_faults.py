"""Faults during a run: Ctrl-C / SIGTERM mid-training, non-finite weights, out of memory; and
the file rules every run relies on (atomic writes, safe loading).

Signals go to a real `python -m sae_exp.run` process once its metrics.jsonl has a line; the
SIGINT and SIGTERM runs go side by side to share the start-up time."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY
from hydra import compose, initialize_config_dir

from sae_exp import files
from sae_exp.config import OptimizerConfig, SparsityConfig, SyntheticDataConfig, TrainerConfig
from sae_exp.data.stream import RowStream
from sae_exp.data.synthetic import make_synthetic
from sae_exp.errors import DataError, TrainingError, WriteError
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import Trainer

LONG = [*TINY, "trainer.epochs=1000", "trainer.batch_size=16", "trainer.log_every=1",
        "trainer.num_threads=1"]


def _start(out: Path, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_"))}
    return subprocess.Popen([sys.executable, "-m", "sae_exp.run", *LONG, f"hydra.run.dir={out}"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[str, tuple[Path, int, str]]:
    """Two long runs, one stopped with SIGINT (Ctrl-C), one with SIGTERM, mid-training."""
    base = tmp_path_factory.mktemp("signals")
    procs = {name: (base / name, _start(base / name, base)) for name in ("SIGINT", "SIGTERM")}
    pending, deadline = dict(procs), time.time() + 180
    while pending and time.time() < deadline:
        for name, (out, proc) in list(pending.items()):
            metrics = out / files.METRICS
            if proc.poll() is not None or (metrics.exists() and metrics.stat().st_size > 0):
                proc.send_signal(getattr(signal, name))
                del pending[name]
        time.sleep(0.02)
    result = {}
    for name, (out, proc) in procs.items():
        text, _ = proc.communicate(timeout=180)
        result[name] = (out, proc.returncode, text)
    return result


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 0)])
def test_signal_saves_a_checkpoint_and_an_incomplete_report(stopped, sig, code):
    out, rc, text = stopped[sig]
    assert rc == code, text[-3000:]
    assert f"{sig}: stopping after this step" in text and "Traceback" not in text
    rep = json.loads((out / files.REPORT_JSON).read_text())
    assert rep["incomplete"] is True and rep["run"]["incomplete"] is True
    assert json.loads((out / files.RUN_INFO).read_text())["status"] == "incomplete"
    state = torch.load(out / files.CHECKPOINT, weights_only=True)
    assert 0 < state["step"] == rep["run"]["steps"]
    files.load_sae(out)  # complete, consistent weights
    # nothing half-written: no temp files left, every JSON file and metrics line parses
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for p in out.rglob("*.json"):
        json.loads(p.read_text())
    lines = (out / files.METRICS).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, len(lines) + 1))


# ----------------------------------------------------------------------------- non-finite
def _trainer(checkpoint_every: int) -> tuple[Trainer, RowStream]:
    data = make_synthetic(SyntheticDataConfig(n_sentences=20, d_in=8, n_specific=2, n_shared=1,
                                              n_common=3, features_per_token=2))
    tr = Trainer(SAE(8, 16, k=2), OptimizerConfig(lr=1e-3), SparsityConfig(top_k=2),
                 TrainerConfig(epochs=3, batch_size=32, log_every=1,
                               checkpoint_every=checkpoint_every), torch.device("cpu"))
    rows = np.flatnonzero(data.row_mask("train"))
    return tr, RowStream(data.acts, rows, 32, seed=0)


def test_nan_weights_never_replace_the_last_good_checkpoint(tmp_path):
    """A step with a finite loss can still leave NaN weights; the next checkpoint is refused."""
    tr, stream = _trainer(checkpoint_every=2)
    path = tmp_path / files.CHECKPOINT
    tr.on_checkpoint = lambda: files.atomic_torch_save(path, tr.state_dict())

    def poison(row):
        if row["step"] == 4:  # after step 4's update, before its checkpoint
            with torch.no_grad():
                tr.sae.W_enc[0, 0] = float("nan")

    tr.on_log = poison
    with pytest.raises(TrainingError, match=r"non-finite weights \(W_enc\) after step 4: the "
                                            r"last good checkpoint \(step 2\) is kept"):
        tr.fit(stream)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and torch.isfinite(state["sae"]["W_enc"]).all()


def test_nan_weights_after_the_last_step_fail_the_run():
    tr, stream = _trainer(checkpoint_every=0)
    last = stream.steps_per_epoch * 3

    def poison(row):
        if row["step"] == last:
            with torch.no_grad():
                tr.sae.b_dec.fill_(float("inf"))

    tr.on_log = poison
    with pytest.raises(TrainingError, match="non-finite weights"):
        tr.fit(stream)


# ----------------------------------------------------------------------------- out of memory
def _config(overrides: list[str]):
    from omegaconf import OmegaConf

    from sae_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_object(cfg)


OOM = {
    "cuda": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cpu": RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                        "can't allocate memory: you tried to allocate 4503599627370496 bytes."),
    "numpy": MemoryError("Unable to allocate 8.00 GiB for an array"),
}


@pytest.mark.parametrize("kind", list(OOM))
def test_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch, kind):
    from sae_exp import run as run_module

    def fit(self, stream):
        raise OOM[kind]

    monkeypatch.setattr(run_module.Trainer, "fit", fit)
    cfg = _config([*TINY, "trainer.num_threads=1"])
    with pytest.raises(TrainingError) as err:
        run_module.run(cfg, tmp_path / "run")
    assert err.value.exit_code == 3
    msg = str(err.value)
    assert "out of memory at trainer.batch_size=256" in msg and "smaller trainer.batch_size" in msg
    assert not (tmp_path / "run" / files.REPORT_JSON).exists()


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, monkeypatch):
    from sae_exp import run as run_module

    def fit(self, stream):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(run_module.Trainer, "fit", fit)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_module.run(_config([*TINY, "trainer.num_threads=1"]), tmp_path / "run")


# ----------------------------------------------------------------------------- file rules
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    files.atomic_write_json(path, {"ok": 1})

    def broken(tmp):
        Path(tmp).write_text('{"half":')
        raise OSError("disk full")

    with pytest.raises(WriteError, match="disk full"):  # one line for the user, exit 4
        files.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    files.atomic_write_text(tmp_path / "atomic.txt", "x")
    files.atomic_torch_save(tmp_path / "state.pt", {"a": torch.zeros(1)})
    for name in ("atomic.txt", "state.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


# Writes that do not go through sae_exp.files, each with the reason it is safe: (file, a piece
# of the call's source line) -> reason.
ALLOWED_WRITES = {
    ("files.py", "open(tmp, \"wb\")"): "the atomic helpers themselves",
    ("files.py", "torch.save(obj, f)"): "the atomic helpers themselves",
    ("files.py", "save_file(tensors, tmp"): "the atomic helpers themselves",
    ("run.py", "open(self.path, \"a\""): "metrics.jsonl: append-only, one whole line per write",
    ("cache.py", "np.save(tmp / name"): "inside a temp dir renamed into place as a whole",
    ("cache.py", "(tmp / META).write_text"): "inside a temp dir renamed into place as a whole",
    ("cache.py", "open(path, \"a+\")"): "the lock file (never read)",
    ("cache.py", "open(cache_dir / f\"{key}.lock\", \"a+\")"): "the lock file (never read)",
    ("compare.py", "fig.savefig(buf"): "into memory; written with files.atomic_write",
    ("compare.py", "Path(tmp).write_bytes"): "the temp file of files.atomic_write",
    ("figures.py", "fig.savefig(buf"): "into memory; written with files.atomic_write_bytes",
    ("calibrate.py", "fig.savefig(tmp"): "the temp file of files.atomic_write",
    ("seeds.py", "fig.savefig(buf"): "into memory; written with files.atomic_write_bytes",
    ("bench.py", "open(path, \"wb\")"): "bench's scratch activation file, not a run's",
    ("ground_truth.py", "open(tmp, \"wb\")"): "the temp file of files.atomic_write",
    ("ground_truth.py", "np.savez(f, **arrays)"): "into the temp file of files.atomic_write",
    ("bench.py", "write_text(\"5\")"): "/proc/self/clear_refs (a kernel control, not a file)",
    ("make_logic_corpus.py", "open(out, \"w\""): "a developer script that regenerates the corpus",
}
WRITERS = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed",
           "save_file", "save_pretrained", "tofile"}


def _writes(tree: ast.AST):
    """Line numbers of calls that write a file: open() in a write mode, .save(), .savefig() ..."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                yield node.lineno
        elif name in WRITERS:
            yield node.lineno


def test_every_write_goes_through_the_atomic_helpers():
    found = []
    for path in sorted((REPO / "sae_exp").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for n in sorted(set(_writes(ast.parse(text)))):
            code = lines[n - 1]
            if not any(path.name == f and snippet in code for f, snippet in ALLOWED_WRITES):
                found.append(f"{path.relative_to(REPO)}:{n}: {code.strip()}")
    assert not found, ("write these through sae_exp.files (atomic_write_text/json, "
                       "atomic_torch_save, atomic_save_safetensors, _atomic), or add the line "
                       "to ALLOWED_WRITES with the reason it is safe:\n" + "\n".join(found))


class _Payload:
    """Unpickling this runs `touch <marker>`: proof that a loader executed stored code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + str(self.marker),))


def test_an_activation_file_carrying_pickled_objects_is_refused_unrun(tmp_path):
    """data=file: an .npz whose labels are pickled Python objects is refused, their code unrun."""
    marker = tmp_path / "pwned"
    labels = np.empty(4, dtype=object)
    labels[:] = [_Payload(marker)] * 4
    np.savez(tmp_path / "acts.npz", activations=np.ones((4, 3), np.float32), labels=labels)
    from sae_exp.config import FileDataConfig
    from sae_exp.data.sources import load_activations
    with pytest.raises(DataError, match="holds Python objects"):
        load_activations(FileDataConfig(path=str(tmp_path / "acts.npz")), seed=0)
    assert not marker.exists()


def test_no_loader_in_the_source_can_unpickle():
    """A lint over every module: weights through safetensors; torch.load only with
    weights_only=True; np.load never with allow_pickle=True; no pickle import. The behaviour
    it protects is tested on real payloads above and below."""
    bad = []
    for path in sorted((REPO / "sae_exp").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if ("torch.load(" in code and "weights_only=True" not in code) or \
                    "allow_pickle=True" in code or re.search(r"\bimport pickle\b|\bpickle\.", code):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_a_pickled_checkpoint_is_refused_on_resume(tmp_path):
    """A checkpoint.pt carrying arbitrary Python objects cannot run code on load."""
    from sae_exp import run as run_module

    old = tmp_path / "old"
    old.mkdir()
    torch.save({"sae": _Payload(tmp_path / "pwned")}, old / files.CHECKPOINT)
    tr, _ = _trainer(checkpoint_every=0)
    with pytest.raises(DataError, match="cannot be read safely"):
        run_module._load_checkpoint(tr, old, torch.device("cpu"))
    assert not (tmp_path / "pwned").exists()
