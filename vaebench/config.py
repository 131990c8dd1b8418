"""The typed schema of ``params.yaml``: validation with one-line errors, before any work starts.

``load_params(path)`` returns a validated ``Params``; ``cells(params)`` lists the study's runs
(one per model, dataset, seed, and beta of the sweep), and ``run_spec(params, cell)`` resolves
one of them (what the train and evaluate stages need).

- The file is read with the YAML 1.2 parser DVC uses (``ruamel.yaml``, safe), so both read
  the same numbers (``1e-3`` is a float, ``1`` an int, ``1.0`` a float).
- Types are strict: ``epochs: "10"`` is an error, not 10. An int is accepted where a float is
  expected.
- Keys that define an experiment are required (``train.<model>.lr``, ``epochs``, ...); the
  optional ones have defaults that every stage prints when it starts (``defaults_used``).

Errors are ``ConfigError`` with one line: the file, the key, the value and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

from vaebench import models as model_registry
from vaebench.nets.linear import GEMMS, resolve_gemm

MODEL_NAMES = tuple(model_registry.MODELS)
DATASET_NAMES = ("digits", "fashion-mnist", "dsprites", "linear-gaussian", "mnist", "cifar10")
BACKEND_NAMES = ("auto", "eager", "compile", "triton")
GEMM_NAMES = GEMMS
Number = StrictInt | StrictFloat
BETA_MODELS = tuple(n for n, (c, _) in model_registry.MODELS.items() if "beta" in c.model_fields)


class ConfigError(ValueError):
    """A bad value in params.yaml (or on the command line), reported in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _choice(kind: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(valid)}")
    return value


def _distinct(values: list, what: str) -> list:
    """Reject repeated entries (``1`` and ``1.0`` are the same number)."""
    seen: dict[float | str, Any] = {}
    for v in values:
        key = float(v) if isinstance(v, int | float) else v
        if key in seen:
            raise ValueError(f"duplicate {what} {v!r} (same as {seen[key]!r}); each entry must "
                             "appear once")
        seen[key] = v
    return values


class LinearCell(_Strict):
    """One linear VAE cell of the study: a dataset and a latent size (``train.linear`` holds
    the rest)."""

    dataset: str
    latent_dim: PositiveInt

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return _choice("dataset", v, DATASET_NAMES)


class StudyConfig(_Strict):
    name: str = "default"
    seeds: list[NonNegativeInt] = Field(min_length=1)  # training seeds: a matrix axis of the runs
    models: list[str] = Field(min_length=1)
    datasets: list[str] = Field(min_length=1)
    linear: list[LinearCell] = Field(default_factory=list)
    backend: str = "auto"
    gemm: str = "auto"  # the GEMM library of the Linear layers (vaebench.nets.linear)
    # the train stage's device (cuda: presets/gpu.yaml; under torchrun each rank's GPU); the
    # evaluate stage runs on the CPU
    device: Literal["cpu", "cuda"] = "cpu"
    threads: PositiveInt | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return _distinct(v, "seed")

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return _distinct([_choice("model", m, MODEL_NAMES) for m in v], "model")

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        return _distinct([_choice("dataset", d, DATASET_NAMES) for d in v], "dataset")

    @field_validator("linear")
    @classmethod
    def _linear(cls, v: list[LinearCell]) -> list[LinearCell]:
        _distinct([f"{c.dataset} z={c.latent_dim}" for c in v], "linear cell")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        return _choice("backend", v, BACKEND_NAMES)

    @field_validator("gemm")
    @classmethod
    def _gemm(cls, v: str) -> str:
        _choice("gemm", v, GEMM_NAMES)
        resolve_gemm(v)  # 'onednn' on a torch build without it fails here, before any work
        return v


class SweepConfig(_Strict):
    """The beta sweep: ``model`` on ``dataset`` with its own ``train`` block, one run per beta.

    The sweep has its own block so that its stages depend on it alone: changing
    ``train.beta_vae.beta`` does not rerun the sweep, which sets beta itself.
    """

    model: str
    dataset: str
    betas: list[Number] = Field(min_length=1)
    train: dict[str, Any]

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        _choice("model", v, MODEL_NAMES)
        if "beta" not in model_registry.config_class(v).model_fields:
            raise ValueError(f"model {v!r} has no beta; models with one: "
                             + ", ".join(BETA_MODELS))
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return _choice("dataset", v, DATASET_NAMES)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: list[int | float]) -> list[int | float]:
        for b in v:
            if not b >= 0:
                raise ValueError(f"beta must be >= 0; got {b!r}")
        return _distinct(v, "beta")


class EvalConfig(_Strict):
    batch_size: PositiveInt = 500
    elbo_samples: PositiveInt = 4          # S draws per test point for the ELBO and its MC error
    elbo_samples_large: PositiveInt = 64   # an independent, larger-S estimate (theory check 6)
    elbo_points: PositiveInt = 2000        # test points used for the S-sample ELBO checks
    iw_k: PositiveInt = 500                # importance samples for the log-likelihood
    iw_ks: list[PositiveInt] = Field(default_factory=lambda: [1, 5, 50, 500])
    iw_points: PositiveInt = 1000          # test points for the IS log-likelihood
    mi_points: PositiveInt = 2000          # test points for I_q(x;z) and the TC decomposition (cost N^2)
    active_threshold: float = Field(0.01, ge=0)
    disentanglement_points: PositiveInt = 5000


class TheoryConfig(_Strict):
    alpha: float = Field(0.01, gt=0, lt=1)
    # nats per point and per data dimension allowed between L*/N and the trained linear ELBO
    optimum_gap_tol_per_dim: float = Field(0.0025, ge=0)
    min_subspace_similarity: float = Field(0.9, ge=0, le=1)


class GradientStudyConfig(_Strict):
    """The gradient study (``gradients:`` in params.yaml; these are its defaults)."""

    dataset: str = "digits"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256])
    latent_dim: PositiveInt = 8
    betas: list[PositiveFloat] = Field(default_factory=lambda: [0.25, 1.0, 4.0])
    checkpoints: list[int] = Field(default_factory=lambda: [0, 50, 300, 2000])
    batch_size: PositiveInt = 128       # training batch, and B of every replicate
    lr: PositiveFloat = 1e-3
    samples: int = Field(4, ge=2)       # K draws per point (the LOO baseline needs K >= 2)
    replicates: int = Field(256, ge=8)  # R minibatch estimates per estimator and checkpoint
    bootstrap: int = Field(999, ge=99)  # bootstrap resamples for every interval
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class Params(_Strict):
    study: StudyConfig
    data: dict[str, dict[str, Any] | None]
    train: dict[str, dict[str, Any]]
    sweep: SweepConfig
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    theory: TheoryConfig = Field(default_factory=TheoryConfig)
    gradients: GradientStudyConfig | None = None  # the gradients stage's block
    paper: dict[str, Any] | None = None  # a paper preset's block, checked by vaebench.paper


def _one_line(err: ValidationError, prefix: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        return f"{key}: missing required key"
    if e["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling)"
    return f"{key}: {msg} (got {e.get('input')!r})"


def validate_block(cls: type[BaseModel], block: Any, prefix: str) -> BaseModel:
    try:
        return cls.model_validate(block or {})
    except ValidationError as err:
        raise ConfigError(_one_line(err, prefix)) from None


def parse_params(raw: dict[str, Any]) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err, "")) from None
    from vaebench import data as data_registry

    for name, block in params.data.items():
        if name not in DATASET_NAMES:
            raise ConfigError(f"data.{name}: unknown dataset {name!r}; valid choices: "
                              + ", ".join(DATASET_NAMES))
        validate_block(data_registry.config_class(name), block, f"data.{name}")
    for name, block in params.train.items():
        if name not in MODEL_NAMES:
            raise ConfigError(f"train.{name}: unknown model {name!r}; valid choices: "
                              + ", ".join(MODEL_NAMES))
        validate_block(model_registry.config_class(name), block, f"train.{name}")
    for name in params.study.models:
        if name not in params.train:
            raise ConfigError(f"train.{name}: missing required key (model {name!r} is in the "
                              "study but has no train block)")
    linear = [c.dataset for c in params.study.linear]
    for name in [*params.study.datasets, *linear, params.sweep.dataset]:
        if name not in params.data:
            raise ConfigError(f"data.{name}: missing required key (dataset {name!r} is in the "
                              "study but has no data block)")
    if params.gradients and params.gradients.dataset not in params.data:
        raise ConfigError(f"gradients.dataset: {params.gradients.dataset!r} has no data block; "
                          "valid choices: " + ", ".join(params.data))
    if "linear" not in params.train and params.study.linear:
        raise ConfigError("train.linear: missing required key (study.linear is set)")
    if "beta" in params.sweep.train:
        raise ConfigError("sweep.train.beta: unknown key (the sweep sets beta from sweep.betas)")
    for beta in params.sweep.betas:
        validate_block(model_registry.config_class(params.sweep.model),
                        {**params.sweep.train, "beta": beta}, "sweep.train")
    return params


def read_yaml(path: Path) -> Any:
    """``path`` parsed as DVC parses it (YAML 1.2, ``ruamel.yaml`` safe loader)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(path.read_text())
    except YAMLError as err:
        raise ConfigError(f"{path.name}: not valid YAML ({str(err).splitlines()[0]})") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; every error is one line that starts with the file's name."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: expected a mapping at the top level, got "
                          f"{type(raw).__name__}")
    try:
        return parse_params(raw)
    except ConfigError as err:
        raise ConfigError(f"{path.name}: {err}") from None
