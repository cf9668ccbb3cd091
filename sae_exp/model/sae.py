"""The sparse autoencoder: top-k (default), batch-top-k, or ReLU + L1.

    pre     = (x - b_dec) @ W_enc + b_enc                 [B, d_sae]
    encode  = the k largest entries of pre, through ReLU  -> (top_acts, top_indices), [B, k] each
    decode  = sum_j top_acts[:, j] * W_dec[top_indices[:, j]] + b_dec          [B, d_in]

Top-k is applied at inference exactly as in training (the seed notebook dropped it outside
training, so its analysis saw dense codes). W_dec rows are kept at unit norm by the trainer.
With `tied=True`, W_dec *is* W_enc^T: one parameter, not a copy.

`decoder_impl="sparse"` runs the encoder backward and the decoder through `sparse_ops`, touching
only the selected latents; `"dense"` uses plain autograd on gather/matmul. Both give equal values
and gradients (tests/test_sparse_ops.py); sparse is faster.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from sae_exp.model import sparse_ops


class EncoderOutput(NamedTuple):
    top_acts: Tensor
    """[B, k] activations of the selected latents; 0 marks an inactive slot."""
    top_indices: Tensor
    """[B, k] latent ids of those activations (int64)."""
    pre_acts: Tensor
    """[B, d_sae] pre-activations, detached (the trainer's AuxK picks dead latents from them)."""


class ForwardOutput(NamedTuple):
    x_hat: Tensor
    """[B, d_in] reconstruction."""
    enc: EncoderOutput


class SAE(nn.Module):
    """Sparse autoencoder, SAELens names: W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec
    (W_enc is a view of the parameter `_W_enc` [d_sae, d_in]; see __init__)."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        kind: str = "topk",
        k: int = 30,
        tied: bool = False,
        init_gain: float = 1.0,
        decoder_impl: str = "sparse",
        center_input: bool = True,
    ) -> None:
        super().__init__()
        self.d_in, self.d_sae, self.kind, self.k = d_in, d_sae, kind, k
        self.tied, self.decoder_impl, self.center_input = tied, decoder_impl, center_input
        # W_enc [d_in, d_sae] is stored latent-major: the registered parameter `_W_enc` is
        # [d_sae, d_in] row-major and `W_enc` its transpose view (as a tied W_dec is a view of
        # it). The sparse backward builds W_enc's gradient latent by latent, in that layout, so
        # autograd hands the optimizer a contiguous parameter and gradient (fused Adam copied a
        # non-contiguous parameter every step, ~35 ms at 768 x 16384), and a tied W_dec is
        # row-major, so decoder row gathers are contiguous. Matmuls with W_enc cost the same
        # either way. state_dict() and saved files show W_enc as [d_in, d_sae] (SAELens), so
        # checkpoints keep their format (`_save_to_state_dict`, `saved_parameters`).
        w_init = torch.empty(d_in, d_sae)
        nn.init.xavier_uniform_(w_init, gain=init_gain)  # same values as a row-major init
        self._W_enc = nn.Parameter(w_init.t().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if tied:
            self._W_dec = None
        else:
            # Row-major [d_sae, d_in], so a decoder row gather reads contiguous memory.
            w = self._W_enc.detach()
            self._W_dec = nn.Parameter(
                (w / w.norm(dim=1, keepdim=True).clamp_min(1e-8)).contiguous()
            )
        # batchtopk: inference threshold, a running mean of the smallest selected activation.
        self.register_buffer("threshold", torch.zeros(()))

    @property
    def W_enc(self) -> Tensor:
        """[d_in, d_sae] encoder: a transpose view of the parameter `_W_enc` (same storage)."""
        return self._W_enc.t()

    @property
    def W_dec(self) -> Tensor:
        """[d_sae, d_in] decoder; with tied weights the parameter `_W_enc` itself."""
        return self._W_enc if self._W_dec is None else self._W_dec

    def saved_parameters(self) -> list[Tensor]:
        """`parameters()` in the layout state_dict() and checkpoints hold them: W_enc
        [d_in, d_sae], b_enc, b_dec, W_dec (absent when tied)."""
        return [p.t() if p is self._W_enc else p for p in self.parameters()]

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        """state_dict() names and shapes as before `_W_enc`: W_enc [d_in, d_sae] (a view)."""
        local: dict = {}
        super()._save_to_state_dict(local, prefix, keep_vars)
        for key, value in local.items():
            if key == prefix + "_W_enc":
                destination[prefix + "W_enc"] = value.t()
            else:
                destination[key] = value

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Accept W_enc [d_in, d_sae] (every checkpoint and state_dict() writes that)."""
        w = state_dict.pop(prefix + "W_enc", None)
        if w is not None:
            state_dict[prefix + "_W_enc"] = w.t() if isinstance(w, Tensor) and w.dim() == 2 else w
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True) -> SAE:
        if not mode:
            sparse_ops.release_workspaces()  # keep no training buffers alive for inference
        return super().train(mode)

    # --- encode -------------------------------------------------------------------------------
    def pre_activations(self, x: Tensor) -> Tensor:
        """[B, d_sae] pre-activations without gradient (the selection step needs no gradient)."""
        with torch.no_grad():
            xc = x - self.b_dec if self.center_input else x
            if not (self.training and xc.dtype == self._W_enc.dtype
                    and not torch.is_autocast_enabled(xc.device.type)):
                return torch.addmm(self.b_enc, xc, self.W_enc)
            # training: into a recycled buffer (a fresh [B, d_sae] one costs page faults)
            out = sparse_ops.workspace((xc.shape[0], self.d_sae), xc.dtype, xc.device)
            return torch.addmm(self.b_enc, xc, self.W_enc, out=out)

    def select(self, pre: Tensor, k: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Which latents each row keeps: (ids [B, w], kept [B, w] bool, or None when every
        slot is kept). The one place each sparsity kind's rule lives:
        - topk: the k largest pre-activations of each row (w = k);
        - batchtopk in training: the k*B largest positive pre-activations of the batch, and
          the running inference threshold updated from the smallest of them;
        - batchtopk at inference / relu_l1: every pre-activation above the threshold (0 for
          relu_l1).
        Rows keep different numbers of latents in the last two, so w is the largest count and
        shorter rows are padded with slots marked not kept (their activation must be 0)."""
        k = self.k if k is None else k
        if self.kind == "topk":
            return sparse_ops.topk_indices(pre, k), None  # = pre.topk(k), faster
        if self.kind == "batchtopk" and self.training:
            flat = pre.flatten().topk(k * pre.shape[0], sorted=False)
            keep = torch.zeros_like(pre, dtype=torch.bool).flatten()
            keep[flat.indices] = True
            keep = keep.view_as(pre) & (pre > 0)
            with torch.no_grad():
                vals = flat.values[flat.values > 0]
                if vals.numel():
                    self.threshold.mul_(0.99).add_(0.01 * vals.min())
        else:
            keep = pre > (self.threshold if self.kind == "batchtopk" else 0.0)
        width = max(int(keep.sum(1).max()), 1)
        top = torch.where(keep, pre, torch.full_like(pre, -torch.inf)).topk(width, dim=1)
        return top.indices, torch.isfinite(top.values)

    def encode(self, x: Tensor, k: int | None = None) -> EncoderOutput:
        """Sparse code of x [B, d_in]; top_acts are differentiable in W_enc, b_enc, b_dec."""
        pre = self.pre_activations(x)
        idx, kept = self.select(pre, k)
        acts = self.gather_acts(x, pre, idx)
        if kept is not None:
            acts = acts * kept  # padding slots would otherwise carry ReLU(pre) of dropped latents
        return EncoderOutput(acts, idx, pre)

    def gather_acts(self, x: Tensor, pre: Tensor, idx: Tensor) -> Tensor:
        """ReLU(pre[b, idx[b, j]]) as a differentiable function of the parameters."""
        b_dec = self.b_dec if self.center_input else None
        if self.decoder_impl == "sparse":
            vals = sparse_ops.selected_preacts(x, pre, idx, self.W_enc, self.b_enc, b_dec)
        else:
            xc = x - b_dec if b_dec is not None else x
            vals = torch.addmm(self.b_enc, xc, self.W_enc).gather(1, idx)
        return torch.relu(vals)

    # --- decode -------------------------------------------------------------------------------
    def decode(self, top_acts: Tensor, top_indices: Tensor, bias: bool = True) -> Tensor:
        """[B, d_in] reconstruction from a sparse code."""
        if self.decoder_impl == "sparse":
            out = sparse_ops.sparse_decode(top_indices, top_acts, self.W_dec)
        else:
            dense = torch.zeros(top_acts.shape[0], self.d_sae, dtype=top_acts.dtype,
                                device=top_acts.device)
            out = dense.scatter(1, top_indices, top_acts) @ self.W_dec
        return out + self.b_dec if bias else out

    def forward(self, x: Tensor) -> ForwardOutput:
        enc = self.encode(x)
        return ForwardOutput(self.decode(enc.top_acts, enc.top_indices), enc)

    # --- constraints --------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale W_dec rows to unit norm (for tied weights: the columns of W_enc)."""
        w = self.W_dec
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of W_dec's gradient that would change row norms (renormalised anyway)."""
        if self._W_dec is None or self._W_dec.grad is None:
            return
        w, g = self._W_dec, self._W_dec.grad
        # g -= <g_i, w_i> w_i row by row, without [d_sae, d_in] temporaries
        dots = torch.bmm(g.unsqueeze(1), w.unsqueeze(2)).view(-1, 1)
        g.addcmul_(dots, w, value=-1.0)

    def state_for_save(self) -> dict[str, Tensor]:
        """The four SAELens tensors, contiguous, on CPU (W_dec materialised even when tied)."""
        return {
            "W_enc": self.W_enc.detach().cpu().contiguous(),
            "b_enc": self.b_enc.detach().cpu().contiguous(),
            "W_dec": self.W_dec.detach().cpu().contiguous(),
            "b_dec": self.b_dec.detach().cpu().contiguous(),
        }

    @torch.no_grad()
    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of `state_for_save` (shapes checked by the caller)."""
        self.W_enc.copy_(tensors["W_enc"])
        self.b_enc.copy_(tensors["b_enc"])
        self.b_dec.copy_(tensors["b_dec"])
        if self._W_dec is not None:
            self._W_dec.copy_(tensors["W_dec"])
        if "threshold" in tensors:
            self.threshold.copy_(tensors["threshold"])
