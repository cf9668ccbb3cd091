"""Activation sources behind `data=`: logic_minilm, hf_model, file, synthetic.

Every source returns an `ActivationSet`; the same checks run on each (finite rows, lengths,
at least two labels) so later stages can trust what they get.

Model sources (logic_minilm, hf_model): corpus -> activation cache -> `extract`. The cache key
(also the set's fingerprint) hashes the extraction code version, the transformers version, the
model (see `cache.model_fingerprint`), layer, pooling, max_length, dtype and the corpus file's
bytes. A split drawn from `test_fraction` and the seed is not part of it: it is re-derived from
those config values, so runs with different seeds share one entry. `data.also_layers`: on a miss,
those layers (where not cached yet) come out of the same forward pass and are cached under the
keys their own runs compute, so a layer sweep extracts once.

File source, `data.path=`:
- an `.npz` with `activations` [N, d] float, `labels` [N] str and optionally `sentence_ids` [N]
  int (rows of one sentence share an id), `texts`, `subsets`, `splits` (train|test), `tokens`,
  all [N]; or
- a directory of shards: `acts_*.npy` or `acts_*.safetensors` (tensor `activations`), taken in
  natural name order (acts_2 before acts_10) and stacked along rows, plus `meta.npz` or
  `meta.json` holding the other keys above for all rows. One `.npy` shard stays memory-mapped;
  several are stacked in memory, so for data larger than RAM write one `acts_0.npy`.
A truth file beside the data (`<name>.truth.npz`, or `truth.npz` in a shard dir; written by
`ground_truth.write`) makes it a ground-truth benchmark: the known dictionary becomes the set's
`planted` and the report gains a recovery section.
The fingerprint of a file source is the sha256 of its files' contents (the truth file included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sae_exp.corpora import shipped_corpus_path
from sae_exp.data import cache, ground_truth
from sae_exp.data.corpus import SPLITS, load_corpus, stratified_split
from sae_exp.data.types import ActivationSet, Sentences
from sae_exp.errors import DataError

log = logging.getLogger(__name__)

OPTIONAL_KEYS = ("sentence_ids", "texts", "subsets", "splits", "tokens")


def load_activations(data_cfg, seed: int, device: str = "cpu") -> ActivationSet:
    """Load (or extract and cache) the activations `data_cfg` describes, checked."""
    source = data_cfg.source
    if source in ("logic_minilm", "hf_model"):
        aset = _from_model(data_cfg, seed, device)
    elif source == "file":
        aset = _from_file(data_cfg, seed)
    elif source == "synthetic":
        from sae_exp.data.synthetic import make_synthetic

        aset = make_synthetic(data_cfg)
    else:
        raise DataError(f"data.source={source!r} is unknown: use logic_minilm, hf_model, file "
                        "or synthetic.")
    return check(aset, drop_nonfinite=bool(getattr(data_cfg, "drop_nonfinite", False)))


# ---------------------------------------------------------------- model sources
def _from_model(cfg, seed: int, device: str) -> ActivationSet:
    from sae_exp.data.extract import minilm_path

    model_path = cfg.model_path
    if not model_path:
        if cfg.source == "hf_model":
            raise DataError("data=hf_model needs data.model_path=<local Hugging Face model dir>.")
        model_path = minilm_path()
    model_path = str(Path(model_path).expanduser())
    corpus_path = Path(cfg.corpus).expanduser() if cfg.corpus else shipped_corpus_path()
    sentences = load_corpus(str(corpus_path) if cfg.corpus else None, cfg.test_fraction, seed)
    also = sorted({int(x) for x in (getattr(cfg, "also_layers", None) or [])} - {int(cfg.layer)})
    if also:
        _check_layers(int(cfg.layer), also, model_path)
    key_of_layer = _layer_keys(cfg, model_path, corpus_path)
    key = key_of_layer(int(cfg.layer))
    info = {"source": cfg.source, "model_path": model_path, "layer": int(cfg.layer),
            "pooling": cfg.pooling, "max_length": int(cfg.max_length), "dtype": cfg.dtype,
            "corpus": str(corpus_path), "n_sentences": len(sentences)}

    def build():
        return _extract_and_share(cfg, sentences, model_path, device, info, also, key_of_layer)

    entry = cache.get_or_build(cfg.cache_dir, key, build)
    if len(entry.sentence_index) and int(entry.sentence_index.max()) >= len(sentences):
        raise DataError(f"cache entry {entry.path} does not match the corpus; delete it.")
    return ActivationSet(acts=entry.acts, sentence_index=entry.sentence_index,
                         sentences=sentences, tokens=entry.tokens, fingerprint=key,
                         meta={**info, "cache_key": key, "cache_entry": str(entry.path)})


def _layer_keys(cfg, model_path: str, corpus_path: Path):
    """layer -> cache key: what a run with data.layer=<layer> and this config would use."""
    import transformers

    from sae_exp.data.extract import EXTRACT_VERSION

    parts = {"extract_version": EXTRACT_VERSION, "transformers": transformers.__version__,
             "model": cache.model_fingerprint(model_path), "pooling": cfg.pooling,
             "max_length": int(cfg.max_length), "dtype": cfg.dtype,
             "corpus_sha256": cache.sha256_file(corpus_path)}
    return lambda layer: cache.key_of({**parts, "layer": int(layer)})


def _check_layers(layer: int, also: list[int], model_path: str) -> None:
    """data.layer and data.also_layers against the model's layer count (read from its config,
    so a bad value fails even when data.layer is a cache hit)."""
    from transformers import AutoConfig

    from sae_exp.data.extract import check_layer_range, n_layers

    try:
        top = n_layers(AutoConfig.from_pretrained(model_path, local_files_only=True))
    except (OSError, ValueError, KeyError):
        return  # extraction reports the unloadable model with its own message
    check_layer_range("data.layer", layer, top, model_path)
    check_layer_range("data.also_layers", also, top, model_path)


def _extract_and_share(cfg, sentences: Sentences, model_path: str, device: str, info: dict,
                       also: list[int], key_of_layer):
    """data.layer's (acts, sentence_index, tokens, info) for the cache, extracted in one pass
    with every layer of `also` that has no cache entry yet; those are written under their own
    keys, so the later jobs of a layer sweep hit the cache."""
    from sae_exp.data.extract import extract_layers

    layer = int(cfg.layer)
    extra = [x for x in also if not cache.has(cfg.cache_dir, key_of_layer(x))]
    acts, index, tokens = extract_layers(sentences, model_path, [layer, *extra], cfg.pooling,
                                         int(cfg.max_length), int(cfg.batch_size), cfg.dtype,
                                         device)
    for x in extra:
        cache.put_if_missing(cfg.cache_dir, key_of_layer(x), acts[x], index, tokens,
                             {**info, "layer": x})
    return acts[layer], index, tokens, info


# ---------------------------------------------------------------- file source
def _from_file(cfg, seed: int) -> ActivationSet:
    p = Path(cfg.path).expanduser()
    if not p.exists():
        raise DataError(f"data.path={p} does not exist.")
    if p.is_dir():
        acts, fields, files = _read_shard_dir(p)
    else:
        fields = _read_npz(p)
        if "activations" not in fields:
            raise DataError(f"{p}: missing key 'activations'; found keys: "
                            f"{', '.join(fields) or '(none)'}.")
        acts, files = fields.pop("activations"), [p]
    aset = assemble(str(p), acts, fields, cfg.test_fraction, seed)
    aset.planted = ground_truth.load_truth(p)  # a ground-truth benchmark's known dictionary
    if aset.planted is not None:
        files = [*files, ground_truth.truth_path(p)]
    aset.fingerprint = _hash_files(files)
    aset.meta = {"source": "file", "path": str(p), "files": [f.name for f in files]}
    return aset


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise DataError(f"{p} is not a readable .npz file; save it with np.savez(path, "
                        "activations=..., labels=...).") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{p} holds a single array, not an .npz; save it with np.savez(path, "
                        "activations=..., labels=...).")
    out = {}
    with z:
        for k in z.files:
            try:
                out[k] = z[k]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise DataError(f"{p}: key {k!r} cannot be read ({e}); the file is "
                                    "damaged: write it again.") from None
                raise DataError(f"{p}: key {k!r} holds Python objects; save strings with "
                                "np.asarray(x, dtype=str).") from None
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                raise DataError(f"{p}: key {k!r} cannot be read ({e}); the file is damaged: "
                                "write it again.") from None
    return out


def _natural(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _read_shard_dir(d: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[Path]]:
    shards = sorted((f for f in d.iterdir() if f.name.startswith("acts")
                     and f.suffix in (".npy", ".safetensors")), key=_natural)
    if not shards:
        raise DataError(f"data.path={d} is a directory without acts_*.npy or "
                        "acts_*.safetensors shards.")
    if {f.suffix for f in shards} == {".npy", ".safetensors"}:
        raise DataError(f"{d} mixes .npy and .safetensors shards; use one format.")
    if (d / "meta.npz").is_file():
        meta_file = d / "meta.npz"
        fields = _read_npz(meta_file)
    elif (d / "meta.json").is_file():
        meta_file = d / "meta.json"
        try:
            raw = json.loads(meta_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{meta_file} is not valid UTF-8 JSON: {e}.") from None
        if not isinstance(raw, dict):
            raise DataError(f"{meta_file} must hold an object with a list per key.")
        fields = {k: np.asarray(v) for k, v in raw.items()}
    else:
        raise DataError(f"{d} has no meta.npz or meta.json with the labels of the rows.")
    parts = [_read_shard(f) for f in shards]
    for f, a in zip(shards, parts, strict=True):
        if a.ndim != 2 or a.shape[1] != parts[0].shape[1]:
            raise DataError(f"shard {f} has shape {a.shape}; every shard must be [rows, "
                            f"{parts[0].shape[-1]}].")
    if len(parts) == 1:
        acts = parts[0]
    else:
        log.info("stacking %d shards from %s in memory", len(parts), d)
        acts = np.concatenate([np.asarray(a) for a in parts])
    return acts, fields, [*shards, meta_file]


def _read_shard(f: Path) -> np.ndarray:
    try:
        if f.suffix == ".npy":
            return np.load(f, mmap_mode="r", allow_pickle=False)
        from safetensors.numpy import load_file

        tensors = load_file(str(f))
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise DataError(f"shard {f} is not readable: {e}.") from None
    if "activations" in tensors:
        return tensors["activations"]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise DataError(f"shard {f} has tensors {', '.join(tensors)}; name the data 'activations'.")


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + cache.sha256_file(f).encode())
    return h.hexdigest()[:32]


def assemble(where: str, acts: np.ndarray, fields: dict[str, np.ndarray], test_fraction: float,
             seed: int) -> ActivationSet:
    """Rows plus per-row metadata (labels, optional sentence_ids ...) -> ActivationSet."""
    acts = _checked_acts(where, acts, fields)
    n = len(acts)
    _check_field_lengths(where, fields, n)
    sentence_index, first_rows, sent_ids = _sentence_rows(where, fields, n)

    def per_sentence(key: str, strict: bool) -> np.ndarray | None:
        if key not in fields:
            return None
        v = fields[key].astype(str)
        bad = np.flatnonzero(v != v[first_rows][sentence_index])
        if strict and len(bad):
            sid = sent_ids[sentence_index[bad[0]]]
            raise DataError(f"{where}: sentence id {sid} has rows with different {key}; "
                            f"{key} must be constant within a sentence.")
        return v[first_rows]

    s_labels = per_sentence("labels", strict=True)
    s_subsets = per_sentence("subsets", strict=False)
    s_splits = per_sentence("splits", strict=True)
    if s_subsets is None:
        s_subsets = np.full(len(first_rows), "", dtype=str)
    s_splits, rule = _sentence_split(where, s_labels, s_subsets, s_splits, test_fraction, seed)
    sentences = Sentences(labels=s_labels, subsets=s_subsets, splits=s_splits,
                          texts=per_sentence("texts", strict=False), ids=sent_ids,
                          split_rule=rule)
    tokens = fields["tokens"].astype(str) if "tokens" in fields else None
    return ActivationSet(acts=acts, sentence_index=sentence_index, sentences=sentences,
                         tokens=tokens)


def _checked_acts(where: str, acts: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
    """The activations as float32 [N, d], after checking labels exist and the shape and dtype."""
    if "labels" not in fields:
        raise DataError(f"{where}: missing key 'labels'; found keys: "
                        f"{', '.join(['activations', *fields])}.")
    if acts.ndim != 2:
        raise DataError(f"{where}: activations has shape {acts.shape}; expected [N, d].")
    if acts.shape[1] == 0:
        raise DataError(f"{where}: activations has shape {acts.shape}: 0 columns; each row "
                        "needs at least one value.")
    if not np.issubdtype(acts.dtype, np.floating):
        raise DataError(f"{where}: activations has dtype {acts.dtype}; expected floats.")
    if acts.dtype != np.float32:
        acts = np.asarray(acts, dtype=np.float32)
    return acts


def _check_field_lengths(where: str, fields: dict[str, np.ndarray], n: int) -> None:
    for k in ("labels", *OPTIONAL_KEYS):
        if k in fields:
            v = fields[k]
            if v.ndim != 1:
                raise DataError(f"{where}: {k} has shape {v.shape}; expected [N] = [{n}].")
            if len(v) != n:
                raise DataError(f"{where}: {k} has {len(v)} entries but activations has {n} "
                                "rows; they must match.")


def _sentence_rows(where: str, fields: dict[str, np.ndarray], n: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sentence_index [N], first row of each sentence, sentence ids): sentences numbered in
    order of first appearance; without sentence_ids every row is its own sentence."""
    if "sentence_ids" not in fields:
        sentence_index = np.arange(n, dtype=np.int64)
        return sentence_index, sentence_index, sentence_index.copy()
    ids = fields["sentence_ids"]
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{where}: sentence_ids has dtype {ids.dtype}; expected integers.")
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # sentences in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    sentence_index = rank[inverse.ravel()].astype(np.int64)
    return sentence_index, first[order], uniq[order].astype(np.int64)


def _sentence_split(where: str, labels: np.ndarray, subsets: np.ndarray,
                    splits: np.ndarray | None, test_fraction: float, seed: int
                    ) -> tuple[np.ndarray, str]:
    """The file's own splits when given (checked), else a seeded stratified draw; plus its rule."""
    if splits is not None:
        bad = sorted(set(splits.tolist()) - set(SPLITS))
        if bad:
            raise DataError(f"{where}: splits holds {bad[0]!r}; use train or test.")
        return splits, "the file's own splits field"
    splits = stratified_split(labels, subsets, test_fraction, seed)
    return splits, (f"by sentence: test_fraction={test_fraction} of each label's sentences drawn "
                    f"at random (seed {seed}), stratified by subset")


# ---------------------------------------------------------------- checks
def check(aset: ActivationSet, drop_nonfinite: bool = False) -> ActivationSet:
    """Checks every source passes: rows, lengths, finite values, >= 2 labels."""
    n = len(aset.acts)
    if n == 0:
        raise DataError("the data has no rows.")
    if aset.acts.ndim != 2:
        raise DataError(f"activations have shape {aset.acts.shape}; expected [N, d].")
    if len(aset.sentence_index) != n:
        raise DataError(f"{len(aset.sentence_index)} sentence indices for {n} rows.")
    finite = _finite_rows(aset.acts)
    n_bad = int(n - finite.sum())
    if n_bad == n:
        raise DataError(f"all {n} activation rows hold NaN or Inf: nothing is left to train on; "
                        "fix the data.")
    if n_bad:
        if not drop_nonfinite:
            raise DataError(f"{n_bad} of {n} activation rows hold NaN or Inf; fix the data or "
                            "set data.drop_nonfinite=true to drop them.")
        log.warning("dropped %d of %d activation rows holding NaN or Inf", n_bad, n)
        aset = _keep_rows(aset, finite)
    present = sorted({str(x) for x in np.asarray(aset.sentences.labels)[
        np.unique(aset.sentence_index)]})
    if len(present) < 2:
        raise DataError(f"the data has {len(present)} label ({', '.join(present) or 'none'}); "
                        "the overlap analysis needs at least two.")
    bad = [lab for lab in present if "|" in lab]
    if bad:
        raise DataError(f"label {bad[0]!r} contains '|', which joins the two labels of a pair "
                        "key in report.json (\"a|b\"); rename the label.")
    warn_cross_label_texts(aset.sentences.texts, aset.sentences.labels)
    return aset


def warn_cross_label_texts(texts, labels) -> None:
    """Log the same sentence text under two or more labels: its rows count for each label,
    which makes the labels look more alike than they are."""
    if texts is None:
        return
    by_text: dict[str, set[str]] = {}
    for t, lab in zip(np.asarray(texts, dtype=object), np.asarray(labels), strict=True):
        by_text.setdefault(str(t), set()).add(str(lab))
    shared = {t: labs for t, labs in by_text.items() if len(labs) > 1}
    if shared:
        text, labs = next(iter(shared.items()))
        log.warning("the same text under %d labels (%s): %r%s; its rows count for each of "
                    "them, so those labels look more alike: keep each text under one label",
                    len(labs), ", ".join(sorted(labs)), text[:80],
                    f" and {len(shared) - 1} more texts" if len(shared) > 1 else "")


def _finite_rows(acts: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(acts), dtype=bool)
    for i in range(0, len(acts), chunk):
        out[i:i + chunk] = np.isfinite(acts[i:i + chunk]).all(axis=1)
    return out


def _keep_rows(aset: ActivationSet, keep: np.ndarray) -> ActivationSet:
    """Rows where `keep`, and only the sentences that still have rows (renumbered)."""
    index = aset.sentence_index[keep]
    used = np.unique(index)
    remap = np.full(len(aset.sentences), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    s = aset.sentences
    sentences = Sentences(
        labels=np.asarray(s.labels)[used], subsets=np.asarray(s.subsets)[used],
        splits=np.asarray(s.splits)[used],
        texts=None if s.texts is None else np.asarray(s.texts)[used],
        ids=None if s.ids is None else np.asarray(s.ids)[used],
        groups=None if s.groups is None else np.asarray(s.groups)[used], split_rule=s.split_rule)
    return ActivationSet(acts=np.asarray(aset.acts[keep]), sentence_index=remap[index],
                         sentences=sentences,
                         tokens=None if aset.tokens is None else aset.tokens[keep],
                         fingerprint=aset.fingerprint,
                         meta={**aset.meta, "dropped_nonfinite_rows": int((~keep).sum())},
                         planted=aset.planted)
