"""Token injection: is a label's specific latent about the construction, or about a few tokens?

A latent selected because it fires more on conditionals may only track the word "if". Following
arXiv 2601.05679 (45-90% of contrastively selected "reasoning" features fired once a few of
their associated tokens were injected into unrelated text), for each tested specific latent:

1. its tokens: the token where it peaks in each train sentence of its own label in which it
   fires, the `n_tokens` most frequent (special tokens left out; word-piece markers stripped);
2. insert those tokens, each once at a random word boundary, into held-out (test-split)
   sentences of the label's baseline (the `control` label by default);
3. re-encode through the run's model and SAE and apply the run's firing rule;
4. flag the latent token-driven when its firing rate on the injected sentences is at least
   `flag_ratio` (0.5) x its firing rate on its own label's train sentences.

The model is abstracted as `encode(texts) -> (top_indices [N, k], top_acts [N, k],
sentence_index [N])`, so tests can plant latents that follow a token or a construction.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from sae_exp.analysis.firing import firing_matrix, sentence_peaks

Encoder = Callable[[list[str]], tuple[np.ndarray, np.ndarray, np.ndarray]]
SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "<s>", "</s>", "<pad>", "<unk>",
           "<|endoftext|>"}
MARKERS = ("##", "\u0120", "\u2581")  # word-piece / byte-BPE / sentencepiece markers

DEFINITIONS = {
    "token_driven": ("a specific latent whose firing rate on held-out baseline sentences with "
                     "its peak tokens inserted (injected_rate) is at least flag_ratio x its "
                     "in_label_rate and above its control_rate on the same sentences unchanged"),
    "peak_tokens": ("the latent's most frequent peak tokens: in each train sentence of its "
                    "label where it fires, the token where its activation is highest"),
    "in_label_rate": "share of the label's train sentences in which the latent fires",
    "control_rate": "share of the held-out baseline sentences in which the latent fires",
    "injected_rate": ("share of the same sentences, with the peak tokens inserted at random "
                      "word boundaries, in which the latent fires"),
    "n_tested": ("specific latents of the label tested (a random sample of at most "
                 "max_latents; latents that never fire in the label have no tokens to insert)"),
    "n_flagged": "tested latents flagged token_driven",
    "share_flagged": "n_flagged / n_tested",
}


@dataclass
class InjectionSettings:
    n_tokens: int = 3  # peak tokens inserted per sentence
    n_sentences: int = 12  # held-out baseline sentences per tested latent
    max_latents: int = 12  # tested specific latents per label (random sample); 0 = all
    flag_ratio: float = 0.5
    seed: int = 0


def clean_token(tok: str) -> str | None:
    """The text to insert for a model token, or None for special / empty tokens."""
    if tok in SPECIAL:
        return None
    for m in MARKERS:
        tok = tok.replace(m, "")
    tok = tok.strip()
    return tok or None


def peak_tokens(latents: list[int], label_rows: np.ndarray, top_indices: np.ndarray,
                top_acts: np.ndarray, sentence_index: np.ndarray, thresholds: np.ndarray,
                tokens: np.ndarray, n_tokens: int) -> dict[int, list[str]]:
    """For each latent, its `n_tokens` most frequent peak tokens over the given rows (rows of
    the label's train sentences); a sentence counts when the latent fires there."""
    rows = np.flatnonzero(label_rows)
    peaks = sentence_peaks(top_indices[rows], top_acts[rows], sentence_index[rows],
                           len(thresholds))
    keep = np.isin(peaks.latent, latents) & (peaks.value > thresholds[peaks.latent])
    lat, row = peaks.latent[keep], rows[peaks.row[keep]]  # one (latent, sentence) each
    counts: dict[int, Counter] = {int(j): Counter() for j in latents}
    for j, rr in zip(lat, row, strict=True):
        t = clean_token(str(tokens[rr]))
        if t is not None:
            counts[int(j)][t] += 1
    return {j: [t for t, _ in c.most_common(n_tokens)] for j, c in counts.items()}


def inject(text: str, insert: list[str], rng: np.random.Generator) -> str:
    """`text` with each of `insert` placed at a random word boundary."""
    words = text.split()
    for t in insert:
        words.insert(int(rng.integers(0, len(words) + 1)), t)
    return " ".join(words)


def _fire_rates(encode: Encoder, texts: list[str], latents_per_text: list[list[int]],
                thresholds: np.ndarray) -> np.ndarray:
    """Whether each text's latents fire in it (one flat bool array, in the given order)."""
    idx, val, sent = encode(texts)
    F = firing_matrix(sentence_peaks(idx, val, sent, len(thresholds)), thresholds, len(texts),
                      len(thresholds))
    return np.array([F[s, j] > 0 for s, lats in enumerate(latents_per_text) for j in lats],
                    dtype=bool)


def token_injection(specific: dict[str, list[int]], in_label_rate: dict[str, dict[int, float]],
                    label_rows: dict[str, np.ndarray], controls: dict[str, list[str]],
                    top_indices: np.ndarray, top_acts: np.ndarray, sentence_index: np.ndarray,
                    tokens: np.ndarray, thresholds: np.ndarray, encode: Encoder,
                    settings: InjectionSettings) -> dict:
    """Run the test for every label in `controls` (label -> its held-out baseline sentences).

    specific: label -> specific latent ids; in_label_rate: label -> {latent: rate};
    label_rows: label -> [N] bool rows of the label's train sentences. One `encode` call for
    all injected and plain sentences. Returns the report's `token_injection` dict."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    plan = [step for lab, ctrl in controls.items()
            for step in _plan_label(lab, ctrl, specific.get(lab, []), label_rows[lab], top_indices,
                                    top_acts, sentence_index, tokens, thresholds, settings, rng)]
    texts, lats, plain_at = _sentences_to_encode(plan, controls, rng)
    fired = _fire_rates(encode, texts, lats, thresholds) if texts else np.zeros(0, bool)
    fired_at = np.cumsum([0] + [len(x) for x in lats])  # text -> its first entry in `fired`
    out = _score(plan, fired, fired_at, plain_at, specific, in_label_rate, controls, settings)
    return {"status": "done", "labels": out, "n_encoded_sentences": len(texts),
            "settings": vars(settings).copy(), "seconds": round(time.perf_counter() - t0, 2),
            "definitions": DEFINITIONS}


_Step = tuple[str, int, list[str], list[str]]  # label, latent, its peak tokens, sentences


def _plan_label(lab: str, ctrl: list[str], specific: list[int], label_rows: np.ndarray,
                top_indices: np.ndarray, top_acts: np.ndarray, sentence_index: np.ndarray,
                tokens: np.ndarray, thresholds: np.ndarray, settings: InjectionSettings,
                rng: np.random.Generator) -> list[_Step]:
    """The latents of one label to test (at most max_latents, drawn), each with its peak
    tokens and the baseline sentences (at most n_sentences, drawn) to inject them into."""
    ids = sorted(specific)
    if settings.max_latents and len(ids) > settings.max_latents:
        ids = sorted(rng.choice(ids, settings.max_latents, replace=False).tolist())
    toks = peak_tokens(ids, label_rows, top_indices, top_acts, sentence_index,
                       thresholds, tokens, settings.n_tokens)
    pick = ctrl if len(ctrl) <= settings.n_sentences else \
        [ctrl[i] for i in sorted(rng.choice(len(ctrl), settings.n_sentences, replace=False))]
    return [(lab, j, toks[j], pick) for j in ids if toks[j]]


def _sentences_to_encode(plan: list[_Step], controls: dict[str, list[str]],
                         rng: np.random.Generator
                         ) -> tuple[list[str], list[list[int]], dict[str, int]]:
    """Texts to encode, the latents to read in each, and where each label's plain ones start:
    first the injected sentences of every tested latent, then each label's sentences once,
    plain, for all its tested latents."""
    texts, lats = [], []
    for _, j, toks, pick in plan:
        texts += [inject(s, toks, rng) for s in pick]
        lats += [[j]] * len(pick)
    plain_at = {}
    for lab in controls:
        ids = [j for lb, j, _, _ in plan if lb == lab]
        pick = next((p for lb, _, _, p in plan if lb == lab), [])
        plain_at[lab] = len(texts)
        texts += list(pick)
        lats += [ids] * len(pick)
    return texts, lats, plain_at


def _score(plan: list[_Step], fired: np.ndarray, fired_at: np.ndarray, plain_at: dict[str, int],
           specific: dict[str, list[int]], in_label_rate: dict[str, dict[int, float]],
           controls: dict[str, list[str]], settings: InjectionSettings) -> dict:
    """Per label: each tested latent's injected vs plain firing rate and the token-driven flag."""
    out, pos = {}, 0
    for lab in controls:
        out[lab] = {"n_specific": len(specific.get(lab, [])), "n_tested": 0, "n_flagged": 0,
                    "share_flagged": None, "flagged": [], "latents": []}
    n_tested = {lab: 0 for lab in controls}
    for lab, j, toks, pick in plan:
        k = len(pick)
        inj = fired[pos:pos + k].mean()
        pos += k
        # latent j's entry in each plain sentence of its label (entries follow plan order)
        plain = fired[fired_at[plain_at[lab] + np.arange(k)] + n_tested[lab]].mean()
        n_tested[lab] += 1
        rate = float(in_label_rate[lab].get(j, 0.0))
        # token-driven: the tokens bring it to half its in-label rate, and they are what did it
        flag = bool(rate > 0 and inj >= settings.flag_ratio * rate and inj > plain)
        rec = out[lab]
        rec["latents"].append({"latent": j, "peak_tokens": toks, "in_label_rate": rate,
                               "control_rate": float(plain), "injected_rate": float(inj),
                               "token_driven": flag})
        rec["n_tested"] += 1
        if flag:
            rec["n_flagged"] += 1
            rec["flagged"].append(j)
    for rec in out.values():
        rec["share_flagged"] = rec["n_flagged"] / rec["n_tested"] if rec["n_tested"] else None
    return out


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason, "labels": {}}


MODEL_SOURCES = ("logic_minilm", "hf_model")


def _controls(rep: dict, sentences) -> dict[str, list[str]]:
    """Label -> held-out sentences of its baseline. Where one label is every other label's
    baseline (`control`), it is not tested itself (its baseline would be the labels tested)."""
    per = (rep.get("baseline") or {}).get("per_label") or {}
    refs = [r for r in per if all(per[o] == [r] for o in per if o != r)]
    ref = "control" if "control" in refs else (refs[0] if len(refs) == 1 else None)
    labels = np.asarray(sentences.labels).astype(str)
    test = np.asarray(sentences.splits).astype(str) == "test"
    texts = np.asarray(sentences.texts).astype(str)
    out = {}
    for lab, base in per.items():
        if lab == ref:
            continue
        out[lab] = texts[test & np.isin(labels, base)].tolist()
    return out


def for_report(rep: dict, top_indices: np.ndarray, top_acts: np.ndarray, data,
               encode: Encoder, settings: InjectionSettings) -> dict:
    """The test on a run's report and codes; a one-line `skipped` where it cannot apply."""
    source = data.meta.get("source")
    if source not in MODEL_SOURCES:
        return skipped(f"data={source}: token injection needs a text model to re-encode "
                       "sentences (data=logic_minilm or hf_model)")
    if data.meta.get("pooling") != "token" or data.tokens is None or \
            data.sentences.texts is None:
        return skipped("data.pooling=mean (or no tokens/texts): no per-token peaks to inject")
    recs = rep.get("latents") or []
    thresholds = np.array([r["threshold"] for r in recs], dtype=np.float64)
    sidx = np.asarray(data.sentence_index, dtype=np.int64)
    labels = np.asarray(data.sentences.labels).astype(str)
    train = np.asarray(data.sentences.splits).astype(str) == "train"
    controls = _controls(rep, data.sentences)
    specific = {lab: rep["categories"][lab]["specific"] for lab in controls}
    rates = {lab: {j: (recs[j]["rate"] or {}).get(lab) or 0.0 for j in specific[lab]}
             for lab in controls}
    label_rows = {lab: (train & (labels == lab))[sidx] for lab in controls}
    return token_injection(specific, rates, label_rows, controls, np.asarray(top_indices),
                           np.asarray(top_acts), sidx, np.asarray(data.tokens), thresholds,
                           encode, settings)


def preload(meta: dict, device) -> Future | None:
    """Start loading the run's model in the background (None when the data has no model)."""
    from sae_exp.data.extract import preload_model

    if meta.get("source") not in MODEL_SOURCES or not meta.get("model_path"):
        return None
    return preload_model(meta["model_path"], meta["dtype"], str(device))


def model_encoder(meta: dict, normalizer, sae, device, loading: Future | None = None) -> Encoder:
    """`encode` through the run's model, layer and normalisation, then its SAE; `loading`: the
    model from `preload`, when it was started."""
    from sae_exp.data.extract import extract
    from sae_exp.data.types import Sentences
    from sae_exp.train.trainer import encode_rows

    def encode(texts: list[str]):
        n = len(texts)
        sents = Sentences(labels=np.array([""] * n), subsets=np.array([""] * n),
                          splits=np.array(["test"] * n), texts=np.array(texts, dtype=object))
        acts, sidx, _ = extract(sents, meta["model_path"], int(meta["layer"]), "token",
                                int(meta["max_length"]), 64, meta["dtype"], str(device),
                                loaded=None if loading is None else loading.result())
        idx, val = encode_rows(sae, normalizer(acts), device)
        return idx, val, sidx
    return encode


def summary(rep: dict) -> dict:
    """W&B summary numbers: the token-driven share of each label."""
    ti = rep.get("token_injection") or {}
    return {f"token_injection/share_flagged[{lab}]": v["share_flagged"]
            for lab, v in (ti.get("labels") or {}).items() if v.get("share_flagged") is not None}
