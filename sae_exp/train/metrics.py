"""Reconstruction and sparsity quality of a trained SAE, on held-out rows.

    fvu                = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2   (variance around the mean)
    explained_variance = 1 - fvu
    mse                = mean over rows and dimensions of (x - x_hat)^2
    l0                 = mean number of active latents per row (inference encoder)
    dead_fraction      = share of latents active on no row (train and test)
    dense_fraction     = share of latents active on more than `dense_threshold` of rows
"""

from __future__ import annotations

import numpy as np
import torch

from sae_exp.model.sae import SAE

DENSE_THRESHOLD = 0.1


@torch.no_grad()
def quality_metrics(
    sae: SAE,
    acts: np.ndarray,
    eval_rows: np.ndarray,
    top_indices: np.ndarray,
    top_acts: np.ndarray,
    device: torch.device,
    batch_size: int = 8192,
) -> dict:
    """Metrics of DESIGN.md's report.json `metrics` block; codes are those of `encode_rows`."""
    d_in = acts.shape[1]
    sum_x = np.zeros(d_in, dtype=np.float64)
    sum_x2 = np.zeros(d_in, dtype=np.float64)
    sq_err = 0.0
    for s in range(0, len(eval_rows), batch_size):
        rows = eval_rows[s : s + batch_size]
        x = torch.as_tensor(np.asarray(acts[rows]), dtype=torch.float32, device=device)
        idx = torch.as_tensor(top_indices[rows], device=device)
        val = torch.as_tensor(top_acts[rows], device=device)
        x_hat = sae.decode(val, idx)
        sq_err += float((x - x_hat).double().pow(2).sum())
        xd = x.double().cpu().numpy()
        sum_x += xd.sum(0)
        sum_x2 += (xd**2).sum(0)
    n = max(len(eval_rows), 1)
    total_var = float((sum_x2 - sum_x**2 / n).sum())
    fvu = sq_err / max(total_var, 1e-12)
    active = top_acts > 0
    l0_rows = active.sum(1)
    counts = np.bincount(top_indices[active], minlength=sae.d_sae)
    density = counts / max(len(top_acts), 1)
    l0_eval = l0_rows[eval_rows]
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "mse": sq_err / (n * d_in),
        "l0": float(l0_eval.mean()) if len(l0_eval) else 0.0,
        "l0_p50": float(np.median(l0_eval)) if len(l0_eval) else 0.0,
        "l0_max": int(l0_eval.max()) if len(l0_eval) else 0,
        "dead_fraction": float((counts == 0).mean()),
        "dense_fraction": float((density > DENSE_THRESHOLD).mean()),
        "n_eval_rows": int(len(eval_rows)),
        "density": density.tolist(),
    }


def objective(metrics: dict, l0_max: float | None = None, l0_penalty: float = 1.0) -> float:
    """What a sweeper minimises: fvu + l0_penalty * max(0, l0 - l0_max) / l0_max.

    With `l0_max` None this is FVU alone. The penalty is relative (L0 twice the limit costs
    `l0_penalty` FVU), so runs inside the limit compete on FVU only."""
    fvu = float(metrics["fvu"])
    if l0_max is None:
        return fvu
    return fvu + l0_penalty * max(0.0, float(metrics["l0"]) - l0_max) / l0_max
