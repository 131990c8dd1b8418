"""The study's runs: ``Cell`` (one run: model, dataset, seed, and the linear cell's latent size or
the sweep's beta), the list ``dvc.yaml`` declares (``cells``), and ``RunSpec``, what the train
and evaluate stages run for one cell. Names are shared with ``dvc.yaml``: see ``Cell.name``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from vaebench import models as model_registry
from vaebench.config import (
    DATASET_NAMES,
    MODEL_NAMES,
    ConfigError,
    EvalConfig,
    Params,
    StudyConfig,
    TheoryConfig,
    validate_block,
)
from vaebench.nets.linear import resolve_gemm


@dataclass(frozen=True)
class Cell:
    """One run of the study: a model on a dataset with a training seed (and the sweep's beta).

    ``name`` identifies the cell across seeds (``vae-digits``, ``linear-linear-gaussian-beta4.0``)
    and ``run`` the run (``vae-digits/seed0``): the folder under ``runs/``. beta is named as
    DVC interpolates it, ``str(value)`` of the number as YAML read it, so ``1`` and ``1.0`` name
    different folders but never both appear in one sweep (duplicates are an error).
    """

    model: str
    dataset: str
    seed: int
    group: Literal["grid", "linear", "sweep"] = "grid"
    beta: int | float | None = None
    latent_dim: int | None = None  # a linear cell's latent size (``study.linear``)

    @property
    def name(self) -> str:
        return (f"{self.model}-{self.dataset}"
                + ("" if self.latent_dim is None else f"-z{self.latent_dim}")
                + ("" if self.beta is None else f"-beta{self.beta}"))

    @property
    def run(self) -> str:
        return f"{self.name}/seed{self.seed}"

    @property
    def eval_seed(self) -> int:
        """The seed of this run's evaluation noise, derived from the run itself: no two runs
        share evaluation draws, so their checks are independent replicates."""
        return int.from_bytes(hashlib.sha256(self.run.encode()).digest()[:4], "little") >> 1


def cells(params: Params) -> list[Cell]:
    """Every run ``dvc.yaml`` declares, in its order: grid, linear, sweep; seeds innermost."""
    seeds = params.study.seeds
    out = [Cell(m, d, s) for m in params.study.models for d in params.study.datasets
           for s in seeds]
    out += [Cell("linear", c.dataset, s, "linear", latent_dim=c.latent_dim)
            for c in params.study.linear for s in seeds]
    sw = params.sweep
    out += [Cell(sw.model, sw.dataset, s, "sweep", b) for b in sw.betas for s in seeds]
    return out


@dataclass(frozen=True)
class RunSpec:
    """One run of the study: what the train and evaluate stages run."""

    cell: Cell
    train: model_registry.TrainConfig
    data: dict[str, Any]
    study: StudyConfig
    evaluate: EvalConfig
    theory: TheoryConfig
    defaults: dict[str, Any]  # optional keys of the train block left to their defaults

    @property
    def run_id(self) -> str:
        return self.cell.run

    @property
    def model(self) -> str:
        return self.cell.model

    @property
    def dataset(self) -> str:
        return self.cell.dataset

    @property
    def seed(self) -> int:
        return self.cell.seed

    def fingerprint(self, data_checksum: str = "") -> str:
        """A hash of everything that determines the trained model: parameters, seed, data,
        backend, GEMM library and the source of every file the train stage imports."""
        from vaebench.provenance import code_digest

        blob = json.dumps({"model": self.model, "dataset": self.dataset,
                           "train": self.train.model_dump(), "seed": self.seed,
                           "backend": self.study.backend, "data": data_checksum,
                           "gemm": resolve_gemm(self.study.gemm),
                           "code": code_digest("pipelines/train.py")},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def defaults_used(cls: type[BaseModel], block: dict[str, Any]) -> dict[str, Any]:
    """The optional fields of ``cls`` that ``block`` leaves to their defaults, with the value."""
    return {name: field.get_default(call_default_factory=True)
            for name, field in cls.model_fields.items()
            if not field.is_required() and name not in block}


def find_cell(params: Params, model: str, dataset: str, seed: int,
              beta: str | None = None, latent_dim: int | None = None) -> Cell:
    """The declared cell for command-line arguments, or a one-line error naming the choices."""
    _check_cli("model", model, MODEL_NAMES)
    _check_cli("dataset", dataset, DATASET_NAMES)
    declared = cells(params)
    for c in declared:
        if ((c.model, c.dataset, c.seed, c.latent_dim) == (model, dataset, seed, latent_dim)
                and ((beta is None and c.beta is None)
                     or (beta is not None and c.beta is not None and str(c.beta) == beta))):
            return c
    if latent_dim is not None or model == "linear" and beta is None:
        raise ConfigError(f"--latent-dim: linear on {dataset} with latent size {latent_dim} is "
                          "not in study.linear; valid choices: " + ", ".join(
                              f"{c.dataset} {c.latent_dim}" for c in params.study.linear))
    if beta is not None:
        raise ConfigError(f"--beta: beta {beta} of {model} on {dataset} is not in the sweep; "
                          f"valid choices: {params.sweep.model} on {params.sweep.dataset} with "
                          f"beta {', '.join(str(b) for b in params.sweep.betas)}")
    if seed not in params.study.seeds:
        raise ConfigError(f"--seed: seed {seed} is not in study.seeds; valid choices: "
                          + ", ".join(str(s) for s in params.study.seeds))
    names = sorted({f"{c.model} {c.dataset}" for c in declared if c.beta is None})
    raise ConfigError(f"run: {model} on {dataset} is not in the study; valid choices: "
                      + ", ".join(names))


def run_spec(params: Params, cell: Cell) -> RunSpec:
    """Resolve ``cell``: its typed train config (the sweep's block with its beta for a sweep
    cell), its data block, and the defaults its train block leaves unset."""
    cls = model_registry.config_class(cell.model)
    if cell.group == "sweep":
        block, where = {**params.sweep.train, "beta": cell.beta}, "sweep.train"
    elif cell.group == "linear":
        size = {} if cell.latent_dim is None else {"latent_dim": cell.latent_dim}
        block, where = {**params.train["linear"], **size}, "train.linear"
    else:
        if cell.model not in params.train:
            raise ConfigError(f"train.{cell.model}: missing required key")
        block, where = dict(params.train[cell.model] or {}), f"train.{cell.model}"
    if cell.dataset not in params.data:
        raise ConfigError(f"data.{cell.dataset}: missing required key")
    train_cfg = validate_block(cls, block, where)
    return RunSpec(cell, train_cfg, dict(params.data[cell.dataset] or {}), params.study,
                   params.evaluate, params.theory, defaults_used(cls, block))


def _check_cli(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{kind}: unknown {kind} {value!r}; valid choices: {', '.join(valid)}")
