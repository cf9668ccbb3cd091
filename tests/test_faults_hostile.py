"""Faults a hostile user hits (issue 18): concurrent runs into one dir, stops after training,
full disks and read-only dirs, tampered checkpoints, values that pass validation but break the
run, and inputs that used to end in a traceback. Each case ends in one line `error: ...`, the
README's exit code, no traceback, and nothing lost.

Most cases run in one driver process (the `cli_batch` driver of test_bad_inputs: every CLI's
entry point called in turn with its own argv). Signals and concurrency use real processes, run
side by side to share their start-up time. A full disk is simulated inside the driver by making
the final rename of one named file fail with ENOSPC (`with_fault`), a read-only dir is a
read-only tmpfs (root) or a mode-0555 dir (other users).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from test_bad_inputs import Result, run_batch

from sae_exp import files

RUN = [*TINY, "trainer.num_threads=1"]
FILE = ["data=file", "wandb.mode=disabled", "model.hidden_dim=16", "sparsity.top_k=2",
        "trainer.epochs=2", "trainer.batch_size=64", "analysis.bootstrap=10",
        "analysis.permutations=10", "trainer.num_threads=1"]
MODEL = ["wandb.mode=disabled", "model.hidden_dim=32", "sparsity.top_k=4", "trainer.epochs=2",
         "trainer.batch_size=64", "analysis.bootstrap=10", "analysis.permutations=10",
         "trainer.num_threads=1", "data=logic_minilm"]
CKPT_DAMAGES = ("step_1e9", "no_optimizer", "wrong_shape", "nan_weights")


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- driver helpers
def with_fault(args: list[str]) -> int:
    """`python -m sae_exp.run args[1:]` where writing the file named args[0] fails with
    ENOSPC (its final rename, as a full disk fails a write: after the temp file was made)."""
    from sae_exp import run as run_module

    target, real = args[0], os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    os.replace = replace
    sys.argv = ["sae_exp.run", *args[1:]]
    try:
        return run_module.cli()
    finally:
        os.replace = real


def prepare(args: list[str]) -> int:
    """Inputs and damaged copies, made after the good run; digests of what must not change."""
    work = Path(args[0])
    good = work / "good"
    if not (good / files.REPORT_JSON).is_file():
        return 1
    inputs = work / "inputs"
    inputs.mkdir()
    _damaged_checkpoints(good, work / "ckpt")
    _damaged_run_dirs(good, work / "dirs")
    _data_files(inputs)
    (work / "a_file").write_text("not a dir\n")
    (work / "before.json").write_text(json.dumps({"good": _digest(good)}))
    return 0


def _damaged_checkpoints(good: Path, base: Path) -> None:
    import shutil

    for damage in CKPT_DAMAGES:
        d = base / damage
        shutil.copytree(good / files.HYDRA_DIR, d / files.HYDRA_DIR)
        state = torch.load(good / files.CHECKPOINT, weights_only=True)
        if damage == "step_1e9":
            state["step"] = 10**9
        elif damage == "no_optimizer":
            del state["optimizer"]
        elif damage == "wrong_shape":
            state["sae"]["W_enc"] = torch.zeros(16, 40)
        else:
            state["sae"]["_W_dec"][0, 0] = float("nan")
        torch.save(state, d / files.CHECKPOINT)


def _damaged_run_dirs(good: Path, base: Path) -> None:
    import shutil

    for name in ("k_above_d_sae", "no_normalization"):
        shutil.copytree(good, base / name)
    cfg = base / "k_above_d_sae" / files.SAE_CFG
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "k": 64}))
    (base / "no_normalization" / files.NORMALIZATION).unlink()


def _rows(labels: list[str], per_label: int = 30, d: int = 8, tokens: int = 3):
    rng = np.random.default_rng(0)
    acts, lab, ids = [], [], []
    for li, name in enumerate(labels):
        for s in range(per_label):
            for _ in range(tokens):
                x = rng.normal(size=d).astype(np.float32)
                x[li % d] += 3.0
                acts.append(x)
                lab.append(name)
                ids.append(li * per_label + s)
    return np.stack(acts), np.array(lab), np.array(ids, dtype=np.int64)


def _data_files(d: Path) -> None:
    acts, labels, ids = _rows(["alpha", "beta"])
    np.savez(d / "flipped.npz", activations=acts, labels=labels)
    raw = bytearray((d / "flipped.npz").read_bytes())
    raw[len(raw) // 3] ^= 0x10  # one bit inside the activations' bytes (CRC no longer matches)
    (d / "flipped.npz").write_bytes(bytes(raw))
    np.savez(d / "zero_width.npz", activations=np.zeros((len(labels), 0), np.float32),
             labels=labels)
    np.savez(d / "all_nan.npz", activations=np.full_like(acts, np.nan), labels=labels)
    np.savez(d / "pipe.npz", activations=acts, labels=np.where(labels == "alpha", "a|b", labels))
    # one row per sentence: numpy stores every text at the longest one's width (4 B a char)
    acts, labels, ids = _rows(["alpha", "beta"], tokens=1)
    texts = np.array([f"sentence {i}" for i in range(len(ids))], dtype=object)
    texts[0] = "x" * 300_000  # a 300 kB sentence (the 5 MB one, scaled down)
    texts[1] = texts[-1] = "the same words under two labels"
    np.savez(d / "texts.npz", activations=acts, labels=labels, sentence_ids=ids,
             texts=texts.astype(str))
    big = "word " * 40_000  # one CSV field of ~200 KB (the csv module's limit is 128 KiB)
    lines = ["text,label", *[f"sentence {i},{lab}" for i, lab in enumerate(["a", "b"] * 10)],
             f"\"{big}\",a"]
    (d / "huge_field.csv").write_text("\n".join(lines) + "\n")
    (d / "texts.txt").write_text("If it rains, we stay.\n")


# ----------------------------------------------------------------------------- the batch
def _with(base: list[str], *overrides: str) -> list[str]:
    keys = {o.split("=", 1)[0] for o in overrides}
    return [a for a in base if a.split("=", 1)[0] not in keys] + list(overrides)


def _cases(work: Path, readonly: Path) -> list[tuple[str, str, str, list[str]]]:
    good, disk = work / "good", work / "disk" / "run"
    inp = work / "inputs"

    def run(name: str, base: list[str], *overrides: str, out: Path | None = None):
        where = out or work / "runs" / name
        return name, "sae_exp.run", "cli", _with(base, *overrides, f"hydra.run.dir={where}")

    def fault(name: str, target: str, base: list[str], out: Path, *overrides: str):
        return (name, "test_faults_hostile", "with_fault",
                [target, *_with(base, *overrides, f"hydra.run.dir={out}")])

    def data(name: str, path: Path, *overrides: str):
        return run(name, FILE, f"data.path={path}", *overrides)

    ckpt = [*RUN, "trainer.checkpoint_every=2"]
    cases = [
        run("good", ckpt, "data.normalize=mean_center", out=good),
        ("prepare", "test_faults_hostile", "prepare", [str(work)]),
        # 3. disk full while the report is written, then every command that meets that dir
        fault("disk_full_report", files.REPORT_MD, RUN, disk),
        run("disk_full_same_command", RUN, out=disk),
        ("disk_full_rerun", "sae_exp.rerun", "main", [str(disk), "--out", str(work / "rr")]),
        ("disk_full_compare", "sae_exp.compare", "main", [str(work / "disk")]),
        run("disk_full_resume", [f"resume={disk}"]),
        # 6. write failures
        fault("disk_full_checkpoint", files.CHECKPOINT, ckpt, work / "runs" / "ckpt_full"),
        run("read_only_dir", RUN, out=readonly / "run"),
        run("run_dir_is_a_file", RUN, out=work / "a_file"),
        # 4, 6, 7. tampered checkpoints
        *[run(f"resume_{d}", [f"resume={work / 'ckpt' / d}"]) for d in CKPT_DAMAGES],
        # 5, 7. config values and keys
        run("plus_unknown_key", RUN, "+trainer.epoch=5"),
        run("min_log2_ratio_inf", RUN, "analysis.min_log2_ratio=inf"),
        run("init_gain_inf", RUN, "model.init_gain=inf"),
        run("lr_inf", RUN, "optimizer.lr=inf"),
        run("nonfinite_loss_no_checkpoint", RUN, "optimizer.lr=1e30", "trainer.log_every=1"),
        ("name_traversal", "sae_exp.run", "cli", [*RUN, "name=../../../x"]),
        # 6, 7, 8. data
        data("bit_flipped_npz", inp / "flipped.npz"),
        data("zero_width", inp / "zero_width.npz"),
        data("all_nan", inp / "all_nan.npz", "data.drop_nonfinite=true"),
        data("label_with_pipe", inp / "pipe.npz"),
        data("huge_and_duplicate_texts", inp / "texts.npz"),
        run("csv_field_over_128k", MODEL, f"data.corpus={inp / 'huge_field.csv'}",
            f"data.cache_dir={work / 'cache'}"),
        # 6. inspect
        ("inspect_k_above_d_sae", "sae_exp.inspect", "main",
         [str(work / "dirs" / "k_above_d_sae"), "--input", str(inp / "texts.txt")]),
        ("inspect_no_normalization", "sae_exp.inspect", "main",
         [str(work / "dirs" / "no_normalization"), "--input", str(inp / "texts.txt")]),
        ("inspect_device_tpu9", "sae_exp.inspect", "main",
         [str(good), "--input", str(inp / "texts.txt"), "--device", "tpu9"]),
    ]
    return cases


@pytest.fixture(scope="module")
def readonly(tmp_path_factory):
    """A dir no run can write into: a read-only tmpfs for root (who ignores modes), else 0555."""
    d = tmp_path_factory.mktemp("readonly")
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {r.stderr!r}")
    yield d
    subprocess.run(["umount", str(d)], check=False)


@pytest.fixture(scope="module")
def tiny_disk(tmp_path_factory):
    """A real 100 KB file system (tmpfs, root only; else None): a run fills it while it writes
    its report (weights and checkpoint fit, the figures do not)."""
    d = tmp_path_factory.mktemp("tiny_disk")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs",
                                            str(d)], capture_output=True).returncode != 0:
        yield None
        return
    yield d
    subprocess.run(["umount", str(d)], check=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def results(work, readonly, tiny_disk) -> dict[str, Result]:
    cases = _cases(work, readonly)
    if tiny_disk is not None:
        cases.append(("real_disk_full", "sae_exp.run", "cli",
                      [*RUN, f"hydra.run.dir={tiny_disk / 'run'}"]))
    out = run_batch(work, cases)
    for setup in ("good", "prepare"):
        assert out[setup].rc == 0, out[setup].out[-3000:]
    return out


# name -> (exit code, substrings of the one `error:` line); absent: words it must not hold
EXPECT: dict[str, tuple[int, list[str]]] = {
    "disk_full_report": (4, ["report.md", "No space left on device", "free", "resume="]),
    "disk_full_same_command": (2, ["status 'failed'", "resume="]),
    "disk_full_rerun": (2, ["status 'failed'", "not a finished run"]),
    "disk_full_checkpoint": (4, ["checkpoint.pt", "No space left on device", "free"]),
    "read_only_dir": (4, ["cannot write", "read-only"]),
    "run_dir_is_a_file": (4, ["a_file", "is a file, not a directory"]),
    "resume_step_1e9": (2, ["step 1000000000", "schedule"]),
    "resume_no_optimizer": (2, ["checkpoint.pt", "lacks", "optimizer"]),
    "resume_wrong_shape": (2, ["checkpoint.pt", "W_enc", "(16, 40)", "(16, 32)"]),
    "resume_nan_weights": (2, ["checkpoint.pt", "W_dec", "NaN"]),
    "plus_unknown_key": (2, ["trainer.epoch", "not a config key", "trainer.epochs"]),
    "min_log2_ratio_inf": (2, ["analysis.min_log2_ratio=inf", "finite"]),
    "init_gain_inf": (2, ["model.init_gain=inf", "finite"]),
    "lr_inf": (2, ["optimizer.lr=inf", "finite"]),
    "nonfinite_loss_no_checkpoint": (3, ["non-finite", "no checkpoint was saved"]),
    "name_traversal": (2, ["name='../../../x'", "/"]),
    "bit_flipped_npz": (2, ["flipped.npz", "damaged"]),
    "zero_width": (2, ["zero_width.npz", "0 columns"]),
    "all_nan": (2, ["all 180 activation rows hold NaN or Inf"]),
    "label_with_pipe": (2, ["'a|b'", "'|'"]),
    "csv_field_over_128k": (2, ["huge_field.csv", "line 22", "128 KiB"]),
    "inspect_k_above_d_sae": (2, ["k=64", "d_sae=32"]),
    "inspect_no_normalization": (2, ["normalization.safetensors is missing"]),
    "inspect_device_tpu9": (2, ["--device tpu9"]),
}
NOT_SAID = {  # misleading advice a case must not give
    "nonfinite_loss_no_checkpoint": "last good checkpoint is kept",
    "resume_nan_weights": "lower optimizer.lr",
    "zero_width": "lower optimizer.lr",
    "all_nan": "label (none)",
}


@pytest.mark.parametrize("name", list(EXPECT))
def test_one_line_and_exit_code(results, name):
    res = results[name]
    rc, needles = EXPECT[name]
    assert res.rc == rc, f"{name}: exit {res.rc}\n{res.out[-3000:]}"
    assert "Traceback" not in res.out, res.out[-3000:]
    errors = [line for line in res.lines if line.startswith("error: ")]
    assert len(errors) == 1, res.out[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{name}: {needle!r} not in\n{errors[0]}"
    if name in NOT_SAID:
        assert NOT_SAID[name] not in res.out, errors[0]


def test_good_run_is_byte_identical(results, work):
    before = json.loads((work / "before.json").read_text())
    assert {"good": _digest(work / "good")} == before


def test_disk_full_keeps_the_trained_run_and_says_it_is_not_finished(results, work):
    disk = work / "disk" / "run"
    info = json.loads((disk / files.RUN_INFO).read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]
    assert not (disk / files.REPORT_JSON).exists()  # written last: never without report.md
    assert not list(disk.rglob("*.tmp"))
    state = torch.load(disk / files.CHECKPOINT, weights_only=True)
    files.load_sae(disk)
    comp = results["disk_full_compare"]
    assert comp.rc == 0 and "failed" in comp.out and "| complete" not in comp.out, comp.out
    assert not (work / "rr").exists()
    # resume finishes it without training again: the same weights, a complete report
    res = results["disk_full_resume"]
    assert res.rc == 0, res.out[-3000:]
    assert f"training was already done (step {state['step']})" in res.out
    new = work / "runs" / "disk_full_resume"
    assert (new / files.SAE_WEIGHTS).read_bytes() == (disk / files.SAE_WEIGHTS).read_bytes()
    assert json.loads((new / files.RUN_INFO).read_text())["status"] == "complete"


def test_a_really_full_disk_ends_in_one_line(results, tiny_disk):
    if tiny_disk is None:
        pytest.skip("needs root to mount a 100 KB tmpfs")
    res = results["real_disk_full"]
    assert res.rc == 4, res.out[-3000:]
    assert "Traceback" not in res.out and "Logging error" not in res.out, res.out[-3000:]
    errors = [line for line in res.lines if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], res.out[-3000:]
    run_dir = tiny_disk / "run"
    assert files.read_status(run_dir) != "complete"
    assert not (run_dir / files.REPORT_JSON).exists() and not list(run_dir.rglob("*.tmp"))
    if (run_dir / files.CHECKPOINT).exists():  # trained: the line says how to finish
        assert f"resume={run_dir}" in errors[0]


def test_full_disk_at_a_periodic_checkpoint_keeps_nothing_half_written(results, work):
    out = work / "runs" / "ckpt_full"
    assert not (out / files.CHECKPOINT).exists() and not list(out.rglob("*.tmp"))
    assert json.loads((out / files.RUN_INFO).read_text())["status"] == "failed"


def test_refused_inputs_wrote_nothing_outside_their_dir(results, work):
    assert not (work / "x").exists() and not (work / "outputs" / "x").exists()
    assert (work / "a_file").read_text() == "not a dir\n"
    for name in ("plus_unknown_key", "lr_inf", "min_log2_ratio_inf"):
        assert not (work / "runs" / name / files.METRICS).exists()


def test_texts_are_truncated_and_cross_label_duplicates_named(results, work):
    res = results["huge_and_duplicate_texts"]
    assert res.rc == 0, res.out[-3000:]
    assert "same text under 2 labels (alpha, beta)" in res.out, res.out[-3000:]
    out = work / "runs" / "huge_and_duplicate_texts"
    for name in (files.FEATURES, files.REPORT_MD, files.REPORT_JSON):
        assert (out / name).stat().st_size < 200_000, name


# ----------------------------------------------------------------------------- real processes
LONG = [*RUN, "trainer.epochs=1000", "trainer.batch_size=16", "trainer.log_every=1",
        "trainer.checkpoint_every=5"]
SLOW_ANALYSIS = [*RUN, "analysis.permutations=500", "analysis.bootstrap=100"]


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_"))}
    return subprocess.Popen([sys.executable, "-m", "sae_exp.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(pred, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.time() + limit
    while not pred() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)


def _status(d: Path) -> str | None:
    try:
        return json.loads((d / files.RUN_INFO).read_text()).get("status")
    except (OSError, ValueError):
        return None


def _steps(d: Path) -> list[int]:
    try:
        return [json.loads(line)["step"] for line in (d / files.METRICS).read_text().splitlines()]
    except (OSError, ValueError, KeyError):
        return []


def _sigterm_once_trained(proc: subprocess.Popen, run_dir: Path) -> None:
    _wait(lambda: _status(run_dir) == "trained", proc, limit=300)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> dict:
    """Side by side: (a) a long run, a second run into its dir, then SIGKILL of the first and
    its resume (stopped by SIGTERM once it trains again: its schedule is long); (b) a run sent
    SIGTERM once training is done (status `trained`), then resumed to the end."""
    base = tmp_path_factory.mktemp("procs")
    own, stopped = base / "sweep" / "owned", base / "stopped"
    first = _popen([*LONG, f"hydra.run.dir={own}"], base)
    term = _popen([*SLOW_ANALYSIS, f"hydra.run.dir={stopped}"], base)
    sender = threading.Thread(target=_sigterm_once_trained, args=(term, stopped))
    sender.start()
    _wait(lambda: bool(_steps(own)), first)
    hydra_before = _digest(own / files.HYDRA_DIR)
    t = time.time()
    second = run_cli("sae_exp.run", [*RUN, f"hydra.run.dir={own}"], cwd=base)
    second_s = time.time() - t
    _wait(lambda: (own / files.CHECKPOINT).exists(), first)
    first.send_signal(signal.SIGKILL)
    first_out, _ = first.communicate(timeout=60)
    killed_step = torch.load(own / files.CHECKPOINT, weights_only=True)["step"]
    re_own = _popen([f"resume={own}", f"hydra.run.dir={base / 're_owned'}"], base)
    sender.join(timeout=300)
    term_out, _ = term.communicate(timeout=120)
    re_stop = _popen([f"resume={stopped}", f"hydra.run.dir={base / 're_stopped'}"], base)
    _wait(lambda: max(_steps(base / "re_owned"), default=0) > killed_step, re_own)
    re_own.send_signal(signal.SIGTERM)
    outs = {name: (p.communicate(timeout=300)[0], p.returncode)
            for name, p in (("owned", re_own), ("stopped", re_stop))}
    compare = run_cli("sae_exp.compare", [str(base / "sweep")], cwd=base)
    return {"base": base, "own": own, "stopped": stopped, "second": second,
            "second_s": second_s, "hydra_before": hydra_before, "hydra_after":
            _digest(own / files.HYDRA_DIR), "first": (first.returncode, first_out),
            "term": (term.returncode, term_out), "resumed": outs, "compare": compare}


def test_a_second_run_into_a_running_dir_fails_at_once(processes):
    second = processes["second"]
    assert second.returncode == 2, second.stderr[-3000:]
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr
    assert "is in use by another run (pid" in errors[0]
    assert processes["hydra_after"] == processes["hydra_before"]  # its snapshot untouched
    assert processes["second_s"] < 30


def test_a_killed_run_is_seen_as_killed_and_resumes(processes):
    own = processes["own"]
    assert processes["first"][0] == -signal.SIGKILL
    assert _status(own) == "running"  # what it was doing when killed
    out, rc = processes["resumed"]["owned"]
    assert rc == 0, out[-3000:]  # resumed, trained on, then stopped by SIGTERM (incomplete)
    assert "was left by pid" in out and "no longer running" in out, out[-3000:]
    assert _status(processes["base"] / "re_owned") == "incomplete"
    comp = processes["compare"]
    assert comp.returncode == 0, comp.stderr[-3000:]
    assert "killed" in comp.stdout and "| complete" not in comp.stdout, comp.stdout


def test_sigterm_after_training_keeps_the_weights_and_resume_finishes(processes):
    stopped = processes["stopped"]
    rc, out = processes["term"]
    assert rc == 143, out[-3000:]
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"resume={stopped}" in errors[0], out[-3000:]
    assert _status(stopped) == "stopped"
    state = torch.load(stopped / files.CHECKPOINT, weights_only=True)
    files.load_sae(stopped)
    out2, rc2 = processes["resumed"]["stopped"]
    assert rc2 == 0, out2[-3000:]
    assert f"training was already done (step {state['step']})" in out2
    new = processes["base"] / "re_stopped"
    assert (new / files.SAE_WEIGHTS).read_bytes() == (stopped / files.SAE_WEIGHTS).read_bytes()
    assert _status(new) == "complete"


def test_no_temp_file_exists_while_a_figure_is_drawn(tmp_path, monkeypatch):
    """Drawing a PNG takes ~100x longer than writing it: a run killed (SIGKILL) while figures
    are drawn must not leave an empty `.tmp` beside them. So no file may exist during savefig."""
    from matplotlib.figure import Figure

    from sae_exp.report.figures import write_figures

    seen: list[list[str]] = []
    real = Figure.savefig

    def savefig(self, *args, **kwargs):
        seen.append(sorted(p.name for p in tmp_path.rglob("*.tmp")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    history = [{"step": i, "loss": 1.0 / i, "fvu": 0.5, "l0": 4.0} for i in range(1, 5)]
    assert write_figures(tmp_path / "figures", {"latents": []}, history) == []
    assert seen and all(not names for names in seen), seen
    assert (tmp_path / "figures" / "training_curves.png").stat().st_size > 0


@pytest.mark.parametrize("override, key", [
    ("sparsity.sparsity_coeff=inf", "sparsity.sparsity_coeff"),
    ("optimizer.grad_clip=inf", "optimizer.grad_clip"),
    ("objective.l0_penalty=inf", "objective.l0_penalty"),
    ("data.noise=-1", "data.noise"),
    ("data.marker_prob=2", "data.marker_prob"),
    ("data.n_sentences=0", "data.n_sentences"),
    ("analysis.top_examples=-1", "analysis.top_examples"),
])
def test_every_number_is_checked_before_work(override, key):
    from test_config import typed

    from sae_exp.config import validate
    from sae_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate(typed(["data=synthetic", override]))
