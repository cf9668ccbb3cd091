"""Sparse forward/backward for top-k SAEs, on plain PyTorch ops.

A top-k code touches k of d_sae latents per row, so neither the decoder nor the backward pass
needs a dense [B, d_sae] matrix. With S the sparse code ([B, d_sae], k non-zeros per row):

    decode:      x_hat = S @ W_dec                         -> embedding_bag(idx, W_dec, vals)
    d vals:      g_vals[b, j] = <G[b], W_dec[idx[b, j]]>     (gathered rows, chunked)
    d W_dec:     S^T @ G                                    (CSR [d_sae, B] @ dense [B, d_in])
    encoder, with pre = (x - b_dec) @ W_enc + b_enc and vals = pre[b, idx]:
    d W_enc:     (x - b_dec)^T @ Gs = ((Gs)^T @ (x - b_dec))^T   (CSR again)
    d b_enc:     index_add of the selected gradients
    d b_dec:     -W_enc @ d b_enc                          (x itself is data: no gradient)

Each backward costs O(B k d_in) instead of O(B d_sae d_in). Values and gradients equal the dense
autograd path within float tolerance (tests/test_sparse_ops.py).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_GATHER_CHUNK_BYTES = 64 * 2**20


def csr_by_latent(idx: Tensor, values: Tensor, d_sae: int) -> Tensor:
    """[d_sae, B] CSR matrix with values[b, j] at (idx[b, j], b): the transposed sparse code."""
    n_rows, k = idx.shape
    flat_idx = idx.reshape(-1)
    order = torch.argsort(flat_idx, stable=True)
    counts = torch.bincount(flat_idx, minlength=d_sae)
    crow = torch.zeros(d_sae + 1, dtype=torch.int64, device=idx.device)
    torch.cumsum(counts, 0, out=crow[1:])
    cols = torch.div(order, k, rounding_mode="floor")
    with warnings.catch_warnings():  # "CSR support is in beta": known, and tested here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, cols, values.reshape(-1)[order], size=(d_sae, n_rows), device=idx.device,
            check_invariants=False,
        )


def gathered_dot(G: Tensor, W: Tensor, idx: Tensor) -> Tensor:
    """[B, k] with <G[b], W[idx[b, j]]>, in row chunks so [c, k, d] stays under ~64 MB."""
    n_rows, k = idx.shape
    per_row = max(k * W.shape[1] * W.element_size(), 1)
    chunk = max(1, _GATHER_CHUNK_BYTES // per_row)
    out = torch.empty(idx.shape, dtype=G.dtype, device=G.device)
    for s in range(0, n_rows, chunk):
        rows = W[idx[s : s + chunk]]  # [c, k, d]
        out[s : s + chunk] = torch.bmm(rows, G[s : s + chunk].unsqueeze(2)).squeeze(2)
    return out


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx: Tensor, vals: Tensor, W_dec: Tensor) -> Tensor:
        ctx.save_for_backward(idx, vals, W_dec)
        return torch.nn.functional.embedding_bag(
            idx, W_dec, per_sample_weights=vals, mode="sum"
        )

    @staticmethod
    def backward(ctx, G: Tensor):
        idx, vals, W_dec = ctx.saved_tensors
        G = G.contiguous()
        g_vals = gathered_dot(G, W_dec, idx) if ctx.needs_input_grad[1] else None
        g_W = None
        if ctx.needs_input_grad[2]:
            g_W = csr_by_latent(idx, vals, W_dec.shape[0]) @ G
        return None, g_vals, g_W


def sparse_decode(idx: Tensor, vals: Tensor, W_dec: Tensor) -> Tensor:
    """[B, d_in] = sum_j vals[:, j] * W_dec[idx[:, j]], with a backward touching k rows per row."""
    return _SparseDecode.apply(idx, vals, W_dec)


class _SelectedPreacts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pre, idx, W_enc, b_enc, b_dec):
        ctx.save_for_backward(x, idx, W_enc, b_dec if b_dec is not None else x.new_zeros(0))
        ctx.has_b_dec = b_dec is not None
        ctx.d_sae = pre.shape[1]
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, idx, W_enc, b_dec = ctx.saved_tensors
        g = g.contiguous()
        g_b_enc = torch.zeros(ctx.d_sae, dtype=g.dtype, device=g.device)
        g_b_enc.index_add_(0, idx.reshape(-1), g.reshape(-1))
        g_W_enc = None
        if ctx.needs_input_grad[3]:
            xc = x - b_dec if ctx.has_b_dec else x
            g_W_enc = (csr_by_latent(idx, g, ctx.d_sae) @ xc).t()
        g_b_dec = None
        if ctx.has_b_dec and ctx.needs_input_grad[5]:
            g_b_dec = -(W_enc @ g_b_enc)
        return None, None, None, g_W_enc, g_b_enc if ctx.needs_input_grad[4] else None, g_b_dec


def selected_preacts(
    x: Tensor, pre: Tensor, idx: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None
) -> Tensor:
    """pre[b, idx[b, j]] where pre = (x - b_dec) @ W_enc + b_enc was computed without gradient;
    the result is differentiable in W_enc, b_enc and b_dec with a sparse backward."""
    return _SelectedPreacts.apply(x, pre, idx, W_enc, b_enc, b_dec)
