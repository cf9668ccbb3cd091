"""W&B sweep definitions: valid, every value they can choose is a valid config, and the command
a W&B agent builds from them (wandb's own macro code, `key=value` args) runs the app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sae_exp.config import register_configs, validate

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
SEARCHED = {"sparsity.top_k", "sparsity.sparsity_coeff", "model.hidden_dim"}


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The argv `wandb agent` runs for one trial (wandb_agent.Agent._command_run), with this
    interpreter in place of the agent's plain "python"."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(sweep["command"]))
    macros = sweep_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in values.items()}})
    macros.update(interpreter=[sys.executable], program=[sweep.get("program", "")],
                  env=["/usr/bin/env"])
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += macros.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


@pytest.fixture(scope="module")
def composer():
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda overrides: OmegaConf.to_object(compose("config", overrides=overrides))


def test_there_is_a_sweep():
    assert SWEEPS, "sweeps/*.yaml is empty"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_definition_is_valid(path, composer):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["method"] in {"grid", "random", "bayes"}
    assert sweep["metric"]["name"] == "metrics/fvu" and sweep["metric"]["goal"] == "minimize"
    assert SEARCHED <= set(sweep["parameters"])
    cmd = [str(c) for c in sweep["command"]]
    assert cmd[:5] == ["${env}", "${interpreter}", "-m", "sae_exp.run", "${args_no_hyphens}"]
    for key, spec in sweep["parameters"].items():
        values = spec.get("values") or [spec.get("min"), spec.get("max")]
        for v in values:  # every choice is a valid override of the real config
            validate(composer([f"{key}={v}", "data=synthetic"]))


def test_agent_command_runs_the_app(tmp_path):
    sweep = yaml.safe_load(SWEEPS[0].read_text())
    params = sweep["parameters"]
    values = {k: (spec.get("values") or [spec["min"]])[0] for k, spec in params.items()}
    values["sparsity.sparsity_coeff"] = params["sparsity.sparsity_coeff"]["values"][1]
    argv = agent_command(sweep, values)
    assert argv[0] == "/usr/bin/env" and argv[1:4] == [sys.executable, "-m", "sae_exp.run"]
    assert f"sparsity.top_k={values['sparsity.top_k']}" in argv  # args_no_hyphens: key=value
    tiny = [a for a in TINY if a.split("=")[0] not in SEARCHED and not a.startswith("wandb.mode")]
    tiny.append("wandb.mode=offline")  # so the W&B summary is written and can be read back
    run_dir = tmp_path / "agent_run"
    # the checkout's code, not whatever sae_exp the interpreter would import from the cwd
    env = {**os.environ, "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([*argv, *tiny, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["run"]["top_k"] == values["sparsity.top_k"]
    assert rep["run"]["d_sae"] == values["model.hidden_dim"]
    # the W&B summary holds the report's numbers (what a sweep ranks runs by)
    summary = _offline_summary(next((run_dir / "wandb").glob("offline-run-*/*.wandb")))
    for key in ("fvu", "l0", "dead_fraction"):
        assert summary[f"metrics/{key}"] == pytest.approx(rep["metrics"][key]), key
    snap = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert snap["sparsity"]["sparsity_coeff"] == values["sparsity.sparsity_coeff"]
    assert Path(run_dir / ".hydra" / "overrides.yaml").read_text().count("=") >= len(values)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    val, shift = 0, 0
    while True:
        b = buf[i]
        val |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return val, i
        shift += 7


def _fields(buf: bytes):
    """(field number, bytes) of a protobuf message holding only length-delimited fields;
    raises ValueError on anything else (so random bytes are rejected)."""
    i, out = 0, []
    while i < len(buf):
        tag, i = _varint(buf, i)
        if tag & 7 != 2:
            raise ValueError("not length-delimited")
        n, i = _varint(buf, i)
        if i + n > len(buf):
            raise ValueError("overrun")
        out.append((tag >> 3, buf[i:i + n]))
        i += n
    return out


def _offline_summary(path: Path) -> dict:
    """Summary of an offline .wandb log: Record field 3 is a SummaryRecord, whose field 1
    items hold a key (field 1) and a JSON value (field 16); history records (field 2) are not
    read. The last update of a key wins."""
    raw = path.read_bytes()
    out: dict = {}
    for m in re.finditer(rb"\x1a", raw):
        try:
            n, start = _varint(raw, m.end())
            items = _fields(raw[start:start + n])
            update = {}
            for field, item in items:
                parts = dict(_fields(item))
                if field != 1 or 1 not in parts or 16 not in parts:
                    raise ValueError("not a summary item")
                update[parts[1].decode()] = json.loads(parts[16])
        except (ValueError, IndexError, UnicodeDecodeError):
            continue
        out.update(update)
    return out
