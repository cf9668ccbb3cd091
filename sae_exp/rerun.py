"""Re-execute a finished run from its own snapshot into a new dir, and compare the results.

    python -m sae_exp.rerun <run dir> [--atol A] [--rtol R] [--out DIR] [key=value ...]

The run is repeated with `python -m sae_exp.run --config-path <run dir>/.hydra --config-name
config` (the config exactly as it ran, not today's defaults), from the original working dir
(`hydra.runtime.cwd`, so relative paths resolve as before), with the torch thread count the
original used (CPU float sums depend on it) and, for a DDP run, under torchrun with the same
number of processes. The new dir is `<runs dir>/<name>_rerun_<timestamp>` beside the original
(for a sweep job: beside the sweep dir, so the sweep's comparison is not changed); the original
is never written to. Extra `key=value` overrides change the rerun (e.g. wandb.mode=disabled).

Compared, artefact by artefact: report.json (every value except timings and paths),
metrics.jsonl (the training log), features.jsonl, cfg.json, the tensors of sae.safetensors,
probe.safetensors and normalization.safetensors, and report.md and figures/*.png byte for byte
(a byte difference there counts only without --atol/--rtol). Prints "identical" or each
difference with its size. Warns when the code (git commit, uncommitted changes), package
versions or the data fingerprint differ.
Exit codes: 0 identical or within --atol/--rtol, 1 different, 2 the run dir is refused (missing
or unreadable files, a failed or an interrupted run), 3 the rerun itself failed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sae_exp import files
from sae_exp.errors import DataError

EXIT_DIFFERENT, EXIT_REFUSED, EXIT_FAILED = 1, 2, 3
# report.json values that describe the execution, not the result
VOLATILE = (("timings_s",), ("run", "dir"))
MAX_SHOWN = 25


class Refused(Exception):
    """The run dir cannot be re-executed; the message is one line naming the file and why."""


@dataclass
class Snapshot:
    dir: Path
    config: dict
    info: dict
    report: dict
    cwd: Path | None


@dataclass
class Diff:
    where: str
    old: object
    new: object
    size: float | None = None  # |new - old| for numbers

    def line(self) -> str:
        size = f"  (|diff| {self.size:.3g})" if self.size is not None else ""
        return f"{self.where}: {_short(self.old)} -> {_short(self.new)}{size}"


@dataclass
class Comparison:
    diffs: list[Diff] = field(default_factory=list)
    compared: int = 0  # number of values compared
    max_abs: float = 0.0  # largest |diff| over numbers, including those within tolerance
    tolerated: list[str] = field(default_factory=list)  # differences that tolerance allows

    @property
    def identical(self) -> bool:
        return not self.diffs and self.max_abs == 0.0 and not self.tolerated


def _short(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# --- validation -------------------------------------------------------------------------------
def _load_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise Refused(f"{path} is missing: {what}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refused(f"{path} is not readable JSON ({type(e).__name__}); the run dir is "
                      "damaged") from None
    if not isinstance(obj, dict):
        raise Refused(f"{path} does not hold a JSON object; the run dir is damaged")
    return obj


def load_snapshot(run_dir: Path) -> Snapshot:
    """Everything a rerun needs from a finished run dir; Refused when a file fails validation."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise Refused(f"{run_dir} is not a directory")
    cfg_path = run_dir / files.HYDRA_DIR / "config.yaml"
    if not cfg_path.is_file():
        raise Refused(f"{cfg_path} is missing: not an sae_exp run dir (no config snapshot)")
    try:
        config = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
    except Exception as e:
        raise Refused(f"{cfg_path} is not readable YAML ({type(e).__name__})") from None
    if not isinstance(config, dict) or "data" not in config:
        raise Refused(f"{cfg_path} is not an sae_exp config (no `data` key)")
    status = files.read_status(run_dir)
    if status not in (None, "complete", "incomplete"):
        finish = (f": finish it with python -m sae_exp.run resume={run_dir} "
                  "hydra.run.dir=<new dir>" if (run_dir / files.CHECKPOINT).exists() else "")
        raise Refused(f"{run_dir} has status {status!r} in {files.RUN_INFO}: not a finished run, "
                      f"there is no result to reproduce{finish}")
    if (run_dir / "error.json").exists():
        raise Refused(f"{run_dir} holds error.json: that run failed, there is no result to "
                      "reproduce")
    info = _load_json(run_dir / files.RUN_INFO, "the run did not finish (resume=<run dir>?)")
    report = _load_json(run_dir / files.REPORT_JSON, "the run did not finish")
    if not isinstance(report.get("metrics"), dict):
        raise Refused(f"{run_dir / files.REPORT_JSON} has no `metrics`; the run dir is damaged")
    if report.get("incomplete") or info.get("status") == "incomplete":
        raise Refused(f"{run_dir} was interrupted before the end of training; a rerun would not "
                      f"repeat that: continue it with python -m sae_exp.run resume={run_dir}")
    try:  # sae.safetensors + cfg.json: present, readable, shapes as cfg.json says, finite
        files.load_sae(run_dir)
    except DataError as e:
        raise Refused(str(e).rstrip(".")) from None
    cwd = None
    hydra_yaml = run_dir / files.HYDRA_DIR / "hydra.yaml"
    if hydra_yaml.is_file():
        try:
            value = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.cwd",
                                     default=None)
            cwd = Path(str(value)) if value else None
        except Exception:
            cwd = None
    return Snapshot(run_dir.resolve(), config, info, report, cwd)


# --- where and how ----------------------------------------------------------------------------
def default_out_dir(run_dir: Path, now: datetime | None = None) -> Path:
    """`<name>_rerun_<timestamp>` beside the run, or beside its sweep dir for a sweep job."""
    run_dir = Path(run_dir).resolve()
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S_%f")
    parent = run_dir.parent
    if (parent / "multirun.yaml").is_file():  # a job of a Hydra sweep
        return parent.parent / f"{parent.name}_{run_dir.name}_rerun_{stamp}"
    return parent / f"{run_dir.name}_rerun_{stamp}"


def _quote(value: str) -> str:
    """A Hydra override value: quoted unless it is a plain path-like token."""
    if re.fullmatch(r"[\w./:@+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_command(snap: Snapshot, out_dir: Path, extra: list[str]) -> list[str]:
    """The command that repeats the run: same config, same threads, same number of ranks."""
    overrides = [f"hydra.run.dir={_quote(str(out_dir))}"]
    trainer = snap.config.get("trainer") or {}
    threads = snap.info.get("torch_threads")
    if trainer.get("num_threads") is None and threads:
        overrides.append(f"trainer.num_threads={int(threads)}")
    app = ["-m", "sae_exp.run", "--config-path", str(snap.dir / files.HYDRA_DIR),
           "--config-name", "config", *overrides, *extra]
    world = int(snap.info.get("world_size") or 1)
    if world > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={world}", *app]
    return [sys.executable, *app]


# --- comparison -------------------------------------------------------------------------------
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_values(old, new, atol: float, rtol: float, where: str, out: Comparison) -> None:
    """Recursive comparison of JSON values; numbers within atol + rtol * |old| are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            path = f"{where}.{k}" if where else str(k)
            if k not in old or k not in new:
                out.diffs.append(Diff(path, old.get(k, "<absent>"), new.get(k, "<absent>")))
            else:
                compare_values(old[k], new[k], atol, rtol, path, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.diffs.append(Diff(f"{where} (length)", len(old), len(new)))
            return
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            compare_values(a, b, atol, rtol, f"{where}[{i}]", out)
        return
    out.compared += 1
    if _is_number(old) and _is_number(new):
        if math.isnan(old) and math.isnan(new):
            return
        size = abs(float(new) - float(old))
        out.max_abs = max(out.max_abs, size) if not math.isnan(size) else math.inf
        if not size <= atol + rtol * abs(float(old)):
            out.diffs.append(Diff(where, old, new, size))
        return
    if old != new:
        out.diffs.append(Diff(where, old, new))


def _drop_volatile(report: dict) -> dict:
    rep = json.loads(json.dumps(report))
    for path in VOLATILE:
        node = rep
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return rep


def _read_jsonl(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# The weight files a run may write, by the part name the comparison reports them under.
TENSOR_FILES = {"weights": files.SAE_WEIGHTS, "probe": files.PROBE,
                "normalization": files.NORMALIZATION}
# Derived views of report.json / metrics.jsonl: compared byte for byte, and counted as a
# difference only when exact equality was asked for (atol = rtol = 0).
DERIVED = (files.REPORT_MD,)


def compare_runs(old_dir: Path, new_dir: Path, atol: float = 0.0, rtol: float = 0.0) -> dict:
    """Compare two finished run dirs, artefact by artefact -> {part: Comparison}.

    Parts: "metrics" (report.json's quality metrics), "report" (the rest of report.json),
    "training_log" (metrics.jsonl), "features" (features.jsonl), "cfg" (cfg.json), "weights",
    "probe", "normalization" (the .safetensors files, tensor by tensor), "derived" (report.md
    and figures/*.png, byte for byte)."""
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    old_rep = _drop_volatile(json.loads((old_dir / files.REPORT_JSON).read_text(encoding="utf-8")))
    new_rep = _drop_volatile(json.loads((new_dir / files.REPORT_JSON).read_text(encoding="utf-8")))
    out = {"metrics": Comparison(), "report": Comparison()}
    compare_values(old_rep.pop("metrics", None), new_rep.pop("metrics", None), atol, rtol,
                   "metrics", out["metrics"])
    compare_values(old_rep, new_rep, atol, rtol, "", out["report"])
    for part, name in (("training_log", files.METRICS), ("features", files.FEATURES)):
        out[part] = Comparison()
        compare_values(_read_jsonl(old_dir / name), _read_jsonl(new_dir / name), atol, rtol,
                       name, out[part])
    out["cfg"] = Comparison()
    compare_values(_read_json_or_none(old_dir / files.SAE_CFG),
                   _read_json_or_none(new_dir / files.SAE_CFG), atol, rtol, files.SAE_CFG,
                   out["cfg"])
    for part, name in TENSOR_FILES.items():
        out[part] = compare_weights(old_dir / name, new_dir / name, atol, rtol)
    out["derived"] = compare_derived(old_dir, new_dir, exact=atol == 0 and rtol == 0)
    return out


def _bytes(run_dir: Path, name: str) -> bytes:
    """A derived file's bytes, with the run's own dir (named in report.md) made neutral."""
    blob = (run_dir / name).read_bytes()
    recorded = (_read_json_or_none(run_dir / files.REPORT_JSON) or {}).get("run", {}).get("dir")
    return blob.replace(str(recorded).encode(), b"<run dir>") if recorded else blob


def _read_json_or_none(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def compare_derived(old_dir: Path, new_dir: Path, exact: bool) -> Comparison:
    """report.md and the figures, byte for byte. Their numbers are compared (with tolerance)
    in report.json and metrics.jsonl; here a byte difference counts only when `exact`."""
    out = Comparison()
    names = set(DERIVED)
    for d in (old_dir, new_dir):
        names |= {str(p.relative_to(d)) for p in (d / files.FIGURES).glob("*.png")}
    for name in sorted(names):
        a, b = old_dir / name, new_dir / name
        out.compared += 1
        if a.is_file() != b.is_file():
            out.diffs.append(Diff(name, "present" if a.is_file() else "<absent>",
                                  "present" if b.is_file() else "<absent>"))
        elif a.is_file() and _bytes(old_dir, name) != _bytes(new_dir, name):
            if exact:
                out.diffs.append(Diff(name, "bytes", "differ"))
            else:
                out.tolerated.append(name)
    return out


def compare_weights(old: Path, new: Path, atol: float, rtol: float) -> Comparison:
    """Per tensor of sae.safetensors: max |diff| against atol + rtol * max |old|."""
    out = Comparison()
    if not old.is_file() or not new.is_file():
        if old.is_file() != new.is_file():
            out.diffs.append(Diff(old.name, "present" if old.is_file() else "<absent>",
                                  "present" if new.is_file() else "<absent>"))
        return out
    from safetensors.torch import load_file

    a, b = load_file(str(old)), load_file(str(new))
    for name in sorted(set(a) | set(b)):
        out.compared += 1
        if name not in a or name not in b or a[name].shape != b[name].shape:
            shape = lambda t, n: tuple(t[n].shape) if n in t else "<absent>"  # noqa: E731
            out.diffs.append(Diff(f"{old.name}:{name} (shape)", shape(a, name),
                                  shape(b, name)))
            continue
        size = float((a[name].double() - b[name].double()).abs().max()) if a[name].numel() else 0.0
        out.max_abs = max(out.max_abs, size)
        scale = float(a[name].double().abs().max()) if a[name].numel() else 0.0
        if not size <= atol + rtol * scale:
            out.diffs.append(Diff(f"{old.name}:{name} (max over {a[name].numel()} values)",
                                  f"|old| <= {scale:.3g}", "differs", size))
    return out


def provenance_warnings(old: dict, new: dict) -> list[str]:
    """What about the code or data differs between the original run and the rerun."""
    out = []
    og, ng = old.get("git") or {}, new.get("git") or {}
    if og.get("commit") != ng.get("commit"):
        out.append(f"code differs: the run used git commit {og.get('commit')}, the rerun "
                   f"{ng.get('commit')}")
    if og.get("dirty") or ng.get("dirty"):
        which = " and ".join(n for n, g in (("the run", og), ("the rerun", ng)) if g.get("dirty"))
        out.append(f"code may differ: {which} had uncommitted changes (dirty tree)")
    if old.get("data_fingerprint") != new.get("data_fingerprint"):
        out.append(f"data differs: fingerprint {old.get('data_fingerprint')} -> "
                   f"{new.get('data_fingerprint')}")
    op, np_ = old.get("packages") or {}, new.get("packages") or {}
    changed = [f"{k} {op.get(k)} -> {np_.get(k)}" for k in sorted(set(op) | set(np_))
               if op.get(k) != np_.get(k)]
    if changed:
        out.append("package versions differ: " + ", ".join(changed))
    if old.get("device") != new.get("device"):
        out.append(f"device differs: {old.get('device')} -> {new.get('device')}")
    return out


def code_warnings_before(snap: Snapshot) -> list[str]:
    """Checked before running: the code here against the snapshot's record."""
    from sae_exp.provenance import git_state

    now = git_state()
    return [w for w in provenance_warnings(snap.info, {**snap.info, "git": now})
            if w.startswith("code")]


def summarize(result: dict, atol: float, rtol: float) -> tuple[bool, list[str]]:
    """(within tolerance, lines to print)."""
    lines, ok = [], True
    for part, comp in result.items():
        if comp.diffs:
            ok = False
            lines.append(f"{part}: {len(comp.diffs)} difference(s) beyond atol={atol:g}, "
                         f"rtol={rtol:g} (of {comp.compared} values; max |diff| "
                         f"{comp.max_abs:.3g})")
            lines += ["  " + d.line() for d in comp.diffs[:MAX_SHOWN]]
            if len(comp.diffs) > MAX_SHOWN:
                lines.append(f"  ... and {len(comp.diffs) - MAX_SHOWN} more")
        elif comp.identical:
            lines.append(f"{part}: identical ({comp.compared} values)")
        elif comp.tolerated:
            lines.append(f"{part}: {', '.join(comp.tolerated)} differ byte for byte (allowed "
                         "with a tolerance: their numbers are compared above)")
        else:
            lines.append(f"{part}: within tolerance ({comp.compared} values; max |diff| "
                         f"{comp.max_abs:.3g})")
    return ok, lines


def execute(cmd: list[str], cwd: Path) -> int:
    """Run the rerun command with this terminal's output; its exit status."""
    return subprocess.run(cmd, cwd=cwd).returncode


# --- CLI --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sae_exp.rerun",
        description="Re-execute a finished run from its config snapshot into a new dir and "
                    "compare metrics, report and weights.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for the rerun")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="the new run dir")
    args = parser.parse_args(argv)
    try:
        snap = load_snapshot(args.run_dir)
        out = (args.out or default_out_dir(snap.dir)).resolve()
        if out == snap.dir or snap.dir in out.parents:
            raise Refused(f"--out {out} is the original run dir or inside it; choose another")
        if out.exists():
            raise Refused(f"{out} already exists; choose a new --out")
        if args.atol < 0 or args.rtol < 0:
            raise Refused("--atol and --rtol must be >= 0")
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    before = code_warnings_before(snap)
    for w in before:
        print(f"warning: {w}", file=sys.stderr)
    cwd = snap.cwd if snap.cwd is not None and snap.cwd.is_dir() else Path.cwd()
    if snap.cwd is not None and cwd != snap.cwd:
        print(f"warning: the original working dir {snap.cwd} is gone; running from {cwd}",
              file=sys.stderr)
    cmd = build_command(snap, out, args.overrides)
    print(f"rerunning {snap.dir} -> {out}", flush=True)
    code = execute(cmd, cwd)
    if code != 0 or not (out / files.REPORT_JSON).is_file():
        print(f"error: the rerun failed (exit {code}); see {out}", file=sys.stderr)
        return EXIT_FAILED
    new_info = json.loads((out / files.RUN_INFO).read_text(encoding="utf-8"))
    for w in provenance_warnings(snap.info, new_info):
        if w not in before:  # what the rerun recorded, unless already said before it ran
            print(f"warning: {w}", file=sys.stderr)
    result = compare_runs(snap.dir, out, args.atol, args.rtol)
    ok, lines = summarize(result, args.atol, args.rtol)
    identical = all(c.identical for c in result.values())
    verdict = ("IDENTICAL: the rerun reproduced the run exactly" if identical else
               "WITHIN TOLERANCE: the rerun matches" if ok else
               "DIFFERENT: the rerun does not reproduce the run")
    print("\n".join([verdict, *lines, f"rerun dir: {out}"]))
    return 0 if ok else EXIT_DIFFERENT


if __name__ == "__main__":
    sys.exit(main())
