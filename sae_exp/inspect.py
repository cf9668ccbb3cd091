"""Encode new sentences with a trained run and say which labelled features they carry.

    python -m sae_exp.inspect <run dir> --input texts.jsonl [--output out.jsonl]
    echo "Unless it rains, we walk." | python -m sae_exp.inspect <run dir>

Input: `.jsonl` (a `text` field per line; other fields such as `label` are passed through),
`.txt`/`.csv`-free plain text (one sentence per line), or standard input in either form.
The run's own model, layer, pooling and normalisation are applied. One JSON line per input, in
input order:

    text       the sentence
    latents    [[id, activation], ...]: latents that fire in the sentence (peak over its tokens
               above the latent's firing threshold from the run's report), strongest first
    scores     {label: share of that label's `specific` latents that fire in the sentence}
    probabilities  {label: probability} from the run's multi-class probe (the report's sparse
               probe on the union of the specific sets, saved as probe.safetensors)
    predicted  the most probable label under that probe; for runs without a probe, the label
               with the highest score (the baseline label when no specific latent fires)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from sae_exp import files
from sae_exp.analysis.firing import sentence_peaks
from sae_exp.data.normalize import Normalizer
from sae_exp.data.types import Sentences
from sae_exp.errors import DataError, UserError
from sae_exp.train.trainer import encode_rows

log = logging.getLogger("sae_exp.inspect")
TEXT_SOURCES = ("logic_minilm", "hf_model")


def read_inputs(path: str | None) -> list[dict]:
    """Records with a `text` field from a .jsonl / plain-text file, or stdin when path is None/-."""
    if path in (None, "-"):
        raw, name = sys.stdin.read(), "<stdin>"
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"--input {p}: no such file.")
        try:
            raw, name = p.read_text(encoding="utf-8"), str(p)
        except UnicodeDecodeError as e:
            raise DataError(
                f"--input {p} is not UTF-8 text (byte {e.start}); re-save it as UTF-8."
            ) from None
    records = []
    for n, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{name} line {n}: invalid JSON ({e.msg}).") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(f"{name} line {n}: a JSON line needs a string field `text`.")
        else:
            rec = {"text": line}
        if not rec["text"].strip():
            raise DataError(f"{name} line {n}: empty `text`.")
        records.append(rec)
    if not records:
        raise DataError(
            f"{name}: no sentences to inspect (one per line, or JSON lines with `text`)."
        )
    return records


class RunModel:
    """A finished run, loaded and checked: SAE, normaliser, data settings, label evidence."""

    def __init__(self, run_dir: Path, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise DataError(f"{run_dir}: no such run dir.")
        self.device = _device(device)
        self.sae, self.sae_cfg = files.load_sae(self.run_dir, device)
        snap = self.run_dir / files.HYDRA_DIR / "config.yaml"
        if not snap.is_file():
            raise DataError(f"{snap} is missing: {run_dir} is not a complete sae_exp run dir.")
        self.data_cfg = OmegaConf.to_container(OmegaConf.load(snap).data, resolve=False)
        self.report = _read_json(self.run_dir / files.REPORT_JSON)
        cats = self.report.get("categories")
        if not isinstance(cats, dict) or not cats:
            raise DataError(f"{self.run_dir / files.REPORT_JSON} has no `categories`; re-run it.")
        self.specific = {lab: [int(j) for j in c.get("specific", [])] for lab, c in cats.items()}
        self.baseline = "control" if "control" in cats else None
        self.thresholds = self._thresholds()
        self.normalizer = self._normalizer()
        self.probe = self._probe()

    def _probe(self) -> dict | None:
        """The run's multi-class label probe (probe.safetensors), or None for older runs."""
        path = self.run_dir / files.PROBE
        if not path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                out = {k: f.get_tensor(k) for k in f.keys()}
                out["labels"] = json.loads((f.metadata() or {})["labels"])
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
            raise DataError(f"{path} is damaged; delete it to predict from scores.") from None
        if out["W"].shape != (len(out["latents"]), len(out["labels"])):
            raise DataError(f"{path}: W does not match its latents and labels; it is damaged.")
        return out

    def _thresholds(self) -> np.ndarray:
        thr = np.zeros(self.sae.d_sae, dtype=np.float32)
        path = self.run_dir / files.FEATURES
        if not path.is_file():
            log.warning("%s missing: any positive activation counts as firing", path)
            return thr
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rec = json.loads(line)
                thr[int(rec["id"])] = float(rec.get("threshold") or 0.0)
            except (json.JSONDecodeError, KeyError, ValueError, IndexError):
                raise DataError(f"{path} line {n} is malformed; the run dir is damaged.") from None
        return thr

    def _normalizer(self) -> Normalizer:
        spec = self.sae_cfg.get("normalize") or {"kind": "none"}
        mean = None
        if spec.get("kind") == "mean_center":
            from safetensors.torch import load_file

            path = self.run_dir / files.NORMALIZATION
            if not path.is_file():
                raise DataError(f"{path} is missing: the run was trained on mean-centred rows "
                                "(data.normalize=mean_center); the run dir is damaged.")
            try:
                mean = load_file(str(path))["mean"].numpy()
            except Exception as e:
                raise DataError(f"{path} cannot be read ({type(e).__name__}); the run dir is "
                                "damaged.") from None
        return Normalizer(spec.get("kind", "none"), mean=mean, scale=float(spec.get("scale", 1.0)))

    def activations(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the run's model/layer/pooling for `texts`: (acts [N, d_in], sentence_index)."""
        from sae_exp.data.extract import extract, minilm_path

        d = self.data_cfg
        if d.get("source") not in TEXT_SOURCES:
            raise UserError(
                f"{self.run_dir} was trained on data={d.get('source')} activations, not on a text "
                "model: inspect needs a run with data=logic_minilm or data=hf_model."
            )
        model_path = d.get("model_path") or minilm_path()
        n = len(texts)
        sentences = Sentences(labels=np.array([""] * n), subsets=np.array([""] * n),
                              splits=np.array(["test"] * n), texts=np.array(texts, dtype=object))
        acts, sentence_index, _ = extract(
            sentences, model_path, int(d.get("layer", 3)), d.get("pooling", "token"),
            int(d.get("max_length", 128)), int(d.get("batch_size", 64)), d.get("dtype", "float32"),
            str(self.device),
        )
        if acts.shape[1] != self.sae.d_in:
            raise DataError(f"the model gives {acts.shape[1]}-dim rows but the SAE expects "
                            f"{self.sae.d_in}; the run dir does not match its model.")
        return self.normalizer(acts), sentence_index

    def describe(self, acts: np.ndarray, sentence_index: np.ndarray,
                 n_sentences: int) -> list[dict]:
        """Per sentence: firing latents, label scores and the predicted label."""
        idx, val = encode_rows(self.sae, acts, self.device)
        probs = self._probabilities(idx, val, sentence_index, n_sentences)
        # the report's firing rule: a latent fires in a sentence when its peak there exceeds its
        # threshold (one implementation, sae_exp.analysis.firing)
        peaks = sentence_peaks(idx, val, sentence_index, self.sae.d_sae)
        fires = peaks.value > self.thresholds[peaks.latent]
        per_sentence: list[dict[int, float]] = [{} for _ in range(n_sentences)]
        for s, j, a in zip(peaks.sentence[fires], peaks.latent[fires], peaks.value[fires],
                           strict=True):
            per_sentence[int(s)][int(j)] = float(a)
        out = []
        for s in range(n_sentences):
            firing = per_sentence[s]
            scores = {lab: (sum(j in firing for j in ids) / len(ids) if ids else 0.0)
                      for lab, ids in self.specific.items()}
            best = max(scores.values()) if scores else 0.0
            predicted = (min(lab for lab, v in scores.items() if v == best) if best > 0
                         else self.baseline)
            latents = sorted(firing.items(), key=lambda kv: -kv[1])
            rec = {"latents": [[j, round(a, 5)] for j, a in latents],
                   "scores": {k: round(v, 5) for k, v in scores.items()},
                   "predicted": predicted}
            if probs is not None:
                labels = self.probe["labels"]
                rec["probabilities"] = {lab: round(float(p), 5) for lab, p in
                                        zip(labels, probs[s], strict=True)}
                rec["predicted"] = labels[int(np.argmax(probs[s]))]
            out.append(rec)
        return out

    def _probabilities(self, idx: np.ndarray, val: np.ndarray, sentence_index: np.ndarray,
                       n_sentences: int) -> np.ndarray | None:
        """[S, labels] softmax of the run's probe on mean-pooled specific latents."""
        if self.probe is None:
            return None
        from scipy.special import softmax

        from sae_exp.analysis.probes import pool_sentences

        pooled = pool_sentences(idx, val, sentence_index, n_sentences, self.sae.d_sae)
        X = pooled[:, self.probe["latents"]].toarray()
        Z = (X - self.probe["mu"]) / self.probe["sd"]
        return softmax(Z @ self.probe["W"] + self.probe["b"], axis=1)


def _device(name: str) -> torch.device:
    """--device as torch understands it, or one line naming the choices."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name} is not a device torch knows: use cpu, cuda or "
                        "cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is visible; use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: inspect runs on cpu or cuda.")
    return device


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not finish; inspect needs a finished run.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); the run dir is damaged.") from None


def inspect_texts(run_dir: Path, records: list[dict], device: str = "cpu") -> list[dict]:
    model = RunModel(run_dir, device)
    acts, sentence_index = model.activations([r["text"] for r in records])
    described = model.describe(acts, sentence_index, len(records))
    return [{**rec, **d} for rec, d in zip(records, described, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sae_exp.inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--input", default=None, help=".jsonl or text file; default stdin")
    parser.add_argument("--output", type=Path, default=None, help="default stdout")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = inspect_texts(args.run_dir, read_inputs(args.input), args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args.output is None:
        sys.stdout.write(lines)
    else:
        files.atomic_write_text(args.output, lines)
        labelled = [r for r in results if r.get("label") in model_labels(results)]
        if labelled:
            acc = np.mean([r["label"] == r["predicted"] for r in labelled])
            print(f"wrote {len(results)} lines to {args.output}; accuracy on the {len(labelled)} "
                  f"inputs with a known label: {acc:.3f}", file=sys.stderr)
    return 0


def model_labels(results: list[dict]) -> set[str]:
    return set().union(*(r["scores"].keys() for r in results)) if results else set()


if __name__ == "__main__":
    sys.exit(main())
