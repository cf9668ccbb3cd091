"""The SAE's math: shapes, top-k at inference, unit-norm decoder, a real tie, save/load."""

from __future__ import annotations

import pytest
import torch

from sae_exp import files
from sae_exp.config import OptimizerConfig, SparsityConfig, TrainerConfig
from sae_exp.data.stream import RowStream
from sae_exp.model.sae import SAE
from sae_exp.train.trainer import Trainer, lr_factor


def test_shapes_follow_saelens_names():
    sae = SAE(d_in=12, d_sae=40, k=5)
    x = torch.randn(7, 12)
    out = sae(x)
    assert sae.W_enc.shape == (12, 40) and sae.W_dec.shape == (40, 12)
    assert sae.b_enc.shape == (40,) and sae.b_dec.shape == (12,)
    assert out.x_hat.shape == (7, 12)
    assert out.enc.top_acts.shape == (7, 5) and out.enc.top_indices.shape == (7, 5)


@pytest.mark.parametrize("training", [True, False])
def test_topk_applies_in_training_and_at_inference(training):
    sae = SAE(d_in=10, d_sae=50, k=3)
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every pre-activation positive: without top-k all 50 would fire
    sae.train(training)
    enc = sae.encode(torch.randn(20, 10))
    assert ((enc.top_acts > 0).sum(1) <= 3).all()
    dense = torch.zeros(20, 50).scatter(1, enc.top_indices, enc.top_acts)
    assert ((dense > 0).sum(1) == 3).all()


def test_encode_picks_the_largest_preactivations():
    sae = SAE(d_in=6, d_sae=30, k=4, center_input=False)
    x = torch.randn(9, 6)
    pre = torch.relu(x @ sae.W_enc + sae.b_enc)
    enc = sae.encode(x)
    expect = pre.topk(4, dim=1).values.sort(dim=1).values
    assert torch.allclose(enc.top_acts.sort(dim=1).values, expect, atol=1e-6)


def _one_step(sae: SAE, x: torch.Tensor) -> None:
    tr = Trainer(sae, OptimizerConfig(lr=1e-2), SparsityConfig(top_k=sae.k),
                 TrainerConfig(epochs=1, batch_size=None, log_every=1), torch.device("cpu"))
    import numpy as np

    tr.fit(RowStream(x.numpy(), np.arange(len(x)), None, seed=0))


def test_decoder_rows_unit_norm_after_training():
    sae = SAE(d_in=8, d_sae=24, k=3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(24), atol=1e-5)
    _one_step(sae, torch.randn(64, 8) * 3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(24), atol=1e-5)


def test_tie_is_one_shared_parameter():
    sae = SAE(d_in=8, d_sae=24, k=3, tied=True)
    names = [n for n, _ in sae.named_parameters()]
    assert names == ["_W_enc", "b_enc", "b_dec"]  # W_enc and W_dec are views of _W_enc
    assert list(sae.state_dict()) == ["W_enc", "b_enc", "b_dec", "threshold"]
    assert sae.W_dec.data_ptr() == sae.W_enc.data_ptr()
    _one_step(sae, torch.randn(64, 8))
    assert torch.equal(sae.W_dec, sae.W_enc.t())  # still the same storage after updates
    untied = SAE(d_in=8, d_sae=24, k=3, tied=False)
    assert untied.W_dec.data_ptr() != untied.W_enc.data_ptr()


def test_untied_decoder_starts_as_normalised_encoder_transpose():
    sae = SAE(d_in=8, d_sae=24, k=3)
    w = sae.W_enc.detach().t()
    assert torch.allclose(sae.W_dec, w / w.norm(dim=1, keepdim=True), atol=1e-6)


def test_notebook_cosine_schedule():
    # no warm-up: CosineAnnealingLR(T_max=total) stepped once per step
    assert lr_factor(0, 200, 0, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(100, 200, 0, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(10, 100, 20, "cosine", 0.0) == pytest.approx(11 / 20)
    assert lr_factor(50, 100, 0, "constant", 0.0) == 1.0


def test_linear_decay_is_constant_then_falls_to_the_floor_over_the_last_fifth():
    f = [lr_factor(s, 100, 0, "linear_decay", 0.0, 0.2) for s in range(100)]
    assert f[:80] == [1.0] * 80  # constant for the first 80% of the steps
    assert f[80] == pytest.approx(1 - 1 / 20) and f[89] == pytest.approx(0.5)
    assert f[99] == pytest.approx(0.0)  # the last step reaches lr * min_lr_ratio
    assert all(a > b for a, b in zip(f[79:], f[80:], strict=False))
    assert lr_factor(99, 100, 0, "linear_decay", 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(3, 100, 10, "linear_decay", 0.0, 0.2) == pytest.approx(0.4)  # warm-up first


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu_l1"])
@pytest.mark.parametrize("tied", [False, True])
def test_save_load_roundtrip(tmp_path, kind, tied):
    sae = SAE(d_in=8, d_sae=24, kind=kind, k=3, tied=tied)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.threshold.fill_(0.25)
    files.save_sae(tmp_path, sae, {"normalize": {"kind": "none"}})
    loaded, cfg = files.load_sae(tmp_path)
    assert cfg["architecture"] == kind and cfg["d_sae"] == 24
    x = torch.randn(5, 8)
    sae.eval()
    assert torch.allclose(loaded(x).x_hat, sae(x).x_hat, atol=1e-6)


def test_load_rejects_wrong_shapes(tmp_path):
    from sae_exp.errors import DataError

    files.save_sae(tmp_path, SAE(d_in=8, d_sae=24, k=3), {})
    cfg = (tmp_path / files.SAE_CFG).read_text().replace('"d_sae": 24', '"d_sae": 25')
    (tmp_path / files.SAE_CFG).write_text(cfg)
    with pytest.raises(DataError, match="W_enc should have shape"):
        files.load_sae(tmp_path)


def test_state_dict_keeps_the_saelens_layout_and_loads_old_checkpoints():
    """The registered parameter is _W_enc [d_sae, d_in]; state_dict() still says W_enc
    [d_in, d_sae], and a state dict written before (W_enc [d_in, d_sae], any strides) loads."""
    sae = SAE(d_in=6, d_sae=14, k=3)
    sd = sae.state_dict()
    assert list(sd) == ["W_enc", "b_enc", "b_dec", "_W_dec", "threshold"]
    assert sd["W_enc"].shape == (6, 14) and torch.equal(sd["W_enc"], sae.W_enc)
    old = {k: torch.randn_like(v) for k, v in sd.items()}
    old["W_enc"] = torch.randn(6, 14)  # row-major, as a user-built or converted file may be
    new = SAE(d_in=6, d_sae=14, k=3)
    new.load_state_dict(old)  # strict: no missing or unexpected keys
    assert torch.equal(new.W_enc, old["W_enc"]) and torch.equal(new.W_dec, old["_W_dec"])
    assert new._W_enc.is_contiguous() and new._W_enc.shape == (14, 6)
    tied = SAE(d_in=6, d_sae=14, k=3, tied=True)
    tied.load_state_dict({k: v for k, v in old.items() if k != "_W_dec"})
    assert torch.equal(tied.W_dec, old["W_enc"].t())


def test_training_buffers_are_reused_only_when_nobody_holds_them():
    """The pre-activations (and the sparse gradients) come from recycled CPU buffers: one the
    caller still holds is never overwritten; one it dropped is used again."""
    sae = SAE(d_in=8, d_sae=32, k=3)
    x1, x2 = torch.randn(5, 8), torch.randn(5, 8)
    held = sae.encode(x1).pre_acts
    want = held.clone()
    second = sae.encode(x2).pre_acts
    assert torch.equal(held, want)  # not overwritten by the second forward
    assert second.data_ptr() != held.data_ptr()
    ptr = second.data_ptr()
    del second
    assert sae.encode(x1).pre_acts.data_ptr() == ptr  # dropped: reused
    sae.eval()
    assert torch.equal(sae.encode(x1).pre_acts, held)  # same values outside the pool

    sae.train()
    sae(x1).x_hat.pow(2).sum().backward()
    grads = [p.grad.clone() for p in (sae._W_enc, sae._W_dec)]
    held_grads = [sae._W_enc.grad, sae._W_dec.grad]
    pooled = {g.data_ptr() for g in held_grads}
    sae.zero_grad(set_to_none=True)
    sae(x2).x_hat.pow(2).sum().backward()
    assert all(torch.equal(h, g) for h, g in zip(held_grads, grads, strict=True))
    ptrs = {sae._W_enc.grad.data_ptr(), sae._W_dec.grad.data_ptr()}
    assert not ptrs & pooled  # held: fresh buffers
    del held_grads
    sae.zero_grad(set_to_none=True)
    sae(x2).x_hat.pow(2).sum().backward()
    assert {sae._W_enc.grad.data_ptr(), sae._W_dec.grad.data_ptr()} <= ptrs | pooled  # reused
