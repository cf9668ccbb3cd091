"""The ground-truth benchmark: `python -m sae_exp.synth [--out DIR] [gt.key=v ...] [overrides]`.

Generates activations from a known dictionary (`sae_exp.data.ground_truth`, seeded by
`gt.seed`), trains an SAE on them with the normal pipeline (`data=file`, so the run dir is an
ordinary run with a recovery section in report.json / report.md) and prints the recovery table.

Benchmark scale (`BENCH_OVERRIDES`, each overridable): d_sae 1024, batch 512, 35 epochs of the
14,400 training rows (~1,000 steps), `sparsity.top_k` = the data's true L0 rounded, W&B off,
cheaper intervals. Every other training setting is the project default, so the benchmark
measures the defaults; `experiment=seed_notebook trainer.batch_size=512 trainer.epochs=35`
measures the notebook's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sae_exp import files
from sae_exp.analysis import recovery
from sae_exp.data import ground_truth
from sae_exp.errors import ConfigError, UserError

log = logging.getLogger("sae_exp")

BENCH_OVERRIDES = [
    "model.hidden_dim=1024", "trainer.batch_size=512", "trainer.epochs=35",
    "wandb.mode=disabled", "analysis.bootstrap=50", "analysis.permutations=50", "name=synth",
]


def parse_spec(gt_overrides: list[str]) -> ground_truth.GroundTruthSpec:
    """`gt.key=value` overrides -> a checked GroundTruthSpec (unknown keys and types fail)."""
    known = set(ground_truth.GroundTruthSpec.__dataclass_fields__)
    for o in gt_overrides:
        key = o.split("=", 1)[0]
        if key.removeprefix("gt.") not in known:
            raise ConfigError(f"{key} is not a ground-truth key: use gt.<one of "
                              f"{', '.join(sorted(known))}>.")
    try:
        base = OmegaConf.structured(ground_truth.GroundTruthSpec)
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(
            [o.removeprefix("gt.") for o in gt_overrides]))
        spec = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad gt.* override: {str(e).splitlines()[0]}") from None
    bad = [k for k in ("d_in", "n_sentences", "tokens_per_sentence") if getattr(spec, k) < 1]
    if bad or not 0 < spec.freq_min <= spec.freq_max < 1 or len(spec.labels) < 2:
        raise ConfigError("gt.* values are invalid: need d_in, n_sentences, tokens_per_sentence "
                          ">= 1, 0 < freq_min <= freq_max < 1 and at least two labels.")
    return spec


def compose(overrides: list[str]):
    """The run's typed config from Hydra's conf/ with `overrides` (later ones win)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sae_exp import run

    with initialize_config_dir(config_dir=str(run.CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return run._typed(cfg), OmegaConf.to_container(cfg, resolve=False)


def benchmark(spec: ground_truth.GroundTruthSpec, overrides: list[str], out: Path) -> dict:
    """Generate the data, train and analyse; returns the report (with its `recovery`)."""
    from sae_exp import run

    data_path = ground_truth.write(spec, out / "data" / f"gt_seed{spec.seed}.npz")
    truth = ground_truth.load_truth(data_path)
    k = max(1, round(truth["true_l0"]))
    log.info("ground truth: %d features in d %d, true L0 %.2f -> %s", len(truth["kind"]),
             spec.d_in, truth["true_l0"], data_path)
    cfg, as_dict = compose([*BENCH_OVERRIDES, f"sparsity.top_k={k}", *overrides, "data=file",
                            f"data.path={data_path}"])
    run_dir = out / "run"
    rep = run.run(cfg, run_dir, as_dict)
    files.atomic_write_json(out / "gt_spec.json", asdict(spec))
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sae_exp.synth", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output dir (default outputs/synth/<time>)")
    ap.add_argument("--json", help="also write the recovery figures to this file")
    ap.add_argument("overrides", nargs="*", help="gt.key=value (data) and Hydra overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%X")
    gt = [o for o in args.overrides if o.startswith("gt.")]
    rest = [o for o in args.overrides if not o.startswith("gt.")]
    # microseconds and pid, like run dirs: two benchmarks started in one second get two dirs
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    out = Path(args.out or f"outputs/synth/{stamp}_{os.getpid()}")
    try:
        rep = benchmark(parse_spec(gt), rest, out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    rec = rep["recovery"]
    print(f"\nground-truth recovery ({' '.join(args.overrides) or 'defaults'}); run: {out}/run\n")
    print(recovery.table(rec))
    if args.json:
        files.atomic_write_json(Path(args.json), {k: v for k, v in rec.items()
                                                   if k != "best_cosine"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
