"""The typed schema of ``params.yaml``: validation with one-line errors, before any work starts.

``load_params(path)`` returns a validated ``Params``; ``run_spec(params, model, dataset,
beta=None)`` resolves one cell of the study (what the train and evaluate stages need).
Errors are ``ConfigError`` with one line: the key, the value and the valid choices.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from vaebench import models as model_registry
from vaebench.nets.linear import GEMMS, resolve_gemm

MODEL_NAMES = tuple(model_registry.MODELS)
DATASET_NAMES = ("digits", "fashion-mnist", "dsprites", "linear-gaussian", "mnist", "cifar10")
BACKEND_NAMES = ("auto", "eager", "compile", "triton")
GEMM_NAMES = GEMMS


class ConfigError(ValueError):
    """A bad value in params.yaml (or on the command line), reported in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _choice(kind: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(valid)}")
    return value


class StudyConfig(_Strict):
    name: str = "default"
    seed: int = 0
    models: list[str] = Field(min_length=1)
    datasets: list[str] = Field(min_length=1)
    linear_datasets: list[str] = Field(default_factory=list)
    backend: str = "auto"
    gemm: str = "auto"  # the GEMM library of the Linear layers (vaebench.nets.linear)
    device: Literal["cpu"] = "cpu"  # training runs on the CPU; the kernels also run on CUDA
    threads: PositiveInt | None = None

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return [_choice("model", m, MODEL_NAMES) for m in v]

    @field_validator("datasets", "linear_datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        return [_choice("dataset", d, DATASET_NAMES) for d in v]

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
    model: str = "beta_vae"
    dataset: str = "linear-gaussian"
    betas: list[NonNegativeFloat] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _choice("model", v, MODEL_NAMES)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return _choice("dataset", v, DATASET_NAMES)


class EvalConfig(_Strict):
    batch_size: PositiveInt = 500
    elbo_samples: PositiveInt = 4          # S draws per test point for the ELBO and its MC error
    elbo_samples_large: PositiveInt = 64   # an independent, larger-S estimate (theory check 6)
    elbo_points: PositiveInt = 2000        # test points used for the S-sample ELBO checks
    iw_k: PositiveInt = 500                # importance samples for the log-likelihood
    iw_ks: list[PositiveInt] = Field(default_factory=lambda: [1, 5, 50, 500])
    iw_points: PositiveInt = 1000          # test points for the IS log-likelihood
    mi_points: PositiveInt = 2000          # test points for I_q(x;z) and the TC decomposition (cost N^2)
    active_threshold: NonNegativeFloat = 0.01
    disentanglement_points: PositiveInt = 5000


class TheoryConfig(_Strict):
    alpha: float = Field(0.01, gt=0, lt=1)
    # nats per point and per data dimension allowed between L*/N and the trained linear ELBO
    optimum_gap_tol_per_dim: NonNegativeFloat = 0.0025
    min_subspace_similarity: float = Field(0.9, ge=0, le=1)


class Params(_Strict):
    study: StudyConfig
    data: dict[str, dict[str, Any]]
    train: dict[str, dict[str, Any]]
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    theory: TheoryConfig = Field(default_factory=TheoryConfig)


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


def _validate_block(cls: type[BaseModel], block: Any, prefix: str) -> BaseModel:
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
        _validate_block(data_registry.config_class(name), block, f"data.{name}")
    for name, block in params.train.items():
        if name not in MODEL_NAMES:
            raise ConfigError(f"train.{name}: unknown model {name!r}; valid choices: "
                              + ", ".join(MODEL_NAMES))
        _validate_block(model_registry.config_class(name), block, f"train.{name}")
    for name in [*params.study.models, params.sweep.model]:
        if name not in params.train:
            raise ConfigError(f"train.{name}: missing required key (model {name!r} is in the "
                              "study but has no train block)")
    for name in [*params.study.datasets, *params.study.linear_datasets, params.sweep.dataset]:
        if name not in params.data:
            raise ConfigError(f"data.{name}: missing required key (dataset {name!r} is in the "
                              "study but has no data block)")
    if "linear" not in params.train and params.study.linear_datasets:
        raise ConfigError("train.linear: missing required key (study.linear_datasets is set)")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_params(raw)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the study: what the train and evaluate stages run."""

    run_id: str
    model: str
    dataset: str
    train: model_registry.TrainConfig
    data: dict[str, Any]
    study: StudyConfig
    evaluate: EvalConfig
    theory: TheoryConfig

    def fingerprint(self, data_checksum: str = "") -> str:
        """A hash of everything that determines the trained model (guards checkpoint resume)."""
        blob = json.dumps({"model": self.model, "dataset": self.dataset,
                           "train": self.train.model_dump(), "seed": self.study.seed,
                           "backend": self.study.backend, "data": data_checksum,
                           "gemm": resolve_gemm(self.study.gemm)},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_id(model: str, dataset: str, beta: float | None = None) -> str:
    # float repr matches how DVC interpolates ${item.beta} (1.0 -> "1.0")
    return f"{model}-{dataset}" + ("" if beta is None else f"-beta{float(beta)!r}")


def run_spec(params: Params, model: str, dataset: str, beta: float | None = None) -> RunSpec:
    _check_cli("model", model, MODEL_NAMES)
    _check_cli("dataset", dataset, DATASET_NAMES)
    if model not in params.train:
        raise ConfigError(f"train.{model}: missing required key")
    if dataset not in params.data:
        raise ConfigError(f"data.{dataset}: missing required key")
    block = dict(params.train[model] or {})
    cls = model_registry.config_class(model)
    if beta is not None:
        if "beta" not in cls.model_fields:
            raise ConfigError(f"--beta: model {model!r} has no beta; models with one: "
                              + ", ".join(n for n, (c, _) in model_registry.MODELS.items()
                                          if "beta" in c.model_fields))
        block["beta"] = beta
    train_cfg = _validate_block(cls, block, f"train.{model}")
    return RunSpec(run_id(model, dataset, beta), model, dataset, train_cfg,
                   dict(params.data[dataset] or {}), params.study, params.evaluate, params.theory)


def _check_cli(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{kind}: unknown {kind} {value!r}; valid choices: {', '.join(valid)}")
