"""The one entry point: `python -m sae_exp.run [overrides] [-m]`.

data -> normalise -> train the SAE -> encode every row -> quality metrics + overlap report ->
files + W&B. `run(cfg, run_dir)` does the work on plain dataclasses and returns the report;
`main` is the thin Hydra wrapper (the only place, with the other CLIs, that sees a DictConfig).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sae_exp import files, overlap, report
from sae_exp.activations import load_activations
from sae_exp.config import Config, register_configs, validate
from sae_exp.errors import DataError, TrainingError, UserError
from sae_exp.metrics import quality_metrics
from sae_exp.normalize import NormalizedRows, fit_normalizer
from sae_exp.provenance import run_info
from sae_exp.sae import SAE
from sae_exp.stream import RowStream
from sae_exp.tracking import Tracker, scrub
from sae_exp.train import Interrupted, Trainer, encode_rows

log = logging.getLogger("sae_exp")
INTERNAL_ERROR_EXIT = 70
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # absolute: works with python -m


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device='cuda' but no CUDA GPU is visible; use trainer.device=cpu.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_sae(cfg: Config, d_in: int) -> SAE:
    m, s = cfg.model, cfg.sparsity
    return SAE(d_in, m.hidden_dim, kind=s.kind, k=s.top_k, tied=m.tied, init_gain=m.init_gain,
               decoder_impl=m.decoder_impl, center_input=m.center_input)


def _check_data(data, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    labels = data.sentences.label_names
    if len(labels) < 2:
        raise DataError(
            f"the data has {len(labels)} label(s) ({', '.join(labels) or 'none'}): an overlap "
            "report needs at least two; add sentences of another label."
        )
    train_rows = np.flatnonzero(data.row_mask("train"))
    test_rows = np.flatnonzero(data.row_mask("test"))
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise DataError(
            f"{len(train_rows)} training and {len(test_rows)} test rows: both splits need rows; "
            "check the `split` column or data.test_fraction."
        )
    return train_rows, test_rows


class _MetricsLog:
    """Appends one JSON line per logged step to metrics.jsonl and forwards it to W&B."""

    def __init__(self, path: Path, tracker: Tracker) -> None:
        self.path, self.tracker = path, tracker

    def __call__(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.tracker.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])


def run(cfg: Config, run_dir: Path, config_dict: dict | None = None) -> dict:
    """Run one experiment into `run_dir` and return its report (also written there)."""
    start = time.time()
    validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / files.REPORT_JSON).exists():
        raise UserError(f"{run_dir} already holds a finished run; choose a new hydra.run.dir.")
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer.device)

    data = load_activations(cfg.data, seed=cfg.seed, device=str(device))
    train_rows, test_rows = _check_data(data, cfg)
    norm = fit_normalizer(cfg.data.normalize, data.acts, train_rows)
    X = data.acts if norm.kind == "none" else NormalizedRows(data.acts, norm)
    log.info("data: %d rows x %d dims, %d sentences, labels %s (%d train / %d test rows)",
             len(data.acts), data.d_in, len(data.sentences), data.sentences.label_names,
             len(train_rows), len(test_rows))

    seed_everything(cfg.seed)
    sae = build_sae(cfg, data.d_in).to(device)
    trainer = Trainer(sae, cfg.optimizer, cfg.sparsity, cfg.trainer, device,
                      normalize_decoder=cfg.model.normalize_decoder)
    sample = np.sort(train_rows[:: max(1, len(train_rows) // 65536)])
    trainer.init_b_dec(torch.as_tensor(np.asarray(X[sample]), dtype=torch.float32))
    if cfg.resume:
        _load_checkpoint(trainer, Path(cfg.resume), device)

    group = cfg.wandb.group or _sweep_group()
    tracker = Tracker(cfg.wandb.mode, cfg.wandb.project, cfg.wandb.entity, group,
                      f"{cfg.name}-{run_dir.name}", cfg.wandb.tags, config_dict or {}, run_dir)
    trainer.on_log = _MetricsLog(run_dir / files.METRICS, tracker)
    trainer.on_checkpoint = lambda: files.atomic_torch_save(run_dir / files.CHECKPOINT,
                                                           trainer.state_dict())
    stream = RowStream(X, train_rows, cfg.trainer.batch_size, seed=cfg.seed)
    incomplete = False
    previous = _install_stop_handler(trainer)
    try:
        trainer.fit(stream)
    except Interrupted:
        incomplete = True
        files.atomic_torch_save(run_dir / files.CHECKPOINT, trainer.state_dict())
        log.warning("interrupted at step %d: checkpoint saved; resume with resume=%s",
                    trainer.state.step, run_dir)
    except TrainingError:
        tracker.finish(exit_code=1)
        raise
    except torch.OutOfMemoryError:
        tracker.finish(exit_code=1)
        raise TrainingError(
            f"out of memory at trainer.batch_size={cfg.trainer.batch_size}: use a smaller "
            "trainer.batch_size (or model.hidden_dim)."
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)

    files.save_sae(run_dir, sae, {
        "normalize": norm.to_json(),
        "data": {k: v for k, v in data.meta.items() if isinstance(v, (str, int, float, bool))},
        "trained_steps": trainer.state.step,
    })
    if norm.mean is not None:
        files.atomic_save_safetensors(run_dir / files.NORMALIZATION,
                                      {"mean": torch.as_tensor(norm.mean)})
    top_idx, top_acts = encode_rows(sae, X, device)
    quality = quality_metrics(sae, X, test_rows, top_idx, top_acts, device)
    density = quality.pop("density")
    rep = overlap.analyze(top_idx, top_acts, data, sae.d_sae, cfg.analysis,
                          W_dec=sae.W_dec.detach().cpu().numpy())
    rep["metrics"] = quality
    rep["metrics"]["density"] = density
    rep["run"] = {
        "name": cfg.name, "dir": str(run_dir), "incomplete": incomplete,
        "d_in": data.d_in, "d_sae": sae.d_sae, "top_k": cfg.sparsity.top_k,
        "kind": cfg.sparsity.kind, "steps": trainer.state.step,
    }
    rep["incomplete"] = incomplete
    if data.planted is not None:
        rep["planted"] = {"jaccard": data.planted["jaccard"]}
    report.write_report(run_dir, rep, trainer.state.history)
    wall = time.time() - start
    info = run_info(cfg.seed, str(device), data.fingerprint, wall, status=(
        "incomplete" if incomplete else "complete"), data_meta=data.meta)
    files.atomic_write_json(run_dir / files.RUN_INFO, scrub(info))

    summary = {f"metrics/{k}": v for k, v in quality.items() if isinstance(v, (int, float))}
    tracker.summary(summary)
    tracker.log_images(report.figure_paths(run_dir))
    if cfg.wandb.log_artifacts:
        names = [files.REPORT_JSON, files.REPORT_MD, files.FEATURES, files.SAE_WEIGHTS,
                 files.SAE_CFG, files.RUN_INFO, files.METRICS]
        tracker.log_artifact(f"{cfg.name}-{run_dir.name}", "sae_run", [run_dir / n for n in names])
    tracker.finish()
    log.info("done in %.1fs: fvu %.4f, l0 %.1f, dead %.3f -> %s", wall, quality["fvu"],
             quality["l0"], quality["dead_fraction"], run_dir / files.REPORT_MD)
    return rep


def _load_checkpoint(trainer: Trainer, old_dir: Path, device: torch.device) -> None:
    path = old_dir / files.CHECKPOINT
    if not path.is_file():
        raise DataError(f"resume={old_dir}: no {files.CHECKPOINT} there; nothing to resume.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise DataError(f"{path} cannot be read safely ({type(e).__name__}); it is damaged.") from None
    trainer.load_state_dict(state)
    log.info("resumed from %s at step %d", path, trainer.state.step)


def _install_stop_handler(trainer: Trainer):
    """SIGTERM (a killed cluster job) stops training at the next step, with a checkpoint."""
    def handler(signum, frame):  # noqa: ARG001
        trainer.stop_requested = True
    return signal.signal(signal.SIGTERM, handler)


def _sweep_group() -> str | None:
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def _resume_config(cfg: DictConfig) -> DictConfig:
    """`resume=<run dir>` continues that run with its own saved config (not today's defaults)."""
    snap = Path(cfg.resume) / files.HYDRA_DIR / "config.yaml"
    if not snap.is_file():
        raise DataError(f"resume={cfg.resume}: {snap} is missing; is it an sae_exp run dir?")
    old = OmegaConf.load(snap)
    old.resume = cfg.resume
    return old


register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra wrapper: convert the config, run, return FVU (the metric a sweeper minimises)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.get("resume"):
            cfg = _resume_config(cfg)
        config_dict = OmegaConf.to_container(cfg, resolve=True)
        schema = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        typed: Config = OmegaConf.to_object(schema)
        rep = run(typed, run_dir, config_dict)
        return float(rep["metrics"]["fvu"])
    except UserError as e:
        log.error("%s", e)
        _write_failure(run_dir, str(e))
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        log.error("interrupted")
        raise SystemExit(130) from None


def _write_failure(run_dir: Path, message: str) -> None:
    try:
        files.atomic_write_json(run_dir / "error.json", {"status": "failed", "error": message})
    except OSError:
        pass


def cli() -> None:
    """Console entry point: Hydra's own config errors (exit 1) become exit 2, like ours."""
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        logging.getLogger("sae_exp").setLevel(logging.INFO)
    try:
        main()
    except SystemExit as e:
        if e.code == 1:
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    sys.exit(cli())
