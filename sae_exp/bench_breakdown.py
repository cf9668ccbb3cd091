"""Where a sparse training step's time goes: each piece of the trainer's step timed alone.

    python -m sae_exp.bench_breakdown [--d-in 768] [--d-sae 16384] [--k 32] [--batch 4096]
                                      [--rounds 8] [--threads N] [--aux-k N] [--json PATH]

The step is split exactly as `Trainer._train_step` runs it (AuxK included):
  floor        x @ W_enc, the encoder matmul every step pays (the bench's floor)
  select       pre-activations (the floor's matmul plus bias) and top-k
  gather_acts  the selected pre-activations as a differentiable function of W_enc, b_enc, b_dec
  decode       embedding_bag over the selected decoder rows
  aux          AuxK: top `aux_k` dead latents of the residual and their decode
  backward     loss backward through the sparse ops (weight gradients as sparse products)
  project      remove the part of W_dec's gradient parallel to its rows
  clip         grad-norm clipping
  adam         the optimiser step (fused where supported)
  renorm       unit-norm W_dec rows
Rounds repeat the whole sequence; every piece reports min / median / max over rounds and its
median share of the summed step, so the next person sees what to attack. Pieces share one
forward pass, so the sum is the step without the timing overhead of separate calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sae_exp.bench import hardware, make_adam
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import dead_topk

PIECES = ("floor", "select", "gather_acts", "decode", "aux", "backward", "project", "clip",
          "adam", "renorm")


def _select(sae: SAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pre = sae.pre_activations(x)
    return pre, sae.select(pre)[0]


def _aux_loss(sae: SAE, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor,
              dead: torch.Tensor, aux_k: int) -> torch.Tensor:
    """AuxK as the trainer computes it: the residual from the top aux_k dead latents."""
    resid = (x - x_hat).detach()
    idx = dead_topk(pre, dead, min(aux_k, int(dead.sum())))
    aux_acts = sae.gather_acts(x, pre, idx)
    return (sae.decode(aux_acts, idx, bias=False) - resid).pow(2).mean()


def breakdown(d_in: int, d_sae: int, k: int, batch: int, rounds: int = 8, aux_k: int | None = None,
              seed: int = 0) -> dict:
    """Per piece: times [rounds] (seconds), min, median, max and median share of the step."""
    torch.manual_seed(seed)
    aux_k = aux_k or max(d_in // 2, 1)  # the trainer's default sparsity.aux_k
    x = torch.randn(batch, d_in)
    sae = SAE(d_in, d_sae, kind="topk", k=k, decoder_impl="sparse")
    opt, adam = make_adam(sae.parameters(), lr=5e-4)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[: d_sae // 10] = True  # a tenth of the latents dead, so AuxK has work to do
    times: dict[str, list[float]] = {p: [] for p in PIECES}

    def timed(name: str, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        times[name].append(time.perf_counter() - t)
        return out

    for r in range(rounds + 1):  # round 0 warms up and is dropped
        timed("floor", lambda: x @ sae.W_enc.detach())
        pre, idx = timed("select", lambda: _select(sae, x))
        acts = timed("gather_acts", sae.gather_acts, x, pre, idx)
        x_hat = timed("decode", sae.decode, acts, idx)
        mse = (x_hat - x).pow(2).mean()
        aux = timed("aux", _aux_loss, sae, x, x_hat, pre, dead, aux_k)
        loss = mse + 0.1 * acts.abs().sum() / (batch * d_sae) + aux / 32
        opt.zero_grad(set_to_none=True)
        timed("backward", loss.backward)
        timed("project", sae.remove_parallel_grad)
        timed("clip", lambda: torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0))
        timed("adam", opt.step)
        timed("renorm", sae.normalize_decoder)
        if r == 0:
            for p in PIECES:
                times[p].clear()
    step = [sum(times[p][i] for p in PIECES if p != "floor") for i in range(rounds)]
    out = {p: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v),
               "share": statistics.median(v[i] / step[i] for i in range(rounds)),
               "times": v} for p, v in times.items()}
    floor = times["floor"]
    return {
        "case": {"d_in": d_in, "d_sae": d_sae, "k": k, "batch": batch, "aux_k": aux_k,
                 "rounds": rounds, "adam": adam},
        "pieces": out,
        "step_s": {"median": statistics.median(step), "min": min(step), "max": max(step)},
        "step_to_floor": statistics.median(step[i] / floor[i] for i in range(rounds)),
    }


def format_breakdown(res: dict) -> str:
    lines = [f"{'piece':<12} {'median s':>9} {'min s':>8} {'max s':>8} {'share':>6}"]
    for name, p in res["pieces"].items():
        share = "-" if name == "floor" else f"{p['share']:.0%}"
        lines.append(f"{name:<12} {p['median_s']:>9.4f} {p['min_s']:>8.4f} {p['max_s']:>8.4f} "
                     f"{share:>6}")
    s = res["step_s"]
    lines.append(f"{'step (sum)':<12} {s['median']:>9.4f} {s['min']:>8.4f} {s['max']:>8.4f}")
    lines.append(f"step / floor (median of per-round ratios): {res['step_to_floor']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m sae_exp.bench_breakdown", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--d-sae", type=int, default=16384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--aux-k", type=int, help="default d_in // 2, as the trainer")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    res = breakdown(a.d_in, a.d_sae, a.k, a.batch, a.rounds, a.aux_k)
    res["hardware"] = hardware(torch.device("cpu"))
    print(json.dumps(res["hardware"]))
    print(format_breakdown(res))
    if a.json:
        from sae_exp.files import atomic_write_text

        atomic_write_text(a.json, json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
