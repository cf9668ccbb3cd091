"""Write (or rewrite) a finished run's feature browser page.

    python -m sae_exp.browse <run dir> [--output PATH] [--time N]

Runs write report.html themselves; this builds it from a finished run's report.json,
features.jsonl and sae.safetensors (older runs, or a page lost or edited), and prints its path.
A missing, failed or unfinished run dir is one line on stderr and exit code 2. `--time N` opens
the page N times in headless chromium (sae_exp.report.headless) and prints each load time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sae_exp import files
from sae_exp.errors import DataError, UserError
from sae_exp.report import html


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}); {what}") from None


def _why_unfinished(run_dir: Path) -> str:
    if (run_dir / "error.json").is_file():
        err = _read_json(run_dir / "error.json", "the run failed").get("error", "")
        return f"the run failed ({err})" if err else "the run failed"
    if (run_dir / files.CHECKPOINT).is_file() or (run_dir / files.METRICS).is_file():
        return "the run has not finished (or was killed); resume it with resume=<run dir>"
    return "it is not an sae_exp run dir"


def load_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """report.json and the latent records of a finished run, or a one-line DataError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} does not exist; give a run dir (outputs/runs/...).")
    if not (run_dir / files.REPORT_JSON).is_file():
        raise DataError(f"{run_dir} has no {files.REPORT_JSON}: {_why_unfinished(run_dir)}.")
    rep = _read_json(run_dir / files.REPORT_JSON, "the run dir is damaged; rerun it.")
    path = run_dir / rep.get("features_file", files.FEATURES)
    if not path.is_file():
        raise DataError(f"{run_dir} has no {path.name}: the report is incomplete; rerun it.")
    latents = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                latents.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{path} line {n} is not JSON; the file is damaged.") from None
    return rep, latents


def browse(run_dir: Path, output: Path | None = None) -> Path:
    """Build the run's page and write it (beside the report unless `output` says otherwise)."""
    run_dir = Path(run_dir)
    rep, latents = load_run(run_dir)
    try:
        W_dec = html.load_decoder(run_dir)
    except Exception as e:
        raise DataError(f"{run_dir / files.SAE_WEIGHTS} cannot be read ({type(e).__name__}); "
                        "the run dir is damaged.") from None
    page = html.build_run_page(run_dir, rep, latents, W_dec)
    out = Path(output) if output else run_dir / html.PAGE
    files.atomic_write_text(out, page)
    return out


def time_page(page: Path, times: int) -> list[float]:
    """Seconds from request to rendered page, `times` loads in one headless chromium."""
    from sae_exp.report import headless

    why = headless.missing()
    if why:
        raise UserError(f"--time needs a headless browser: {why}.")
    driver = headless.open_driver()
    try:
        loads = [headless.load(driver, page) for _ in range(times)]
        errors = headless.console_errors(driver)
    finally:
        driver.quit()
    if errors:
        raise DataError(f"{page} logs console errors: {errors[0]['message']}")
    return loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae_exp.browse", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run dir")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the page (default: <run dir>/report.html)")
    parser.add_argument("--time", type=int, default=0, metavar="N",
                        help="open the page N times in headless chromium; print the load times")
    args = parser.parse_args(argv)
    try:
        out = browse(args.run_dir, args.output)
        print(out)
        if args.time > 0:
            loads = time_page(out, args.time)
            print(f"{out.stat().st_size / 1e6:.2f} MB; load (s): "
                  + " ".join(f"{t:.2f}" for t in loads))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
