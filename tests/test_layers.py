"""data.also_layers: a layer sweep's layers extracted in one forward pass, each cached under the
key its own run computes. Tiny random 4-layer models, built offline."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sae_exp.config import ModelDataConfig, register_configs, validate
from sae_exp.data import cache
from sae_exp.data import extract as extract_mod
from sae_exp.data.extract import extract, extract_layers, load_model
from sae_exp.data.sources import load_activations
from sae_exp.errors import ConfigError, DataError

CONF = Path(__file__).resolve().parent.parent / "conf"
TEXTS = ["the cat sat on the mat", "if every dog ran fast", "some red house",
         "unless the big blue tree cats not slow", "a dog"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    from test_extract import make_tiny_bert, make_tiny_gpt2

    return {"bert": make_tiny_bert(tmp_path_factory.mktemp("bert4"), n_layers=4),
            "gpt2": make_tiny_gpt2(tmp_path_factory.mktemp("gpt24"), n_layers=4)}


def _sentences():
    from test_extract import sentences

    return sentences(TEXTS)


def _one(model: str, layer: int, pooling: str = "token"):
    return extract(_sentences(), model, layer, pooling, 32, 2, "float32", "cpu")


@pytest.mark.parametrize("which", ["bert", "gpt2"])
@pytest.mark.parametrize("layers", [[1, 2, 3], [0, 2, 4], [3, 1]])
def test_one_pass_gives_each_layers_single_extract(models, which, layers):
    """Early-stop pass ([1,2,3]: up to block 2), full pass (layer 0 and the last layer), any
    order: every layer equals extracting it alone; rows and tokens are shared."""
    got, index, tokens = extract_layers(_sentences(), models[which], layers, "token", 32, 2,
                                        "float32", "cpu")
    assert sorted(got) == sorted(layers)
    for layer in layers:
        acts, one_index, one_tokens = _one(models[which], layer)
        full, _, _ = extract_layers(_sentences(), models[which], [0, layer], "token", 32, 2,
                                    "float32", "cpu")  # output_hidden_states, no hooks
        np.testing.assert_allclose(got[layer], acts, atol=1e-6)
        np.testing.assert_allclose(got[layer], full[layer], atol=1e-6)
        np.testing.assert_array_equal(index, one_index)
        np.testing.assert_array_equal(tokens, one_tokens)
    assert not np.allclose(got[layers[0]], got[layers[1]])


def test_one_forward_per_batch_and_no_block_above_the_deepest(models):
    """[1, 2] on a 4-block model: one model call per batch, and blocks 2 and 3 never run."""
    from sae_exp.data.extract import _blocks, n_layers

    tok, model = load_model(models["bert"], "float32", "cpu")
    calls = {"model": 0, "block2": 0, "block3": 0}
    blocks = _blocks(model, n_layers(model))

    def count(name):
        def hook(*_):
            calls[name] += 1
        return hook

    model.register_forward_pre_hook(count("model"))
    blocks[2].register_forward_pre_hook(count("block2"))
    blocks[3].register_forward_pre_hook(count("block3"))
    extract_layers(_sentences(), models["bert"], [1, 2], "mean", 32, 2, "float32", "cpu",
                   loaded=(tok, model))
    assert calls == {"model": 3, "block2": 0, "block3": 0}  # 5 sentences in batches of 2


def test_put_if_missing_keeps_a_valid_entry_and_skips_a_locked_key(tmp_path):
    import fcntl

    rows, index = np.ones((2, 3), np.float32), np.array([0, 1])
    assert cache.put_if_missing(tmp_path, "k", rows, index, None, {"n": 1})
    assert not cache.put_if_missing(tmp_path, "k", rows * 2, index, None, {"n": 2})
    entry = cache.get_or_build(tmp_path, "k", lambda: pytest.fail("rebuilt"))
    np.testing.assert_array_equal(entry.acts, rows)
    with open(tmp_path / "other.lock", "a+") as held:  # another job is building "other"
        fcntl.flock(held, fcntl.LOCK_EX)
        assert not cache.put_if_missing(tmp_path, "other", rows, index, None, {})
    assert not cache.has(tmp_path, "other")


def _corpus(path: Path) -> str:
    rows = [("the cat sat on the mat", "a"), ("if every dog ran", "b"), ("some red house", "a"),
            ("unless the tree", "b"), ("a big dog", "a"), ("the blue mat", "b")]
    path.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows))
    return str(path)


def _load(cfg, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sae_exp.data.cache"):
        data = load_activations(cfg, seed=0)
    return data, "cache miss" in caplog.text


def _no_extraction(*_a, **_k):
    raise AssertionError("extracted although every layer should be cached")


def test_sweep_extracts_once_and_later_layers_hit_the_cache(models, tmp_path, monkeypatch,
                                                            caplog):
    cfg = ModelDataConfig(source="hf_model", model_path=models["bert"],
                          corpus=_corpus(tmp_path / "c.jsonl"), layer=1, also_layers=[1, 2],
                          cache_dir=str(tmp_path / "cache"), batch_size=2)
    first, miss = _load(cfg, caplog)
    assert miss
    monkeypatch.setattr(extract_mod, "extract_layers", _no_extraction)
    for layer in (1, 2):  # the sweep's jobs, with or without also_layers
        for also in ([1, 2], []):
            cfg.layer, cfg.also_layers = layer, also
            data, miss = _load(cfg, caplog)
            assert not miss
            monkeypatch.undo()
            alone, index, tokens = extract(data.sentences, models["bert"], layer, "token", 128,
                                           2, "float32", "cpu")
            monkeypatch.setattr(extract_mod, "extract_layers", _no_extraction)
            np.testing.assert_allclose(data.acts, alone, atol=1e-6)
            np.testing.assert_array_equal(data.sentence_index, index)
            np.testing.assert_array_equal(data.tokens, tokens)
    assert data.fingerprint != first.fingerprint


def test_a_hit_for_data_layer_extracts_nothing_even_with_uncached_also_layers(models, tmp_path,
                                                                              monkeypatch,
                                                                              caplog):
    cfg = ModelDataConfig(source="hf_model", model_path=models["bert"],
                          corpus=_corpus(tmp_path / "c.jsonl"), layer=3,
                          cache_dir=str(tmp_path / "cache"), batch_size=2)
    _load(cfg, caplog)
    cfg.also_layers = [1, 2]
    monkeypatch.setattr(extract_mod, "extract_layers", _no_extraction)
    _, miss = _load(cfg, caplog)
    assert not miss


def test_out_of_range_also_layers_is_one_line_naming_the_range(models, tmp_path, caplog):
    cfg = ModelDataConfig(source="hf_model", model_path=models["bert"],
                          corpus=_corpus(tmp_path / "c.jsonl"), layer=1, also_layers=[2, 9],
                          cache_dir=str(tmp_path / "cache"), batch_size=2)
    with pytest.raises(DataError) as err:
        load_activations(cfg, seed=0)
    msg = str(err.value)
    assert msg.startswith("data.also_layers=[2, 9] is out of range") and "use 0..4" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match=r"data.layer=7 is out of range .*use 0\.\.4"):
        load_activations(ModelDataConfig(**{**cfg.__dict__, "layer": 7}), seed=0)


@pytest.mark.parametrize("value", ["[-1]", "[1,-2]"])
def test_negative_also_layers_fail_validation(value):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=[f"data.also_layers={value}"]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith("data.also_layers=") and "\n" not in str(err.value)


def test_non_integer_also_layers_fail_at_compose():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"), \
            pytest.raises(ConfigCompositionException):
        compose("config", overrides=["data.also_layers=[a]"])
