"""File names of a run dir, atomic writes, and SAE save/load (safetensors + cfg.json).

Every file a run writes goes through `atomic_write_*`: a temp file in the same directory, then
`os.replace`, so a reader (or a killed run) never sees a half-written file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae_exp.errors import DataError, UserError, WriteError
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
LOCK = ".run.lock"  # flock'ed by the process that owns the run dir; holds its pid meanwhile

ARCHITECTURES = {"topk": SAE, "batchtopk": SAE, "relu_l1": SAE}
_CFG_FIELDS = {"architecture", "d_in", "d_sae", "k", "tied", "center_input", "decoder_impl"}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temp files are 0600


def atomic_write(path: Path, write, size: int | None = None) -> None:
    """Call write(tmp) on a temp file beside `path`, then rename it over `path`.

    A write that cannot complete (full disk, read-only dir) leaves no temp file and raises
    WriteError naming the path and, for a full disk, the space needed (`size` bytes, or what
    the temp file had reached)."""
    path = Path(path)
    tmp = None
    try:
        make_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        written = _size_of(tmp)
        _unlink(tmp)
        raise write_error(path, e, max(size or 0, written)) from None
    except BaseException:
        _unlink(tmp)
        raise


def _size_of(p: str | None) -> int:
    try:
        return os.path.getsize(p) if p else 0
    except OSError:
        return 0


def _unlink(p: str | None) -> None:
    if p:
        Path(p).unlink(missing_ok=True)


def make_dir(d: Path) -> None:
    """mkdir -p, with one WriteError line when `d` (or a parent) is a file or not writable."""
    d = Path(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot write into {d}: it is a file, not a directory; choose "
                         "another directory.") from None
    except OSError as e:
        raise write_error(d, e) from None


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
WRITE_ERRNOS = (*_READ_ONLY, *_FULL, errno.ENOTDIR, errno.EEXIST)


def write_error(path: Path, e: OSError, need: int = 0) -> WriteError:
    """The one line for an OSError raised while writing `path`."""
    reason = e.strerror or str(e)
    if e.errno in _FULL:
        free = _free_bytes(Path(path))
        return WriteError(f"cannot write {path}: {reason} (at least {_human(need)} needed, "
                          f"{_human(free)} free there).")
    if e.errno in _READ_ONLY:
        return WriteError(f"cannot write {path}: {reason}; the directory is read-only for this "
                          "user: choose a writable output dir.")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return WriteError(f"cannot write {path}: a part of that path is a file, not a "
                          "directory; choose another output dir.")
    return WriteError(f"cannot write {path}: {reason}.")


def _free_bytes(p: Path) -> int:
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, len(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # Python's file: a full disk raises OSError, not RuntimeError
            torch.save(obj, f)

    atomic_write(path, write, _tensor_bytes(obj))


def atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata),
                 _tensor_bytes(tensors))


def _tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in `obj` (nested dicts/lists): the least a save needs."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


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
    if not 1 <= int(cfg["k"]) <= d_sae and cfg["architecture"] != "relu_l1":
        raise DataError(f"{cfg_path}: k={cfg['k']} is not between 1 and d_sae={d_sae}; the run "
                        "dir is damaged.")
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


# --- run dir ownership ------------------------------------------------------------------------
class RunLock:
    """An exclusive `flock` on <run dir>/.run.lock, held by the process that writes the dir.

    The OS drops the lock when the process ends, however it ends; the file keeps the holder's
    pid while held and is emptied on a clean release, so a pid found in a free lock file was
    left by a process that was killed (`stale_pid`)."""

    def __init__(self, run_dir: Path, fd: int, stale_pid: int | None) -> None:
        self.run_dir, self.fd, self.stale_pid, self.refs = run_dir, fd, stale_pid, 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs > 0 or self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1
        _HELD.pop(self.run_dir.resolve(), None)


_HELD: dict[Path, RunLock] = {}


def lock_run_dir(run_dir: Path, wait_s: float = 1.0) -> RunLock:
    """Own `run_dir` (created if needed) before anything is written into it; UserError when
    another live process owns it. Called again by the owning process, it counts a reference."""
    run_dir = Path(run_dir)
    make_dir(run_dir)
    held = _HELD.get(run_dir.resolve())
    if held is not None:
        held.refs += 1
        return held
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(path, e) from None
    deadline = time.time() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.time() >= deadline:
                pid = _read_pid(fd)
                os.close(fd)
                raise UserError(f"{run_dir} is in use by another run (pid {pid or '?'}); a run "
                                "never writes into another run's dir: choose a new "
                                "hydra.run.dir.") from None
            time.sleep(0.05)
    stale = _read_pid(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise write_error(path, e) from None
    lock = RunLock(run_dir, fd, stale if stale != os.getpid() else None)
    _HELD[run_dir.resolve()] = lock
    return lock


def release_all() -> None:
    """Release every run dir lock this process holds (the CLI's last step)."""
    for lock in list(_HELD.values()):
        lock.refs = 1
        lock.release()


def lock_state(run_dir: Path) -> tuple[str, int | None]:
    """Who owns `run_dir`: ("own", pid) this process, ("held", pid) another live process,
    ("stale", pid) nobody, but a killed process left its pid, ("free", None) nobody. Takes
    nothing for long."""
    run_dir = Path(run_dir)
    if run_dir.resolve() in _HELD:
        return "own", os.getpid()
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return "free", None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held", _read_pid(fd)
        pid = _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ("stale", pid) if pid else ("free", None)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _read_run_info(run_dir: Path) -> dict:
    """run_info.json as a dict; {} when it is missing, unreadable or not a JSON object."""
    try:
        info = json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def read_status(run_dir: Path) -> str | None:
    """run_info.json's `status` (running | trained | complete | incomplete | stopped | failed),
    or None when there is no readable run_info.json (a run of an older version, or none)."""
    return _read_run_info(run_dir).get("status")


def update_run_info(run_dir: Path, **fields: Any) -> None:
    """Merge `fields` into run_info.json (written atomically)."""
    atomic_write_json(Path(run_dir) / RUN_INFO, {**_read_run_info(run_dir), **fields})
