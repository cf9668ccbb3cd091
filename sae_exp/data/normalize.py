"""Input normalisation (`data.normalize`), fitted on training rows and saved with the SAE.

    none             x
    mean_center      x - mean                            (mean over training rows)
    unit_norm        x / ||x||                           (each row)
    scale_to_sqrt_d  x * sqrt(d_in) / E||x||             (SAELens' dataset-wide scaling)

The fitted constants go to `normalization.safetensors` and `cfg.json` so `inspect` applies the
same transform to new sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 65536


@dataclass
class Normalizer:
    kind: str
    mean: np.ndarray | None = None  # [d_in], mean_center only
    scale: float = 1.0  # scale_to_sqrt_d only

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "mean_center":
            return x - self.mean
        if self.kind == "unit_norm":
            return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
        if self.kind == "scale_to_sqrt_d":
            return x * np.float32(self.scale)
        return x

    def to_json(self) -> dict:
        return {"kind": self.kind, "scale": self.scale}


def fit_normalizer(kind: str, acts: np.ndarray, rows: np.ndarray) -> Normalizer:
    """Fit the constants of `kind` on acts[rows], reading in chunks (acts may be a memmap)."""
    if kind == "none" or kind == "unit_norm":
        return Normalizer(kind)
    total = np.zeros(acts.shape[1], dtype=np.float64)
    norm_sum = 0.0
    for s in range(0, len(rows), CHUNK):
        x = np.asarray(acts[np.sort(rows[s : s + CHUNK])], dtype=np.float64)
        total += x.sum(0)
        norm_sum += float(np.linalg.norm(x, axis=1).sum())
    n = max(len(rows), 1)
    if kind == "mean_center":
        return Normalizer(kind, mean=(total / n).astype(np.float32))
    return Normalizer(kind, scale=float(np.sqrt(acts.shape[1]) / max(norm_sum / n, 1e-12)))


class NormalizedRows:
    """A lazy view of `acts` with the normaliser applied on every read (no full copy in RAM)."""

    def __init__(self, acts: np.ndarray, norm: Normalizer) -> None:
        self.acts, self.norm = acts, norm
        self.shape, self.dtype = acts.shape, np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.acts)

    def __getitem__(self, key) -> np.ndarray:
        return self.norm(self.acts[key])
