"""Robustness across seeds: compare the runs of a sweep that differ only in `seed`.

    python -m sae_exp.run seed=0,1,2,3,4 -m            # five seeds, activations extracted once
    python -m sae_exp.seeds outputs/multirun/<sweep> [--threshold 0.7] [--min-seeds M]
                            [--wandb auto|online|offline|disabled]

Refuses (one line, exit 2) when the runs' config snapshots differ in anything but `seed`.
Writes into the sweep dir: `seeds.json`, `seeds.md` (every number defined there) and
`figures/seed_matching.png` (histogram of matched decoder cosines). The matching and the
statistics are in `sae_exp.analysis.seeds`. `python -m sae_exp.compare <sweep>` calls this
too when its runs differ only in seed.

The consensus-only overlap (each label pair's Jaccard recomputed on consensus latents only) is
computed here, from each run's report.json and the matching; it does not change the runs'
own reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from sae_exp import files
from sae_exp.analysis import seeds as S
from sae_exp.compare import Job, find_jobs, load_job
from sae_exp.errors import ConfigError, DataError, UserError

log = logging.getLogger("sae_exp.seeds")

JSON_NAME = "seeds.json"
MD_NAME = "seeds.md"
FIGURE = "seed_matching.png"
IGNORED_KEYS = ("seed",)  # the only key allowed to differ between the runs

DEFINITIONS = {
    "matched cosine": ("cosine between a decoder row of one seed and the row of another seed it "
                       "is paired with by a one-to-one matching that maximises the summed cosine "
                       "(Hungarian algorithm, scipy linear_sum_assignment)"),
    "frac_above_0.7 / frac_above_0.9": ("share of the min(d_sae) matched pairs of two seeds whose "
                                        "matched cosine exceeds 0.7 / 0.9"),
    "median_cos": "median matched cosine of a pair of seeds",
    "random | random": ("chance level: the same matching between two random Gaussian "
                        "dictionaries of the runs' shapes (seeds that share nothing)"),
    "consensus latent": ("a latent of a seed whose matched cosine exceeds the threshold in at "
                         "least min_seeds of the n seeds, itself included"),
    "n_consensus": "number of consensus latents of a seed (out of its d_sae)",
    "jaccard": ("|A & B| / |A | B| of two labels' associated latents (`features` in the run's "
                "report.json), per seed"),
    "overlap_coefficient": "|A & B| / min(|A|, |B|) of the same sets",
    "mean / sd / min / max": ("over seeds; sd is the sample standard deviation (ddof 1); a "
                              "seed where the value is undefined (empty sets) is left out"),
    "consensus-only": ("the same overlap with A and B restricted to each seed's consensus "
                       "latents (the headline overlap on latents that survive a reseed)"),
    "n_specific": ("number of latents specific to the label (associated with it and no other, "
                   "with a higher firing rate than in every other label)"),
    "recurring_share": ("share of a seed's specific latents of the label found in at least "
                        "min_seeds seeds: matched above the threshold to a latent specific to "
                        "the same label there (itself counted)"),
    "token_driven_share": ("share of the label's tested specific latents flagged token-driven "
                           "by the run's token-injection test (report.json `token_injection`)"),
}


# --- reading ---------------------------------------------------------------------------------
def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out if out else {prefix: d}


def check_only_seed_differs(jobs: list[Job]) -> None:
    """Raise ConfigError (one line) when two runs' config snapshots differ beyond `seed`."""
    ref = jobs[0]
    if ref.config is None:
        raise DataError(f"{ref.dir}/.hydra/config.yaml is missing or unreadable: cannot check "
                        "that the runs differ only in seed.")
    base = {k: v for k, v in _flat(ref.config).items() if k.rstrip(".") not in IGNORED_KEYS}
    for job in jobs[1:]:
        if job.config is None:
            raise DataError(f"{job.dir}/.hydra/config.yaml is missing or unreadable: cannot "
                            "check that the runs differ only in seed.")
        other = {k: v for k, v in _flat(job.config).items() if k.rstrip(".") not in IGNORED_KEYS}
        diff = sorted(k.rstrip(".") for k in set(base) | set(other) if base.get(k) != other.get(k))
        if diff:
            raise ConfigError(
                f"runs {ref.name} and {job.name} differ in more than seed ({', '.join(diff[:5])}"
                f"{', ...' if len(diff) > 5 else ''}): seeds compares runs that differ only in "
                "seed; use python -m sae_exp.compare for other sweeps.")


def only_seed_varies(jobs: list[Job]) -> bool:
    """True for two or more runs whose config snapshots differ in `seed` and nothing else."""
    if len(jobs) < 2:
        return False
    try:
        check_only_seed_differs(jobs)
    except UserError:
        return False
    return len({(j.config or {}).get("seed") for j in jobs}) == len(jobs)


def _decoder(job_dir: Path) -> np.ndarray:
    from safetensors import SafetensorError, safe_open

    path = job_dir / files.SAE_WEIGHTS
    try:
        with safe_open(str(path), framework="np") as f:
            return f.get_tensor("W_dec")
    except (SafetensorError, OSError, KeyError) as e:
        raise DataError(f"{path}: no readable W_dec ({type(e).__name__}); is the run "
                        "finished?") from None


def load_runs(sweep_dir: Path) -> tuple[list[Job], list[Job]]:
    """The sweep's complete runs (checked to differ only in seed) and the others."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} is not a directory; give a sweep dir (outputs/multirun/...).")
    jobs = [load_job(j, sweep_dir) for j in find_jobs(sweep_dir)]
    done = [j for j in jobs if j.status == "complete"]
    if len(done) < 2:
        raise DataError(f"{sweep_dir} holds {len(done)} complete run(s): seeds needs at least "
                        "two (python -m sae_exp.run seed=0,1,2 -m).")
    check_only_seed_differs(done)
    return done, [j for j in jobs if j.status != "complete"]


# --- the analysis ----------------------------------------------------------------------------
def _token_shares(reports: list[dict]) -> dict:
    """Per label: the token-driven share of each seed (None where the test was skipped)."""
    labels = sorted({lab for r in reports
                     for lab in ((r.get("token_injection") or {}).get("labels") or {})})
    return {lab: S.spread([((r.get("token_injection") or {}).get("labels") or {})
                            .get(lab, {}).get("share_flagged") for r in reports])
            for lab in labels}


def analyse_seeds(runs: list[Job], threshold: float = 0.7,
                  min_seeds: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Matching, consensus, overlap across seeds (all and consensus-only), specific recurrence."""
    n = len(runs)
    min_seeds = n // 2 + 1 if min_seeds is None else min_seeds
    if not -1 < threshold < 1:
        raise ConfigError(f"--threshold={threshold} is invalid: use a cosine in (-1, 1).")
    if not 1 <= min_seeds <= n:
        raise ConfigError(f"--min-seeds={min_seeds} is invalid: use 1..{n} (the number of runs).")
    names = [f"seed={(j.config or {}).get('seed')}" for j in runs]
    decoders = [_decoder(j.dir) for j in runs]
    m = S.match_all(decoders, threshold)
    cons = S.consensus(m, names, min_seeds)
    reports = [j.report or {} for j in runs]
    masks = [c.pop("mask") for c in cons]
    out = {
        "runs": [{"name": nm, "dir": str(j.dir), "seed": (j.config or {}).get("seed")}
                 for nm, j in zip(names, runs, strict=True)],
        "threshold": threshold, "min_seeds": min_seeds, "n_seeds": n,
        "pairs_of_seeds": S.pair_fractions(m, names),
        "chance": S.chance_pair(len(decoders[0]), len(decoders[1]), decoders[0].shape[1]),
        "consensus": cons,
        "n_consensus": S.spread([float(c["n_consensus"]) for c in cons]),
        "overlap": S.overlap_across_seeds(reports),
        "overlap_consensus_only": S.overlap_across_seeds(reports, masks),
        "specific": S.specific_recurrence(m, reports, names, min_seeds),
        "token_driven_share": _token_shares(reports),
        "definitions": DEFINITIONS,
    }
    out["match_fraction"] = {f"frac_above_{lv}": S.spread(
        [p[f"frac_above_{lv}"] for p in out["pairs_of_seeds"]]) for lv in S.MATCH_LEVELS}
    return out, S.matched_cosines(m)


# --- output ----------------------------------------------------------------------------------
def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _pm(s: dict) -> str:
    return f"{_f(s['mean'])} +- {_f(s['sd'])} [{_f(s['min'])}, {_f(s['max'])}]"


def to_markdown(res: dict, wandb_note: str) -> str:
    """seeds.md: the seed table, consensus, overlap across seeds, definitions."""
    L = [f"# Robustness across {res['n_seeds']} seeds", "",
         "Runs: " + ", ".join(f"{r['name']} (`{r['dir']}`)" for r in res["runs"]), "",
         f"Matching threshold {res['threshold']}; consensus = found in at least "
         f"{res['min_seeds']} of {res['n_seeds']} seeds. {wandb_note}", "",
         "## Decoder matching per pair of seeds", "",
         "| a | b | n_matched | frac_above_0.7 | frac_above_0.9 | median_cos |",
         "|---|---|---|---|---|---|"]
    L += [f"| {p['a']} | {p['b']} | {p['n_matched']} | {_f(p['frac_above_0.7'])} | "
          f"{_f(p['frac_above_0.9'])} | {_f(p['median_cos'])} |"
          for p in [*res["pairs_of_seeds"], res["chance"]]]
    L += ["", "Over pairs (mean +- sd [min, max]): " + "; ".join(
        f"{k} {_pm(v)}" for k, v in res["match_fraction"].items()), "",
        "## Consensus latents", "", "| seed | n_consensus | of d_sae |", "|---|---|---|"]
    L += [f"| {c['seed_run']} | {c['n_consensus']} | {c['n_latents']} |" for c in res["consensus"]]
    L += ["", f"n_consensus over seeds: {_pm(res['n_consensus'])}. The ids with their partners "
          f"in every seed are in {JSON_NAME} (`consensus`).", "",
          "## Overlap across seeds", "",
          "| pair | jaccard | overlap_coefficient | jaccard (consensus-only) | "
          "overlap_coefficient (consensus-only) |", "|---|---|---|---|---|"]
    for key, v in res["overlap"].items():
        c = res["overlap_consensus_only"][key]
        L.append(f"| {key} | {_pm(v['jaccard'])} | {_pm(v['overlap_coefficient'])} | "
                 f"{_pm(c['jaccard'])} | {_pm(c['overlap_coefficient'])} |")
    L += ["", "Cells: mean +- sd [min, max] over seeds. Consensus-only: the same overlap with "
          "both labels' associated latents restricted to each seed's consensus latents.", "",
          "## Specific latents across seeds", "",
          "| label | n_specific | recurring_share | token_driven_share |", "|---|---|---|---|"]
    tok = res["token_driven_share"]
    for lab, v in res["specific"].items():
        t = _pm(tok[lab]) if lab in tok and tok[lab]["n"] else "not measured"
        L.append(f"| {lab} | {_pm(v['n_specific'])} | {_pm(v['recurring_share'])} | {t} |")
    L += ["", f"Per seed, each specific latent's count of seeds it was found in: {JSON_NAME} "
          "(`specific.<label>.per_seed[].found_in`).", "", f"![matched cosines](figures/{FIGURE})",
          "", "## Definitions", ""]
    L += [f"- **{k}**: {v}" for k, v in res["definitions"].items()]
    return "\n".join(L) + "\n"


def histogram(cosines: dict[str, np.ndarray], names: list[str], threshold: float, path: Path):
    """Histogram of matched cosines, one outline per pair of seeds."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.linspace(-0.2, 1.0, 49)
    for key, c in cosines.items():
        i, j = (int(x) for x in key.split("-"))
        ax.hist(c, bins=bins, histtype="step", label=f"{names[i]} vs {names[j]}")
    for lv in S.MATCH_LEVELS:
        ax.axvline(lv, color="k", ls=":" if lv != threshold else "--", lw=1)
    ax.set_xlabel("matched decoder cosine (Hungarian matching)")
    ax.set_ylabel("latents")
    ax.set_title("Decoder rows matched across seeds")
    if len(cosines) <= 10:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    files.atomic_write_bytes(path, buf.getvalue())


def log_to_wandb(runs: list[Job], res: dict, figure: Path, mode: str) -> str:
    """One W&B run (job_type "seeds") in the sweep's group; returns a sentence for seeds.md."""
    wb = (runs[0].config or {}).get("wandb") or {}
    run_mode = wb.get("mode", "disabled") if mode == "auto" else mode
    if run_mode == "disabled":
        return "Not logged to W&B (wandb.mode=disabled)."
    group = (runs[0].info or {}).get("wandb_group") or wb.get("group") or runs[0].sweep.name
    try:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode=run_mode, project=wb.get("project", "sae_exp"),
                         entity=wb.get("entity"), group=group, job_type="seeds",
                         name=f"seeds-{group}", dir=str(runs[0].sweep), reinit="finish_previous",
                         settings=wandb.Settings(init_timeout=60, console="off"))
        run.summary.update(summary_numbers(res))
        run.log({"seeds/pairs": wandb.Table(
            columns=list(res["pairs_of_seeds"][0]),
            data=[list(p.values()) for p in res["pairs_of_seeds"]]),
            "figures/seed_matching": wandb.Image(str(figure))})
        run.finish()
        return f"Logged to W&B group {group!r} ({run_mode})."
    except Exception as e:  # W&B must never stop the comparison
        log.warning("W&B logging failed (%s); local files are written.", type(e).__name__)
        return f"Not logged to W&B ({type(e).__name__})."


def summary_numbers(res: dict) -> dict:
    """Flat headline numbers (W&B summary)."""
    out = {f"seeds/{k}_mean": v["mean"] for k, v in res["match_fraction"].items()}
    out["seeds/n_consensus_mean"] = res["n_consensus"]["mean"]
    for key, v in res["overlap"].items():
        out[f"seeds/jaccard_mean[{key}]"] = v["jaccard"]["mean"]
        out[f"seeds/jaccard_sd[{key}]"] = v["jaccard"]["sd"]
        out[f"seeds/jaccard_consensus_mean[{key}]"] = \
            res["overlap_consensus_only"][key]["jaccard"]["mean"]
    for lab, v in res["token_driven_share"].items():
        out[f"seeds/token_driven_share_mean[{lab}]"] = v["mean"]
    return out


def run_seeds(sweep_dir: Path, threshold: float = 0.7, min_seeds: int | None = None,
              wandb_mode: str = "auto") -> dict:
    """Analyse a seed sweep and write seeds.json, seeds.md and the figure into it."""
    sweep_dir = Path(sweep_dir)
    runs, skipped = load_runs(sweep_dir)
    res, cosines = analyse_seeds(runs, threshold, min_seeds)
    res["skipped_runs"] = [{"dir": str(j.dir), "status": j.status, "reason": j.reason}
                           for j in skipped]
    fig = sweep_dir / files.FIGURES / FIGURE
    histogram(cosines, [r["name"] for r in res["runs"]], threshold, fig)
    res["wandb"] = log_to_wandb(runs, res, fig, wandb_mode)
    files.atomic_write_text(sweep_dir / JSON_NAME, json.dumps(res, indent=1) + "\n")
    files.atomic_write_text(sweep_dir / MD_NAME, to_markdown(res, res["wandb"]))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae_exp.seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--threshold", type=float, default=0.7,
                        help="matched cosine above which a latent counts as found (default 0.7)")
    parser.add_argument("--min-seeds", type=int, default=None,
                        help="seeds a consensus latent must be found in (default: a majority)")
    parser.add_argument("--wandb", default="auto",
                        choices=["auto", "online", "offline", "disabled"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        res = run_seeds(args.sweep_dir, args.threshold, args.min_seeds, args.wandb)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(to_markdown(res, res["wandb"]))
    print(f"wrote {args.sweep_dir / JSON_NAME} and {args.sweep_dir / MD_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
