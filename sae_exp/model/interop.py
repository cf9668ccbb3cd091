"""SAELens and EleutherAI sparsify on-disk layouts: write ours in theirs, read theirs into ours.

Formats (read from sae-lens 6.54.12 and eai-sparsify 1.3.3; no library import needed here):

    SAELens   sae_weights.safetensors  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
                                       b_dec [d_in] (+ threshold [d_sae] for jumprelu)
              cfg.json                 architecture, d_in, d_sae, dtype, device,
                                       apply_b_dec_to_input, normalize_activations,
                                       reshape_activations, metadata (+ k for topk)
    sparsify  sae.safetensors          encoder.weight [d_sae, d_in] (= W_enc^T), encoder.bias,
                                       W_dec [d_sae, d_in] (as ours), b_dec [d_in]
              cfg.json                 d_in, k, num_latents, activation, expansion_factor,
                                       normalize_decoder, multi_topk, skip_connection, transcode

Both libraries take raw activations: an export folds our `data.normalize` (mean_center,
scale_to_sqrt_d) into the weights, and a run without input centering gets its b_dec folded into
b_enc, so the exported SAE selects the same latents and reconstructs in the raw space. Imports
are refused, with one line, for anything our encoder cannot reproduce exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sae_exp import files
from sae_exp.data.normalize import Normalizer
from sae_exp.errors import ConfigError, DataError
from sae_exp.model.sae import SAE

SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"  # also ours: a dir is ours when cfg.json has "tied"
CFG = "cfg.json"
FORMATS = ("saelens", "sparsify")
FORMAT_VERSIONS = {"saelens": "6.54.12", "sparsify": "1.3.3"}  # the versions read and tested
# SAELens architecture <-> our SAE kind, where the encoders agree exactly
_SAELENS_OF_KIND = {"topk": "topk", "relu_l1": "standard", "batchtopk": "jumprelu"}


@dataclass
class Imported:
    """An SAE read from another layout, ready for our encoder."""

    sae: SAE
    layout: str  # saelens | sparsify | sae_exp
    notes: dict = field(default_factory=dict)  # what was folded or assumed (goes to cfg.json)


# --- export --------------------------------------------------------------------------------
def raw_space_tensors(sae: SAE, norm: Normalizer) -> dict[str, torch.Tensor]:
    """W_enc, b_enc, W_dec, b_dec for raw activations x, with x - b_dec fed to the encoder.

    Our SAE sees z = a * (x - c) (a = scale, c = mean) and reconstructs z. Then
    pre = (x - b_dec') @ W_enc' + b_enc' and x_hat = acts @ W_dec' + b_dec' with
    W_enc' = a W_enc, W_dec' = W_dec / a, b_dec' = b_dec / a + c, and, without input centering,
    b_enc' = b_enc + b_dec @ W_enc (so the centering the libraries always do cancels)."""
    if norm.kind == "unit_norm":
        raise ConfigError("data.normalize=unit_norm divides each row by its own norm, which "
                          "neither SAELens nor sparsify applies: export a run with "
                          "data.normalize=none, mean_center or scale_to_sqrt_d.")
    t = {k: v.double() for k, v in sae.state_for_save().items()}
    a = float(norm.scale) if norm.kind == "scale_to_sqrt_d" else 1.0
    c = torch.as_tensor(norm.mean, dtype=torch.float64) if norm.kind == "mean_center" \
        else torch.zeros(sae.d_in, dtype=torch.float64)
    b_enc = t["b_enc"] if sae.center_input else t["b_enc"] + t["b_dec"] @ t["W_enc"]
    out = {"W_enc": a * t["W_enc"], "b_enc": b_enc, "W_dec": t["W_dec"] / a,
           "b_dec": t["b_dec"] / a + c}
    return {k: v.float().contiguous() for k, v in out.items()}


def export_sae(sae: SAE, norm: Normalizer, out_dir: Path, to: str,
               metadata: dict | None = None) -> list[Path]:
    """Write `sae` in the `to` layout (saelens | sparsify) into `out_dir`; returns the files."""
    if to not in FORMATS:
        raise ConfigError(f"--to {to!r} is invalid: allowed values are " + ", ".join(FORMATS))
    out_dir = Path(out_dir)
    t = raw_space_tensors(sae, norm)
    note = {"sae_exp_kind": sae.kind, "sae_exp_normalize_folded": norm.kind, **(metadata or {})}
    if to == "saelens":
        weights, cfg = _saelens_layout(sae, t, note)
        w_path = out_dir / SAELENS_WEIGHTS
    else:
        weights, cfg = _sparsify_layout(sae, t)
        w_path = out_dir / SPARSIFY_WEIGHTS
    out_dir.mkdir(parents=True, exist_ok=True)
    # sparsify's loader prints every unknown cfg.json field: our notes go in the weights' header
    files.atomic_save_safetensors(w_path, weights,
                                  metadata={k: json.dumps(v) for k, v in note.items()})
    files.atomic_write_json(out_dir / CFG, cfg)
    return [w_path, out_dir / CFG]


def _saelens_layout(sae: SAE, t: dict, note: dict) -> tuple[dict, dict]:
    arch = _SAELENS_OF_KIND[sae.kind]
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"sae_lens_version": FORMAT_VERSIONS["saelens"], **note}}
    if arch == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    if arch == "jumprelu":  # our batch-top-k at inference: one threshold for every latent
        t = {**t, "threshold": sae.threshold.detach().float().cpu().expand(sae.d_sae).clone()}
    return t, cfg


def _sparsify_layout(sae: SAE, t: dict) -> tuple[dict, dict]:
    if sae.kind != "topk":
        raise ConfigError(f"sparsify has only per-row top-k; this SAE is sparsity.kind="
                          f"{sae.kind}: export it with --to saelens.")
    unit = bool(torch.allclose(t["W_dec"].norm(dim=1), torch.ones(sae.d_sae), atol=1e-4))
    weights = {"encoder.weight": t["W_enc"].t().contiguous(), "encoder.bias": t["b_enc"],
               "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    cfg = {"activation": "topk", "expansion_factor": max(1, sae.d_sae // sae.d_in),
           "normalize_decoder": unit, "num_latents": sae.d_sae, "k": sae.k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": sae.d_in}
    return weights, cfg


# --- import --------------------------------------------------------------------------------
def detect_layout(path: Path) -> str:
    """saelens | sparsify | sae_exp, from the files in `path`; DataError when none fits."""
    path = Path(path)
    if not (path / CFG).is_file():
        raise DataError(f"{path} has no {CFG}: expected a SAELens ({SAELENS_WEIGHTS}) or "
                        f"sparsify ({SPARSIFY_WEIGHTS}) SAE directory.")
    if (path / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if (path / SPARSIFY_WEIGHTS).is_file():
        return "sae_exp" if "tied" in _read_cfg(path) else "sparsify"
    raise DataError(f"{path} has {CFG} but neither {SAELENS_WEIGHTS} (SAELens) nor "
                    f"{SPARSIFY_WEIGHTS} (sparsify).")


def import_sae(path: Path, d_in: int | None = None) -> Imported:
    """Read a SAELens, sparsify or sae_exp SAE dir; check its d_in against the data's."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "sae_exp":
        sae, cfg = files.load_sae(path)
        imp = Imported(sae, layout, {"normalize": cfg.get("normalize", {"kind": "none"})})
    elif layout == "saelens":
        imp = _from_saelens(path)
    else:
        imp = _from_sparsify(path)
    if d_in is not None and imp.sae.d_in != d_in:
        raise ConfigError(f"model.init_from={path}: the SAE takes d_in={imp.sae.d_in} but the "
                          f"data has d_in={d_in}; use activations of the model/layer it was "
                          "trained on.")
    imp.sae.eval()
    return imp


def _read_cfg(path: Path) -> dict:
    try:
        cfg = json.loads((path / CFG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path / CFG} is not valid JSON ({e}).") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path / CFG} is not a JSON object.")
    return cfg


def _weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return {k: v.double() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path} is not a valid safetensors file ({e}).") from None


def _field(cfg: dict, key: str, path: Path):
    if key not in cfg:
        raise DataError(f"{path / CFG} lacks {key!r}; is it a complete SAE config?")
    return cfg[key]


def _from_saelens(path: Path) -> Imported:
    cfg = _read_cfg(path)
    arch = cfg.get("architecture", "standard")  # SAELens' own default for pre-6.0 configs
    if "architecture" not in cfg and cfg.get("activation_fn_str", cfg.get("activation_fn")) \
            == "topk":  # pre-6.0 top-k: k sits in activation_fn_kwargs (as SAELens reads it)
        arch, cfg["k"] = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise ConfigError(f"{path}: SAELens normalize_activations={norm!r} is applied inside "
                          "SAELens and not by our encoder; fold it into the weights (SAELens "
                          "fold_activation_norm_scaling_factor) and save the SAE again.")
    kinds = {v: k for k, v in _SAELENS_OF_KIND.items()}
    if arch not in kinds:
        raise ConfigError(f"{path}: SAELens architecture {arch!r} cannot be encoded exactly by "
                          "our SAE (we read topk, standard and jumprelu with one shared "
                          "threshold).")
    d_in, d_sae = int(_field(cfg, "d_in", path)), int(_field(cfg, "d_sae", path))
    t = _weights(path / SAELENS_WEIGHTS)
    _check_shapes(path / SAELENS_WEIGHTS, t, {"W_enc": (d_in, d_sae), "b_enc": (d_sae,),
                                              "W_dec": (d_sae, d_in), "b_dec": (d_in,)})
    if cfg.get("rescale_acts_by_decoder_norm"):  # fold the norms: same selection, same output
        n = t["W_dec"].norm(dim=1).clamp_min(1e-8)
        t.update(W_enc=t["W_enc"] * n, b_enc=t["b_enc"] * n, W_dec=t["W_dec"] / n[:, None])
    kind = kinds[arch]
    if kind == "batchtopk":
        t["threshold"] = _shared_threshold(path, t.get("threshold"), d_sae)
    k = _field(cfg, "k", path) if kind == "topk" else 1
    if not isinstance(k, int) or k < 1:
        raise DataError(f"{path / CFG}: k={k!r} should be an integer >= 1.")
    sae = SAE(d_in, d_sae, kind=kind, k=k, center_input=bool(cfg.get("apply_b_dec_to_input",
                                                                     True)))
    sae.load_tensors({n: v.float() for n, v in t.items()})
    notes = {"architecture": arch, "dtype": cfg.get("dtype"), "normalize_activations": norm,
             "hook_name": (cfg.get("metadata") or {}).get("hook_name")}
    return Imported(sae, "saelens", notes)


def _shared_threshold(path: Path, thr: torch.Tensor | None, d_sae: int) -> torch.Tensor:
    """A jumprelu SAE is our batch-top-k encoder only when all latents share one threshold."""
    if thr is None or thr.numel() != d_sae:
        raise DataError(f"{path}: jumprelu weights lack threshold [{d_sae}].")
    if not torch.all(thr == thr[0]) or float(thr[0]) < 0:
        raise ConfigError(f"{path}: SAELens jumprelu with per-latent thresholds cannot be "
                          "encoded exactly by our SAE (one shared threshold >= 0 only).")
    return thr[0].reshape(())


def _from_sparsify(path: Path) -> Imported:
    cfg = _read_cfg(path)
    for key, bad, why in [("activation", "groupmax", "groupmax activation"),
                          ("skip_connection", True, "a skip connection (W_skip)"),
                          ("transcode", True, "a transcoder (predicts another module's output)")]:
        if cfg.get(key, False) == bad:
            raise ConfigError(f"{path}: sparsify SAE with {why} cannot be encoded exactly by "
                              "our SAE (we read per-row top-k autoencoders).")
    d_in, k = int(_field(cfg, "d_in", path)), int(_field(cfg, "k", path))
    d_sae = int(cfg.get("num_latents") or d_in * int(cfg.get("expansion_factor", 32)))
    t = _weights(path / SPARSIFY_WEIGHTS)
    _check_shapes(path / SPARSIFY_WEIGHTS, t, {
        "encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "W_dec": (d_sae, d_in),
        "b_dec": (d_in,)})
    sae = SAE(d_in, d_sae, kind="topk", k=k, center_input=True)
    sae.load_tensors({"W_enc": t["encoder.weight"].t().float(), "b_enc": t["encoder.bias"].float(),
                      "W_dec": t["W_dec"].float(), "b_dec": t["b_dec"].float()})
    return Imported(sae, "sparsify", {"activation": "topk", "normalize_activations": "none"})


def _check_shapes(w_path: Path, t: dict, expect: dict) -> None:
    for name, shape in expect.items():
        got = tuple(t[name].shape) if name in t else "missing"
        if got != shape:
            raise DataError(f"{w_path}: {name} should have shape {shape}, found {got}.")
        if not torch.isfinite(t[name]).all():
            raise DataError(f"{w_path}: {name} contains NaN or Inf.")

