"""Write a run's SAE in the layout SAELens or EleutherAI sparsify loads.

    python -m sae_exp.export <run dir> --to saelens|sparsify <out dir>

SAELens:  SAE.load_from_disk("<out dir>")       sparsify:  SparseCoder.load_from_disk("<out dir>")

The run's input normalisation (data.normalize mean_center / scale_to_sqrt_d) is folded into the
weights, so the exported SAE takes the raw activations. The run dir is not changed, and an
existing non-empty <out dir> is never written into.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sae_exp import files
from sae_exp.data.normalize import Normalizer
from sae_exp.errors import DataError, UserError
from sae_exp.model.interop import FORMATS, export_sae


def run_normalizer(run_dir: Path, sae_cfg: dict) -> Normalizer:
    """The normalisation a run fitted on its training rows (cfg.json + normalization file)."""
    spec = sae_cfg.get("normalize") or {"kind": "none"}
    kind, mean = spec.get("kind", "none"), None
    if kind == "mean_center":
        from safetensors.torch import load_file

        path = Path(run_dir) / files.NORMALIZATION
        if not path.is_file():
            raise DataError(f"{path} is missing: the run used data.normalize=mean_center and its "
                            "mean is needed to export; the run dir is incomplete.")
        mean = load_file(str(path))["mean"].numpy()
    return Normalizer(kind, mean=mean, scale=float(spec.get("scale", 1.0)))


def export_run(run_dir: Path, to: str, out_dir: Path) -> list[Path]:
    """Export the SAE of `run_dir` into a new (or empty) `out_dir`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"{out_dir} exists and is not an empty directory; choose a new output "
                        "directory (nothing was changed).")
    sae, cfg = files.load_sae(run_dir)
    meta = {"sae_exp_run": str(Path(run_dir).resolve()),
            "sae_exp_trained_steps": cfg.get("trained_steps"), "sae_exp_data": cfg.get("data")}
    return export_sae(sae, run_normalizer(run_dir, cfg), out_dir, to, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae_exp.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        written = export_run(args.run_dir, args.to, args.out_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    loader = ("from sae_lens import SAE; SAE.load_from_disk" if args.to == "saelens"
              else "from sparsify import SparseCoder; SparseCoder.load_from_disk")
    print(f"wrote {', '.join(p.name for p in written)} to {args.out_dir}; load with: "
          f"{loader}({str(args.out_dir)!r})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
