"""Property-based tests (hypothesis) over random shapes and values.

SAE: the sparse and the dense decoder paths agree (values and gradients) for any shape and
kind, codes are well formed (l0 <= k, ids in range, activations >= 0, decode shape [B, d_in]),
and batched encoding of many rows (`encode_rows`, padded to the widest batch) gives each row
the code it gets alone.

Report statistics, beyond what tests/test_overlap.py already checks on random codes (Jaccard in
[0, 1], CIs ordered, p-values in (0, 1], specific sets disjoint): the analysis does not depend
on how latents are numbered or in which order rows arrive, and the statistics under it match
scipy (BH q-values, the one-sided Fisher test).
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.stats
import torch
from conftest import analyze_report
from hypothesis import given, settings
from hypothesis import strategies as st

from sae_exp.analysis import association
from sae_exp.config import AnalysisConfig
from sae_exp.data.types import ActivationSet, Sentences
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import encode_rows

KINDS = ["topk", "batchtopk", "relu_l1"]


@st.composite
def sae_cases(draw):
    d_sae = draw(st.integers(1, 24))
    return dict(
        d_in=draw(st.integers(1, 12)), d_sae=d_sae, k=draw(st.integers(1, d_sae)),
        kind=draw(st.sampled_from(KINDS)), tied=draw(st.booleans()),
        center=draw(st.booleans()), batch=draw(st.integers(1, 9)),
        scale=draw(st.sampled_from([1e-3, 1.0, 1e3])), seed=draw(st.integers(0, 2**16)),
    )


def _sae(c: dict, impl: str = "sparse", dtype=torch.float64) -> SAE:
    torch.manual_seed(c["seed"])
    sae = SAE(c["d_in"], c["d_sae"], kind=c["kind"], k=c["k"], tied=c["tied"],
              decoder_impl=impl, center_input=c["center"]).to(dtype)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.5)
    return sae


@settings(max_examples=40, deadline=None)
@given(c=sae_cases(), training=st.booleans())
def test_sparse_and_dense_paths_agree_and_codes_are_well_formed(c, training):
    sparse = _sae(c)
    dense = copy.deepcopy(sparse)
    dense.decoder_impl = "dense"
    sparse.train(training), dense.train(training)
    x = torch.randn(c["batch"], c["d_in"], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(c["seed"])) * c["scale"]
    o_s, o_d = sparse(x), dense(x)

    B, k, d_sae = c["batch"], c["k"], c["d_sae"]
    acts, idx = o_s.enc.top_acts, o_s.enc.top_indices
    assert o_s.x_hat.shape == (B, c["d_in"]) and acts.shape == idx.shape and acts.shape[0] == B
    assert o_s.enc.pre_acts.shape == (B, d_sae)
    assert idx.dtype == torch.int64 and bool(((idx >= 0) & (idx < d_sae)).all())
    assert bool((acts >= 0).all())
    active = acts > 0
    for b in range(B):  # an active latent appears once per row
        ids = idx[b][active[b]].tolist()
        assert len(ids) == len(set(ids))
    l0 = active.sum(1)
    if c["kind"] == "topk":
        assert acts.shape[1] == k and bool((l0 <= k).all())
    elif c["kind"] == "batchtopk" and training:
        assert int(l0.sum()) <= k * B
    assert torch.equal(idx, o_d.enc.top_indices)
    torch.testing.assert_close(acts, o_d.enc.top_acts)
    torch.testing.assert_close(o_s.x_hat, o_d.x_hat)
    torch.testing.assert_close(sparse.decode(acts, idx), o_s.x_hat)

    for out in (o_s, o_d):
        ((out.x_hat - x).pow(2).mean() + 0.1 * out.enc.top_acts.sum()).backward()
    for (name, p_s), p_d in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        if p_s.grad is None or p_d.grad is None:
            assert p_s.grad is None and p_d.grad is None, name
        else:
            torch.testing.assert_close(p_s.grad, p_d.grad, msg=name)


@settings(max_examples=25, deadline=None)
@given(c=sae_cases(), n_rows=st.integers(1, 40), batch_size=st.integers(1, 16))
def test_encode_rows_gives_each_row_its_own_code(c, n_rows, batch_size):
    sae = _sae(c, dtype=torch.float32)
    if c["kind"] == "batchtopk":  # a learned inference threshold
        sae.threshold.fill_(0.05 * c["scale"])
    sae.eval()
    rows = (np.random.default_rng(c["seed"]).normal(size=(n_rows, c["d_in"]))
            * c["scale"]).astype(np.float32)
    idx, val = encode_rows(sae, rows, torch.device("cpu"), batch_size=batch_size)
    assert idx.shape == val.shape and idx.shape[0] == n_rows
    if c["kind"] == "topk":
        assert idx.shape[1] == c["k"]
    # float32 sums differ slightly with the batch size: compare with a tolerance, and only
    # latents clearly above the firing boundary (0, or batchtopk's threshold)
    eps = 1e-4 * c["scale"]
    floor = float(sae.threshold) if c["kind"] == "batchtopk" else 0.0

    def code(ids, acts, above: float) -> dict[int, float]:
        out: dict[int, float] = {}  # max: padding slots repeat an id with activation 0
        for j, a in zip(ids.tolist(), acts.tolist(), strict=True):
            if a > above:
                out[j] = max(out.get(j, a), a)
        return out

    with torch.no_grad():
        for r in range(n_rows):
            alone = sae.encode(torch.from_numpy(rows[r : r + 1]))
            want = (alone.top_indices[0].numpy(), alone.top_acts[0].numpy())
            got = (idx[r], val[r])
            for a, b in ((want, got), (got, want)):
                strong, weak = code(*a, floor + eps), code(*b, floor - eps)
                assert strong.keys() <= weak.keys(), (r, strong, weak)
                for j, v in strong.items():
                    assert abs(weak[j] - v) <= 1e-4 * abs(v) + eps, (r, j, v, weak[j])


# ----------------------------------------------------------------------------- statistics
@st.composite
def random_codes(draw):
    """Random sparse codes of sentences with 2-3 labels (inactive slots have activation 0)."""
    seed = draw(st.integers(0, 10_000))
    n_sent, d_sae = draw(st.integers(6, 40)), draw(st.integers(3, 25))
    k, n_labels = draw(st.integers(1, 4)), draw(st.integers(2, 3))
    rng = np.random.default_rng(seed)
    labels = np.array(["x", "y", "control"][:n_labels])[rng.integers(0, n_labels, n_sent)]
    labels[:n_labels] = ["x", "y", "control"][:n_labels]  # every label present
    sent_idx = np.repeat(np.arange(n_sent), rng.integers(1, 4, n_sent))
    N = len(sent_idx)
    idx = rng.integers(0, d_sae, size=(N, k))
    planted = np.flatnonzero(labels[sent_idx] == "x")  # some real signal: latent 0 on x
    idx[planted, 0] = 0
    acts = (rng.exponential(size=(N, k)) * (rng.random((N, k)) < 0.7)).astype(np.float32)
    acts[planted, 0] += 2.0
    sents = Sentences(labels=labels, subsets=np.array([""] * n_sent),
                      splits=np.where(rng.random(n_sent) < 0.3, "test", "train"))
    return idx, acts, sent_idx, sents, d_sae, rng


def _analyze(idx, acts, sent_idx, sents, d_sae):
    data = ActivationSet(np.zeros((len(sent_idx), 1), np.float32), sent_idx, sents)
    return analyze_report(idx, acts, data, d_sae,
                           AnalysisConfig(bootstrap=8, permutations=8, probe_k=[1]))


def _sets(rep: dict, relabel=lambda j: j) -> tuple[dict, dict]:
    cats = {lab: (sorted(relabel(j) for j in c["features"]),
                  sorted(relabel(j) for j in c["specific"]))
            for lab, c in rep["categories"].items()}
    pairs = {key: (p["jaccard"], p["jaccard_ci"], p["overlap_coefficient"], p["p_value"],
                   sorted(relabel(j) for j in p["shared"]))
             for key, p in rep["pairs"].items()}
    return cats, pairs


@settings(max_examples=15, deadline=None)
@given(codes=random_codes())
def test_analysis_does_not_depend_on_latent_numbering(codes):
    idx, acts, sent_idx, sents, d_sae, rng = codes
    perm = rng.permutation(d_sae)
    a = _analyze(idx, acts, sent_idx, sents, d_sae)
    b = _analyze(perm[idx], acts, sent_idx, sents, d_sae)
    assert _sets(a, relabel=lambda j: int(perm[j])) == _sets(b)


@settings(max_examples=15, deadline=None)
@given(codes=random_codes())
def test_analysis_does_not_depend_on_row_order(codes):
    idx, acts, sent_idx, sents, d_sae, rng = codes
    order = rng.permutation(len(sent_idx))
    a = _analyze(idx, acts, sent_idx, sents, d_sae)
    b = _analyze(idx[order], acts[order], sent_idx[order], sents, d_sae)
    assert _sets(a) == _sets(b)


@settings(max_examples=60, deadline=None)
@given(p=st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.01, 0.05, 1.0])),
                  min_size=1, max_size=50))
def test_bh_qvalues_match_scipy(p):
    p = np.array(p)
    q = association.bh_qvalues(p)
    np.testing.assert_allclose(q, scipy.stats.false_discovery_control(p, method="bh"),
                               rtol=1e-12, atol=1e-15)
    assert (q >= p - 1e-15).all() and (q <= 1).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(q[order]) >= -1e-15).all()  # a smaller p never gets a larger q


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 300), data=st.data())
def test_fisher_greater_is_the_hypergeometric_upper_tail(M, data):
    K = data.draw(st.integers(0, M))
    n = data.draw(st.integers(0, M))
    a = data.draw(st.integers(max(0, n + K - M), min(n, K)))
    got = float(association.fisher_greater(a, K, n, M))
    want = float(scipy.stats.hypergeom.sf(a - 1, M, K, n))
    assert 0.0 <= got <= 1.0 + 1e-12
    assert abs(got - want) <= 1e-9 * max(want, 1e-300) + 1e-300
