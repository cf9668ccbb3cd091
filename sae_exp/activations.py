"""Load activations for a run (interim: synthetic only; the full loader replaces this file)."""

from __future__ import annotations

from sae_exp.data_types import ActivationSet
from sae_exp.errors import DataError


def load_activations(data_cfg, seed: int, device: str = "cpu") -> ActivationSet:
    if data_cfg.source == "synthetic":
        from sae_exp.synthetic import make_synthetic

        return make_synthetic(data_cfg)
    raise DataError(f"data={data_cfg.source} is not available yet")
