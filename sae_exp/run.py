"""The one entry point: `python -m sae_exp.run [overrides] [-m]`.

data -> normalise -> train the SAE -> encode every row -> quality metrics + overlap report ->
files + W&B. `run(cfg, run_dir)` does the work on plain dataclasses and returns the report;
`main` is the thin Hydra wrapper (the only place, with the other CLIs, that sees a DictConfig).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sae_exp import files, report
from sae_exp.analysis import association, injection, overlap, recovery
from sae_exp.config import (
    DATA_SCHEMAS,
    Config,
    check_known_keys,
    check_name,
    register_configs,
    validate,
)
from sae_exp.data.normalize import NormalizedRows, Normalizer, fit_normalizer
from sae_exp.data.sources import load_activations
from sae_exp.data.stream import RowStream
from sae_exp.data.types import ActivationSet
from sae_exp.errors import ConfigError, DataError, TrainingError, UserError, WriteError
from sae_exp.model.sae import SAE
from sae_exp.provenance import run_info
from sae_exp.train import checkpoint, distributed
from sae_exp.train.metrics import objective, quality_metrics
from sae_exp.train.tracking import Tracker, scrub
from sae_exp.train.trainer import Interrupted, Trainer, encode_rows

log = logging.getLogger("sae_exp")
INTERNAL_ERROR_EXIT = 70
STOPPED_EXIT = 143  # SIGTERM after training: 128 + 15, what a shell reports for it
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # absolute: works with python -m


class StoppedAfterTraining(BaseException):  # noqa: N818 - a BaseException, like KeyboardInterrupt
    """SIGTERM/SIGUSR2 after training: the weights and checkpoint are on disk; the analysis
    stops (a BaseException, so no `except Exception` on the way swallows it)."""


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
    # analysis.baseline names a label of the data: checked here, before training
    association.label_design(np.asarray(data.sentences.labels), cfg.analysis.baseline)
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
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise files.write_error(self.path, e, 4096) from None
        self.tracker.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])


@dataclass
class Prepared:
    """The data stage's result: rows the SAE sees and how they split."""

    data: ActivationSet
    X: Any  # [N, d_in] rows as the SAE sees them (a normalising view or the raw array)
    norm: Normalizer
    train_rows: np.ndarray
    test_rows: np.ndarray


@dataclass
class Fitted:
    """The training stage's result."""

    sae: SAE
    trainer: Trainer
    incomplete: bool  # stopped by a signal before the last step
    stop: _StopSignals
    origin: dict | None = None  # model.init_from: where the SAE came from (no training)


def run(cfg: Config, run_dir: Path, config_dict: dict | None = None) -> dict:
    """Run one experiment into `run_dir` and return its report (also written there).

    The pipeline: load data -> fit the SAE -> analyse its codes -> write the files."""
    clock = _StageClock()
    validate(cfg)
    lock = _claim_run_dir(Path(run_dir))
    run_dir = lock.run_dir
    try:
        return _run_owned(cfg, run_dir, config_dict, clock)
    except UserError as e:
        raise _failed(run_dir, e) from None
    except (StoppedAfterTraining, KeyboardInterrupt) as e:
        if files.read_status(run_dir) == "trained":
            name = "SIGINT" if isinstance(e, KeyboardInterrupt) else str(e).split()[0]
            _failed(run_dir, UserError(f"stopped by {name} after training"), "stopped")
        raise
    finally:
        lock.release()


def _run_owned(cfg: Config, run_dir: Path, config_dict: dict | None, clock: _StageClock) -> dict:
    device, ctx = _setup(cfg)
    main_rank = ctx is None or ctx.is_main  # only rank 0 writes files and logs to W&B
    if main_rank:  # a fresh run_info.json (an earlier failed try here may have left one)
        files.atomic_write_json(run_dir / files.RUN_INFO, {"status": "running",
                                                           "pid": os.getpid()})
    prepared = clock("data", load_data, cfg, device, ctx)
    tracker = _tracker(cfg, run_dir, config_dict, main_rank)
    fitted = clock("fit", fit, cfg, prepared, run_dir, device, ctx, tracker)
    if not main_rank:
        return {}
    with _StopAfterTraining(run_dir) as stop:
        save_trained(cfg, fitted, prepared, run_dir)
        stop.arm()  # a signal during the save above stops the run here, once all is saved
        rep = clock("analysis", analyse, cfg, fitted, prepared, run_dir, device)
        clock("write", write_outputs, cfg, rep, fitted, prepared, run_dir, tracker, device, ctx,
              clock)
    quality = rep["metrics"]
    log.info("done in %.1fs (%s): fvu %.4f, l0 %.1f, dead %.3f -> %s", clock.total(),
             clock.summary(), quality["fvu"], quality["l0"], quality["dead_fraction"],
             run_dir / files.REPORT_MD)
    if fitted.stop.received == "SIGINT":
        raise KeyboardInterrupt  # Ctrl-C: the files are written; stop here (and any sweep)
    return rep


class _StageClock:
    """Wall time of each pipeline stage, for the run's last log line and run_info.json."""

    def __init__(self) -> None:
        self.start, self.stages = time.time(), {}

    def __call__(self, name: str, fn, *args):
        t = time.time()
        try:
            return fn(*args)
        finally:
            self.stages[name] = round(time.time() - t, 2)

    def total(self) -> float:
        return time.time() - self.start

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())


def _claim_run_dir(run_dir: Path) -> files.RunLock:
    """Own the run dir (its lock) before writing; refuse a dir that holds another run."""
    lock = files.lock_run_dir(run_dir)
    if lock.stale_pid:
        log.warning("%s: its lock was left by pid %d, which is no longer running (killed); the "
                    "OS released it", run_dir, lock.stale_pid)
    problem = _taken_run_dir(run_dir)
    if problem:
        lock.release()
        raise UserError(f"{problem}.")
    (run_dir / "error.json").unlink(missing_ok=True)  # from an earlier failed try in this dir
    _OWNED.add(run_dir.resolve())
    return lock


_OWNED: set[Path] = set()  # run dirs this process claimed (its failures may be written there)


def _set_status(run_dir: Path, status: str, **fields: Any) -> None:
    """run_info.json's lifecycle: running -> trained (weights + checkpoint saved) -> complete,
    or incomplete | stopped | failed. compare and rerun go by it, not by which files exist."""
    files.update_run_info(run_dir, status=status, **fields)


def _failed(run_dir: Path, e: UserError, status: str = "failed") -> UserError:
    """Record a failure in run_info.json (best effort: the disk may be full); after training the
    message says how to finish the run."""
    previous = files.read_status(run_dir)
    if previous == "trained" and isinstance(e, WriteError):
        e = WriteError(f"{str(e).rstrip('.')}; the trained weights and checkpoint are kept: "
                       f"finish with python -m sae_exp.run resume={run_dir} "
                       "hydra.run.dir=<new dir>.")
    if previous is not None:
        try:
            _set_status(run_dir, status, error=str(e), after=previous)
        except UserError:
            pass
    return e


def _setup(cfg: Config) -> tuple[torch.device, distributed.DistContext | None]:
    """Threads, seeds, device and (under torchrun) the process group."""
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    if cfg.trainer.ddp is not False:
        distributed.check_sparsity(cfg.sparsity.kind, distributed.env_world_size())
    ctx = distributed.setup(cfg.trainer.ddp, device)  # None unless under torchrun (DDP)
    if ctx is not None:
        device = ctx.device(device)
    return device, ctx


def load_data(cfg: Config, device: torch.device, ctx) -> Prepared:
    """Data stage: activations, their train/test rows, and the normalisation fitted on train."""
    if ctx is not None and not ctx.is_main:
        ctx.barrier()  # rank 0 loads first (and fills the activation cache)
    data = load_activations(cfg.data, seed=cfg.seed, device=str(device))
    if ctx is not None and ctx.is_main:
        ctx.barrier()
    train_rows, test_rows = _check_data(data, cfg)
    norm = fit_normalizer(cfg.data.normalize, data.acts, train_rows)
    X = data.acts if norm.kind == "none" else NormalizedRows(data.acts, norm)
    log.info("data: %d rows x %d dims, %d sentences, labels %s (%d train / %d test rows)",
             len(data.acts), data.d_in, len(data.sentences), data.sentences.label_names,
             len(train_rows), len(test_rows))
    return Prepared(data, X, norm, train_rows, test_rows)


def _tracker(cfg: Config, run_dir: Path, config_dict: dict | None, main_rank: bool) -> Tracker:
    group = cfg.wandb.group or _sweep_group()
    return Tracker(cfg.wandb.mode if main_rank else "disabled", cfg.wandb.project,
                   cfg.wandb.entity, group, f"{cfg.name}-{run_dir.name}", cfg.wandb.tags,
                   config_dict or {}, run_dir)


def fit(cfg: Config, prepared: Prepared, run_dir: Path, device: torch.device, ctx,
        tracker: Tracker) -> Fitted:
    """Training stage: build the SAE, train it (or resume), stop cleanly on signals."""
    if cfg.model.init_from:
        return _imported(cfg, prepared, device, ctx)
    seed_everything(cfg.seed)
    sae = build_sae(cfg, prepared.data.d_in).to(device)
    trainer = Trainer(sae, cfg.optimizer, cfg.sparsity, cfg.trainer, device,
                      normalize_decoder=cfg.model.normalize_decoder)
    rows = prepared.train_rows
    sample = np.sort(rows[:: max(1, len(rows) // 65536)])
    trainer.init_b_dec(torch.as_tensor(np.asarray(prepared.X[sample]), dtype=torch.float32))
    stream = RowStream(prepared.X, rows, cfg.trainer.batch_size, seed=cfg.seed,
                       pin_memory=device.type == "cuda")
    total = stream.steps_per_epoch * cfg.trainer.epochs
    if cfg.resume:
        _load_checkpoint(trainer, Path(cfg.resume), device, total,
                         cfg.trainer.batch_size or len(rows))
    if ctx is not None:
        trainer.dist = ctx
        ctx.broadcast_module(sae)
    if ctx is None or ctx.is_main:
        trainer.on_log = _MetricsLog(run_dir / files.METRICS, tracker)
        trainer.on_checkpoint = lambda: files.atomic_torch_save(run_dir / files.CHECKPOINT,
                                                               trainer.state_dict())
        for row in trainer.state.history:  # a resumed run's log starts with the earlier steps
            trainer.on_log(row)
    if trainer.state.step >= total:
        log.info("training was already done (step %d): going on to the analysis",
                 trainer.state.step)
    stop = _StopSignals(trainer).install()
    try:
        incomplete = _train(trainer, stream, cfg, run_dir, ctx, tracker)
    finally:
        stop.restore()
    if ctx is not None:
        ctx.average_buffers(sae)
        ctx.close()
    return Fitted(sae, trainer, incomplete, stop)


def _imported(cfg: Config, prepared: Prepared, device: torch.device, ctx) -> Fitted:
    """`model.init_from`: a SAELens, sparsify or sae_exp SAE, analysed as it is (no training)."""
    from sae_exp.model.interop import import_sae

    imp = import_sae(Path(cfg.model.init_from), d_in=prepared.data.d_in)
    log.info("model.init_from: %s SAE from %s (d_sae %d, %s, k %d); training skipped",
             imp.layout, cfg.model.init_from, imp.sae.d_sae, imp.sae.kind, imp.sae.k)
    if ctx is not None:
        ctx.close()
    sae = imp.sae.to(device)
    trainer = Trainer(sae, cfg.optimizer, cfg.sparsity, cfg.trainer, device)
    return Fitted(sae, trainer, False, _StopSignals(trainer), {"init_from": {
        "path": str(Path(cfg.model.init_from).resolve()), "layout": imp.layout, **imp.notes}})


def _train(trainer: Trainer, stream: RowStream, cfg: Config, run_dir: Path, ctx,
           tracker: Tracker) -> bool:
    """`trainer.fit`, with a checkpoint on a requested stop (returns True then) and one-line
    errors for divergence and out-of-memory."""
    try:
        trainer.fit(stream)
    except Interrupted:
        trainer.check_finite()  # never replace the last good checkpoint with a NaN state
        if ctx is None or ctx.is_main:
            files.atomic_torch_save(run_dir / files.CHECKPOINT, trainer.state_dict())
        log.warning("interrupted at step %d: checkpoint saved; resume with resume=%s",
                    trainer.state.step, run_dir)
        return True
    except TrainingError:
        tracker.finish(exit_code=1)
        raise
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if not isinstance(e, (torch.OutOfMemoryError, MemoryError)) \
                and "can't allocate memory" not in str(e):
            raise  # torch's CPU allocator reports out-of-memory as a plain RuntimeError
        tracker.finish(exit_code=1)
        raise TrainingError(
            f"out of memory at trainer.batch_size={cfg.trainer.batch_size}: use a smaller "
            "trainer.batch_size (or model.hidden_dim)."
        ) from None
    return False


def save_trained(cfg: Config, fitted: Fitted, prepared: Prepared, run_dir: Path) -> None:
    """Save what training made (weights, cfg.json, normalisation, a checkpoint at the last
    step) and mark the run `trained`: from here on, `resume=<run dir>` finishes it without
    training again."""
    sae, data = fitted.sae, prepared.data
    files.save_sae(run_dir, sae, {
        "normalize": prepared.norm.to_json(),
        "data": {k: v for k, v in data.meta.items() if isinstance(v, (str, int, float, bool))},
        "trained_steps": fitted.trainer.state.step, **(fitted.origin or {}),
    })
    if prepared.norm.mean is not None:
        files.atomic_save_safetensors(run_dir / files.NORMALIZATION,
                                      {"mean": torch.as_tensor(prepared.norm.mean)})
    if not fitted.incomplete:  # an interrupted run saved its checkpoint when it stopped
        files.atomic_torch_save(run_dir / files.CHECKPOINT, fitted.trainer.state_dict())
    _set_status(run_dir, "incomplete" if fitted.incomplete else "trained",
                step=fitted.trainer.state.step)


def analyse(cfg: Config, fitted: Fitted, prepared: Prepared, run_dir: Path,
            device: torch.device) -> dict:
    """Analysis stage: encode every row, quality metrics, the overlap report and the checks
    that depend on the data source (ground-truth recovery, token injection)."""
    sae, data, X = fitted.sae, prepared.data, prepared.X
    top_idx, top_acts = encode_rows(sae, X, device)
    quality = quality_metrics(sae, X, prepared.test_rows, top_idx, top_acts, device)
    # token injection's model loads on the second core while the (mostly single-threaded)
    # statistics run; beside training or encoding it slowed them by more than it saved
    loading = injection.preload(data.meta, device) if cfg.analysis.token_injection else None
    quality.pop("density")  # per latent: in features.jsonl
    rep = report.overlap_report(overlap.analyze(top_idx, top_acts, data, sae.d_sae, cfg.analysis,
                                                W_dec=sae.W_dec.detach().cpu().numpy()))
    rep["metrics"] = quality
    rep["run"] = {
        "name": cfg.name, "dir": str(run_dir), "incomplete": fitted.incomplete,
        "d_in": data.d_in, "d_sae": sae.d_sae, "top_k": sae.k, "kind": sae.kind,
        "steps": fitted.trainer.state.step, **(fitted.origin or {}),
    }
    rep["incomplete"] = fitted.incomplete
    if data.planted is not None:
        rep["planted"] = {"jaccard": data.planted["jaccard"]}
        if "kind" in data.planted:  # a ground-truth benchmark: how much of the dictionary came back
            rep["recovery"] = recovery.evaluate(sae.W_dec.detach().cpu().numpy(),
                                                data.planted, quality, rep.get("categories"))
    if cfg.analysis.token_injection:
        a = cfg.analysis
        rep["token_injection"] = ti = injection.for_report(
            rep, top_idx, top_acts, data, injection.model_encoder(data.meta, prepared.norm, sae,
                                                                  device, loading),
            injection.InjectionSettings(a.injection_tokens, a.injection_sentences,
                                        a.injection_max_latents, seed=a.seed))
        rep["timings_s"]["token_injection"] = ti.pop("seconds", 0.0)  # volatile for rerun
        rep["definitions"].update(injection.DEFINITIONS)
    else:
        rep["token_injection"] = injection.skipped("analysis.token_injection=false")
    return rep


def write_outputs(cfg: Config, rep: dict, fitted: Fitted, prepared: Prepared, run_dir: Path,
                  tracker: Tracker, device: torch.device, ctx, clock: _StageClock) -> None:
    """Write stage: report files, the label probe, run_info.json and the W&B summary."""
    report.write_report(run_dir, rep, fitted.trainer.state.history)
    report.save_label_probe(run_dir, rep)
    info = run_info(cfg.seed, str(device), prepared.data.fingerprint, clock.total(), status=(
        "incomplete" if fitted.incomplete else "complete"), data_meta=prepared.data.meta)
    info.update(torch_threads=torch.get_num_threads(), world_size=ctx.world_size if ctx else 1,
                wandb_group=tracker.group, stage_seconds=dict(clock.stages))
    files.atomic_write_json(run_dir / files.RUN_INFO, scrub(info))  # the last file: the status
    quality = rep["metrics"]
    tracker.summary({f"metrics/{k}": v for k, v in quality.items() if isinstance(v, (int, float))})
    tracker.summary(injection.summary(rep))
    tracker.log_images(report.figure_paths(run_dir))
    report.log_tables(tracker, rep)
    if cfg.wandb.log_artifacts:
        names = [files.REPORT_JSON, files.REPORT_MD, files.FEATURES, files.SAE_WEIGHTS,
                 files.SAE_CFG, files.RUN_INFO, files.METRICS]
        tracker.log_artifact(f"{cfg.name}-{run_dir.name}", "sae_run", [run_dir / n for n in names])
    tracker.finish()


def _load_checkpoint(trainer: Trainer, old_dir: Path, device: torch.device,
                     total: int | None = None, rows_per_step: int | None = None) -> None:
    """Load and check a checkpoint: every key, shapes against this config, finite weights,
    the step against the schedule (`total` steps) and the rows seen (`rows_per_step`)."""
    path = old_dir / files.CHECKPOINT
    if not path.is_file():
        raise DataError(f"resume={old_dir}: no {files.CHECKPOINT} there; nothing to resume.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise DataError(f"{path} cannot be read safely ({type(e).__name__}); it is damaged.") \
            from None
    checkpoint.check_state(state, trainer, path, total, rows_per_step)
    trainer.load_state_dict(state)
    log.info("resumed from %s at step %d", path, trainer.state.step)


class _StopSignals:
    """While training: SIGTERM (a killed cluster job), Ctrl-C and SIGUSR2 (submitit: the SLURM
    time limit is near) stop at the next step, with a checkpoint and an incomplete report.
    A second Ctrl-C aborts at once; after a first one the run ends with KeyboardInterrupt once
    its files are written (so a multirun stops too)."""

    NAMES = ("SIGTERM", "SIGINT", "SIGUSR2")

    def __init__(self, trainer: Trainer) -> None:
        self.trainer, self.received, self.previous = trainer, None, {}

    def install(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for sig in [getattr(signal, n) for n in self.NAMES if hasattr(signal, n)]:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self.previous = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.trainer.stop_requested:
            raise KeyboardInterrupt
        if not self.trainer.stop_requested:
            log.warning("%s: stopping after this step (checkpoint + incomplete report)", name)
        self.received = self.received or name
        self.trainer.stop_requested = True


class _StopAfterTraining:
    """After training (analysis and report): SIGTERM / SIGUSR2 raise StoppedAfterTraining, so
    the run stops with status `stopped` and one line saying how to finish it (resume=)."""

    NAMES = ("SIGTERM", "SIGUSR2")

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.previous, self.armed, self.pending = run_dir, {}, False, None

    def arm(self) -> None:
        """From now on a signal stops the run at once (one that came earlier does it now)."""
        self.armed = True
        if self.pending is not None:
            self._handle(self.pending, None)

    def __enter__(self) -> _StopAfterTraining:
        if threading.current_thread() is threading.main_thread():
            for sig in [getattr(signal, n) for n in self.NAMES if hasattr(signal, n)]:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if not self.armed:  # the weights and checkpoint are being saved: stop right after
            self.pending = signum
            return
        self.__exit__()  # a second signal is not caught again
        raise StoppedAfterTraining(
            f"{signal.Signals(signum).name} after training: the weights and checkpoint are "
            f"kept (status stopped); finish with python -m sae_exp.run resume={self.run_dir} "
            "hydra.run.dir=<new dir>")


def _sweep_group() -> str | None:
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def _resume_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """`resume=<run dir>` continues that run with its own saved config (not today's defaults).

    The new run dir's `.hydra/config.yaml` is replaced by that config (with `resume` set), so
    the snapshot records what ran and `python -m sae_exp.rerun` can repeat it."""
    _check_not_running(Path(cfg.resume))
    snap = Path(cfg.resume) / files.HYDRA_DIR / "config.yaml"
    if not snap.is_file():
        raise DataError(f"resume={cfg.resume}: {snap} is missing; is it an sae_exp run dir?")
    try:
        old = OmegaConf.load(snap)
    except Exception as e:
        raise DataError(f"{snap} cannot be read ({type(e).__name__}); the run dir is damaged.") \
            from None
    old.resume = str(Path(cfg.resume).resolve())
    ignored = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    if ignored:
        log.warning("resume continues with the saved config of %s; ignoring %s", cfg.resume,
                    " ".join(ignored))
    saved = run_dir / files.HYDRA_DIR / "config.yaml"
    if saved.is_file():
        files.atomic_write_text(saved, OmegaConf.to_yaml(old))
    return old


def _check_not_running(old: Path) -> None:
    """resume= reads a run that is over: refuse one a live process still writes; say so when
    its lock was left by a killed process."""
    state, pid = files.lock_state(old)
    if state == "held":
        raise UserError(f"resume={old}: that run is still running (pid {pid}); wait for it to "
                        "end or stop it (its checkpoint is saved on SIGTERM) first.")
    if state == "stale":
        log.warning("resume=%s: its lock was left by pid %s, which is no longer running "
                    "(killed); continuing from its last checkpoint", old, pid)


def _typed(cfg: DictConfig) -> Config:
    """The run's dataclasses. A loaded snapshot (resume, rerun) has no defaults list naming the
    data schema: it is chosen by `data.source`, so unknown keys still fail."""
    try:
        if OmegaConf.get_type(cfg, "data") is dict:
            source = cfg.data.get("source")
            if source not in DATA_SCHEMAS:
                raise ConfigError(f"data.source={source!r} is invalid: allowed values are "
                                  + ", ".join(DATA_SCHEMAS))
            cfg = cfg.copy()
            cfg.data = OmegaConf.merge(OmegaConf.structured(DATA_SCHEMAS[source]), cfg.data)
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))
    except OmegaConfBaseException as e:
        raise ConfigError(f"the config does not fit this version's schema: "
                          f"{str(e).splitlines()[0]}") from None


register_configs()
# conf/hydra/launcher/{joblib,submitit_*}.yaml share the plugins' names on purpose (users type
# hydra/launcher=joblib); Hydra validates them against the plugins' schemas and says so.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/[\w]+' is validated against "
                        "ConfigStore schema", category=UserWarning)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Hydra wrapper: convert the config, run, return FVU (the metric a sweeper minimises)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.get("resume"):
            cfg = _resume_config(cfg, run_dir)
        config_dict = OmegaConf.to_container(cfg, resolve=True)
        check_known_keys(config_dict)
        typed = _typed(cfg)
        rep = run(typed, run_dir, config_dict)
        if not rep:  # a DDP rank other than 0
            return None
        ob = typed.objective  # FVU, or FVU + a penalty on L0 above objective.l0_max
        return objective(rep["metrics"], ob.l0_max, ob.l0_penalty)
    except UserError as e:
        if _full_error():
            traceback.print_exc()  # where the error came from, for a bug report
        print(f"error: {e}", file=sys.stderr)
        _write_failure(run_dir, str(e))
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return float("inf")  # the sweep goes on; a sweeper ranks the failed job last
        raise SystemExit(e.exit_code) from None
    except StoppedAfterTraining as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(STOPPED_EXIT) from None
    except KeyboardInterrupt:
        log.error("interrupted")
        raise SystemExit(130) from None
    except OSError as e:  # a write outside our files (Hydra, W&B) on a full or read-only disk
        if e.errno not in files.WRITE_ERRNOS:
            raise
        err = files.write_error(Path(e.filename or run_dir), e)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None


def _write_failure(run_dir: Path, message: str) -> None:
    if run_dir.resolve() not in _OWNED and _taken_run_dir(run_dir):
        return  # another run's dir (refused before it was claimed): leave it as it is
    try:
        files.atomic_write_json(run_dir / "error.json", {"status": "failed", "error": message})
    except (OSError, UserError):  # a full or read-only disk: the error line says it already
        pass


def _taken_output_dir(argv: list[str]) -> str | None:
    """Why the output dir named in `argv` belongs to another run, or None.

    A finished run, one that trained (metrics.jsonl, checkpoint.pt, weights) or a sweep
    (multirun.yaml) is never written into; a dir holding only a config failure is reused."""
    values = _argv_values(argv)
    run_dir, sweep_dir = values.get("hydra.run.dir"), values.get("hydra.sweep.dir")
    multirun = _is_multirun(argv)
    if sweep_dir and multirun and (
            (Path(sweep_dir) / "multirun.yaml").exists()
            or (Path(sweep_dir) / "optimization_results.yaml").exists()
            or any(Path(sweep_dir).glob("*/.hydra/config.yaml"))):
        return f"{sweep_dir} already holds a sweep; choose a new hydra.sweep.dir"
    if not run_dir or multirun:
        return None
    return _taken_run_dir(Path(run_dir))


def _argv_values(argv: list[str]) -> dict[str, str]:
    return dict(a.lstrip("+").split("=", 1) for a in argv if "=" in a and not a.startswith("~"))


def _is_multirun(argv: list[str]) -> bool:
    # an hparams_search config switches to multirun itself
    return bool({"-m", "--multirun"} & set(argv)) or any(
        a.startswith("hparams_search=") for a in argv)


def _taken_run_dir(run_dir: Path) -> str | None:
    """Why `run_dir` holds another run (by run_info.json's status where there is one), or None."""
    status = files.read_status(run_dir)
    finish = (f"; to finish it: python -m sae_exp.run resume={run_dir} hydra.run.dir=<new dir>"
              if (run_dir / files.CHECKPOINT).exists() else "")
    if status in ("complete", "incomplete") or (
            status is None and (run_dir / files.REPORT_JSON).exists()):
        return f"{run_dir} already holds a finished run; choose a new hydra.run.dir"
    owner, pid = files.lock_state(run_dir) if status == "running" else ("free", None)
    if owner == "held":
        return (f"{run_dir} is in use by another run (pid {pid}); a run never writes into "
                "another run's dir: choose a new hydra.run.dir")
    if status == "running":
        return (f"{run_dir} holds a run that was killed (status 'running', no process owns the "
                f"dir); choose a new hydra.run.dir{finish}")
    if status is not None and any((run_dir / n).exists() for n in (
            files.METRICS, files.CHECKPOINT, files.SAE_WEIGHTS)):
        return f"{run_dir} holds a run with status {status!r}; choose a new hydra.run.dir{finish}"
    for name in (files.METRICS, files.CHECKPOINT, files.SAE_WEIGHTS):
        if (run_dir / name).exists():
            return (f"{run_dir} holds another run's {name}; choose a new hydra.run.dir (to "
                    f"continue that run: resume={run_dir} hydra.run.dir=<new dir>)")
    return None


def cli() -> None:
    """Console entry point: Hydra's own config errors (exit 1) become exit 2, like ours."""
    rank, world = distributed.env_rank(), distributed.env_world_size()
    logging.raiseExceptions = False  # a full disk must not print a traceback per log line
    # Hydra rewrites .hydra/ before our code runs: own the dir and check it first (rank 0 only:
    # the others start when rank 0 may already have written there)
    try:
        problem = _own_output_dir(sys.argv[1:]) if not rank else None
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    if problem:
        files.release_all()
        print(f"error: {problem} (nothing was changed).", file=sys.stderr)
        raise SystemExit(2)
    if world and world > 1 and rank != 0:  # torchrun: only rank 0 writes; Hydra's dir is a temp
        tmp = tempfile.mkdtemp(prefix=f"sae_exp_rank{rank}_")
        sys.argv += [f"hydra.run.dir={tmp}", "hydra.output_subdir=null",
                     "hydra/job_logging=stdout"]
        atexit.register(shutil.rmtree, tmp, True)
    try:
        main()
    except SystemExit as e:
        if e.code == 1:
            raise SystemExit(2) from None
        raise
    except Exception:  # HYDRA_FULL_ERROR=1: Hydra re-raises instead of exiting 1
        if not _full_error():
            raise
        traceback.print_exc()
        raise SystemExit(2) from None
    finally:
        files.release_all()


def _own_output_dir(argv: list[str]) -> str | None:
    """Before Hydra writes anything: refuse a run name that is a path, take the lock of an
    explicit hydra.run.dir (so a second run into it fails here), then say why the dir belongs
    to another run, or None."""
    values = _argv_values(argv)
    if "name" in values:
        check_name(values["name"])
    problem = _taken_output_dir(argv)  # before the lock: a refused dir is not touched at all
    run_dir = values.get("hydra.run.dir")
    no_run = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i"} & set(argv)
    if problem or not run_dir or _is_multirun(argv) or "${" in run_dir or no_run:
        return problem
    files.lock_run_dir(Path(run_dir))
    return _taken_output_dir(argv)  # again, now that no other run can start in it


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


if __name__ == "__main__":
    sys.exit(cli())
