"""Ground-truth activations: rows built from a known dictionary, written as `data=file` input.

The model (SynthSAEBench / Gao et al. 2024 style): `n_features` unit directions in d_in; each
row is a sum of the features that fire on it, each with a positive magnitude, plus Gaussian
noise. Every feature fires independently with its own probability, so a feature's firing
frequency is known exactly:

- background features: used by every label, frequencies spread over [freq_min, freq_max] by a
  truncated power law (density proportional to f^-freq_exponent), placed at its quantiles;
- specific features: `n_specific` per label, firing only in that label's rows, with frequency
  `specific_freq` over *all* rows (so 1/n_labels of that inside the label);
- shared features: `n_shared` between the first two labels, firing only in their rows (same
  overall frequency), so their planted feature sets have Jaccard
  n_shared / (2 n_specific + n_shared).

Rows come in sentences of `tokens_per_sentence` rows with one label. `write` stores the data in
the file contract (`<name>.npz`: activations, labels, sentence_ids, splits) and the truth beside
it (`<name>.truth.npz`, read back by `load_truth`): directions, frequencies, the kind of each
feature and the label(s) it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sae_exp import files

TRUTH_SUFFIX = ".truth.npz"
KINDS = ("specific", "shared", "background")


@dataclass
class GroundTruthSpec:
    """What to generate; every field is a `gt.<name>` override of `python -m sae_exp.synth`."""

    seed: int = 0
    d_in: int = 128
    labels: list[str] = field(default_factory=lambda: ["conditional", "quantifier", "control"])
    n_sentences: int = 1500  # per label
    tokens_per_sentence: int = 4
    n_specific: int = 8  # per label
    n_shared: int = 4  # between the first two labels
    specific_freq: float = 0.01  # over all rows (specific and shared features)
    n_background: int = 320
    freq_min: float = 0.002
    freq_max: float = 0.05
    freq_exponent: float = 0.5  # background frequency density ~ f^-exponent
    magnitude_min: float = 0.5
    magnitude_max: float = 1.5
    noise: float = 0.01  # std of the Gaussian noise per dimension
    test_fraction: float = 0.2  # share of each label's sentences held out


def background_frequencies(n: int, fmin: float, fmax: float, exponent: float) -> np.ndarray:
    """Quantiles (i + 0.5) / n of the density ~ f^-exponent on [fmin, fmax], largest first."""
    q = (np.arange(n) + 0.5) / max(n, 1)
    if abs(exponent - 1.0) < 1e-9:
        f = fmin * (fmax / fmin) ** q
    else:
        a = 1.0 - exponent
        f = (fmin**a + q * (fmax**a - fmin**a)) ** (1.0 / a)
    return np.sort(f)[::-1].copy()


def feature_table(spec: GroundTruthSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature: overall frequency, kind (index into KINDS) and a bool [n_features, n_labels]
    of the labels whose rows it can fire in.
    Order: specific (label by label), shared, background."""
    n_lab = len(spec.labels)
    n_spec, n_sh = spec.n_specific * n_lab, spec.n_shared
    n = n_spec + n_sh + spec.n_background
    freq = np.empty(n)
    kind = np.empty(n, dtype=np.int64)
    member = np.zeros((n, n_lab), dtype=bool)
    for j in range(n_lab):
        ids = slice(j * spec.n_specific, (j + 1) * spec.n_specific)
        member[ids, j] = True
    member[n_spec:n_spec + n_sh, :2] = True
    member[n_spec + n_sh:] = True
    freq[: n_spec + n_sh] = spec.specific_freq
    freq[n_spec + n_sh:] = background_frequencies(spec.n_background, spec.freq_min,
                                                  spec.freq_max, spec.freq_exponent)
    kind[:n_spec], kind[n_spec:n_spec + n_sh], kind[n_spec + n_sh:] = 0, 1, 2
    return freq, kind, member


def generate(spec: GroundTruthSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(fields of the data file, truth), deterministic in `spec.seed`."""
    rng = np.random.default_rng(spec.seed)
    freq, kind, member = feature_table(spec)
    n_feat, n_lab = len(freq), len(spec.labels)
    directions = rng.standard_normal((n_feat, spec.d_in))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    n_sent = spec.n_sentences * n_lab
    sent_label = np.repeat(np.arange(n_lab), spec.n_sentences)
    row_label = np.repeat(sent_label, spec.tokens_per_sentence)
    n_rows = len(row_label)
    # firing probability inside a member label: overall frequency / share of rows it can use
    share = member.sum(1) / n_lab
    p = np.where(member[:, row_label].T, freq / share, 0.0)  # [rows, features]
    fires = rng.random(p.shape) < p
    mags = rng.uniform(spec.magnitude_min, spec.magnitude_max, size=p.shape)
    codes = np.where(fires, mags, 0.0)
    acts = codes @ directions + spec.noise * rng.standard_normal((n_rows, spec.d_in))
    splits = np.full(n_sent, "train", dtype=object)
    for j in range(n_lab):
        where = np.flatnonzero(sent_label == j)
        n_test = max(1, round(spec.test_fraction * len(where)))
        splits[rng.choice(where, size=n_test, replace=False)] = "test"
    sentence_ids = np.repeat(np.arange(n_sent), spec.tokens_per_sentence)
    fields = {
        "activations": acts.astype(np.float32),
        "labels": np.asarray(spec.labels)[row_label].astype(str),
        "sentence_ids": sentence_ids.astype(np.int64),
        "splits": splits[sentence_ids].astype(str),
    }
    truth = {
        "directions": directions.astype(np.float32),
        "frequency": freq,  # planned
        "observed_frequency": fires.mean(0),
        "kind": np.asarray(KINDS)[kind].astype(str),
        "member": member,
        "labels": np.asarray(spec.labels).astype(str),
        "true_l0": np.asarray(fires.sum(1).mean()),
        "fires": fires,  # [rows, features]; not written to the truth file (its size)
    }
    return fields, truth


def write(spec: GroundTruthSpec, path: Path) -> Path:
    """Write `path` (.npz, the data=file contract) and its truth file; returns `path`."""
    fields, truth = generate(spec)
    path = Path(path)
    kept = {k: v for k, v in truth.items() if k != "fires"}
    files.atomic_write(truth_path(path), lambda tmp: _savez(tmp, kept))
    files.atomic_write(path, lambda tmp: _savez(tmp, fields))  # last: data always has its truth
    return path


def _savez(tmp: str, arrays: dict) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)


def truth_path(data_path: Path) -> Path:
    """Where the truth of the data file `data_path` lives (a shard dir: `truth.npz` inside)."""
    p = Path(data_path)
    if p.is_dir():
        return p / "truth.npz"
    return p.with_name(p.name.removesuffix(".npz") + TRUTH_SUFFIX)


def load_truth(data_path: Path) -> dict | None:
    """The truth written beside a data file, as the `planted` dict of an ActivationSet, or None.

    Keys: directions [F, d], frequency, kind, `specific` {label: feature ids}, `label_features`
    {label: ids of its specific and shared features}, `jaccard` {"a|b": planted Jaccard}."""
    tp = truth_path(Path(data_path))
    if not tp.is_file():
        return None
    with np.load(tp, allow_pickle=False) as z:
        t = {k: z[k] for k in z.files}
    labels = [str(x) for x in t["labels"]]
    kind, member = t["kind"].astype(str), t["member"].astype(bool)
    specific = {lab: np.flatnonzero((kind == "specific") & member[:, j]).tolist()
                for j, lab in enumerate(labels)}
    label_feats = {lab: np.flatnonzero((kind != "background") & member[:, j]).tolist()
                   for j, lab in enumerate(labels)}
    jaccard = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            sa, sb = set(label_feats[a]), set(label_feats[b])
            jaccard["|".join(sorted([a, b]))] = len(sa & sb) / max(len(sa | sb), 1)
    return {"directions": t["directions"], "frequency": t["frequency"], "kind": kind,
            "specific": specific, "label_features": label_feats, "jaccard": jaccard,
            "true_l0": float(t["true_l0"])}
