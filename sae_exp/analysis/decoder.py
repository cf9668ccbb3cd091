"""Decoder geometry shared by the analyses: latents compared by the cosine of their rows."""

from __future__ import annotations

import numpy as np


def unit_rows(W: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Rows of W (as `dtype`) scaled to unit L2 norm; a zero row stays zero."""
    W = np.asarray(W, dtype=dtype)
    return W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
