"""File names of a run dir, atomic writes, and SAE save/load (safetensors + cfg.json).

Every file a run writes goes through `atomic_write_*`: a temp file in the same directory, then
`os.replace`, so a reader (or a killed run) never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae_exp.errors import DataError
from sae_exp.model.sae import SAE

SAE_WEIGHTS = "sae.safetensors"
SAE_CFG = "cfg.json"
RUN_INFO = "run_info.json"
METRICS = "metrics.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FEATURES = "features.jsonl"
CHECKPOINT = "checkpoint.pt"
NORMALIZATION = "normalization.safetensors"
PROBE = "probe.safetensors"  # the multi-class label probe inspect predicts with
FIGURES = "figures"
HYDRA_DIR = ".hydra"

ARCHITECTURES = {"topk": SAE, "batchtopk": SAE, "relu_l1": SAE}
_CFG_FIELDS = {"architecture", "d_in", "d_sae", "k", "tied", "center_input", "decoder_impl"}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temp files are 0600


def atomic_write(path: Path, write) -> None:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_sae(run_dir: Path, sae: SAE, extra_cfg: dict) -> None:
    """Write sae.safetensors (W_enc, b_enc, W_dec, b_dec [+ threshold]) and cfg.json."""
    tensors = sae.state_for_save()
    if sae.kind == "batchtopk":
        tensors["threshold"] = sae.threshold.detach().cpu().reshape(())
    atomic_save_safetensors(Path(run_dir) / SAE_WEIGHTS, tensors)
    cfg = {
        "architecture": sae.kind,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "k": sae.k,
        "tied": sae.tied,
        "center_input": sae.center_input,
        "decoder_impl": sae.decoder_impl,
        **extra_cfg,
    }
    atomic_write_json(Path(run_dir) / SAE_CFG, cfg)


def load_sae(run_dir: Path, device: str | torch.device = "cpu") -> tuple[SAE, dict]:
    """Load a saved SAE; any missing, unknown or inconsistent field fails with a DataError."""
    run_dir = Path(run_dir)
    cfg_path, w_path = run_dir / SAE_CFG, run_dir / SAE_WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise DataError(f"{p} is missing: is {run_dir} a finished sae_exp run dir?")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{cfg_path} is not valid JSON ({e}); the run dir is damaged.") from None
    missing = _CFG_FIELDS - set(cfg)
    if missing:
        raise DataError(f"{cfg_path} lacks {sorted(missing)}; the run dir is damaged or foreign.")
    if cfg["architecture"] not in ARCHITECTURES:
        raise DataError(
            f"{cfg_path}: unknown architecture {cfg['architecture']!r}; known: "
            + ", ".join(ARCHITECTURES)
        )
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{w_path} is not a valid safetensors file ({e}).") from None
    try:
        d_in, d_sae, _ = int(cfg["d_in"]), int(cfg["d_sae"]), int(cfg["k"])
    except (TypeError, ValueError):
        raise DataError(f"{cfg_path}: d_in, d_sae and k must be integers; the run dir is "
                        "damaged.") from None
    expect = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in expect.items():
        if name not in tensors or tuple(tensors[name].shape) != shape:
            got = tuple(tensors[name].shape) if name in tensors else "missing"
            raise DataError(f"{w_path}: {name} should have shape {shape}, found {got}.")
        if not torch.isfinite(tensors[name]).all():
            raise DataError(f"{w_path}: {name} contains NaN or Inf; the run did not finish well.")
    sae = ARCHITECTURES[cfg["architecture"]](
        d_in, d_sae, kind=cfg["architecture"], k=int(cfg["k"]), tied=bool(cfg["tied"]),
        decoder_impl=cfg["decoder_impl"], center_input=bool(cfg["center_input"]),
    )
    sae.load_tensors(tensors)
    return sae.to(device).eval(), cfg
