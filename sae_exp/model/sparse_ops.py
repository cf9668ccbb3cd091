"""Sparse forward/backward for top-k SAEs, on plain PyTorch ops.

A top-k code touches k of d_sae latents per row, so neither the decoder nor the backward pass
needs a dense [B, d_sae] matrix. With S the sparse code ([B, d_sae], k non-zeros per row):

    decode:      x_hat = S @ W_dec                         -> embedding_bag(idx, W_dec, vals)
    d vals:      g_vals[b, j] = <G[b], W_dec[idx[b, j]]>     (sampled dense-dense product, SDDMM)
    d W_dec:     S^T @ G                                    (CSR [d_sae, B] @ dense [B, d_in])
    encoder, with pre = (x - b_dec) @ W_enc + b_enc and vals = pre[b, idx]:
    d W_enc:     (x - b_dec)^T @ Gs = ((Gs)^T @ (x - b_dec))^T   (CSR again)
    d b_enc:     index_add of the selected gradients
    d b_dec:     -W_enc @ d b_enc                          (x itself is data: no gradient)

Each backward costs O(B k d_in) instead of O(B d_sae d_in). Values and gradients equal the dense
autograd path within float tolerance (tests/test_sparse_ops.py).

Where the time goes, one training step at B 4096, d_in 768, d_sae 16384, k 32 on a 2-core AMD
EPYC VM (2026-12-02; torch profiler, per step, 2 threads): the step is ~1.10x the encoder matmul
`x @ W_enc` (interleaved rounds, quiet machine; 1.12x at 1 thread; before these changes 1.32x
and 1.26x). Under load from other processes the 2-thread ratio rises to ~1.4x (its many small
parallel ops wait for a descheduled thread; the one big matmul hardly does). Beyond the matmul
(~0.66 s, bias included): top-k ~60 ms (`topk_indices`; torch.topk ~73 ms), SDDMM ~26 ms, the
two CSR matmuls ~10 ms each (written with `addmm(beta=0)` into an uninitialised buffer since
`mm` zero-fills first), fused Adam ~15 ms, embedding_bag decode ~9 ms, decoder projection + clip
+ renorm ~20 ms (bmm 7, norms 7, addcmul 3, div 2), the loss's [B, d_in] element-wise ops ~15
ms, the latent sort ~1.5 ms (built once per `idx`, shared by the decoder's and the encoder's
backward). Gathering W_dec rows into [B, k, d_in] chunks for bmm instead of SDDMM took ~0.38 s.
Hidden costs that were larger than most of these: (1) page faults. A fresh 4096 x 16384 CPU
tensor costs ~0.1 s of first-touch faults at 1 thread on this VM, a fresh 16384 x 768 gradient
~20 ms, so the pre-activations and the CSR outputs (the W_enc and W_dec gradients) come from
`workspace`, recycled buffers. (The floor allocates its output, so it pays them: with `out=` it
is ~0.1 s faster at 1 thread.) (2) Layout. Row gathers of a column-major W_dec cost ~0.9 s in
embedding_bag alone, and fused Adam copies a non-contiguous parameter every step (~35 ms):
W_enc's gradient comes out latent-major ([d_sae, d_in] row-major, returned as its transpose),
which is the layout of the parameter `sae.SAE` registers (`_W_enc`, W_enc its transpose view),
so autograd and Adam copy nothing.

Gradients are computed in the weight's dtype (float32 parameters under bf16 autocast receive
float32 gradients); the CSR and SDDMM kernels need float32/float64, other dtypes are upcast.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

_SPARSE_DTYPES = (torch.float32, torch.float64)

# References to a storage (private torch API; without it workspaces are never reused).
_use_count = getattr(torch._C, "_storage_Use_Count", None)
_WORKSPACES_PER_SHAPE = 4  # W_enc, W_dec gradients, and AuxK's two (trainer)
_ws_lock = threading.Lock()
_workspaces: dict[tuple, list[Tensor]] = {}


def workspace(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised CPU tensor, recycled from earlier calls once nothing else references it.

    A fresh large CPU tensor costs one page fault per 4 KiB on first touch (~20 ms for a
    16384 x 768 gradient, ~0.1 s for 4096 x 16384 pre-activations on a 2-core VM: as much as
    the work done in it). Pooled tensors are handed out as a second handle (a view); one is
    reused only when its storage has no other reference, i.e. after the optimizer dropped the
    gradient (`zero_grad(set_to_none=True)`) or the caller dropped the pre-activations, so
    live data is never overwritten. Other devices (CUDA caches memory itself): plain empty."""
    if device.type != "cpu" or _use_count is None:
        return torch.empty(shape, dtype=dtype, device=device)
    key = (tuple(shape), dtype)
    with _ws_lock:
        pool = _workspaces.setdefault(key, [])
        for buf in pool:
            if _use_count(buf.untyped_storage()._cdata) == 2:  # the pool's + this handle
                return buf.view_as(buf)
        buf = torch.empty(shape, dtype=dtype)
        pool.append(buf)
        del pool[:-_WORKSPACES_PER_SHAPE]  # forget the oldest (their holders keep them alive)
        return buf.view_as(buf)


def release_workspaces() -> None:
    """Drop the pool (SAE.eval() calls this: no training buffers are kept for inference)."""
    with _ws_lock:
        _workspaces.clear()


class LatentOrder(NamedTuple):
    """The entries of idx [B, k] grouped by latent: the CSR structure of S^T ([d_sae, B])."""

    order: Tensor
    """[B*k] positions in idx.flatten(), sorted by latent id (stable: batch order within one)."""
    crow: Tensor
    """[d_sae + 1] CSR row pointers: latent l owns order[crow[l]:crow[l + 1]]."""
    cols: Tensor
    """[B*k] batch row of each sorted entry (the CSR column indices)."""


_cache_lock = threading.Lock()
_cache: tuple | None = None  # (weakref to idx, idx._version, d_sae, LatentOrder)


def latent_order(idx: Tensor, d_sae: int) -> LatentOrder:
    """CSR structure of the transposed code, cached for the last `idx` seen (the decoder's and
    the encoder's backward share one top-k selection; the cache is keyed on the tensor object and
    its version counter, so a different or modified `idx` never hits)."""
    global _cache
    entry = _cache
    if entry is not None:
        ref, version, cached_d_sae, result = entry
        if ref() is idx and idx._version == version and cached_d_sae == d_sae:
            return result
    n_rows, k = idx.shape
    flat_idx = idx.reshape(-1)
    order = torch.argsort(flat_idx, stable=True)
    counts = torch.bincount(flat_idx, minlength=d_sae)
    crow = torch.zeros(d_sae + 1, dtype=torch.int64, device=idx.device)
    torch.cumsum(counts, 0, out=crow[1:])
    cols = torch.div(order, k, rounding_mode="floor")
    result = LatentOrder(order, crow, cols)
    with _cache_lock:
        _cache = (weakref.ref(idx), idx._version, d_sae, result)
    return result


def topk_indices(pre: Tensor, k: int, group: int = 32) -> Tensor:
    """[B, k] column ids of the k largest entries of each row of pre [B, n], unsorted: the
    values equal `pre.topk(k, dim=1)`'s exactly; ids differ only among tied values.

    On CPU, through group maxima: the row's columns split into groups of `group`; the k groups
    with the largest maxima hold k elements, each at least every element of the other groups,
    so the row's k largest are among those k * group candidates (plus the n % group columns
    left over, always candidates). One max pass, a top-k over n / group maxima and one over the
    candidates: ~60 vs ~73 ms for torch.topk at 4096 x 16384, k 32, on 2 cores (torch.topk's
    cost per element is the same, but rows of n >= 64 k take its fast partial-sort path).
    Elsewhere, or when candidates would be more than n / 4: torch.topk."""
    n_rows, n = pre.shape
    m = n // group
    if pre.device.type != "cpu" or pre.dim() != 2 or 4 * k * group > n:
        return pre.topk(k, dim=1, sorted=False).indices
    body = pre[:, : m * group].unflatten(1, (m, group))  # [B, m, group], a view
    top_groups = body.amax(2).topk(k, dim=1, sorted=False).indices  # [B, k]
    cand = body.gather(1, top_groups.unsqueeze(2).expand(n_rows, k, group)).flatten(1)
    tail = n - m * group
    if tail:
        cand = torch.cat([cand, pre[:, m * group :]], dim=1)
    sel = cand.topk(k, dim=1, sorted=False).indices  # [B, k] positions among candidates
    in_groups = sel < k * group
    grouped = top_groups.gather(1, (sel // group).clamp_max(k - 1)) * group + sel % group
    return torch.where(in_groups, grouped, sel - k * group + m * group) if tail else grouped


def _csr(crow: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": known, and tested here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # torch 2.11 (seen on CUDA) warns even with check_invariants=False given explicitly
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, device=values.device,
                                       check_invariants=False)


def csr_by_latent(idx: Tensor, values: Tensor, d_sae: int) -> Tensor:
    """[d_sae, B] CSR matrix with values[b, j] at (idx[b, j], b): the transposed sparse code."""
    lo = latent_order(idx, d_sae)
    return _csr(lo.crow, lo.cols, values.reshape(-1)[lo.order], (d_sae, idx.shape[0]))


def latent_matmul(idx: Tensor, values: Tensor, dense: Tensor, d_sae: int) -> Tensor:
    """S^T @ dense, [d_sae, n], where S [B, d_sae] holds values[b, j] at (b, idx[b, j]) and
    dense is [B, n]. Rows of unselected latents are zero. Repeated ids in a row add up."""
    S_t = csr_by_latent(idx, values, d_sae)
    if dense.device.type != "cpu":
        return S_t @ dense
    out = workspace((d_sae, dense.shape[1]), dense.dtype, dense.device)
    # beta=0 ignores out's (uninitialised) contents; mm would zero-fill it first (~+10 ms)
    torch.addmm(out, S_t, dense, beta=0.0, out=out)
    return out


def gathered_dot(G: Tensor, W: Tensor, idx: Tensor, method: str = "auto") -> Tensor:
    """[B, k] with <G[b], W[idx[b, j]]>, never materialising the [B, k, d] gathered rows.

    `method`: "sddmm" (`torch.sparse.sampled_addmm`, CPU float32/float64), "embedding_bag"
    (the per-sample-weight gradient of `embedding_bag`, any device/dtype), "auto" picks."""
    if method == "auto":
        cpu_ok = G.device.type == "cpu" and G.dtype in _SPARSE_DTYPES
        method = "sddmm" if cpu_ok else "embedding_bag"
    n_rows, k = idx.shape
    if method == "sddmm":
        crow = torch.arange(0, n_rows * k + 1, k, dtype=torch.int64, device=idx.device)
        cols = idx.reshape(-1).to(torch.int64)
        pattern = _csr(crow, cols, G.new_zeros(n_rows * k), (n_rows, W.shape[0]))
        return torch.sparse.sampled_addmm(pattern, G, W.t(), beta=0.0).values().view(n_rows, k)
    if method == "embedding_bag":
        weights = torch.zeros(idx.shape, dtype=G.dtype, device=G.device, requires_grad=True)
        with torch.enable_grad():
            out = F.embedding_bag(idx, W.detach().to(G.dtype), per_sample_weights=weights,
                                  mode="sum")
        return torch.autograd.grad(out, weights, G)[0]
    raise ValueError(f"gathered_dot: method must be auto, sddmm or embedding_bag, not {method!r}")


def _compute_dtype(W: Tensor) -> torch.dtype:
    return W.dtype if W.dtype in _SPARSE_DTYPES else torch.float32


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx: Tensor, vals: Tensor, W_dec: Tensor) -> Tensor:
        W = W_dec.contiguous()  # row gathers; a no-op for SAE's row-major decoder
        ctx.save_for_backward(idx, vals, W)
        return F.embedding_bag(idx, W, per_sample_weights=vals.to(W.dtype), mode="sum")

    @staticmethod
    def backward(ctx, G: Tensor):
        idx, vals, W = ctx.saved_tensors
        dtype = _compute_dtype(W)
        G = G.to(dtype).contiguous()
        g_vals = g_W = None
        if ctx.needs_input_grad[1]:
            g_vals = gathered_dot(G, W.to(dtype), idx).to(vals.dtype)
        if ctx.needs_input_grad[2]:
            g_W = latent_matmul(idx, vals.to(dtype), G, W.shape[0]).to(W.dtype)
        return None, g_vals, g_W


def sparse_decode(idx: Tensor, vals: Tensor, W_dec: Tensor) -> Tensor:
    """[B, d_in] = sum_j vals[:, j] * W_dec[idx[:, j]], with a backward touching k rows per row.

    idx [B, k] int64 latent ids, vals [B, k], W_dec [d_sae, d_in] (row-major is fastest)."""
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
        dtype = _compute_dtype(W_enc)
        g = g.to(dtype).contiguous()
        need_W, need_b_enc = ctx.needs_input_grad[3], ctx.needs_input_grad[4]
        need_b_dec = ctx.has_b_dec and ctx.needs_input_grad[5]
        g_W_enc = g_b_enc = g_b_dec = None
        if need_W:
            xc = (x - b_dec if ctx.has_b_dec else x).to(dtype)
            # [d_sae, d_in] row-major, returned as its [d_in, d_sae] transpose
            g_W_enc = latent_matmul(idx, g, xc, ctx.d_sae).t().to(W_enc.dtype)
        if need_b_enc or need_b_dec:
            g_sum = torch.zeros(ctx.d_sae, dtype=dtype, device=g.device)
            g_sum.index_add_(0, idx.reshape(-1), g.reshape(-1))
            if need_b_dec:
                g_b_dec = -(W_enc.to(dtype) @ g_sum).to(b_dec.dtype)
            if need_b_enc:
                g_b_enc = g_sum
        return None, None, None, g_W_enc, g_b_enc, g_b_dec


def selected_preacts(
    x: Tensor, pre: Tensor, idx: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None
) -> Tensor:
    """pre[b, idx[b, j]] where pre = (x - b_dec) @ W_enc + b_enc was computed without gradient;
    the result is differentiable in W_enc, b_enc and b_dec with a sparse backward.

    x [B, d_in], pre [B, d_sae], idx [B, k] int64, W_enc [d_in, d_sae] (latent-major storage,
    i.e. W_enc.t() contiguous, avoids a transpose copy of its gradient), b_enc [d_sae],
    b_dec [d_in] or None (no input centering)."""
    return _SelectedPreacts.apply(x, pre, idx, W_enc, b_enc, b_dec)
