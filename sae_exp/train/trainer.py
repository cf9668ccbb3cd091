"""Training loop: minibatches, Adam, LR warm-up + cosine, grad clipping, L1 warm-up, AuxK.

Loss (per step, B rows):
    mse  = mean over B x d_in of (x_hat - x)^2                    (the notebook's `mse_loss`)
    l1   = sum |top_acts| / (B d_sae)                 (the notebook's `code.abs().mean()`)
    aux  = mean (e_hat - e)^2, e = x - x_hat (detached), e_hat = decode of the top `aux_k` dead
           latents' activations (Gao et al. 2024, AuxK; revives dead latents)
    loss = mse + sparsity_coeff * min(1, epoch / l1_warmup_epochs) * l1 + aux_coeff * aux
A latent is dead for AuxK after `dead_after_rows` training rows without firing; the log's
`auxk_dead_fraction` is the share of such latents (the report's `dead_fraction` is another
measure: latents active on no row). The log's `batch_fvu` is the FVU of the current training
minibatch, not the held-out FVU of the report.
The learning rate warms up linearly for `warmup_steps`, then is constant, follows a cosine to
`lr * min_lr_ratio` at the last step (with no warm-up this is the notebook's CosineAnnealingLR),
or (`linear_decay`, the default) stays constant and decays linearly to `lr * min_lr_ratio` over
the last `decay_fraction` of the steps (measured on the ground-truth benchmark: README).
W_dec and W_enc train at that rate times `lr_scale_W_dec` / `lr_scale_W_enc` times
sqrt(batch / lr_scale_batch) (`matrix_lr_scales`); the biases at the rate itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from sae_exp.config import OptimizerConfig, SparsityConfig, TrainerConfig
from sae_exp.data.stream import RowStream
from sae_exp.errors import TrainingError
from sae_exp.model.sae import SAE

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C / SIGTERM) after saving a checkpoint."""


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    step: int = 0
    rows_since_fired: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float,
              decay_fraction: float = 0.2) -> float:
    """Multiplier of the base LR at `step` (0-based): linear warm-up, then `constant`, `cosine`
    to `min_ratio`, or `linear_decay` (constant, then linear to `min_ratio` over the last
    `decay_fraction` of all steps)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "linear_decay":
        start = total - max(int(round(decay_fraction * total)), 1)
        if step < start:
            return 1.0
        progress = min((step - start + 1) / max(total - start, 1), 1.0)
        return 1.0 - (1.0 - min_ratio) * progress
    span = max(total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the rows of one batch."""
    denom = (x - x.mean(0)).pow(2).sum()
    return float((x - x_hat).pow(2).sum() / denom.clamp_min(1e-12))


def dead_topk(pre: torch.Tensor, dead: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] ids of the k largest pre-activations among the dead latents (k <= #dead).

    Only the dead columns are gathered and searched: with 1% of 16k latents dead this is a
    top-k over 164 columns instead of a masked copy of, and a top-k over, all of them."""
    dead_ids = torch.nonzero(dead).squeeze(1)
    local = pre.index_select(1, dead_ids).topk(k, dim=1, sorted=False).indices
    return dead_ids[local]


def make_adam(params: list, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Fused Adam where this torch build has it (one kernel per tensor: ~10 ms instead of ~75 ms
    per step for two 768 x 16384 matrices on 2 CPU cores), else torch's default Adam."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def matrix_lr_scales(opt_cfg: OptimizerConfig, batch_size: int | None) -> tuple[float, float]:
    """(W_enc, W_dec) learning-rate factors of optimizer.lr for this batch size.

    Adam moves every coordinate by about lr whatever the parameter's scale, so a unit-norm
    decoder row (coordinates ~ 1/sqrt(d_in)) turns slowly at the lr that suits the biases.
    At batch 4096, 10x for W_dec and 3x for W_enc brought held-out FVU on the default MiniLM
    activations at 260 steps from 0.118 to 0.095; on the ground-truth benchmark (batch 512)
    the same factors left a third of the latents dead, the factors times sqrt(512 / 4096)
    (Adam's square-root batch scaling rule) recovered more features with fewer dead latents
    (README: Training defaults)."""
    rule = 1.0
    if opt_cfg.lr_scale_batch is not None and batch_size is not None:
        rule = math.sqrt(batch_size / opt_cfg.lr_scale_batch)
    return opt_cfg.lr_scale_W_enc * rule, opt_cfg.lr_scale_W_dec * rule


def param_groups(sae: SAE) -> list[dict]:
    """One Adam group per parameter, in `sae.parameters()` order, so a checkpoint's flat
    parameter ids keep their meaning: W_enc, b_enc, b_dec, W_dec (absent when tied)."""
    return [{"params": [p]} for p in sae.parameters()]


class Trainer:
    """Trains an SAE on rows streamed from an activation array (possibly memory-mapped)."""

    def __init__(
        self,
        sae: SAE,
        opt_cfg: OptimizerConfig,
        sp_cfg: SparsityConfig,
        tr_cfg: TrainerConfig,
        device: torch.device,
        normalize_decoder: bool = True,
    ) -> None:
        self.sae, self.opt_cfg, self.sp_cfg, self.tr_cfg = sae, opt_cfg, sp_cfg, tr_cfg
        self.device, self.normalize_decoder = device, normalize_decoder
        self.optimizer = make_adam(param_groups(sae), opt_cfg.lr, tuple(opt_cfg.betas))
        self.set_batch_size(tr_cfg.batch_size)
        self.state = TrainState(rows_since_fired=torch.zeros(sae.d_sae, dtype=torch.long))
        self.stop_requested = False
        self.on_log: Callable[[dict], None] | None = None
        self.on_checkpoint: Callable[[], None] | None = None
        self.dist = None  # a distributed.DistContext under torchrun (set by run.py)
        self.saved_step: int | None = None  # step of the last checkpoint written or loaded

    # --- public -------------------------------------------------------------------------------
    def set_batch_size(self, batch_size: int | None) -> None:
        """Per-group lr factors for this (global) batch size; from the config, also after a
        resume (a checkpoint's own group settings are not used)."""
        enc, dec = matrix_lr_scales(self.opt_cfg, batch_size)
        by_param = {id(self.sae._W_enc): enc}
        if self.sae._W_dec is not None:
            by_param[id(self.sae._W_dec)] = dec
        self.lr_scales = [by_param.get(id(g["params"][0]), 1.0)
                          for g in self.optimizer.param_groups]

    def fit(self, stream: RowStream) -> list[dict]:
        """Train for `trainer.epochs` epochs from the current state; returns the metric history."""
        per_epoch = stream.steps_per_epoch
        total = per_epoch * self.tr_cfg.epochs
        self.set_batch_size(stream.batch_size)
        start = self.state.step
        bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                   disable=None)
        for epoch in range(start // per_epoch, self.tr_cfg.epochs):
            skip = start - epoch * per_epoch if epoch == start // per_epoch else 0
            for x in stream.epoch(epoch, start_step=skip):
                stop = self.stop_requested if self.dist is None else self.dist.any(
                    self.stop_requested)
                if stop:
                    bar.close()
                    raise Interrupted(f"stopped at step {self.state.step}")
                n_rows, weight = x.shape[0], 1.0
                if self.dist is not None:  # this rank's slice of the batch
                    x, weight = self.dist.shard(x)
                metrics = self._train_step(x.to(self.device, non_blocking=True), epoch, total,
                                           n_rows, weight)
                self.state.step += 1
                bar.update(1)
                if self.state.step % self.tr_cfg.log_every == 0 or self.state.step == total:
                    self._log_step(metrics, epoch, bar)
                self._checkpoint_if_needed(total)
        bar.close()
        self.check_finite()
        return self.state.history

    def init_b_dec(self, x_sample: torch.Tensor) -> None:
        """Start b_dec at the data mean so the encoder sees centred inputs from step one."""
        with torch.no_grad():
            self.sae.b_dec.copy_(x_sample.to(self.sae.b_dec).mean(0))

    # --- steps --------------------------------------------------------------------------------
    def _train_step(self, x: torch.Tensor, epoch: int, total: int, n_rows: int | None = None,
                    grad_weight: float = 1.0) -> dict:
        """One optimizer step on x; under DDP x is this rank's slice of a batch of `n_rows`
        rows and `grad_weight` its share of the batch gradient."""
        sae, sp = self.sae, self.sp_cfg
        factor = self._set_lr(total)
        with self._autocast():
            out = sae(x)
            acts = out.enc.top_acts
            mse = (out.x_hat - x).pow(2).mean()
            l1 = acts.abs().sum() / (x.shape[0] * sae.d_sae)
            warm = min(1.0, epoch / sp.l1_warmup_epochs) if sp.l1_warmup_epochs > 0 else 1.0
            loss = mse + sp.sparsity_coeff * warm * l1
            aux = self._aux_loss(x, out) if sp.aux_coeff > 0 and sp.kind != "relu_l1" else None
            if aux is not None:
                loss = loss + sp.aux_coeff * aux
        self._check_finite(loss)
        self._update_parameters(loss, grad_weight)
        self._update_dead(acts.detach(), out.enc.top_indices, n_rows or x.shape[0])
        with torch.no_grad():
            return {
                "loss": float(loss),
                "mse": float(mse),
                "l1": float(l1),
                "aux": float(aux) if aux is not None else 0.0,
                "l0": float((acts > 0).sum(1).float().mean()),
                "batch_fvu": batch_fvu(x.float(), out.x_hat.float()),
                "lr": self.opt_cfg.lr * factor,
            }

    def _set_lr(self, total: int) -> float:
        """Set this step's learning rate from the schedule; returns its factor of optimizer.lr."""
        factor = lr_factor(self.state.step, total, self.opt_cfg.warmup_steps,
                           self.opt_cfg.schedule, self.opt_cfg.min_lr_ratio,
                           self.opt_cfg.decay_fraction)
        for group, scale in zip(self.optimizer.param_groups, self.lr_scales, strict=True):
            group["lr"] = self.opt_cfg.lr * factor * scale
        return factor

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop on a non-finite loss (on any rank) before it reaches the weights."""
        finite = bool(torch.isfinite(loss))
        if self.dist is not None:
            finite = not self.dist.any(not finite)
        if not finite:
            raise TrainingError(
                f"non-finite loss ({float(loss.detach())}) at step {self.state.step}: "
                f"{self._kept()}; lower optimizer.lr or check the activations for outliers."
            )

    def _update_parameters(self, loss: torch.Tensor, grad_weight: float) -> None:
        """Backward, gradient all-reduce under DDP, decoder-norm projection, clipping, step."""
        sae = self.sae
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist is not None:
            self.dist.all_reduce_grads(list(sae.parameters()), grad_weight)
        if self.normalize_decoder:
            sae.remove_parallel_grad()
        if self.opt_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), self.opt_cfg.grad_clip)
        self.optimizer.step()
        if self.normalize_decoder:
            sae.normalize_decoder()

    def _aux_loss(self, x: torch.Tensor, out) -> torch.Tensor | None:
        dead = self.state.rows_since_fired.to(x.device) > self.sp_cfg.dead_after_rows
        n_dead = int(dead.sum())
        if n_dead == 0:
            return None
        k_aux = min(self.sp_cfg.aux_k or max(self.sae.d_in // 2, 1), n_dead)
        idx = dead_topk(out.enc.pre_acts, dead, k_aux)
        aux_acts = self.sae.gather_acts(x, out.enc.pre_acts, idx)
        e = (x - out.x_hat).detach()
        e_hat = self.sae.decode(aux_acts, idx, bias=False)
        return (e_hat - e).pow(2).mean()

    def _update_dead(self, acts: torch.Tensor, idx: torch.Tensor, n_rows: int) -> None:
        fired = torch.zeros(self.sae.d_sae, dtype=torch.bool, device=idx.device)
        fired[idx[acts > 0]] = True
        if self.dist is not None:
            fired = self.dist.union(fired)
        counter = self.state.rows_since_fired
        counter += n_rows
        counter[fired.cpu()] = 0

    def _log_step(self, metrics: dict, epoch: int, bar: tqdm) -> None:
        dead = float((self.state.rows_since_fired > self.sp_cfg.dead_after_rows).float().mean())
        if self.dist is not None:
            metrics = self.dist.mean_metrics(metrics)
        row = {"step": self.state.step, "epoch": epoch, **metrics, "auxk_dead_fraction": dead}
        self.state.history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}", batch_fvu=f"{row['batch_fvu']:.3f}",
                        l0=f"{row['l0']:.1f}")
        if self.on_log is not None:
            self.on_log(row)

    def _checkpoint_if_needed(self, total: int) -> None:
        every = self.tr_cfg.checkpoint_every
        if every > 0 and self.state.step % every == 0 and self.state.step < total:
            if self.on_checkpoint is not None:
                self.check_finite()  # a NaN state never replaces the last good checkpoint
                self.on_checkpoint()
                self.saved_step = self.state.step

    def check_finite(self) -> None:
        """Raise TrainingError if a weight is NaN/Inf (checked before every save, not every
        step: a finite loss can still be followed by a step that overflows the weights)."""
        for name, p in self.sae.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingError(
                    f"non-finite weights ({name.lstrip('_')}) after step {self.state.step}: "
                    f"{self._kept()}; lower optimizer.lr or check the activations for outliers."
                )

    def _kept(self) -> str:
        """What a failed run keeps: the last good checkpoint, or none (say so, not 'kept')."""
        if self.saved_step is None:
            return (f"no checkpoint was saved (trainer.checkpoint_every="
                    f"{self.tr_cfg.checkpoint_every})")
        return f"the last good checkpoint (step {self.saved_step}) is kept"

    def _autocast(self):
        if self.tr_cfg.autocast == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "sae": self.sae.state_dict(),
            "optimizer": _enc_state_as_saved(self.optimizer.state_dict(), self.sae),
            "step": self.state.step,
            "rows_since_fired": self.state.rows_since_fired.clone(),
            "history": self.state.history,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.sae.load_state_dict(state["sae"])
        saved = _enc_state_as_saved(_regroup(state["optimizer"], self.optimizer), self.sae)
        self.optimizer.load_state_dict(saved)
        self.state = TrainState(
            step=int(state["step"]),
            rows_since_fired=state["rows_since_fired"].clone(),
            history=list(state["history"]),
        )
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it
        self.saved_step = self.state.step


def _enc_state_as_saved(opt_state: dict, sae: SAE) -> dict:
    """The optimizer state with W_enc's moments transposed ([d_sae, d_in] <-> [d_in, d_sae]):
    checkpoints hold them in W_enc's SAELens shape, like the weights (`SAE.state_dict`), the
    optimizer the registered parameter's. A transpose is its own inverse: saving and loading
    both call this. Views, not copies; the other parameters' states are shared, not copied."""
    ids = [i for g in opt_state["param_groups"] for i in g["params"]]
    pos = next(n for n, p in enumerate(sae.parameters()) if p is sae._W_enc)
    enc = opt_state["state"].get(ids[pos])
    if not enc:
        return opt_state
    moved = {key: (t.t() if isinstance(t, torch.Tensor) and t.dim() == 2 else t)
             for key, t in enc.items()}
    return {**opt_state, "state": {**opt_state["state"], ids[pos]: moved}}


def _regroup(saved: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A checkpoint written with one Adam group (before per-matrix lr scales) split into this
    optimizer's groups: parameter ids are flat across groups, so only the grouping changes."""
    if len(saved["param_groups"]) == len(optimizer.param_groups):
        return saved
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    base = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
    return {"state": saved["state"], "param_groups": [{**base, "params": [i]} for i in ids]}


@torch.no_grad()
def encode_rows(
    sae: SAE, acts: np.ndarray, device: torch.device, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse codes of every row with the inference encoder: (top_indices [N, k], top_acts [N, k]).

    Widths can differ between batches (relu_l1, batchtopk at inference); narrower batches are
    padded with inactive slots (activation 0)."""
    was_training = sae.training
    sae.eval()
    idx_parts, val_parts = [], []
    for s in range(0, len(acts), batch_size):
        # a copy: rows of a read-only memmap (the activation cache) would make torch warn
        x = torch.from_numpy(np.array(acts[s : s + batch_size], dtype=np.float32)).to(device)
        enc = sae.encode(x)
        idx_parts.append(enc.top_indices.cpu().numpy())
        val_parts.append(enc.top_acts.float().cpu().numpy())
    sae.train(was_training)
    width = max(p.shape[1] for p in idx_parts) if idx_parts else sae.k
    idx = np.zeros((len(acts), width), dtype=np.int64)
    val = np.zeros((len(acts), width), dtype=np.float32)
    row = 0
    for i_p, v_p in zip(idx_parts, val_parts, strict=True):
        n, w = i_p.shape
        idx[row : row + n, :w], val[row : row + n, :w] = i_p, v_p
        row += n
    return idx, val
