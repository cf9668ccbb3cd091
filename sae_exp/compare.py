"""Compare the jobs of one or more sweeps: one row per job, a frontier and overlap figures.

    python -m sae_exp.compare outputs/multirun/<sweep> [more sweep dirs] [--out DIR]
                              [--wandb auto|online|offline|disabled]

Each job dir (a child of the sweep dir holding `.hydra/`) contributes its swept values (from
`.hydra/overrides.yaml`: the keys whose values differ between jobs), `report.json` metrics (l0,
fvu, dead fraction), every label pair's Jaccard with its CI, probe accuracies and
`run_info.json`'s wall time. Written atomically to the output dir (the sweep dir by default,
the first one for several): `comparison.csv`, `comparison.md`, `figures/l0_fvu_frontier.png`,
`figures/overlap_vs_<key>.png`, and `comparison.html` (the table with links to each job's
report.html, the figures embedded). A failed job (`error.json`, or no `report.json`) is listed
with its reason; it does not stop the comparison. With W&B on in the jobs' config (or `--wandb`),
the table and figures are logged to a run with job_type "compare" in the sweep's W&B group;
a W&B failure is a warning. When the jobs of one sweep differ only in `seed`, the seed analysis
(`python -m sae_exp.seeds`: seeds.json, seeds.md, figures/seed_matching.png) is written too.

The objective column is `sae_exp.train.metrics.objective()`, the value the Hydra entry point
returns to a sweeper (Optuna): FVU, plus `objective.l0_penalty` times the relative excess of L0
over `objective.l0_max`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sae_exp import files
from sae_exp.errors import UserError
from sae_exp.report.html import SWEEP_PAGE, build_sweep_page
from sae_exp.train.metrics import objective

log = logging.getLogger("sae_exp.compare")

CSV_NAME = "comparison.csv"
MD_NAME = "comparison.md"
FRONTIER_FIG = "l0_fvu_frontier.png"
ERROR_JSON = "error.json"
MULTIRUN_YAML = "multirun.yaml"


@dataclass
class Job:
    """What one job dir of a sweep holds; `status` is complete | incomplete | failed | killed |
    running | missing (from run_info.json's status where it has one)."""

    dir: Path
    sweep: Path
    status: str = "missing"
    reason: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    config: dict | None = None
    report: dict | None = None
    info: dict | None = None

    @property
    def name(self) -> str:
        return self.dir.name


# --- reading ----------------------------------------------------------------------------------
def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a sweep (children with `.hydra/`, in job-number order); a run dir is itself."""
    sweep_dir = Path(sweep_dir)
    if (sweep_dir / files.HYDRA_DIR).is_dir():
        return [sweep_dir]
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / files.HYDRA_DIR).is_dir()]
    return sorted(jobs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def _read_json(path: Path) -> tuple[dict | None, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name} unreadable ({type(e).__name__})"


def _read_yaml(path: Path):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a damaged snapshot is reported per job, not fatal
        return None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """`key=value` lines of Hydra's overrides.yaml as a dict (hydra.* dropped, +/~ stripped)."""
    out = {}
    for line in lines or []:
        key, sep, value = str(line).partition("=")
        key = key.lstrip("+~")
        if sep and not key.startswith("hydra.") and not key.startswith("hydra/"):
            out[key] = value
    return out


def load_job(job_dir: Path, sweep: Path) -> Job:
    job = Job(dir=Path(job_dir), sweep=Path(sweep))
    hydra_dir = job.dir / files.HYDRA_DIR
    overrides = _read_yaml(hydra_dir / "overrides.yaml")
    job.overrides = parse_overrides(overrides if isinstance(overrides, list) else [])
    cfg = _read_yaml(hydra_dir / "config.yaml")
    job.config = cfg if isinstance(cfg, dict) else None
    job.info, _ = _read_json(job.dir / files.RUN_INFO)
    error, _ = _read_json(job.dir / ERROR_JSON)
    job.report, why = _read_json(job.dir / files.REPORT_JSON)
    status = job.info.get("status") if isinstance(job.info, dict) else None
    if status not in (None, "complete", "incomplete"):  # run_info.json says it did not finish
        job.status, job.reason, job.report = _unfinished(job.dir, job.info, status)
    elif error is not None:
        job.status, job.reason = "failed", str(error.get("error", "error.json present"))
    elif job.report is None:
        job.status, job.reason = "missing", why + " (failed, killed or still running)"
    elif not isinstance(job.report.get("metrics"), dict):
        job.status, job.reason, job.report = "failed", "report.json has no metrics", None
    elif job.report.get("incomplete"):
        job.status, job.reason = "incomplete", "training was interrupted (resume=<job dir>)"
    else:
        job.status = "complete"
    return job


def _unfinished(job_dir: Path, info: dict, status: str) -> tuple[str, str, None]:
    """(status, reason, no report) of a job whose run_info.json status is not a finished one:
    running (a live process owns the dir), killed (none does), or stopped/failed/trained."""
    finish = f"; finish with resume={job_dir}" if (job_dir / files.CHECKPOINT).exists() else ""
    if status == "running":
        state, pid = files.lock_state(job_dir)
        if state == "held":
            return "running", f"still running (pid {pid})", None
        return "killed", f"killed while running (no process owns the dir){finish}", None
    why = str(info.get("error") or f"status {status!r}")
    return "failed", f"{why} (status {status!r}){finish}", None


def load_sweeps(dirs: list[Path]) -> list[Job]:
    jobs = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a directory")
        found = find_jobs(d)
        if not found:
            raise FileNotFoundError(f"{d} holds no job dirs (children with .hydra/)")
        jobs += [load_job(j, d) for j in found]
    return jobs


# --- the table --------------------------------------------------------------------------------
def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose values differ between jobs (all override keys for a single job)."""
    keys: list[str] = []
    for j in jobs:
        keys += [k for k in j.overrides if k not in keys]
    varying = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return varying if varying or len(jobs) > 1 else keys


def parse_value(text: str | None):
    """An override value as int/float where it is a number, else the string."""
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pairs(jobs: list[Job]) -> list[str]:
    out: list[str] = []
    for j in jobs:
        if j.report:
            out += [p for p in (j.report.get("pairs") or {}) if p not in out]
    return out


def _probe_columns(jobs: list[Job]) -> list[str]:
    names: list[str] = []
    for j in jobs:
        probe = (j.report or {}).get("probe") or {}
        for per_label in (probe.get("one_vs_rest") or {}).values():
            names += [n for n in (per_label or {}) if n not in names]
    return names


def _probe_values(report: dict, names: list[str]) -> dict:
    probe = report.get("probe") or {}
    out = {}
    for name in names:
        vals = [res[name]["balanced_accuracy"] for res in (probe.get("one_vs_rest") or {}).values()
                if isinstance((res or {}).get(name), dict) and
                res[name].get("balanced_accuracy") is not None]
        out[f"probe_bacc[{name}]"] = sum(vals) / len(vals) if vals else None
    multi = probe.get("multiclass") or {}
    out["probe_multiclass_acc"] = multi.get("accuracy")
    return out


def _objective_cfg(job: Job) -> dict:
    return ((job.config or {}).get("objective") or {}) if job.config else {}


def build_table(jobs: list[Job]) -> tuple[list[str], list[dict]]:
    """Columns and one row (column -> value) per job."""
    keys, pairs, probes = swept_keys(jobs), _pairs(jobs), _probe_columns(jobs)
    several = len({j.sweep for j in jobs}) > 1
    with_objective = any(_objective_cfg(j).get("l0_max") is not None for j in jobs)
    columns = (["sweep"] if several else []) + ["job", "status", *keys, "l0", "fvu",
                                                "dead_fraction"]
    if with_objective:
        columns.append("objective")
    for p in pairs:
        columns += [f"jaccard[{p}]", f"jaccard_lo[{p}]", f"jaccard_hi[{p}]"]
    columns += [f"probe_bacc[{n}]" for n in probes] + ["probe_multiclass_acc", "wall_time_s",
                                                        "reason"]
    rows = []
    for j in jobs:
        row: dict = {"sweep": j.sweep.name, "job": j.name, "status": j.status,
                     "reason": j.reason, "wall_time_s": (j.info or {}).get("wall_time_s")}
        row.update({k: parse_value(j.overrides.get(k)) for k in keys})
        if j.report:
            m = j.report["metrics"]
            row.update({"l0": m.get("l0"), "fvu": m.get("fvu"),
                        "dead_fraction": m.get("dead_fraction")})
            if with_objective and m.get("fvu") is not None and m.get("l0") is not None:
                o = _objective_cfg(j)
                row["objective"] = objective(m, o.get("l0_max"), o.get("l0_penalty", 1.0))
            for p, v in (j.report.get("pairs") or {}).items():
                ci = v.get("jaccard_ci") or [None, None]
                row.update({f"jaccard[{p}]": v.get("jaccard"), f"jaccard_lo[{p}]": ci[0],
                            f"jaccard_hi[{p}]": ci[1]})
            row.update(_probe_values(j.report, probes))
        rows.append({c: row.get(c) for c in columns})
    return columns, rows


# --- output -----------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return str(v)


def to_csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else r[c] for c in columns])
    return buf.getvalue()


def to_markdown(columns: list[str], rows: list[dict], jobs: list[Job], figures: list[Path],
                out_dir: Path) -> str:
    """A readable table: Jaccard shown as `value [lo, hi]`; failed jobs listed with reasons."""
    shown = [c for c in columns
             if not c.startswith(("jaccard_lo[", "jaccard_hi[")) and c != "reason"]
    lines = [f"# Sweep comparison: {', '.join(sorted({j.sweep.name for j in jobs}))}", ""]
    counts = {s: sum(j.status == s for j in jobs) for s in ("complete", "incomplete", "failed",
                                                              "killed", "running", "missing")}
    lines.append(f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    lines += ["", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in rows:
        cells = []
        for c in shown:
            if c.startswith("jaccard["):
                p = c[len("jaccard["):-1]
                lo, hi = r.get(f"jaccard_lo[{p}]"), r.get(f"jaccard_hi[{p}]")
                ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else ""
                cells.append(_fmt(r[c]) + ci if r[c] is not None else "")
            else:
                cells.append(_fmt(r[c]))
        lines.append("| " + " | ".join(cells) + " |")
    bad = [j for j in jobs if j.status != "complete"]
    if bad:
        lines += ["", "## Jobs without a complete report", ""]
        lines += [f"- `{j.dir}`: {j.status}: {j.reason}" for j in bad]
    lines += ["", "Columns: l0 = mean active latents per held-out row; fvu = fraction of variance "
              "unexplained (held-out); jaccard = overlap of the labels' associated latents with "
              "its bootstrap CI; probe_bacc[k] = one-vs-rest balanced accuracy averaged over "
              "labels; wall_time_s from run_info.json."]
    if figures:
        lines += ["", "## Figures", ""]
        for f in figures:
            rel = f.relative_to(out_dir) if f.is_relative_to(out_dir) else f
            lines.append(f"![{f.stem}]({rel.as_posix()})")
    return "\n".join(lines) + "\n"


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    data = buf.getvalue()

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    files.atomic_write(path, write)


def _label(row: dict, keys: list[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={_fmt(row.get(k))}" for k in keys)


def make_figures(columns: list[str], rows: list[dict], keys: list[str],
                 fig_dir: Path) -> list[Path]:
    """L0-FVU frontier and Jaccard (with CI) against each swept key; returns the written paths.

    Drawn on matplotlib's Agg canvas directly (no pyplot state), like the run's report."""
    done = [r for r in rows if r.get("l0") is not None and r.get("fvu") is not None]
    if not done:
        return []
    path = fig_dir / FRONTIER_FIG
    _save_figure(_frontier_figure(done, keys), path)
    written = [path]
    pairs = [c[len("jaccard["):-1] for c in columns if c.startswith("jaccard[")]
    for key in keys:
        pts = [r for r in done if r.get(key) is not None]
        if not pts or not pairs:
            continue
        path = fig_dir / f"overlap_vs_{key.replace('/', '_')}.png"
        _save_figure(_overlap_figure(pts, pairs, key), path)
        written.append(path)
    return written


def _frontier_figure(done: list[dict], keys: list[str]):
    """FVU against L0 for every finished job, with the Pareto frontier as a step line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.scatter([r["l0"] for r in done], [r["fvu"] for r in done], color="C0", zorder=3)
    for r in done:
        ax.annotate(_label(r, keys) or r["job"], (r["l0"], r["fvu"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    frontier, best = [], math.inf
    for r in sorted(done, key=lambda r: (r["l0"], r["fvu"])):
        if r["fvu"] < best:
            best = r["fvu"]
            frontier.append((r["l0"], r["fvu"]))
    if len(frontier) > 1:
        ax.step(*zip(*frontier, strict=True), where="post", color="C1", label="frontier")
        ax.legend()
    ax.set_xlabel("L0 (mean active latents per held-out row)")
    ax.set_ylabel("FVU (held-out)")
    ax.set_title("Sparsity-reconstruction frontier")
    ax.grid(alpha=0.3)
    return fig


def _overlap_figure(pts: list[dict], pairs: list[str], key: str):
    """Each pair's Jaccard (with its interval) against the swept `key`."""
    from matplotlib.figure import Figure

    numeric = all(isinstance(r[key], (int, float)) for r in pts)
    cats = sorted({str(r[key]) for r in pts})

    def xpos(r: dict):
        return r[key] if numeric else cats.index(str(r[key]))

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for i, p in enumerate(pairs):
        sel = sorted([r for r in pts if r.get(f"jaccard[{p}]") is not None], key=xpos)
        if not sel:
            continue
        x = [xpos(r) for r in sel]
        y = [r[f"jaccard[{p}]"] for r in sel]
        lo = [r[f"jaccard_lo[{p}]"] for r in sel]
        hi = [r[f"jaccard_hi[{p}]"] for r in sel]
        has_ci = all(v is not None for v in lo + hi)
        err = [[max(yy - a, 0) for yy, a in zip(y, lo, strict=True)],
               [max(b - yy, 0) for yy, b in zip(y, hi, strict=True)]] if has_ci else None
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=f"C{i}", label=p,
                    linestyle="-" if len(set(x)) == len(x) else "none")
    if not numeric:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(key)
    ax.set_ylabel("Jaccard of associated latents (CI)")
    ax.set_title(f"Overlap vs {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def log_to_wandb(jobs: list[Job], columns: list[str], rows: list[dict], figures: list[Path],
                 mode: str) -> None:
    """One W&B run (job_type "compare") per sweep, in the group its jobs logged to."""
    for sweep in sorted({j.sweep for j in jobs}):
        mine = [j for j in jobs if j.sweep == sweep]
        wb = next(((j.config or {}).get("wandb") or {} for j in mine if j.config), {})
        run_mode = wb.get("mode", "disabled") if mode == "auto" else mode
        if run_mode == "disabled":
            continue
        group = next((j.info.get("wandb_group") for j in mine
                      if j.info and j.info.get("wandb_group")), None) or wb.get("group") \
            or sweep.name
        names = {j.name for j in mine}
        data = [[r[c] for c in columns] for r in rows
                if r["job"] in names and r.get("sweep", sweep.name) == sweep.name]
        try:
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            run = wandb.init(mode=run_mode, project=wb.get("project", "sae_exp"),
                             entity=wb.get("entity"), group=group, job_type="compare",
                             name=f"compare-{group}", dir=str(sweep), reinit="finish_previous",
                             settings=wandb.Settings(init_timeout=60, console="off"))
            run.log({"comparison": wandb.Table(columns=columns, data=data)})
            run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in figures})
            run.finish()
            log.info("logged the comparison to W&B group %r (%s)", group, run_mode)
        except Exception as e:  # W&B must never stop a comparison
            log.warning("W&B logging of the comparison failed (%s: %s); local files are written.",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")


def compare(dirs: list[Path], out_dir: Path | None = None, wandb_mode: str = "auto") -> dict:
    """Read the sweeps, write the table and figures into `out_dir`; returns what was written."""
    dirs = [Path(d) for d in dirs]
    jobs = load_sweeps(dirs)
    out_dir = Path(out_dir) if out_dir else dirs[0]
    columns, rows = build_table(jobs)
    keys = swept_keys(jobs)
    figures = make_figures(columns, rows, keys, out_dir / files.FIGURES)
    md = to_markdown(columns, rows, jobs, figures, out_dir)
    files.atomic_write_text(out_dir / CSV_NAME, to_csv(columns, rows))
    files.atomic_write_text(out_dir / MD_NAME, md)
    files.atomic_write_text(out_dir / SWEEP_PAGE, build_sweep_page(
        f"sweep {out_dir.name}", columns, rows, [j.dir for j in jobs], out_dir, figures))
    log_to_wandb(jobs, columns, rows, figures, wandb_mode)
    result = {"jobs": jobs, "columns": columns, "rows": rows, "figures": figures,
              "csv": out_dir / CSV_NAME, "markdown": out_dir / MD_NAME, "text": md,
              "page": out_dir / SWEEP_PAGE}
    done = [j for j in jobs if j.status == "complete"]
    from sae_exp import seeds  # a sweep over seed only also gets the seed analysis

    if len(dirs) == 1 and seeds.only_seed_varies(done):
        result["seeds"] = seeds.run_seeds(dirs[0], wandb_mode=wandb_mode)
        log.info("the runs differ only in seed: wrote %s", dirs[0] / seeds.MD_NAME)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sae_exp.compare",
        description="Tabulate and plot the jobs of one or more sweeps (Hydra multirun dirs).")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs (outputs/multirun/...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write comparison.* and figures/ (default: the first dir)")
    parser.add_argument("--wandb", default="auto",
                        choices=["auto", "online", "offline", "disabled"],
                        help="W&B mode for the comparison run (auto: the jobs' wandb.mode)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = compare(args.dirs, args.out, args.wandb)
    except (FileNotFoundError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["text"])
    bad = [j for j in result["jobs"] if j.status != "complete"]
    if bad:
        log.warning("%d of %d jobs have no complete report (listed above)", len(bad),
                    len(result["jobs"]))
    print(f"wrote {result['csv']}, {result['markdown']} and {result['page']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
