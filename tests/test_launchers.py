"""Beyond one process with existing engines: Hydra launcher configs (joblib, submitit local and
SLURM), the Optuna search config, a 2-job multirun on submitit's local executor, and an Optuna
sweep whose best value is the objective main() returns."""

from __future__ import annotations

import importlib
import json
import warnings

import pytest
import yaml
from conftest import REPO, TINY, run_cli
from hydra import compose, initialize_config_dir

from sae_exp.config import register_configs
from sae_exp.train.metrics import objective

LAUNCHERS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}


def _compose(overrides: list[str]):
    register_configs()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/")
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_configs_compose_to_the_plugins(name):
    assert (REPO / "conf" / "hydra" / "launcher" / f"{name}.yaml").is_file()
    cfg = _compose([f"hydra/launcher={name}", "data=synthetic"])
    target = cfg.hydra.launcher._target_
    assert target == LAUNCHERS[name]
    module, cls = target.rsplit(".", 1)
    assert hasattr(importlib.import_module(module), cls)
    if name.startswith("submitit"):
        assert cfg.hydra.launcher.submitit_folder.endswith(".submitit/%j")
    if name == "submitit_slurm":  # the stop signal reaches the job before the time limit
        assert cfg.hydra.launcher.signal_delay_s > 0 and cfg.hydra.launcher.max_num_timeout == 0


def test_optuna_search_config():
    cfg = _compose(["hparams_search=topk_optuna", "data=synthetic"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert str(sweeper.direction).endswith("minimize")
    assert set(sweeper.params) == {"sparsity.top_k", "sparsity.sparsity_coeff",
                                   "model.hidden_dim"}
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.objective.l0_max == 32


def test_optuna_sweep_on_submitit_local(tmp_path):
    """A 2-job multirun through submitit's local executor (the SLURM code path, as separate
    processes), driven by the Optuna sweeper: both trials in one batch; the best value Optuna
    records is the smallest objective main() returned."""
    sweep = tmp_path / "optuna"
    tiny = [a for a in TINY if not a.startswith("sparsity.top_k=")]
    args = [*tiny, "hparams_search=topk_optuna", "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.params=null", "sparsity.top_k=choice(2,8)", "objective.l0_max=4",
            f"hydra.sweep.dir={sweep}"]
    proc = run_cli("sae_exp.run", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    assert len(submitted) == 2  # two submitit jobs (local processes, named by their pid)
    values = {}
    for job in ["0", "1"]:
        rep = json.loads((sweep / job / "report.json").read_text())
        assert not rep["incomplete"] and rep["run"]["top_k"] in (2, 8)
        m = rep["metrics"]
        values[job] = objective(m, l0_max=4, l0_penalty=1.0)
        if m["l0"] > 4:
            assert values[job] > 1.0  # L0 twice the limit costs 1.0
        info = json.loads((sweep / job / "run_info.json").read_text())
        assert info["wandb_group"] == sweep.name  # one W&B group per multirun, across processes
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(values.values()))
    assert set(best["best_params"]) == {"sparsity.top_k"}


def test_a_failed_optuna_trial_does_not_stop_the_search(tmp_path):
    """A trial whose config is invalid (top_k > hidden_dim) is ranked last, not fatal."""
    extra = tmp_path / "extra" / "hparams_search"
    extra.mkdir(parents=True)
    (extra / "fails.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    direction: minimize\n    n_trials: 4\n"
        "    sampler:\n      seed: 0\n    params:\n      sparsity.top_k: choice(4, 5000)\n")
    sweep = tmp_path / "sweep"
    tiny = [a for a in TINY if not a.startswith("sparsity.top_k=")]  # searched, not fixed
    res = run_cli("sae_exp.run", ["--config-dir", str(tmp_path / "extra"), "hparams_search=fails",
                                  *tiny, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "sparsity.top_k=5000 is invalid" in res.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["sparsity.top_k"] == 4 and best["best_value"] < 1.0
