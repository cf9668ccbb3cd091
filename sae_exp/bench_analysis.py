"""How the overlap analysis's cost grows: sentences, latents, labels and resamples.

    python -m sae_exp.bench_analysis [--json PATH] [--quick]

Times `overlap.analyze` (association, subsampled intervals, permutation null, pair statistics,
probes, per-latent records; token injection and file writing are not part of it) on random
top-k codes shaped like the default run's: 14 rows per sentence, k 30, d_in 384 raw activations
for the dense probe, and per label 12 latents that fire mostly in that label. One size is
changed at a time from the default run's (4,200 sentences, 2,048 latents, 3 labels, 200
subsamples and 200 permutations); each row is one fresh analysis, with the stage times the
analysis reports itself. The probes fit on a second core while subsamples, permutations, pairs
and latents run: `probe_beside` is their own time, `probe` the wait for them afterwards.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sae_exp import files
from sae_exp.analysis import overlap
from sae_exp.bench import hardware
from sae_exp.config import AnalysisConfig
from sae_exp.data.types import ActivationSet, Sentences

BASE = {"sentences": 4200, "d_sae": 2048, "labels": 3, "resamples": 200}
VARIANTS = [{}, {"sentences": 8400}, {"sentences": 16800}, {"d_sae": 8192}, {"d_sae": 16384},
            {"labels": 6}, {"resamples": 400}, {"resamples": 800}]
ROWS_PER_SENTENCE, K, D_IN, PER_LABEL = 14, 30, 384, 12


def random_codes(sentences: int, d_sae: int, labels: int, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, ActivationSet]:
    """(top_indices, top_acts, data): each row draws K distinct latents, a quarter of them from
    its label's own PER_LABEL latents, the rest uniformly."""
    rng = np.random.default_rng(seed)
    label_of = rng.integers(0, labels, sentences)
    sent_idx = np.repeat(np.arange(sentences), ROWS_PER_SENTENCE)
    n = len(sent_idx)
    idx = np.empty((n, K), dtype=np.int64)
    own = K // 4
    base = label_of[sent_idx] * PER_LABEL
    idx[:, :own] = base[:, None] + rng.integers(0, PER_LABEL, (n, own))
    idx[:, own:] = rng.integers(labels * PER_LABEL, d_sae, (n, K - own))
    acts = rng.uniform(0.05, 1.5, (n, K)).astype(np.float32)
    names = np.array([f"label{i}" for i in range(labels - 1)] + ["control"])[label_of]
    sents = Sentences(labels=names, subsets=np.array([""] * sentences, dtype=object),
                      splits=np.where(rng.random(sentences) < 0.25, "test", "train"),
                      texts=None, ids=np.arange(sentences, dtype=np.int64))
    data = ActivationSet(acts=rng.standard_normal((n, D_IN), dtype=np.float32),
                         sentence_index=sent_idx, sentences=sents)
    return idx, acts, data


def measure(sentences: int, d_sae: int, labels: int, resamples: int) -> dict:
    idx, acts, data = random_codes(sentences, d_sae, labels)
    cfg = AnalysisConfig(bootstrap=resamples, permutations=resamples, token_injection=False)
    t0 = time.perf_counter()
    ov = overlap.analyze(idx, acts, data, d_sae, cfg)
    return {"sentences": sentences, "rows": len(idx), "d_sae": d_sae, "labels": labels,
            "resamples": resamples, "seconds": round(time.perf_counter() - t0, 2),
            "stages": {k: round(v, 2) for k, v in ov.timings.items()}}


def format_table(rows: list[dict]) -> str:
    # probe_beside: the probes' own time, on the other core while subsamples..latents run;
    # probe: the wait for them after those (total = the rest, not their sum)
    stages = ["association", "subsamples", "permutations", "pairs", "latents", "probe",
              "probe_beside"]
    head = (f"{'sentences':>9} {'d_sae':>6} {'labels':>6} {'resamples':>9} | {'total s':>7} | "
            + " ".join(f"{s:>12}" for s in stages))
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['sentences']:>9} {r['d_sae']:>6} {r['labels']:>6} "
                     f"{r['resamples']:>9} | {r['seconds']:>7.2f} | "
                     + " ".join(f"{r['stages'].get(s, 0.0):>12.2f}" for s in stages))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    args = ap.parse_args(argv)
    base = {"sentences": 120, "d_sae": 64, "labels": 3, "resamples": 10} if args.quick else BASE
    variants = VARIANTS[:2] if args.quick else VARIANTS
    out = {"hardware": hardware(torch.device("cpu")), "rows": []}
    print(json.dumps(out["hardware"]), flush=True)
    for change in variants:
        size = {**base, **{k: (v if not args.quick else base[k] * 2) for k, v in change.items()}}
        out["rows"].append(measure(**size))
        print(format_table(out["rows"][-1:]).splitlines()[-1], flush=True)
    print(format_table(out["rows"]))
    if args.json:
        files.atomic_write_json(Path(args.json), out)
    return out


if __name__ == "__main__":
    main()
