"""Typed schema of every config group, registered in Hydra's ConfigStore.

YAML files in `conf/` build on these dataclasses, so a misspelled key or a wrong type fails when
Hydra composes the config. Value checks that types cannot express live in `validate()`, which
`run.py` calls before any work starts; each failure is one line naming the key, the value and
what is allowed. Library code receives these dataclasses (plain values), never a DictConfig.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from sae_exp.errors import ConfigError

SPARSITY_KINDS = ("topk", "batchtopk", "relu_l1")
DECODER_IMPLS = ("sparse", "dense")
DATA_SOURCES = ("logic_minilm", "hf_model", "file", "synthetic")
NORMALIZATIONS = ("none", "mean_center", "unit_norm", "scale_to_sqrt_d")
POOLINGS = ("token", "mean")
WANDB_MODES = ("online", "offline", "disabled")
SCHEDULES = ("linear_decay", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
AUTOCAST = ("none", "bf16")


@dataclass
class ModelConfig:
    hidden_dim: int = 2048  # d_sae
    tied: bool = False  # True: W_dec is W_enc^T, one shared parameter
    init_gain: float = 1.0  # xavier-uniform gain of W_enc (notebook: 0.1; README: the benchmark)
    decoder_impl: str = "sparse"  # sparse | dense (equal within float tolerance)
    normalize_decoder: bool = True  # unit-norm rows of W_dec after every step
    center_input: bool = True  # subtract b_dec before encoding (b_dec starts at the data mean)
    init_from: str | None = None  # a SAELens/sparsify/sae_exp SAE dir: analyse it, no training


@dataclass
class OptimizerConfig:
    lr: float = 2e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 0  # linear LR warm-up, then the schedule
    schedule: str = "linear_decay"  # linear_decay | cosine | constant
    min_lr_ratio: float = 0.0  # cosine and linear_decay end at lr * min_lr_ratio
    decay_fraction: float = 0.2  # linear_decay: share of the steps, at the end, that decay
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    lr_scale_W_dec: float = 10.0  # W_dec's lr = lr * this at lr_scale_batch (README: defaults)
    lr_scale_W_enc: float = 3.0  # W_enc's lr = lr * this at lr_scale_batch; biases keep lr
    lr_scale_batch: int | None = 4096  # the two scales go as sqrt(batch / this); null: fixed


@dataclass
class SparsityConfig:
    kind: str = "topk"  # topk | batchtopk | relu_l1
    top_k: int = 30
    sparsity_coeff: float = 0.0  # L1 weight on latent activations (notebook: 0.1)
    l1_warmup_epochs: int = 0  # linear warm-up of the L1 weight (notebook: 50)
    aux_k: int | None = None  # AuxK: dead latents that model the residual; null = d_in // 2
    aux_coeff: float = 0.03125  # AuxK loss weight (1/32, Gao et al. 2024)
    dead_after_rows: int = 100_000  # a latent is dead after this many rows without firing


@dataclass
class DataConfig:
    """Keys shared by every source; each source extends it."""

    source: str = MISSING
    normalize: str = "none"  # none | mean_center | unit_norm | scale_to_sqrt_d
    drop_nonfinite: bool = False  # drop NaN/Inf rows (with a count) instead of failing
    test_fraction: float = 0.2  # share of sentences held out, where the source has no split
    cache_dir: str = "outputs/cache"  # relative to the directory the command runs in


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    labels: list[str] = field(default_factory=lambda: ["conditional", "quantifier", "control"])
    n_sentences: int = 600  # per label
    tokens_per_sentence: int = 8
    d_in: int = 64
    n_specific: int = 8  # planted features used by one label only
    n_shared: int = 4  # planted features shared by the first two labels
    n_common: int = 16  # features used by every label (background)
    features_per_token: int = 4  # true L0 of a token
    marker_prob: float = 0.5  # chance a token of a sentence carries one of its label's features
    noise: float = 0.05
    seed: int = 0


@dataclass
class FileDataConfig(DataConfig):
    source: str = "file"
    path: str = MISSING  # .npz or a directory of .safetensors/.npy shards


@dataclass
class ModelDataConfig(DataConfig):
    """Sources that encode sentences with a transformer (logic_minilm, hf_model)."""

    source: str = "logic_minilm"
    model_path: str | None = None  # null = the packaged all-MiniLM-L6-v2
    layer: int = 3  # hidden_states index: 0 = embeddings, 1..n = transformer blocks
    # other hidden_states layers extracted in the same forward pass and cached beside data.layer:
    # give a layer sweep's layers here and it extracts once
    also_layers: list[int] = field(default_factory=list)
    pooling: str = "token"  # token (one row per token) | mean (one row per sentence)
    corpus: str | None = None  # .jsonl/.csv with text,label[,subset][,split]; null = shipped corpus
    max_length: int = 128
    batch_size: int = 64
    dtype: str = "float32"


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int | None = 4096  # null = full batch (the notebook)
    device: str = "auto"  # auto | cpu | cuda
    autocast: str = "none"  # none | bf16 (CUDA only)
    log_every: int = 10  # steps between metrics.jsonl lines
    checkpoint_every: int = 0  # steps between checkpoints; 0 = only at the end / on interrupt
    num_threads: int | None = None  # torch CPU threads; null = torch's default
    ddp: bool | None = None  # data-parallel under torchrun; null = on when WORLD_SIZE > 1


@dataclass
class AnalysisConfig:
    baseline: str = "auto"  # auto = "control" where present, else all other labels; or a label
    alpha: float = 0.01  # Benjamini-Hochberg FDR level
    min_log2_ratio: float = 1.0  # minimum effect: log2 firing-rate ratio label / baseline
    fire_fraction: float = 0.2  # fires if act > fire_fraction * p{fire_percentile} of active acts
    fire_percentile: float = 99.0
    bootstrap: int = 200  # subsamples without replacement behind each interval (old name kept)
    permutations: int = 200
    probe_k: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    top_examples: int = 5
    min_sentences: int = 20  # fewer sentences than this in a label: warning in the report
    seed: int = 0
    ci_level: float = 0.95  # two-sided nominal level of the subsampling intervals
    probe_l2: float = 1.0  # L2 weight of the logistic probes (on standardised features)
    token_injection: bool = True  # model sources only; other sources skip it with a line
    injection_tokens: int = 3  # peak tokens inserted into each held-out baseline sentence
    injection_sentences: int = 12  # held-out baseline sentences per tested latent
    injection_max_latents: int = 12  # specific latents tested per label (random sample); 0 = all


@dataclass
class WandbConfig:
    mode: str = "offline"  # online | offline | disabled
    project: str = "sae_exp"
    entity: str | None = None
    group: str | None = None  # null: multirun jobs share the sweep dir's name
    tags: list[str] = field(default_factory=list)
    log_artifacts: bool = True


@dataclass
class ObjectiveConfig:
    """The value the Hydra entry point returns to a sweeper (Optuna) to minimise:
    fvu + l0_penalty * max(0, l0 - l0_max) / l0_max, or fvu alone when l0_max is null."""

    l0_max: float | None = None
    l0_penalty: float = 1.0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    data: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    seed: int = 0
    name: str = "default"
    resume: str | None = None  # a run dir to continue from its last checkpoint
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


# The schema of each data source's keys: types a saved `.hydra/config.yaml` snapshot (resume,
# rerun), where Hydra's defaults list no longer names the schema.
DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    "synthetic": SyntheticDataConfig,
    "file": FileDataConfig,
    "logic_minilm": ModelDataConfig,
    "hf_model": ModelDataConfig,
}


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (called once by each Hydra entry point)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, name, node in [
        ("model", "model_schema", ModelConfig),
        ("optimizer", "optimizer_schema", OptimizerConfig),
        ("sparsity", "sparsity_schema", SparsityConfig),
        ("trainer", "trainer_schema", TrainerConfig),
        ("analysis", "analysis_schema", AnalysisConfig),
        ("wandb", "wandb_schema", WandbConfig),
        ("data", "synthetic_schema", SyntheticDataConfig),
        ("data", "file_schema", FileDataConfig),
        ("data", "model_data_schema", ModelDataConfig),
    ]:
        cs.store(group=group, name=name, node=node)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}.")


def _one_of(key: str, value: Any, options: tuple[str, ...]) -> None:
    _check(value in options, key, value, "allowed values are " + ", ".join(options))


def check_name(name: Any) -> None:
    """`name` becomes part of the run dir's name: no path separators, not `.` or `..`."""
    text = str(name)
    _check(bool(text) and "/" not in text and "\\" not in text and text not in (".", ".."),
           "name", text, "a run name cannot be empty, contain '/' or '\\', or be '.' or '..' "
           "(it becomes part of the run dir's name)")


def check_known_keys(config: dict) -> None:
    """Every key of a composed config is in the schema: `+key=value` adds keys Hydra does not
    check, so a misspelt `+trainer.epoch=5` would be accepted and ignored."""
    _known_keys(config, Config, "")


def _known_keys(node: Any, schema: Any, prefix: str) -> None:
    if not isinstance(node, dict) or not dataclasses.is_dataclass(schema):
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in node.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"{prefix}{key} is not a config key{hint} (`python -m sae_exp.run "
                              "--cfg job` lists every key).")
        _known_keys(value, _schema_of(schema, key, value), f"{prefix}{key}.")


def _schema_of(schema: Any, key: str, value: Any) -> Any:
    """The dataclass behind `schema.key` (the data source's schema for `data`), or None."""
    if schema is Config and key == "data":
        return DATA_SCHEMAS.get(value.get("source") if isinstance(value, dict) else None,
                                DataConfig)
    factory = next(f.default_factory for f in dataclasses.fields(schema) if f.name == key)
    return factory if dataclasses.is_dataclass(factory) else None


def _finite(obj: Any, prefix: str) -> None:
    """Every float of the config is finite (inf passes `> 0` and `>= 0` checks)."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _finite(value, key + ".")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}={value!r} is invalid: use a finite number.")


def _check_init_from(path: str | None, resume: str | None) -> None:
    if path is None:
        return
    from pathlib import Path

    _check(Path(path, "cfg.json").is_file(), "model.init_from", path,
           "give a SAELens, sparsify or sae_exp SAE directory (with cfg.json), or null")
    _check(resume is None, "model.init_from", path, "it skips training, so it cannot be "
           "combined with resume; drop one of them")


def validate(cfg: Config) -> None:
    """Check values that types cannot express. Raises ConfigError naming key, value and fix.

    One checker per config group; the first failing check is the one reported.
    """
    _finite(cfg, "")
    check_name(cfg.name)
    _check_model(cfg.model)
    _one_of("sparsity.kind", cfg.sparsity.kind, SPARSITY_KINDS)
    _check_init_from(cfg.model.init_from, cfg.resume)
    _check_sparsity(cfg.sparsity, cfg.model.hidden_dim)
    _check_optimizer(cfg.optimizer)
    _check_trainer(cfg.trainer)
    _check_objective(cfg.objective)
    _check_analysis(cfg.analysis)
    _one_of("wandb.mode", cfg.wandb.mode, WANDB_MODES)
    _check_data(cfg.data)


def _check_model(m: ModelConfig) -> None:
    _check(m.hidden_dim >= 1, "model.hidden_dim", m.hidden_dim, "use an integer >= 1")
    _one_of("model.decoder_impl", m.decoder_impl, DECODER_IMPLS)
    _check(m.init_gain > 0, "model.init_gain", m.init_gain, "use a value > 0")


def _check_sparsity(s: SparsityConfig, hidden_dim: int) -> None:
    if s.kind != "relu_l1":
        _check(
            1 <= s.top_k <= hidden_dim,
            "sparsity.top_k",
            s.top_k,
            f"use 1 <= top_k <= model.hidden_dim ({hidden_dim})",
        )
    _check(s.sparsity_coeff >= 0, "sparsity.sparsity_coeff", s.sparsity_coeff, "use a value >= 0")
    _check(s.l1_warmup_epochs >= 0, "sparsity.l1_warmup_epochs", s.l1_warmup_epochs, "use >= 0")
    _check(s.aux_k is None or s.aux_k >= 1, "sparsity.aux_k", s.aux_k, "use null or >= 1")
    _check(s.aux_coeff >= 0, "sparsity.aux_coeff", s.aux_coeff, "use a value >= 0")
    _check(s.dead_after_rows >= 1, "sparsity.dead_after_rows", s.dead_after_rows, "use >= 1")


def _check_optimizer(o: OptimizerConfig) -> None:
    _check(o.lr > 0, "optimizer.lr", o.lr, "use a learning rate > 0")
    _check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optimizer.betas", o.betas,
           "use two values in [0, 1)")
    _check(o.warmup_steps >= 0, "optimizer.warmup_steps", o.warmup_steps, "use >= 0")
    _one_of("optimizer.schedule", o.schedule, SCHEDULES)
    _check(0 <= o.min_lr_ratio <= 1, "optimizer.min_lr_ratio", o.min_lr_ratio,
           "use a value in [0, 1]")
    _check(0 < o.decay_fraction <= 1, "optimizer.decay_fraction", o.decay_fraction,
           "use a value in (0, 1]")
    _check(o.grad_clip >= 0, "optimizer.grad_clip", o.grad_clip, "use >= 0 (0 disables clipping)")
    for key in ("lr_scale_W_dec", "lr_scale_W_enc"):
        _check(getattr(o, key) > 0, f"optimizer.{key}", getattr(o, key),
               "use a factor > 0 (1 gives the parameter the base lr)")
    _check(o.lr_scale_batch is None or o.lr_scale_batch >= 1, "optimizer.lr_scale_batch",
           o.lr_scale_batch, "use an integer >= 1, or null to apply the scales unchanged")


def _check_trainer(t: TrainerConfig) -> None:
    _check(t.epochs >= 1, "trainer.epochs", t.epochs, "use an integer >= 1")
    _check(t.batch_size is None or t.batch_size >= 1, "trainer.batch_size", t.batch_size,
           "use an integer >= 1, or null for full batch")
    _one_of("trainer.device", t.device, DEVICES)
    _one_of("trainer.autocast", t.autocast, AUTOCAST)
    _check(t.log_every >= 1, "trainer.log_every", t.log_every, "use an integer >= 1")
    _check(t.checkpoint_every >= 0, "trainer.checkpoint_every", t.checkpoint_every, "use >= 0")
    _check(t.num_threads is None or t.num_threads >= 1, "trainer.num_threads", t.num_threads,
           "use an integer >= 1, or null for torch's default")


def _check_objective(ob: ObjectiveConfig) -> None:
    _check(ob.l0_max is None or ob.l0_max > 0, "objective.l0_max", ob.l0_max, "use null or > 0")
    _check(ob.l0_penalty >= 0, "objective.l0_penalty", ob.l0_penalty, "use a value >= 0")


def _check_analysis(a: AnalysisConfig) -> None:
    _check(0 < a.alpha < 1, "analysis.alpha", a.alpha, "use a value strictly between 0 and 1")
    _check(a.min_log2_ratio >= 0, "analysis.min_log2_ratio", a.min_log2_ratio, "use >= 0")
    _check(0 <= a.fire_fraction < 1, "analysis.fire_fraction", a.fire_fraction,
           "use a value in [0, 1)")
    _check(0 < a.fire_percentile <= 100, "analysis.fire_percentile", a.fire_percentile,
           "use a value in (0, 100]")
    _check(a.bootstrap >= 0, "analysis.bootstrap", a.bootstrap, "use >= 0 (0 disables the CI)")
    _check(a.permutations >= 0, "analysis.permutations", a.permutations, "use >= 0 (0 disables)")
    _check(all(k >= 1 for k in a.probe_k), "analysis.probe_k", a.probe_k, "use integers >= 1")
    _check(0 < a.ci_level < 1, "analysis.ci_level", a.ci_level, "use a value in (0, 1)")
    _check(a.probe_l2 >= 0, "analysis.probe_l2", a.probe_l2, "use a value >= 0")
    _check(a.injection_tokens >= 1, "analysis.injection_tokens", a.injection_tokens, "use >= 1")
    _check(a.injection_sentences >= 1, "analysis.injection_sentences", a.injection_sentences,
           "use >= 1")
    _check(a.injection_max_latents >= 0, "analysis.injection_max_latents",
           a.injection_max_latents, "use >= 0 (0 tests every specific latent)")
    _check(a.top_examples >= 0, "analysis.top_examples", a.top_examples, "use >= 0")
    _check(a.min_sentences >= 0, "analysis.min_sentences", a.min_sentences, "use >= 0")


def _check_data(d: DataConfig) -> None:
    _one_of("data.source", d.source, DATA_SOURCES)
    _one_of("data.normalize", d.normalize, NORMALIZATIONS)
    _check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "use a value in (0, 1)")
    if isinstance(d, ModelDataConfig):
        _one_of("data.pooling", d.pooling, POOLINGS)
        _check(d.layer >= 0, "data.layer", d.layer, "use a hidden-state index >= 0")
        _check(all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                   for x in d.also_layers), "data.also_layers", list(d.also_layers),
               "use a list of hidden-state indices >= 0, e.g. [1,2,3]")
        _check(d.batch_size >= 1, "data.batch_size", d.batch_size, "use an integer >= 1")
        _check(d.max_length >= 1, "data.max_length", d.max_length, "use an integer >= 1")
    if isinstance(d, SyntheticDataConfig):
        _check_synthetic(d)


def _check_synthetic(d: SyntheticDataConfig) -> None:
    _check(len(d.labels) >= 2, "data.labels", d.labels, "give at least two labels")
    _check(d.d_in >= 2, "data.d_in", d.d_in, "use >= 2")
    for key in ("n_sentences", "tokens_per_sentence", "features_per_token"):
        _check(getattr(d, key) >= 1, f"data.{key}", getattr(d, key), "use an integer >= 1")
    _check(0 <= d.marker_prob <= 1, "data.marker_prob", d.marker_prob, "use a value in [0, 1]")
    _check(d.noise >= 0, "data.noise", d.noise, "use a value >= 0")
