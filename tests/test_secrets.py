"""Secrets stay out of every file a run writes; W&B being unreachable or misconfigured costs a
warning, never the run.

Three runs go side by side (most of their time is W&B's own start-up and retries):
- offline: WANDB_API_KEY and other secrets set; every byte under the run dir (.hydra/, wandb/,
  logs, report, weights) and the console output are searched for the secret values;
- online without any API key, W&B's server an unroutable local port;
- online with a key, the same unroutable server, WANDB_INIT_TIMEOUT=5 (searched as well: W&B's
  debug logs sit in the run dir).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from sae_exp import files
from sae_exp.train.tracking import scrub

SECRETS = {
    "WANDB_API_KEY": "wk-1f0c3e9a7b6d4c2e8a5f1b3d7e9c0a2b4d6f8e1a",  # 40 chars, like a real key
    "MY_SERVICE_TOKEN": "tok-distinct-7Q2xV9pL4mZ8",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-R3nD0mV4lu3-0042",
    "DB_PASSWORD": "pw-unlikely-string-9931",
}
UNREACHABLE = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_INIT_TIMEOUT": "5"}


# A config value built from a secret env var: Hydra's snapshot keeps the unresolved
# interpolation, but W&B logs the resolved config, so only the scrub keeps the token out of it.
FROM_SECRET = "data.cache_dir=cache-${oc.env:MY_SERVICE_TOKEN}"


def _args(mode: str, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [*(a for a in TINY if not a.startswith("wandb.mode=")), "trainer.num_threads=1",
            f"wandb.mode={mode}", f"hydra.run.dir={out}", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    base = tmp_path_factory.mktemp("secrets")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_"))}
    clean.update(WANDB_SILENT="true", NETRC=str(base / "no-netrc"),
                 WANDB_CONFIG_DIR=str(base / "wandb-config"))
    plan = {
        "offline": ("offline", SECRETS, (FROM_SECRET,)),
        "online_no_key": ("online", UNREACHABLE, ()),
        "online_unreachable": ("online", {**SECRETS, **UNREACHABLE}, (FROM_SECRET,)),
    }
    procs = {}
    for name, (mode, env, extra) in plan.items():
        out = base / name
        procs[name] = (out, subprocess.Popen(
            [sys.executable, "-m", "sae_exp.run", *_args(mode, out, extra)], cwd=base,
            env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = {}
    for name, (out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        done[name] = (out, subprocess.CompletedProcess(proc.args, proc.returncode, stdout,
                                                       stderr))
    return done


@pytest.mark.parametrize("name", ["offline", "online_unreachable"])
def test_no_secret_in_any_file_or_output(runs, name):
    out, proc = runs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    searched = [p for p in out.rglob("*") if p.is_file()]
    assert (out / ".hydra" / "config.yaml") in searched and (out / files.RUN_INFO) in searched
    assert any("wandb" in p.parts for p in searched)  # W&B's own files are searched too
    leaks = []
    for p in searched:
        blob = p.read_bytes()
        leaks += [f"{p.relative_to(out)}: {k}" for k, v in SECRETS.items() if v.encode() in blob]
    for stream in (proc.stdout, proc.stderr):
        leaks += [f"console: {k}" for k, v in SECRETS.items() if v in stream]
    assert not leaks, leaks


def test_offline_run_keeps_its_wandb_files(runs):
    out, _ = runs["offline"]
    assert list((out / "wandb").glob("offline-run-*/*.wandb"))


@pytest.mark.parametrize("name, reason", [("online_no_key", "API key"),
                                          ("online_unreachable", "127.0.0.1:9")])
def test_wandb_unavailable_is_a_warning_and_the_run_completes(runs, name, reason):
    out, proc = runs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    warning = [line for line in console.splitlines() if "W&B is unavailable" in line]
    assert len(warning) == 1 and reason in warning[0], console[-3000:]
    assert "continuing with local files only" in warning[0]
    assert "Traceback" not in console
    rep = json.loads((out / files.REPORT_JSON).read_text())
    assert rep["incomplete"] is False and (out / files.SAE_WEIGHTS).is_file()
    assert json.loads((out / files.RUN_INFO).read_text())["status"] == "complete"


def test_scrub_hides_secret_keys_and_secret_values(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRETS["MY_SERVICE_TOKEN"])
    cfg = {"wandb": {"api_key": "anything", "project": "p"},
           "data": {"path": f"/data/{SECRETS['MY_SERVICE_TOKEN']}/acts.npz", "layer": 3},
           "tags": ["a", SECRETS["MY_SERVICE_TOKEN"]], "db": {"Password": "x"}}
    assert scrub(cfg) == {"wandb": {"api_key": "***", "project": "p"},
                          "data": {"path": "***", "layer": 3}, "tags": ["a", "***"],
                          "db": {"Password": "***"}}


def test_scrub_hides_secret_text_but_keeps_numeric_settings(monkeypatch):
    from sae_exp.train.tracking import scrub

    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890")
    cfg = {"data": {"tokens_per_sentence": 8, "features_per_token": 4, "hf_token": "abc"},
           "note": "uses tok-1234567890 inside", "api_key": "k"}
    out = scrub(cfg)
    assert out["data"]["tokens_per_sentence"] == 8 and out["data"]["features_per_token"] == 4
    assert out["data"]["hf_token"] == "***" and out["api_key"] == "***" and out["note"] == "***"
