"""The sparse decoder/encoder backward equals plain dense autograd: values and gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from sae_exp.model import sparse_ops
from sae_exp.model.sae import SAE


def _rand_idx(n_rows: int, d_sae: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """[n_rows, k] distinct latent ids per row, in random order."""
    return torch.rand(n_rows, d_sae, generator=gen).argsort(dim=1)[:, :k]


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


# --- the ops against autograd references -------------------------------------------------------
@pytest.mark.parametrize("n_rows,d_in,d_sae,k", [(7, 13, 29, 5), (1, 3, 4, 1), (9, 5, 11, 11),
                                                 (33, 17, 64, 1)])
def test_sparse_decode_matches_gathered_reference(n_rows, d_in, d_sae, k):
    gen = torch.Generator().manual_seed(n_rows * 100 + k)
    idx = _rand_idx(n_rows, d_sae, k, gen)
    vals = torch.randn(n_rows, k, generator=gen, dtype=torch.float64)
    W = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float64)
    G = torch.randn(n_rows, d_in, generator=gen, dtype=torch.float64)
    v1, W1, v2, W2 = _leaf(vals), _leaf(W), _leaf(vals), _leaf(W)
    out = sparse_ops.sparse_decode(idx, v1, W1)
    ref = torch.einsum("bk,bkd->bd", v2, W2[idx])
    torch.testing.assert_close(out, ref)
    out.backward(G)
    ref.backward(G)
    torch.testing.assert_close(v1.grad, v2.grad)
    torch.testing.assert_close(W1.grad, W2.grad)


def test_sparse_decode_repeated_ids_add_up():
    idx = torch.tensor([[2, 2, 0], [1, 3, 1]])
    vals = _leaf(torch.rand(2, 3, dtype=torch.float64))
    W = _leaf(torch.rand(4, 5, dtype=torch.float64))
    v2, W2 = _leaf(vals), _leaf(W)
    sparse_ops.sparse_decode(idx, vals, W).sum().backward()
    torch.einsum("bk,bkd->bd", v2, W2[idx]).sum().backward()
    torch.testing.assert_close(vals.grad, v2.grad)
    torch.testing.assert_close(W.grad, W2.grad)


def test_sparse_decode_accepts_a_strided_decoder():
    """A transposed view (e.g. a tie to a row-major W_enc) gives the same values and gradient."""
    gen = torch.Generator().manual_seed(3)
    idx = _rand_idx(6, 20, 4, gen)
    vals = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    W_enc = _leaf(torch.randn(9, 20, generator=gen, dtype=torch.float64))  # [d_in, d_sae]
    W_ref = _leaf(W_enc)
    sparse_ops.sparse_decode(idx, vals, W_enc.t()).pow(2).sum().backward()
    torch.einsum("bk,bkd->bd", vals, W_ref.t()[idx]).pow(2).sum().backward()
    torch.testing.assert_close(W_enc.grad, W_ref.grad)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_rows,d_in,d_sae,k", [(7, 13, 29, 5), (5, 4, 6, 6), (8, 3, 17, 1)])
def test_selected_preacts_matches_dense_autograd(center, n_rows, d_in, d_sae, k):
    gen = torch.Generator().manual_seed(d_sae + k)
    x = torch.randn(n_rows, d_in, generator=gen, dtype=torch.float64)
    W = torch.randn(d_in, d_sae, generator=gen, dtype=torch.float64)
    b_enc = torch.randn(d_sae, generator=gen, dtype=torch.float64)
    b_dec = torch.randn(d_in, generator=gen, dtype=torch.float64)
    idx = _rand_idx(n_rows, d_sae, k, gen)
    g = torch.randn(n_rows, k, generator=gen, dtype=torch.float64)
    W1, be1, bd1, W2, be2, bd2 = (_leaf(t) for t in (W, b_enc, b_dec, W, b_enc, b_dec))
    xc = x - b_dec if center else x
    pre = xc @ W + b_enc
    out = sparse_ops.selected_preacts(x, pre, idx, W1, be1, bd1 if center else None)
    ref = ((x - bd2 if center else x) @ W2 + be2).gather(1, idx)
    torch.testing.assert_close(out, ref)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(W1.grad, W2.grad)
    torch.testing.assert_close(be1.grad, be2.grad)
    if center:
        torch.testing.assert_close(bd1.grad, bd2.grad)
    else:
        assert bd1.grad is None


@pytest.mark.parametrize("method", ["sddmm", "embedding_bag", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gathered_dot_methods(method, dtype):
    gen = torch.Generator().manual_seed(1)
    idx = _rand_idx(11, 37, 6, gen)
    idx[0, 1] = idx[0, 0]  # a repeated id is just another dot product
    G = torch.randn(11, 19, generator=gen).to(dtype)
    W = torch.randn(37, 19, generator=gen).to(dtype)
    ref = torch.einsum("bd,bkd->bk", G, W[idx])
    torch.testing.assert_close(sparse_ops.gathered_dot(G, W, idx, method=method), ref)
    with pytest.raises(ValueError, match="method"):
        sparse_ops.gathered_dot(G, W, idx, method="nope")


def test_latent_matmul_is_transposed_code_times_dense():
    gen = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 23, (15, 4), generator=gen)  # repeats allowed
    vals = torch.randn(15, 4, generator=gen, dtype=torch.float64)
    dense = torch.randn(15, 8, generator=gen, dtype=torch.float64)
    S = torch.zeros(15, 23, dtype=torch.float64)
    S.index_put_((torch.arange(15).repeat_interleave(4), idx.reshape(-1)), vals.reshape(-1),
                 accumulate=True)
    torch.testing.assert_close(sparse_ops.latent_matmul(idx, vals, dense, 23), S.t() @ dense)
    torch.testing.assert_close(sparse_ops.csr_by_latent(idx, vals, 23).to_dense(), S.t())


def test_latent_order_cache_never_serves_a_changed_index():
    gen = torch.Generator().manual_seed(4)
    idx = _rand_idx(10, 30, 3, gen)
    vals = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    first = sparse_ops.latent_order(idx, 30)
    assert sparse_ops.latent_order(idx, 30) is first  # same tensor, unchanged: reused
    assert sparse_ops.latent_order(idx, 31) is not first
    idx[:, 0] = (idx[:, 0] + 1) % 30  # in place: the version counter moves
    dense = torch.zeros(10, 30, dtype=torch.float64).scatter_add(1, idx, vals)
    torch.testing.assert_close(sparse_ops.csr_by_latent(idx, vals, 30).to_dense(), dense.t())
    other = idx.clone()  # equal values, another tensor
    assert sparse_ops.latent_order(other, 30) is not sparse_ops.latent_order(idx, 30)


# --- SAE(decoder_impl="sparse") against SAE(decoder_impl="dense") ------------------------------
def _pair(d_in, d_sae, kind, k, tied, center=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    sparse = SAE(d_in, d_sae, kind=kind, k=k, tied=tied, decoder_impl="sparse",
                 center_input=center).to(dtype)
    with torch.no_grad():  # non-trivial biases so every gradient term is exercised
        sparse.b_enc.normal_(0, 0.05)
        sparse.b_dec.normal_(0, 0.5)
    dense = copy.deepcopy(sparse)
    dense.decoder_impl = "dense"
    return sparse, dense


def _loss(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    out = sae(x)
    return (out.x_hat - x).pow(2).mean() + 0.1 * out.enc.top_acts.abs().sum() / x.shape[0]


CASES = [  # d_in, d_sae, k
    (13, 29, 5), (7, 31, 1), (6, 10, 10), (16, 64, 8),
]


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu_l1"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("d_in,d_sae,k", CASES)
def test_sparse_and_dense_sae_agree(kind, tied, d_in, d_sae, k):
    sparse, dense = _pair(d_in, d_sae, kind, k, tied)
    x = torch.randn(19, d_in, dtype=torch.float64) * 2
    o_s, o_d = sparse(x), dense(x)
    torch.testing.assert_close(o_s.x_hat, o_d.x_hat)
    torch.testing.assert_close(o_s.enc.top_acts, o_d.enc.top_acts)
    assert torch.equal(o_s.enc.top_indices, o_d.enc.top_indices)
    _loss(sparse, x).backward()
    _loss(dense, x).backward()
    grads_s = dict(sparse.named_parameters())
    for name, p in dense.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(grads_s[name].grad, p.grad, msg=name)


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu_l1"])
def test_sparse_and_dense_sae_agree_at_inference(kind):
    sparse, dense = _pair(12, 40, kind, 4, tied=False)
    x = torch.randn(25, 12, dtype=torch.float64)
    sparse(x), dense(x)  # batchtopk: learn the same threshold
    sparse.eval(), dense.eval()
    torch.testing.assert_close(sparse(x).x_hat, dense(x).x_hat)


@pytest.mark.parametrize("tied", [False, True])
def test_training_steps_agree(tied):
    """Several full steps (renorm, clipping, Adam) stay together, in float32 too."""
    sparse, dense = _pair(24, 96, "topk", 6, tied, dtype=torch.float32)
    x = torch.randn(64, 24)
    for sae in (sparse, dense):
        opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
        for _ in range(5):
            opt.zero_grad()
            _loss(sae, x).backward()
            sae.remove_parallel_grad()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
            opt.step()
            sae.normalize_decoder()
    for (name, p_s), p_d in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p_s, p_d, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_autocast_gives_float32_gradients_close_to_dense():
    """The GPU recipe (bf16 autocast) exercised on CPU: gradients come back in the parameters'
    dtype, close to the dense path under the same autocast."""
    sparse, dense = _pair(32, 128, "topk", 8, tied=False, dtype=torch.float32)
    x = torch.randn(40, 32)
    for sae in (sparse, dense):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _loss(sae, x)
        loss.backward()
    for (name, p_s), p_d in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        assert p_s.grad.dtype == torch.float32, name
        scale = p_d.grad.abs().max().clamp_min(1e-6)
        assert (p_s.grad - p_d.grad).abs().max() / scale < 0.05, name


def test_layouts_that_keep_the_sparse_step_fast():
    """W_dec row-major (contiguous row gathers, tied or not), and every parameter and gradient
    contiguous: the sparse backward's W_enc gradient comes in the parameter's own layout
    (autograd copies nothing) and fused Adam needs no copy of a strided parameter."""
    for tied in (False, True):
        sae = SAE(16, 48, k=4, tied=tied)
        assert sae.W_dec.is_contiguous()
        assert sae.W_enc.shape == (16, 48)
        _loss(sae, torch.randn(10, 16)).backward()
        assert all(p.is_contiguous() and p.grad.is_contiguous() for p in sae.parameters())
        assert sae._W_enc.grad.stride() == sae._W_enc.stride()
        if not tied:
            assert sae.W_dec.grad.stride() == sae.W_dec.stride()
    saved = SAE(16, 48, k=4).state_for_save()
    assert all(t.is_contiguous() for t in saved.values())


def test_remove_parallel_grad_projects_out_the_row_direction():
    sae = SAE(9, 21, k=3)
    g = torch.randn(21, 9)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_grad()
    w = sae.W_dec.detach()
    torch.testing.assert_close(sae.W_dec.grad, g - (g * w).sum(1, keepdim=True) * w)
    torch.testing.assert_close((sae.W_dec.grad * w).sum(1), torch.zeros(21), atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("tied", [False, True])
def test_sparse_and_dense_agree_on_cuda(tied):
    sparse, dense = _pair(40, 300, "topk", 16, tied, dtype=torch.float32)
    sparse, dense = sparse.cuda(), dense.cuda()
    x = torch.randn(128, 40, device="cuda")
    torch.testing.assert_close(sparse(x).x_hat, dense(x).x_hat, atol=1e-4, rtol=1e-4)
    _loss(sparse, x).backward()
    _loss(dense, x).backward()
    for (name, p_s), p_d in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p_s.grad, p_d.grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("n,k", [(4096, 8), (4096 + 23, 8), (130, 1), (100, 30)])
def test_topk_indices_equals_torch_topk(n, k):
    """Exact: the selected values are torch.topk's (sorted), ids are unique and in range, and
    with distinct values the ids are torch.topk's; with ties, negatives, -inf, a ragged tail
    (n not a multiple of the group) and sizes that fall back to torch.topk."""
    gen = torch.Generator().manual_seed(n + k)
    cases = {
        "distinct": torch.randn(64, n, generator=gen),
        "negative": -torch.rand(64, n, generator=gen) - 1.0,
        "ties": torch.randint(0, 5, (64, n), generator=gen).float(),
        "inf": torch.randn(64, n, generator=gen).masked_fill(
            torch.rand(64, n, generator=gen) < 0.9, -torch.inf),
        "spike_in_tail": torch.zeros(64, n).index_fill_(1, torch.tensor([n - 1]), 5.0),
    }
    for name, pre in cases.items():
        got = sparse_ops.topk_indices(pre, k)
        want = pre.topk(k, dim=1)
        assert got.shape == (64, k), name
        assert torch.equal(pre.gather(1, got).sort(1, descending=True).values, want.values), name
        assert (got.sort(1).values.diff(dim=1) > 0).all(), name  # no id twice
        if name == "distinct":
            assert torch.equal(got.sort(1).values, want.indices.sort(1).values), name
