"""`python -m sae_exp.bench --peers`: our SAE beside SAELens and EleutherAI sparsify.

Speed: one training step each, in this process, on the same batch and threads, in interleaved
rounds (after one warm-up step each): floor (`x @ W_enc` alone), ours (the step `bench` times),
sparsify (forward with its fused encoder, FVU loss, backward, parallel-gradient removal, Adam,
decoder renorm: its trainer's step), SAELens TopK (`training_forward_pass`, backward, grad clip
1.0, Adam: its trainer's step) with its defaults (dense activations) and with
`use_sparse_activations=True` (`saelens_sparse`, which needs rescale_acts_by_decoder_norm=False
here: with the rescale its sparse backward fails on CPU). All use the same
Adam (`bench.make_adam`). Reported: min / median / max seconds, the median of per-round ratios
to the floor, and how many times faster ours is (median of per-round ratios).

Quality: every implementation trains for the same steps on the same batches, then held-out FVU
(sum ||x - x_hat||^2 / sum ||x - mean||^2), dead fraction (latents that never fire on the held-out
rows) and, on the ground-truth set, recovery (share of true features whose best decoder row has
cosine > 0.9). Ours trains with the shipped defaults (our Trainer: its default schedule, AuxK, grad
clip); the peers with constant lr and their own loss, init and decoder handling (sparsify starts
b_dec at the first batch's mean, as its trainer does; SAELens counts dead latents over its
default 1000-step window). Data: a ground-truth set built here (a known unit dictionary, sparse
non-negative codes, small noise) and the default MiniLM activations (`data=logic_minilm`,
sentence-level train/test split), or `--peers-quick` small sizes for tests.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from sae_exp.bench import _our_step, make_adam

PEERS = {"sparsify": ("sparsify", "eai-sparsify"), "saelens": ("sae_lens", "sae-lens")}
INSTALL_HINT = ("SAELens and sparsify are not installed: pip install -e '.[peers]' "
                "(sae-lens, eai-sparsify) to time and train them beside ours.")
SIZES = {  # speed case; ground-truth set; real-activation training
    "default": {"speed": dict(d_in=768, d_sae=16384, k=32, batch=4096), "rounds": 3,
                "gt": dict(d_in=128, n_feat=512, l0=8, d_sae=1024, k=8, batch=1024, steps=400,
                           n_test=4096),
                "real": dict(d_sae=2048, k=32, batch=4096, steps=100)},
    "quick": {"speed": dict(d_in=32, d_sae=128, k=4, batch=64), "rounds": 2,
              "gt": dict(d_in=16, n_feat=32, l0=2, d_sae=64, k=2, batch=128, steps=30,
                         n_test=256),
              "real": None},
}
LR = 2e-3


def installed() -> dict[str, str]:
    """{peer: version} of the peers importable here."""
    out = {}
    for name, (module, dist) in PEERS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = importlib.metadata.version(dist)
    return out


# --- one implementation: a training step and an encoder ------------------------------------
@dataclass
class Impl:
    name: str
    step: object  # callable(x) -> None: one training step on the batch x
    encode: object  # callable(x) -> (x_hat [B, d_in], active [B, d_sae] bool)
    W_dec: object  # callable() -> [d_sae, d_in] decoder (for recovery)


def _ours(d_in: int, d_sae: int, k: int, steps: int, bench_step: bool) -> Impl:
    from sae_exp.config import OptimizerConfig, SparsityConfig, TrainerConfig
    from sae_exp.model.sae import SAE
    from sae_exp.train.trainer import Trainer

    sae = SAE(d_in, d_sae, kind="topk", k=k)
    if bench_step:  # exactly what `python -m sae_exp.bench` times
        opt, _ = make_adam(sae.parameters(), lr=LR)
        step = lambda x: _our_step(sae, opt, x, torch.autocast("cpu", enabled=False))  # noqa: E731
    else:  # the shipped Trainer and its defaults
        tr = Trainer(sae, OptimizerConfig(lr=LR), SparsityConfig(top_k=k), TrainerConfig(),
                     torch.device("cpu"))

        def step(x: torch.Tensor) -> None:
            if tr.state.step == 0:
                tr.init_b_dec(x)
            tr._train_step(x, 0, steps)
            tr.state.step += 1

    def encode(x):
        out = sae(x)
        return out.x_hat, _dense_mask(out.enc.top_indices, out.enc.top_acts, d_sae)

    return Impl("ours", step, encode, lambda: sae.W_dec)


def _sparsify(d_in: int, d_sae: int, k: int) -> Impl:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Triton not installed" on import
        from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k))
    opt, _ = make_adam(sae.parameters(), lr=LR)
    first = [True]

    def step(x: torch.Tensor) -> None:
        if first[0]:  # its trainer: b_dec starts at the first batch's mean
            sae.b_dec.data = x.mean(0)
            first[0] = False
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()

    def encode(x):
        enc = sae.encode(x)
        return sae.decode(enc.top_acts, enc.top_indices), _dense_mask(enc.top_indices,
                                                                      enc.top_acts, d_sae)

    return Impl("sparsify", step, encode, lambda: sae.W_dec)


def _saelens(d_in: int, d_sae: int, k: int, sparse: bool) -> Impl:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    # sparse activations with its default rescale_acts_by_decoder_norm=True fail in backward on
    # CPU (torch 2.13: no sparse `view`), so the sparse variant trains without the rescale
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k,
                                                use_sparse_activations=sparse,
                                                rescale_acts_by_decoder_norm=not sparse))
    opt, _ = make_adam(sae.parameters(), lr=LR)
    since_fired, window, n = torch.zeros(d_sae), 1000, [0]  # its trainer's dead-latent window

    def step(x: torch.Tensor) -> None:
        sae.train()
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients={}, dead_neuron_mask=since_fired > window,
            n_training_steps=n[0], is_logging_step=False))
        with torch.no_grad():
            fired = out.feature_acts.bool().float().sum(-2).bool()
            fired = fired.to_dense() if fired.is_sparse else fired
            since_fired.add_(1)[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        n[0] += 1

    def encode(x):
        feats = sae.encode(x)
        feats = feats.to_dense() if feats.is_sparse else feats
        return sae.decode(feats), feats > 0

    return Impl("saelens_sparse" if sparse else "saelens", step, encode, lambda: sae.W_dec)


def _dense_mask(idx: torch.Tensor, acts: torch.Tensor, d_sae: int) -> torch.Tensor:
    return torch.zeros(idx.shape[0], d_sae, dtype=torch.bool).scatter_(1, idx, acts > 0)


def _builders(peers: dict, d_in: int, d_sae: int, k: int, steps: int, bench_step: bool,
              saelens_sparse: bool) -> list:
    """Constructors of the implementations to compare, each seeded alike."""
    out = [lambda: _ours(d_in, d_sae, k, steps, bench_step)]
    if "sparsify" in peers:
        out.append(lambda: _sparsify(d_in, d_sae, k))
    if "saelens" in peers:
        out.append(lambda: _saelens(d_in, d_sae, k, sparse=False))
        if saelens_sparse:
            out.append(lambda: _saelens(d_in, d_sae, k, sparse=True))
    return out


# --- speed ---------------------------------------------------------------------------------
def speed(peers: dict, case: dict, rounds: int, seed: int = 0) -> dict:
    """Interleaved rounds of one training step per implementation on one batch (see module doc)."""
    torch.manual_seed(seed)
    x = torch.randn(case["batch"], case["d_in"])
    W_enc = torch.randn(case["d_in"], case["d_sae"]) * case["d_in"] ** -0.5
    impls = {"floor": lambda: x @ W_enc}
    for build in _builders(peers, case["d_in"], case["d_sae"], case["k"], 1, True, True):
        torch.manual_seed(seed)
        impl = build()
        impls[impl.name] = lambda s=impl.step: s(x)
    times: dict[str, list[float]] = {name: [] for name in impls}
    for r in range(rounds + 1):  # round 0: warm-up, not recorded
        for name, fn in impls.items():
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return _speed_summary(times)


def _speed_summary(times: dict[str, list[float]]) -> dict:
    def paired(a: str, b: str) -> float:
        return statistics.median(p / q for p, q in zip(times[a], times[b], strict=True))

    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "x_floor": paired(name, "floor"),
                   "ours_faster": None if name in ("floor", "ours") else paired(name, "ours"),
                   "times": t}
            for name, t in times.items()}


# --- quality -------------------------------------------------------------------------------
def ground_truth(d_in: int, n_feat: int, l0: int, n_rows: int, seed: int) -> tuple:
    """(rows [n, d_in], dictionary [n_feat, d_in]): each row sums `l0` unit features drawn with
    Zipf-like frequencies, magnitudes uniform in [0.5, 1.5], plus noise of std 0.01."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_feat, d_in, generator=torch.Generator().manual_seed(1000))
    D = D / D.norm(dim=1, keepdim=True)
    p = 1.0 / torch.arange(1, n_feat + 1) ** 0.5
    idx = torch.multinomial(p.expand(n_rows, n_feat), l0, replacement=False, generator=g)
    mag = 0.5 + torch.rand(n_rows, l0, generator=g)
    x = torch.nn.functional.embedding_bag(idx, D, per_sample_weights=mag, mode="sum")
    return x + 0.01 * torch.randn(n_rows, d_in, generator=g), D


@torch.no_grad()
def evaluate(impl: Impl, X: torch.Tensor, truth: torch.Tensor | None, chunk: int = 2048) -> dict:
    err = 0.0
    fired = None
    for s in range(0, len(X), chunk):
        x_hat, active = impl.encode(X[s:s + chunk])
        err += float((X[s:s + chunk] - x_hat).pow(2).sum())
        fired = active.any(0) if fired is None else fired | active.any(0)
    out = {"fvu": err / float((X - X.mean(0)).pow(2).sum()),
           "dead": 1.0 - float(fired.float().mean())}
    if truth is not None:
        from sae_exp.analysis.recovery import RECOVERED_COS, cosine_matrix

        cos = cosine_matrix(impl.W_dec().detach().float().numpy(), truth.numpy()).max(0)
        out["recovery"] = float((cos > RECOVERED_COS).mean())
    return out


def train_all(peers: dict, X: torch.Tensor, X_test: torch.Tensor, d_sae: int, k: int,
              batch: int, steps: int, truth: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Train each implementation for `steps` steps on the same batches; held-out metrics."""
    g = torch.Generator().manual_seed(seed)
    per_epoch = max(len(X) // batch, 1)
    perms = [torch.randperm(len(X), generator=g) for _ in range(-(-steps // per_epoch))]
    order = torch.cat(perms)
    results = {}
    for build in _builders(peers, X.shape[1], d_sae, k, steps, False, False):
        torch.manual_seed(seed)
        impl = build()
        t0 = time.perf_counter()
        for i in range(steps):
            impl.step(X[order[i * batch:(i + 1) * batch]])
        results[impl.name] = {**evaluate(impl, X_test, truth),
                              "train_s": time.perf_counter() - t0}
    return results


def _minilm() -> tuple[torch.Tensor, torch.Tensor]:
    """The default run's activations (data=logic_minilm, cached), split by sentence."""
    from sae_exp.config import ModelDataConfig
    from sae_exp.data.sources import load_activations

    data = load_activations(ModelDataConfig(), seed=0)
    acts = torch.from_numpy(np.array(data.acts, dtype=np.float32))  # a copy: the cache is read-only
    train, test = (torch.as_tensor(data.row_mask(s)) for s in ("train", "test"))
    return acts[train], acts[test]


# --- the command ---------------------------------------------------------------------------
def run_peers(quick: bool = False, rounds: int | None = None, real_steps: int | None = None,
              real: bool = True) -> dict:
    """Speed and quality tables (printed) and their numbers (returned); a one-line hint and
    {"status": "missing"} when neither library is installed."""
    peers = installed()
    if not peers:
        print(INSTALL_HINT)
        return {"status": "missing", "hint": INSTALL_HINT}
    size = SIZES["quick" if quick else "default"]
    missing = [n for n in PEERS if n not in peers]
    if missing:
        print(f"not installed: {', '.join(missing)} (pip install -e '.[peers]')")
    out = {"status": "ok", "versions": {**peers, "torch": torch.__version__},
           "threads": torch.get_num_threads(), "sizes": size}
    print(f"peers {peers}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
          flush=True)
    out["speed"] = speed(peers, size["speed"], rounds or size["rounds"])
    print(format_speed(out["speed"], size["speed"]), flush=True)
    gt = size["gt"]
    X, truth = ground_truth(gt["d_in"], gt["n_feat"], gt["l0"], gt["batch"] * 8, seed=1)
    X_test, _ = ground_truth(gt["d_in"], gt["n_feat"], gt["l0"], gt["n_test"], seed=2)
    out["ground_truth"] = train_all(peers, X, X_test, gt["d_sae"], gt["k"], gt["batch"],
                                    gt["steps"], truth)
    print(format_quality("ground truth", out["ground_truth"], gt), flush=True)
    rc = size["real"]
    if rc is not None and real:
        rc = {**rc, "steps": real_steps or rc["steps"]}
        X, X_test = _minilm()
        out["minilm"] = train_all(peers, X, X_test, rc["d_sae"], rc["k"], rc["batch"],
                                  rc["steps"])
        print(format_quality(f"MiniLM layer 3 ({len(X)} train / {len(X_test)} test rows)",
                             out["minilm"], rc), flush=True)
    return out


def format_speed(res: dict, case: dict) -> str:
    lines = [f"\none training step, d_in {case['d_in']}, d_sae {case['d_sae']}, k {case['k']}, "
             f"batch {case['batch']} ({len(res['floor']['times'])} interleaved rounds)",
             f"{'impl':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'x floor':>9}"
             f"{'ours faster':>13}"]
    for name, r in res.items():
        faster = f"{r['ours_faster']:.2f}x" if r["ours_faster"] else "-"
        lines.append(f"{name:<16}{r['median_s']:>10.3f}{r['min_s']:>9.3f}{r['max_s']:>9.3f}"
                     f"{r['x_floor']:>9.2f}{faster:>13}")
    return "\n".join(lines)


def format_quality(title: str, res: dict, case: dict) -> str:
    lines = [f"\n{title}: d_sae {case['d_sae']}, k {case['k']}, batch {case['batch']}, "
             f"{case['steps']} steps, lr {LR}",
             f"{'impl':<16}{'held-out FVU':>13}{'dead':>8}{'recovery':>10}{'train s':>9}"]
    for name, r in res.items():
        rec = f"{r['recovery']:.3f}" if "recovery" in r else "-"
        lines.append(f"{name:<16}{r['fvu']:>13.4f}{r['dead']:>8.3f}{rec:>10}"
                     f"{r['train_s']:>9.1f}")
    return "\n".join(lines)
