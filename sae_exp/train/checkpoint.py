"""Checks a training checkpoint before training resumes from it.

`torch.load(weights_only=True)` refuses code, but not a state that is damaged or belongs to
another config: a missing optimizer state, a matrix of another shape, NaN weights, or a step
past the schedule (a checkpoint edited to step 10^9 would otherwise "finish" at once and report
10^9 steps). Each problem is one DataError line naming the checkpoint and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae_exp.errors import DataError

REQUIRED = ("sae", "optimizer", "step", "rows_since_fired", "history", "torch_rng")
_FIX = "resume from another run dir or start a new run"


def check_state(state: Any, trainer, path: Path, total: int | None = None,
                rows_per_step: int | None = None) -> None:
    """Raise DataError unless `state` (Trainer.state_dict()) fits `trainer` and its schedule
    (`total` steps of at most `rows_per_step` rows)."""
    if not isinstance(state, dict):
        raise DataError(f"{path} is not an sae_exp checkpoint (no dict of states); {_FIX}.")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: it is damaged or not an sae_exp "
                        f"checkpoint; {_FIX}.")
    _check_weights(state["sae"], trainer.sae.state_dict(), path)
    _check_optimizer(state["optimizer"], trainer.sae.saved_parameters(), path)
    _check_progress(state, trainer.sae.d_sae, path, total, rows_per_step)


def _check_weights(saved: Any, expected: dict[str, torch.Tensor], path: Path) -> None:
    if not isinstance(saved, dict):
        raise DataError(f"{path}: `sae` is not a dict of tensors; it is damaged; {_FIX}.")
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    if missing or extra:
        raise DataError(f"{path}: the SAE's tensors do not match this config (missing "
                        f"{missing}, unexpected {extra}); {_FIX}.")
    for name, want in expected.items():
        got = saved[name]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise DataError(f"{path}: {name} has shape {shape}, this config builds "
                            f"{tuple(want.shape)} (model.hidden_dim, data.d_in); the checkpoint "
                            f"belongs to another config; {_FIX}.")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise DataError(f"{path}: {name} holds NaN or Inf; the checkpoint is damaged; {_FIX}.")


def _check_optimizer(opt: Any, params: list[torch.Tensor], path: Path) -> None:
    groups = opt.get("param_groups") if isinstance(opt, dict) else None
    if not isinstance(groups, list) or not isinstance(opt.get("state"), dict):
        raise DataError(f"{path}: the optimizer state is damaged; {_FIX}.")
    ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", [])]
    if len(ids) != len(params):
        raise DataError(f"{path}: the optimizer state holds {len(ids)} parameters, this SAE "
                        f"has {len(params)}; {_FIX}.")
    for i, p in zip(ids, params, strict=True):
        for key, t in (opt["state"].get(i) or {}).items():
            if key != "step" and isinstance(t, torch.Tensor) and t.shape != p.shape:
                raise DataError(f"{path}: optimizer {key} has shape {tuple(t.shape)} for a "
                                f"parameter of shape {tuple(p.shape)}; {_FIX}.")


def _check_progress(state: dict, d_sae: int, path: Path, total: int | None,
                    rows_per_step: int | None) -> None:
    step = state["step"]
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or (
            total is not None and step > total):
        raise DataError(f"{path}: step {step} is outside this config's schedule (0 to {total} "
                        f"steps); the checkpoint is damaged or from another config; {_FIX}.")
    rows = state["rows_since_fired"]
    if not isinstance(rows, torch.Tensor) or tuple(rows.shape) != (d_sae,):
        raise DataError(f"{path}: rows_since_fired should have shape ({d_sae},); {_FIX}.")
    if rows_per_step is not None and len(rows) and (
            int(rows.min()) < 0 or int(rows.max()) > step * rows_per_step):
        raise DataError(f"{path}: rows_since_fired counts up to {int(rows.max())} rows, more "
                        f"than {step} steps of {rows_per_step} rows saw; it is damaged; {_FIX}.")
    history = state["history"]
    if not isinstance(history, list) or any(
            not isinstance(r, dict) or not isinstance(r.get("step"), int) or r["step"] > step
            for r in history):
        raise DataError(f"{path}: its metric history does not match step {step}; {_FIX}.")
