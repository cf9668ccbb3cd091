"""Interop with SAELens and sparsify: their loaders read our exports, we read their saves.

The round trips use the real libraries (`pip install -e '.[peers]'`); without them those tests
skip and say so. Refusals and the d_in check need no library.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sae_exp.data.normalize import Normalizer
from sae_exp.errors import ConfigError
from sae_exp.model.interop import export_sae, import_sae
from sae_exp.model.sae import SAE
from tests.conftest import TINY, run_cli

D, M, K, N = 16, 64, 4, 300
NEED_SAELENS = "sae-lens not installed: pip install -e '.[peers]' to run the SAELens round trip"
NEED_SPARSIFY = "eai-sparsify not installed: pip install -e '.[peers]' to run the sparsify trip"


def _our_sae(kind: str = "topk", center: bool = True) -> SAE:
    """A random SAE with non-zero biases (a zero bias would hide a mishandled one)."""
    sae = SAE(D, M, kind=kind, k=K, init_gain=1.0, center_input=center).eval()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.3)
        sae.threshold.fill_(0.2)
    return sae


def _mask(idx: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """[B, M] bool: the latents with a non-zero activation."""
    return torch.zeros(len(idx), M, dtype=torch.bool).scatter_(1, idx, acts > 0)


def _ours_raw(sae: SAE, norm: Normalizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Our reconstruction mapped back to raw space, and our active latents, for raw rows x."""
    with torch.no_grad():
        out = sae(torch.as_tensor(norm(x.numpy())))
    a = norm.scale if norm.kind == "scale_to_sqrt_d" else 1.0
    c = torch.as_tensor(norm.mean) if norm.kind == "mean_center" else 0.0
    return out.x_hat / a + c, _mask(out.enc.top_indices, out.enc.top_acts)


NORMS = [Normalizer("none"),
         Normalizer("mean_center", mean=np.linspace(-1, 1, D, dtype=np.float32)),
         Normalizer("scale_to_sqrt_d", scale=2.5)]
CASES = [("topk", True, n) for n in NORMS] + [
    ("topk", False, NORMS[1]), ("relu_l1", True, NORMS[0]), ("batchtopk", False, NORMS[2])]


@pytest.mark.parametrize(("kind", "center", "norm"), CASES,
                         ids=[f"{k}-center{c}-{n.kind}" for k, c, n in CASES])
def test_saelens_loads_our_export(tmp_path, kind, center, norm):
    sl = pytest.importorskip("sae_lens", reason=NEED_SAELENS)
    sae, x = _our_sae(kind, center), torch.randn(N, D) * 2
    export_sae(sae, norm, tmp_path / "out", "saelens")
    theirs = sl.SAE.load_from_disk(tmp_path / "out")  # no arguments: dtype etc. from cfg.json
    with torch.no_grad():
        feats = theirs.encode(x)
        recon = theirs.decode(feats)
    x_hat, active = _ours_raw(sae, norm, x)
    assert torch.allclose(recon, x_hat, atol=1e-5), (recon - x_hat).abs().max()
    assert torch.equal(feats > 0, active)
    assert active.any(1).all()


@pytest.mark.parametrize(("center", "norm"), [(True, NORMS[0]), (False, NORMS[1]),
                                              (True, NORMS[2])])
def test_sparsify_loads_our_export(tmp_path, center, norm):
    sp = pytest.importorskip("sparsify", reason=NEED_SPARSIFY)
    sae, x = _our_sae("topk", center), torch.randn(N, D) * 2
    export_sae(sae, norm, tmp_path / "out", "sparsify")
    theirs = sp.SparseCoder.load_from_disk(tmp_path / "out")
    with torch.no_grad():
        enc = theirs.encode(x)
        recon = theirs.decode(enc.top_acts, enc.top_indices)
    x_hat, active = _ours_raw(sae, norm, x)
    assert torch.allclose(recon, x_hat, atol=1e-5), (recon - x_hat).abs().max()
    assert torch.equal(_mask(enc.top_indices, enc.top_acts), active)


def _perturbed(module: torch.nn.Module) -> None:
    """Random parameters with decoder rows of uneven norm (tests the norm folding)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("rescale", [False, True])
def test_we_read_a_saelens_saved_topk(tmp_path, rescale):
    sl = pytest.importorskip("sae_lens", reason=NEED_SAELENS)
    theirs = sl.TopKSAE(sl.TopKSAEConfig(d_in=D, d_sae=M, k=K,
                                         rescale_acts_by_decoder_norm=rescale))
    _perturbed(theirs)
    theirs.save_model(tmp_path / "sl")
    imp = import_sae(tmp_path / "sl", d_in=D)
    x = torch.randn(N, D)
    with torch.no_grad():
        feats = theirs.encode(x)
        recon = theirs.decode(feats)
        ours = imp.sae(x)
    assert imp.layout == "saelens" and imp.sae.k == K
    assert torch.equal(_mask(ours.enc.top_indices, ours.enc.top_acts), feats > 0)
    assert torch.allclose(ours.x_hat, recon, atol=1e-5)


def test_we_read_a_sparsify_saved_coder(tmp_path):
    sp = pytest.importorskip("sparsify", reason=NEED_SPARSIFY)
    theirs = sp.SparseCoder(D, sp.SparseCoderConfig(num_latents=M, k=K))
    _perturbed(theirs)
    theirs.save_to_disk(tmp_path / "sp")
    imp = import_sae(tmp_path / "sp", d_in=D)
    x = torch.randn(N, D)
    with torch.no_grad():
        enc = theirs.encode(x)
        recon = theirs.decode(enc.top_acts, enc.top_indices)
        ours = imp.sae(x)
    assert imp.layout == "sparsify"
    assert torch.equal(_mask(ours.enc.top_indices, ours.enc.top_acts),
                       _mask(enc.top_indices, enc.top_acts))
    assert torch.allclose(ours.x_hat, recon, atol=1e-5)


def test_saelens_gated_and_per_latent_jumprelu_are_refused(tmp_path):
    sl = pytest.importorskip("sae_lens", reason=NEED_SAELENS)
    sl.GatedSAE(sl.GatedSAEConfig(d_in=D, d_sae=M)).save_model(tmp_path / "gated")
    jump = sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=D, d_sae=M))
    with torch.no_grad():
        jump.threshold.copy_(torch.rand(M))
    jump.save_model(tmp_path / "jump")
    for name, word in [("gated", "'gated'"), ("jump", "per-latent thresholds")]:
        with pytest.raises(ConfigError) as err:
            import_sae(tmp_path / name)
        assert word in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("cfg", "word"), [({"activation": "groupmax"}, "groupmax"),
                                           ({"skip_connection": True}, "skip connection"),
                                           ({"transcode": True}, "transcoder")])
def test_sparsify_architectures_we_cannot_encode_are_refused(tmp_path, cfg, word):
    export_sae(_our_sae(), Normalizer("none"), tmp_path, "sparsify")
    saved = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**saved, **cfg}))
    with pytest.raises(ConfigError, match=word):
        import_sae(tmp_path)


def test_d_in_mismatch_is_one_line(tmp_path):
    export_sae(_our_sae(), Normalizer("none"), tmp_path, "saelens")
    assert import_sae(tmp_path, d_in=D).sae.d_in == D
    with pytest.raises(ConfigError) as err:
        import_sae(tmp_path, d_in=D + 1)
    assert f"d_in={D}" in str(err.value) and f"d_in={D + 1}" in str(err.value)
    assert "\n" not in str(err.value)


def test_sparsify_export_refuses_batchtopk(tmp_path):
    with pytest.raises(ConfigError, match="--to saelens"):
        export_sae(_our_sae("batchtopk"), Normalizer("none"), tmp_path, "sparsify")


def test_run_init_from_writes_the_report_without_training(tmp_path):
    """The whole CLI path: export a (sparsify) SAE of the TINY data's width, analyse it."""
    export_sae(_our_sae(), Normalizer("none"), tmp_path / "peer", "sparsify")
    tiny = [a for a in TINY if not a.startswith("data.d_in")] + [f"data.d_in={D}"]
    res = run_cli("sae_exp.run", [*tiny, "hydra.run.dir=run",
                                  f"model.init_from={tmp_path / 'peer'}"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["run"]["steps"] == 0 and rep["run"]["init_from"]["layout"] == "sparsify"
    assert rep["run"]["d_sae"] == M and rep["metrics"]["l0"] <= K
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no training step was logged
    bad = run_cli("sae_exp.run", [*tiny[:-1], "data.d_in=12", "hydra.run.dir=bad",
                                  f"model.init_from={tmp_path / 'peer'}"], tmp_path)
    assert bad.returncode == 2 and "the data has d_in=12" in bad.stderr


def _fake_run(run_dir, normalize: str = "none") -> SAE:
    """A run dir holding what `export` reads: sae.safetensors + cfg.json (+ the mean)."""
    from sae_exp import files

    sae = _our_sae()
    files.save_sae(run_dir, sae, {"normalize": {"kind": normalize, "scale": 1.0}})
    return sae


def test_export_cli_writes_once_and_never_overwrites(tmp_path, capsys):
    from sae_exp import export

    sae = _fake_run(tmp_path / "run")
    assert export.main([str(tmp_path / "run"), "--to", "saelens", str(tmp_path / "out")]) == 0
    assert "SAE.load_from_disk" in capsys.readouterr().err
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert set(before) == {"sae_weights.safetensors", "cfg.json"}
    assert json.loads(before["cfg.json"])["dtype"] == "float32"
    assert export.main([str(tmp_path / "run"), "--to", "sparsify", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not an empty directory" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    back = import_sae(tmp_path / "out")  # and our own reader takes the export back
    x = torch.randn(N, D)
    with torch.no_grad():
        assert torch.allclose(back.sae(x).x_hat, sae(x).x_hat, atol=1e-5)


def test_export_cli_needs_the_runs_mean(tmp_path, capsys):
    from sae_exp import export

    _fake_run(tmp_path / "run", normalize="mean_center")  # normalization.safetensors missing
    assert export.main([str(tmp_path / "run"), "--to", "saelens", str(tmp_path / "out")]) == 2
    assert "normalization.safetensors is missing" in capsys.readouterr().err


def test_init_from_is_validated(tmp_path):
    from sae_exp.config import Config, SyntheticDataConfig, validate

    cfg = Config(data=SyntheticDataConfig())
    cfg.model.init_from = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="model.init_from"):
        validate(cfg)
    export_sae(_our_sae(), Normalizer("none"), tmp_path / "ok", "saelens")
    cfg.model.init_from = str(tmp_path / "ok")
    validate(cfg)
    cfg.resume = str(tmp_path)
    with pytest.raises(ConfigError, match="resume"):
        validate(cfg)


def test_bench_peers_without_the_libraries_says_how_to_install(monkeypatch, capsys):
    from sae_exp import bench_peers

    monkeypatch.setattr(bench_peers, "installed", lambda: {})
    assert bench_peers.run_peers(quick=True)["status"] == "missing"
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "pip install -e '.[peers]'" in out


def test_bench_peers_quick(capsys):
    pytest.importorskip("sae_lens", reason=NEED_SAELENS)
    pytest.importorskip("sparsify", reason=NEED_SPARSIFY)
    from sae_exp import bench

    res = bench.main(["--peers-quick", "--threads", "1"])["peers"]
    printed = capsys.readouterr().out
    assert res["status"] == "ok" and set(res["versions"]) >= {"saelens", "sparsify"}
    names = {"floor", "ours", "sparsify", "saelens", "saelens_sparse"}
    assert set(res["speed"]) == names and all(n in printed for n in names)
    for name, r in res["speed"].items():
        assert len(r["times"]) == 2 and r["min_s"] <= r["median_s"] <= r["max_s"], name
        if r["ours_faster"] is not None:  # paired per round: peer time / our time
            ours = res["speed"]["ours"]["times"]
            ratios = sorted(p / q for p, q in zip(r["times"], ours, strict=True))
            assert r["ours_faster"] == pytest.approx(sum(ratios) / 2)
    gt = res["ground_truth"]
    assert set(gt) == {"ours", "sparsify", "saelens"}
    for r in gt.values():
        assert 0 <= r["fvu"] < 1.5 and 0 <= r["dead"] <= 1 and 0 <= r["recovery"] <= 1
    assert "held-out FVU" in printed and "recovery" in printed


def test_recovery_counts_true_features():
    """The ground-truth metric itself: the true dictionary recovers everything, noise little."""
    from sae_exp.bench_peers import Impl, evaluate, ground_truth

    X, truth = ground_truth(16, 32, 2, 512, seed=0)
    assert X.shape == (512, 16)

    def encode(x):
        return x, torch.ones(len(x), 32, dtype=torch.bool)

    perfect = evaluate(Impl("t", None, encode, lambda: truth), X, truth)
    assert perfect["recovery"] == 1.0 and perfect["fvu"] == 0.0 and perfect["dead"] == 0.0
    noise = evaluate(Impl("n", None, encode, lambda: torch.randn(64, 16)), X, truth)
    assert noise["recovery"] < 0.2


def test_pre_6_saelens_topk_config_is_read(tmp_path):
    """SAELens < 6 wrote top-k as activation_fn_str='topk' + activation_fn_kwargs.k."""
    sae = _our_sae()
    export_sae(sae, Normalizer("none"), tmp_path, "saelens")
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    old = {k: v for k, v in cfg.items() if k not in ("architecture", "k", "metadata")}
    (tmp_path / "cfg.json").write_text(json.dumps(
        {**old, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": K}}))
    back = import_sae(tmp_path)
    assert back.sae.kind == "topk" and back.sae.k == K
