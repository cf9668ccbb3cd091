"""The real configs compose, every experiment is valid, and bad values fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sae_exp.config import Config, register_configs, validate
from sae_exp.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"
register_configs()


def typed(overrides: list[str]) -> Config:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_object(cfg)


def test_default_config_is_logic_minilm_topk():
    cfg = typed([])
    validate(cfg)
    assert cfg.data.source == "logic_minilm" and cfg.sparsity.kind == "topk"
    assert cfg.wandb.mode == "offline"
    assert cfg.model.hidden_dim == 2048 and cfg.sparsity.top_k == 30


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(experiment):
    validate(typed([f"experiment={experiment}"]))


def test_seed_notebook_matches_the_notebook():
    cfg = typed(["experiment=seed_notebook"])
    m, s = cfg.model, cfg.sparsity
    assert (m.hidden_dim, s.top_k, s.sparsity_coeff) == (2048, 30, 0.1)
    assert (cfg.optimizer.lr, cfg.trainer.epochs, cfg.trainer.batch_size) == (5e-4, 200, None)
    assert (cfg.sparsity.l1_warmup_epochs, cfg.optimizer.grad_clip, cfg.model.init_gain) == (
        50, 1.0, 0.1)
    assert (cfg.optimizer.schedule, cfg.optimizer.min_lr_ratio) == ("cosine", 0.0)


def test_training_defaults_are_the_benchmarked_ones():
    """README, "Training defaults and the ground-truth benchmark": each is justified there."""
    cfg = typed([])
    assert (cfg.model.init_gain, cfg.optimizer.schedule, cfg.optimizer.decay_fraction) == (
        1.0, "linear_decay", 0.2)
    assert (cfg.optimizer.lr, cfg.optimizer.grad_clip, cfg.sparsity.kind) == (2e-3, 1.0, "topk")


@pytest.mark.parametrize("source", ["synthetic", "file", "hf_model", "logic_minilm"])
def test_each_data_source_has_its_schema(source):
    extra = {"file": ["data.path=x.npz"], "hf_model": ["data.model_path=/m"]}.get(source, [])
    cfg = typed([f"data={source}", *extra])
    assert cfg.data.source == source


@pytest.mark.parametrize(
    "override, key",
    [
        ("sparsity.top_k=0", "sparsity.top_k"),
        ("sparsity.top_k=5000", "sparsity.top_k"),
        ("model.hidden_dim=0", "model.hidden_dim"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1e-3", "optimizer.lr"),
        ("sparsity.sparsity_coeff=-0.1", "sparsity.sparsity_coeff"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("analysis.alpha=1.5", "analysis.alpha"),
        ("analysis.alpha=0", "analysis.alpha"),
        ("sparsity.kind=jumprelu", "sparsity.kind"),
        ("wandb.mode=sometimes", "wandb.mode"),
        ("data.pooling=max", "data.pooling"),
        ("data.normalize=zscore", "data.normalize"),
        ("model.decoder_impl=triton", "model.decoder_impl"),
        ("optimizer.decay_fraction=0", "optimizer.decay_fraction"),
        ("optimizer.schedule=step", "optimizer.schedule"),
    ],
)
def test_invalid_values_name_key_value_and_allowed(override, key):
    cfg = typed([override])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert msg.startswith(key + "=") and "\n" not in msg
    assert ("allowed values are" in msg) or ("use" in msg)


@pytest.mark.parametrize("override", ["model.hiden_dim=10", "sparsity.top_k=abc", "data=nope"])
def test_unknown_keys_and_wrong_types_fail_at_compose(override):
    with pytest.raises(ConfigCompositionException):
        typed([override])
