"""Sparse probing (SAEBench's recipe): can a handful of latents tell the labels apart?

Latents are mean-pooled over a sentence's tokens; for each label the k latents with the
largest mean difference (label minus rest, on train-split sentences) feed a logistic probe,
scored on the test split. One-vs-rest probes report *balanced* accuracy (mean of true-positive
and true-negative rates), because a label is usually a minority against the rest and plain
accuracy would reward always answering "no". Subsets (e.g. `no_if`, `lexical_trap`) are scored
with plain accuracy, since a subset is normally all one class: they show whether a probe reads
the logic or a surface word. A multi-class probe on the union of the labels' `specific` sets
asks whether the specific latents, together, identify the label.

Probes are L2-regularised multinomial logistic regressions on standardised features, fitted
with scipy's L-BFGS (deterministic: zero init, no randomness). The fits run with the BLAS
library limited to one thread: their matrices are small ([~3,000 sentences, <= d_in]), and
OpenBLAS's threads cost more than they give there (the default run's 23 probes took 10.1 s
with two BLAS threads, ~1.5 s with one; a binary probe on [3219, 384]: 0.46 s against 0.06 s).
The fits are independent and deterministic, so they run in a few threads; in a run
(overlap.analyze) they fit on one core while the single-threaded resampling holds the other.
A two-class probe is fitted as one logistic regression on the difference of the two weight
columns (LogisticProbe._fit_binary): the same optimum at half the work.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit, logsumexp, softmax
from threadpoolctl import threadpool_limits

MAX_ITER = 500
PROBE_THREADS = 4  # fits run in parallel threads (numpy and BLAS release the GIL)


def pool_sentences(
    top_indices: np.ndarray, top_acts: np.ndarray, sentence_index: np.ndarray, n_sentences: int,
    d_sae: int,
) -> sp.csr_matrix:
    """Mean latent activation over each sentence's rows: [S, d_sae] CSR (zeros not stored)."""
    sentence_index = np.asarray(sentence_index, dtype=np.int64)
    n_rows = np.bincount(sentence_index, minlength=n_sentences).astype(np.float64)
    rows, slots = np.nonzero(top_acts > 0)
    s = sentence_index[rows]
    vals = top_acts[rows, slots].astype(np.float64) / n_rows[s]
    out = sp.csr_matrix((vals, (s, top_indices[rows, slots])), shape=(n_sentences, d_sae))
    out.sum_duplicates()
    return out


def pool_dense(acts: np.ndarray, sentence_index: np.ndarray, n_sentences: int,
               chunk: int = 65536) -> np.ndarray:
    """Mean of the raw activation rows of each sentence: [S, d_in] float64.

    Read in row chunks, because `acts` may be a memory map larger than memory."""
    sentence_index = np.asarray(sentence_index, dtype=np.int64)
    n_rows = np.bincount(sentence_index, minlength=n_sentences).astype(np.float64)
    out = np.zeros((n_sentences, acts.shape[1]))
    for s in range(0, len(sentence_index), chunk):
        idx = sentence_index[s:s + chunk]
        P = sp.csr_matrix((1.0 / n_rows[idx], (idx, np.arange(len(idx)))),
                          shape=(n_sentences, len(idx)))
        out += P @ np.asarray(acts[s:s + chunk], dtype=np.float64)
    return out


def select_by_mean_difference(X: sp.csr_matrix, positive: np.ndarray, k: int) -> list[int]:
    """The k latents whose mean activation is highest on positives relative to the rest.

    Signed (label minus rest), because SAE latents are non-negative detectors: a latent that
    is *absent* from a label is evidence about many labels at once, not this one."""
    pos = np.asarray(X[positive].mean(0)).ravel()
    neg = np.asarray(X[~positive].mean(0)).ravel()
    order = np.argsort(-(pos - neg), kind="stable")
    return order[: min(k, X.shape[1])].tolist()


class LogisticProbe:
    """L2-regularised multinomial logistic regression on standardised features.

    Classes are weighted to balance (n / (C n_c)) so a minority label is not ignored. The
    penalty is l2 / 2 * ||W||^2 on the summed weighted loss (sklearn's C = 1 / l2)."""

    def __init__(self, n_classes: int, l2: float = 1.0) -> None:
        self.n_classes, self.l2 = n_classes, l2

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticProbe:
        X = np.asarray(X, dtype=np.float64)
        self.mu = X.mean(0)
        sd = X.std(0)
        self.sd = np.where(sd > 1e-12, sd, 1.0)
        Z = (X - self.mu) / self.sd
        n, d = Z.shape
        C = self.n_classes
        counts = np.bincount(y, minlength=C).astype(np.float64)
        w = n / (max((counts > 0).sum(), 1) * counts[y])
        if C == 2:  # the same optimum with half the parameters (see _fit_binary)
            self.W, self.b = self._fit_binary(Z, y, w)
            return self
        onehot = np.zeros((n, C))
        onehot[np.arange(n), y] = 1.0

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W, b = theta[: d * C].reshape(d, C), theta[d * C :]
            logits = Z @ W + b
            lse = logsumexp(logits, axis=1)
            loss = float(w @ (lse - (logits * onehot).sum(1))) + 0.5 * self.l2 * float((W**2).sum())
            G = (softmax(logits, axis=1) - onehot) * w[:, None]
            gW = Z.T @ G + self.l2 * W
            return loss, np.concatenate([gW.ravel(), G.sum(0)])

        res = minimize(loss_grad, np.zeros(d * C + C), jac=True, method="L-BFGS-B",
                       options={"maxiter": MAX_ITER})
        self.W, self.b = res.x[: d * C].reshape(d, C), res.x[d * C :]
        return self

    def _fit_binary(self, Z: np.ndarray, y: np.ndarray,
                    w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two classes: the softmax loss depends on v = W[:, 1] - W[:, 0] alone, and for a given
        v the penalty l2/2 (|W0|^2 + |W1|^2) is least at W1 = -W0 = v / 2, where it is l2/4 |v|^2.
        So fit one logistic regression on v with penalty l2/4 and return W = [-v/2, v/2]: the
        multinomial optimum, at half the cost."""
        d = Z.shape[1]
        t = y.astype(np.float64)

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            v, c = theta[:d], theta[d]
            eta = Z @ v + c
            loss = float(w @ (np.logaddexp(0.0, eta) - t * eta)) + 0.25 * self.l2 * float(v @ v)
            g = (expit(eta) - t) * w
            return loss, np.concatenate([Z.T @ g + 0.5 * self.l2 * v, [g.sum()]])

        res = minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                       options={"maxiter": MAX_ITER})
        v, c = res.x[:d], res.x[d]
        return np.stack([-v / 2, v / 2], axis=1), np.array([-c / 2, c / 2])

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mu) / self.sd
        return np.argmax(Z @ self.W + self.b, axis=1)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Mean per-class recall over the classes present in y_true (None when y_true is empty)."""
    classes = np.unique(y_true)
    if len(classes) == 0:
        return None
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


def _accuracy_by_group(correct: np.ndarray, groups: np.ndarray) -> dict:
    return {str(g): {"accuracy": float(correct[groups == g].mean()),
                     "n": int((groups == g).sum())} for g in np.unique(groups)}


def _score(pred, y, label_of_test, subsets_test, labels) -> dict:
    correct = pred == y
    lab_names = np.asarray(labels)[label_of_test]
    has_subset = subsets_test != ""
    subset_key = np.char.add(np.char.add(lab_names.astype(str), "/"), subsets_test)
    return {
        "balanced_accuracy": balanced_accuracy(y, pred),
        "accuracy": float(correct.mean()),
        "by_label": _accuracy_by_group(correct, lab_names),
        "by_subset": _accuracy_by_group(correct[has_subset], subset_key[has_subset]),
        "n_test": int(len(y)),
    }


def _fit_and_score(X, ids, y, train, test, n_classes, l2, label_of, subsets, labels,
                   keep_model: bool = False) -> dict:
    """ids None: every column of a dense X (the raw-activation baseline)."""
    Xd = np.asarray(X) if ids is None else X[:, ids].toarray()
    model = LogisticProbe(n_classes, l2).fit(Xd[train], y[train])
    pred = model.predict(Xd[test])
    out = {"latents": None if ids is None else [int(i) for i in ids],
           **_score(pred, y[test], label_of[test], subsets[test], labels)}
    if keep_model:  # logits = ((x[latents] - mu) / sd) @ W + b, classes in `labels` order
        out["model"] = {"labels": list(labels), "W": model.W.tolist(), "b": model.b.tolist(),
                        "mu": model.mu.tolist(), "sd": model.sd.tolist()}
    return out


def sparse_probing(
    pooled: sp.csr_matrix,
    labels: list[str],
    label_of: np.ndarray,
    subsets: np.ndarray,
    splits: np.ndarray,
    specific: dict[str, list[int]],
    probe_k: list[int],
    l2: float = 1.0,
    dense: np.ndarray | None = None,
    threads: int = PROBE_THREADS,
) -> dict:
    """One-vs-rest probes per label for each k and the specific set, plus a multi-class probe.

    pooled [S, d_sae]: mean-pooled latents per sentence; label_of [S] label index; subsets and
    splits [S] str. dense [S, d_in] (optional): the raw activations mean-pooled per sentence,
    probed the same way as the `dense` baseline (one-vs-rest and multi-class): Kantamneni et
    al. 2025 found SAE probes rarely beat it, so sparse probes mean little without it.
    threads: at most this many fits at once (capped at the CPU count).
    Returns a JSON-serialisable dict; `warnings` lists what could not be fitted.
    """
    train, test = splits == "train", splits == "test"
    warnings: list[str] = []
    out: dict = {
        "metric": ("one-vs-rest: balanced accuracy on the test split (chance 0.5); by_label and "
                   "by_subset: plain accuracy of label-vs-rest on those test sentences; "
                   "multi-class: accuracy and balanced accuracy (chance 1 / number of labels)"),
        "selection": "k latents with the largest train-split mean difference label minus rest",
        "one_vs_rest": {},
        "multiclass": None,
        "multiclass_dense": None,
        "n_train": int((splits == "train").sum()),
        "n_test": int((splits == "test").sum()),
        "warnings": warnings,
    }
    if not train.any() or not test.any():
        warnings.append("probe skipped: it needs sentences in both the train and the test split.")
        return out
    with threadpool_limits(limits=1, user_api="blas"), \
            ThreadPoolExecutor(max_workers=max(1, min(threads, os.cpu_count() or 1))) as pool:
        for li, lab in enumerate(labels):
            res = _label_probes(pooled, dense, li, labels, label_of, subsets, train, test,
                                specific.get(lab, []), probe_k, l2, warnings, pool)
            if res is not None:
                out["one_vs_rest"][lab] = res
        multi = _multiclass_probes(pooled, dense, specific, labels, label_of, subsets, train,
                                   test, l2, warnings, pool)
        out["one_vs_rest"] = {lab: {name: _done(f) for name, f in res.items()}
                              for lab, res in out["one_vs_rest"].items()}
        out["multiclass"], out["multiclass_dense"] = (_done(f) for f in multi)
    if out["multiclass"] is not None:
        out["multiclass"]["chance_balanced_accuracy"] = 1.0 / len(labels)
    out["comparison"] = compare_probes(out)
    return out


def _multiclass_probes(pooled: sp.csr_matrix, dense: np.ndarray | None,
                       specific: dict[str, list[int]], labels: list[str], label_of: np.ndarray,
                       subsets: np.ndarray, train: np.ndarray, test: np.ndarray, l2: float,
                       warnings: list[str], pool: Executor) -> tuple[Future | None, ...]:
    """One probe over all labels on the union of specific latents, and one on the dense
    activations (when given), submitted to `pool`; None where it cannot be fitted."""
    multi = multi_dense = None
    union = sorted({int(i) for ids in specific.values() for i in ids})
    if union and len(np.unique(label_of[train])) >= 2:
        multi = pool.submit(_fit_and_score, pooled, union, label_of, train, test, len(labels),
                            l2, label_of, subsets, labels, keep_model=True)
    elif not union:
        warnings.append("multi-class probe skipped: no label has specific latents.")
    if dense is not None and len(np.unique(label_of[train])) >= 2:
        multi_dense = pool.submit(_fit_and_score, dense, None, label_of, train, test,
                                  len(labels), l2, label_of, subsets, labels)
    return multi, multi_dense


def _label_probes(pooled, dense, li, labels, label_of, subsets, train, test, specific,
                  probe_k, l2, warnings, pool: Executor) -> dict | None:
    """Label li vs the rest: a probe on the top-k latents by mean difference for each k, one on
    the label's specific latents, and (when given) one on the dense activations."""
    lab = labels[li]
    y = (label_of == li).astype(np.int64)
    if not y[test].any():
        warnings.append(f"label {lab!r} has no test-split sentences: its probe is scored on "
                        "other labels' sentences only.")
    if y[train].min() == y[train].max():
        warnings.append(f"probe for {lab!r} skipped: its train split has only one class.")
        return None
    sets = {f"k={k}": select_by_mean_difference(pooled[train], y[train] == 1, k)
            for k in probe_k}
    sets["specific"] = list(specific)
    score = lambda X, ids: pool.submit(_fit_and_score, X, ids, y, train, test, 2,  # noqa: E731
                                       l2, label_of, subsets, labels)
    res = {name: score(pooled, ids) if ids else None for name, ids in sets.items()}
    if dense is not None:
        res["dense"] = score(dense, None)
    return res


def _done(f: Future | None) -> dict | None:
    return None if f is None else f.result()


def mean_balanced(one_vs_rest: dict, name: str) -> float | None:
    """Mean over labels of the one-vs-rest balanced accuracy of probe `name` (None if missing)."""
    vals = [r[name]["balanced_accuracy"] for r in one_vs_rest.values()
            if r.get(name) and r[name].get("balanced_accuracy") is not None]
    return float(np.mean(vals)) if vals and len(vals) == len(one_vs_rest) else None


def compare_probes(out: dict) -> str:
    """One sentence on what the sparse probes show beside the dense baseline."""
    ovr = out["one_vs_rest"]
    if not ovr:
        return "no probes were fitted."
    names = sorted({n for r in ovr.values() for n in r if n.startswith("k=")},
                   key=lambda n: int(n[2:]))
    means = {n: mean_balanced(ovr, n) for n in [*names, "specific", "dense"]}
    dense = means.get("dense")
    ks = [(n, v) for n, v in means.items() if n.startswith("k=") and v is not None]
    if dense is None or not ks:
        return "no dense baseline: the sparse probes cannot be judged against raw activations."
    best_n, best = max(ks, key=lambda t: t[1])
    close = [n for n, v in ks if v >= dense - 0.01]
    text = (f"mean one-vs-rest balanced accuracy on held-out sentences: dense probe on raw "
            f"activations {dense:.3f}, best k-sparse probe ({best_n}) {best:.3f}")
    if means.get("specific") is not None:
        text += f", specific-set probe {means['specific']:.3f}"
    if close:
        text += (f"; {close[0]} latents per label come within 0.01 of the dense probe, so a "
                 "handful of SAE latents carries the label information the probe uses")
    else:
        text += (f"; no k-sparse probe comes within 0.01 of the dense probe (gap "
                 f"{dense - best:.3f}), so the SAE latents miss part of the label information "
                 "in the raw activations")
    mc, md = out.get("multiclass"), out.get("multiclass_dense")
    if mc and md:
        text += (f"; multi-class accuracy: specific-set probe {mc['accuracy']:.3f}, dense "
                 f"{md['accuracy']:.3f}")
    return text + "."
