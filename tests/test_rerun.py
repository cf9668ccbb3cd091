"""Reruns: a run dir holds what it takes to run it again; `python -m sae_exp.rerun` repeats a
sweep job into a new dir and finds it identical on CPU; differences are reported with their
size (exit 1); damaged run dirs are refused with one line (exit 2)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from tiny_sweep import tiny_sweep

from sae_exp import rerun


def _digest(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def job_and_rerun(tmp_path_factory):
    """A job of the tiny top_k sweep (copied, its git commit altered), rerun through the CLI."""
    base = tmp_path_factory.mktemp("rerun")
    sweep = base / "multirun" / "sweep"
    shutil.copytree(tiny_sweep(), sweep)
    job = sweep / "1"
    info = json.loads((job / "run_info.json").read_text())
    info["git"] = {"commit": "0" * 40, "dirty": False}
    (job / "run_info.json").write_text(json.dumps(info))
    before = _digest(job)
    proc = run_cli("sae_exp.rerun", [str(job)], cwd=base)
    return job, before, proc


def test_rerun_of_a_sweep_job_is_identical(job_and_rerun):
    job, before, proc = job_and_rerun
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "IDENTICAL" in proc.stdout
    for part in ["metrics", "report", "training_log", "weights"]:
        assert f"{part}: identical" in proc.stdout
    assert "warning: code differs" in proc.stderr  # the snapshot's commit is not this one
    assert _digest(job) == before  # the original is never written to
    new = Path(proc.stdout.strip().splitlines()[-1].split("rerun dir: ", 1)[1])
    assert new.parent == job.parent.parent and new.name.startswith("sweep_1_rerun_")
    a = json.loads((job / "report.json").read_text())["metrics"]
    b = json.loads((new / "report.json").read_text())["metrics"]
    assert a == b
    assert (new / ".hydra" / "config.yaml").is_file()  # the rerun can itself be rerun


def test_differences_are_reported_with_their_size(job_and_rerun, tmp_path, monkeypatch, capsys):
    job, _, proc = job_and_rerun
    new = Path(proc.stdout.strip().splitlines()[-1].split("rerun dir: ", 1)[1])
    changed = tmp_path / "changed"
    shutil.copytree(job, changed)
    rep = json.loads((changed / "report.json").read_text())
    rep["metrics"]["fvu"] += 0.01
    (changed / "report.json").write_text(json.dumps(rep))

    result = rerun.compare_runs(changed, new)
    assert not result["report"].diffs and not result["weights"].diffs
    diffs = result["metrics"].diffs
    assert [d.where for d in diffs] == ["metrics.fvu"]
    assert diffs[0].size == pytest.approx(0.01, rel=1e-6)
    assert rerun.summarize(rerun.compare_runs(changed, new, atol=0.02), 0.02, 0)[0]

    def fake_execute(cmd, cwd):  # the CLI's verdict, without running again
        out = Path(next(a for a in cmd if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        shutil.copytree(new, out)
        return 0

    monkeypatch.setattr(rerun, "execute", fake_execute)
    assert rerun.main([str(changed), "--out", str(tmp_path / "r1")]) == rerun.EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert "DIFFERENT" in out and "metrics.fvu" in out and "|diff| 0.01" in out
    assert rerun.main([str(changed), "--out", str(tmp_path / "r2"), "--atol", "0.05"]) == 0
    assert "WITHIN TOLERANCE" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["no_config", "bad_json", "failed", "interrupted",
                                    "not_a_dir"])
def test_damaged_run_dirs_are_refused(job_and_rerun, tmp_path, capsys, damage):
    job, _, _ = job_and_rerun
    bad = tmp_path / "bad"
    shutil.copytree(job, bad)
    if damage == "no_config":
        (bad / ".hydra" / "config.yaml").unlink()
    elif damage == "bad_json":
        (bad / "report.json").write_text("{not json")
    elif damage == "failed":
        (bad / "error.json").write_text('{"status": "failed"}')
    elif damage == "interrupted":
        info = json.loads((bad / "run_info.json").read_text())
        (bad / "run_info.json").write_text(json.dumps({**info, "status": "incomplete"}))
    else:
        bad = tmp_path / "nothing_here"
    assert rerun.main([str(bad)]) == rerun.EXIT_REFUSED
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not list(tmp_path.glob("*_rerun_*"))


def test_out_dir_is_never_the_original(job_and_rerun, capsys):
    job, _, _ = job_and_rerun
    assert rerun.main([str(job), "--out", str(job)]) == rerun.EXIT_REFUSED
    assert rerun.main([str(job), "--out", str(job / "inside")]) == rerun.EXIT_REFUSED
    assert "original run dir" in capsys.readouterr().err


def _bump_features(d: Path) -> str:
    lines = (d / "features.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["density"] += 0.125
    lines[0] = json.dumps(row)
    (d / "features.jsonl").write_text("\n".join(lines) + "\n")
    return "features.jsonl[0].density"


def _bump_probe(d: Path) -> str:
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(d / "probe.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, str(d / "probe.safetensors"))
    return f"probe.safetensors:{name}"


def _edit_report_md(d: Path) -> str:
    (d / "report.md").write_text((d / "report.md").read_text() + "\nedited\n")
    return "report.md"


@pytest.mark.parametrize("edit, part", [(_bump_features, "features"), (_bump_probe, "probe"),
                                        (_edit_report_md, "derived")])
def test_every_artefact_is_compared(job_and_rerun, tmp_path, edit, part):
    """features.jsonl, the probe weights and report.md each count, named in the output."""
    job, _, proc = job_and_rerun
    new = Path(proc.stdout.strip().splitlines()[-1].split("rerun dir: ", 1)[1])
    assert (job / "probe.safetensors").is_file()  # the tiny sweep's jobs have a label probe
    changed = tmp_path / "changed"
    shutil.copytree(job, changed)
    where = edit(changed)
    result = rerun.compare_runs(changed, new)
    assert [p for p, c in result.items() if c.diffs] == [part]
    assert result[part].diffs[0].where.startswith(where)
    ok, lines = rerun.summarize(result, 0, 0)
    assert not ok and any(where in line for line in lines)
    # every edit is within atol 1; report.md is a view of report.json, so with a tolerance its
    # bytes alone do not fail a rerun, but they are still named
    tolerant = rerun.compare_runs(changed, new, atol=1.0)
    assert rerun.summarize(tolerant, 1.0, 0)[0]
    assert tolerant["derived"].tolerated == (["report.md"] if part == "derived" else [])
