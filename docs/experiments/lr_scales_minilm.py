"""Held-out FVU on the default MiniLM activations at the issue-12 matched settings (d_sae 2048,
k 32, lr 2e-3, batch 4096, 260 steps, the bench's batches and sentence-level split), for
optimizer settings given as JSON objects of OptimizerConfig fields:

    python docs/experiments/lr_scales_minilm.py '{}' '{"lr_scale_W_dec": 1, "lr_scale_W_enc": 1}'

Each setting prints one line: the setting, held-out fvu, dead share, seconds. It trains with
`Trainer._train_step` exactly as `python -m sae_exp.bench --peers` trains "ours".
"""

import json
import sys
import time

import torch

from sae_exp.bench_peers import _dense_mask, _minilm, evaluate
from sae_exp.config import OptimizerConfig, SparsityConfig, TrainerConfig
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import Trainer

D_SAE, K, BATCH, STEPS, SEED = 2048, 32, 4096, 260, 0


def run(opt: dict, X: torch.Tensor, X_test: torch.Tensor) -> dict:
    g = torch.Generator().manual_seed(SEED)
    per_epoch = max(len(X) // BATCH, 1)
    order = torch.cat([torch.randperm(len(X), generator=g) for _ in range(-(-STEPS // per_epoch))])
    torch.manual_seed(SEED)
    sae = SAE(X.shape[1], D_SAE, kind="topk", k=K)
    tr = Trainer(sae, OptimizerConfig(**{"lr": 2e-3, **opt}), SparsityConfig(top_k=K),
                 TrainerConfig(batch_size=BATCH), torch.device("cpu"))
    t0 = time.perf_counter()
    for i in range(STEPS):
        x = X[order[i * BATCH:(i + 1) * BATCH]]
        if i == 0:
            tr.init_b_dec(x)
        tr._train_step(x, 0, STEPS)
        tr.state.step += 1

    class Impl:
        @staticmethod
        def encode(x):
            out = sae(x)
            return out.x_hat, _dense_mask(out.enc.top_indices, out.enc.top_acts, D_SAE)

    with torch.no_grad():
        res = evaluate(Impl, X_test, None)
    return {"fvu": round(res["fvu"], 4), "dead": round(res["dead"], 4),
            "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    X, X_test = _minilm()
    for spec in sys.argv[1:] or ["{}"]:
        print(spec, json.dumps(run(json.loads(spec), X, X_test)), flush=True)
