"""A faithful port of the seed notebook's `SparseSAE` and its training step (the bench baseline).

Source: `reference/seed_notebook.md` ("Truly Sparse SAE Training for Feature Overlap Analysis").
Kept as the notebook wrote it, bugs included, because its cost is what the benchmark measures:
an `nn.Linear` encoder, ReLU, a dense top-k mask applied only in training, a decoder weight that
is a second `nn.Parameter` (not a tie), dense MSE + L1, the `.item()` metrics computed every
step, Adam with a cosine schedule, gradient clipping at 1.0, no decoder renormalisation.

One detail is pinned down: `nn.Parameter(encoder.weight.t())` shares storage with the encoder
weight until `.to(device)` copies each parameter separately. The notebook ran on CUDA, so its
decoder was an independent copy (initialised to the encoder's transpose); `NotebookSAE` makes
that copy explicitly, so the port behaves the same on every device.

Not used by training: `sae_exp.model.sae.SAE` is the model; this module exists to be timed.
"""

from __future__ import annotations

import torch
from torch import nn, optim


class NotebookSAE(nn.Module):
    """The notebook's `SparseSAE`: Linear encoder + ReLU + top-k (training only), untied copy."""

    def __init__(self, input_dim: int, hidden_dim: int = 2048, sparsity_coeff: float = 0.1,
                 top_k: int | None = 50) -> None:
        super().__init__()
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.decoder = nn.Linear(hidden_dim, input_dim, bias=False)
        self.sparsity_coeff = sparsity_coeff
        self.top_k = top_k
        self.decoder.weight = nn.Parameter(self.encoder.weight.t())
        nn.init.xavier_uniform_(self.encoder.weight, gain=0.1)
        nn.init.zeros_(self.encoder.bias)
        # what `.to("cuda")` did in the notebook: each parameter gets its own storage
        self.decoder.weight = nn.Parameter(self.decoder.weight.detach().clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.encoder(x))
        if self.training and self.top_k is not None:
            _, topk_idx = torch.topk(h, self.top_k, dim=1)
            mask = torch.zeros_like(h)
            mask.scatter_(1, topk_idx, 1)
            h = h * mask
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(x)
        return self.decoder(code), code

    def loss(self, x: torch.Tensor, beta_warm: float = 1.0) -> tuple[torch.Tensor, dict]:
        recon, code = self.forward(x)
        recon_loss = nn.functional.mse_loss(recon, x)
        l1_loss = code.abs().mean()
        l0_loss = (code > 0).float().mean()
        total_loss = recon_loss + beta_warm * self.sparsity_coeff * l1_loss
        return total_loss, {
            "total": total_loss.item(),
            "recon": recon_loss.item(),
            "l1": l1_loss.item(),
            "l0": l0_loss.item(),
            "active_features": (code > 0).float().sum(dim=1).mean().item(),
        }


def make_optimizer(sae: NotebookSAE, lr: float = 5e-4, epochs: int = 200):
    """The notebook's Adam (default implementation) and CosineAnnealingLR(T_max=epochs)."""
    optimizer = optim.Adam(sae.parameters(), lr=lr)
    return optimizer, optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)


def train_step(sae: NotebookSAE, optimizer, scheduler, x: torch.Tensor, epoch: int) -> dict:
    """One iteration of the notebook's loop (one full-batch epoch there): loss, backward, clip
    1.0, Adam step, scheduler step. Returns the notebook's metrics dict."""
    beta_warm = min(1.0, epoch / 50)
    loss, metrics = sae.loss(x, beta_warm)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return metrics
