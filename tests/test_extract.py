"""Extraction on tiny random models: an encoder (BERT) and a causal LM (GPT-2), built offline."""

from __future__ import annotations

import numpy as np
import pytest

from sae_exp.data.extract import extract
from sae_exp.data.types import Sentences
from sae_exp.errors import DataError

WORDS = ("the a cat dog sat on mat if every some ran fast slow red blue and or not "
         "unless most none big small house tree").split()
TEXTS = ["the cat sat on the mat", "if every dog ran fast", "some red house",
         "unless the big blue tree cats not slow", "a dog"]


def make_tiny_bert(path, n_layers: int = 2) -> str:
    """An n_layers-block random BERT with a WordPiece vocab of WORDS, saved for AutoModel."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=n_layers,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def make_tiny_gpt2(path, n_layers: int = 2) -> str:
    """An n_layers-block random GPT-2, word-level tokenizer, no pad token (as GPT-2 ships)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "<unk>", *WORDS, "cats"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                  unk_token="<unk>")
    cfg = GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=n_layers, n_head=2, n_positions=64)
    GPT2Model(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    return make_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


def sentences(texts=TEXTS) -> Sentences:
    n = len(texts)
    return Sentences(labels=np.array(["x", "y"] * n)[:n], subsets=np.array([""] * n),
                     splits=np.array(["train"] * n), texts=np.array(texts))


def run(model, pooling="token", layer=1, batch_size=2, max_length=32, texts=TEXTS):
    return extract(sentences(texts), model, layer=layer, pooling=pooling, max_length=max_length,
                   batch_size=batch_size, dtype="float32", device="cpu")


def test_token_rows_are_the_real_tokens_of_each_sentence(bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert, local_files_only=True)
    acts, index, tokens = run(bert)
    expected = [tok.tokenize(t) for t in TEXTS]
    assert acts.dtype == np.float32 and acts.shape == (sum(map(len, expected)), 16)
    assert index.dtype == np.int64
    assert list(index) == [i for i, e in enumerate(expected) for _ in e]
    assert list(tokens) == [w for e in expected for w in e]
    assert "[CLS]" not in tokens and "[SEP]" not in tokens and "[PAD]" not in tokens
    assert "##s" in tokens  # "cats" -> cat ##s: word pieces are kept


def test_mean_pooling_is_one_row_per_sentence_equal_to_the_token_mean(bert):
    tok_acts, index, _ = run(bert)
    mean_acts, mean_index, mean_tokens = run(bert, pooling="mean")
    assert mean_acts.shape == (len(TEXTS), 16)
    assert list(mean_index) == list(range(len(TEXTS)))
    assert list(mean_tokens) == TEXTS
    for i in range(len(TEXTS)):
        np.testing.assert_allclose(mean_acts[i], tok_acts[index == i].mean(0), atol=1e-6)


def test_batching_and_padding_do_not_change_the_numbers(bert, gpt2):
    for model in (bert, gpt2):
        one, _, _ = run(model, batch_size=1)
        many, _, _ = run(model, batch_size=len(TEXTS))
        np.testing.assert_allclose(one, many, atol=1e-5)


def test_layers_differ_and_layer_zero_is_the_embeddings(bert):
    a0, _, _ = run(bert, layer=0)
    a2, _, _ = run(bert, layer=2)
    assert a0.shape == a2.shape and not np.allclose(a0, a2)


def test_causal_lm_path(gpt2):
    acts, index, tokens = run(gpt2)
    n_words = [len(t.split()) for t in TEXTS]
    assert acts.shape == (sum(n_words), 16)
    assert list(index) == [i for i, n in enumerate(n_words) for _ in range(n)]
    assert list(tokens[: n_words[0]]) == TEXTS[0].split()
    mean, _, _ = run(gpt2, pooling="mean")
    assert mean.shape == (len(TEXTS), 16)


def test_truncation_keeps_max_length_tokens(bert):
    acts, index, _ = run(bert, max_length=4, texts=["the cat sat on the mat"])
    assert len(acts) == 2  # 4 positions minus [CLS] and [SEP]


def test_wrong_layer_names_the_valid_range(bert):
    with pytest.raises(DataError, match=r"data.layer=7 is out of range .*use 0\.\.2"):
        run(bert, layer=7)


def test_missing_model_and_texts_are_data_errors(tmp_path, bert):
    with pytest.raises(DataError, match="not a local directory"):
        run(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load a Hugging Face model"):
        run(str(tmp_path / "empty"))
    no_text = Sentences(labels=np.array(["a"]), subsets=np.array([""]),
                        splits=np.array(["train"]))
    with pytest.raises(DataError, match="no texts"):
        extract(no_text, bert, 1, "token", 16, 2, "float32", "cpu")


@pytest.mark.parametrize("which", ["bert", "gpt2"])
def test_early_stop_gives_the_full_pass_hidden_states(which, bert, gpt2, tmp_path):
    """Stopping after block layer-1 returns exactly hidden_states[layer] of the full pass."""
    import torch

    from sae_exp.data.extract import _blocks, hidden_state, load_model, n_layers

    tok, model = load_model(bert if which == "bert" else gpt2, "float32", "cpu")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    blocks = _blocks(model, n_layers(model))
    assert blocks is not None
    with torch.inference_mode():
        full = model(**enc, output_hidden_states=True).hidden_states
        for layer in range(len(full)):
            got = hidden_state(model, enc["input_ids"], enc["attention_mask"], layer, blocks)
            assert torch.equal(got, full[layer]), layer
