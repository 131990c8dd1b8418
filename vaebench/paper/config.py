"""The ``paper:`` block of a paper preset: which published number, how to evaluate, the grid.

A paper preset is an ordinary study (one model on one dataset, several seeds) plus this block.
``variants(raw)`` expands its grid into one study per combination of train-block values (for
Burda et al.'s Table 1: objective x k x layers), each a plain params mapping.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from vaebench.paper.published import published
from vaebench.paper.result import Binarization


class PaperConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")  # reports/paper/<name>.{json,md}
    published: list[str] = Field(min_length=1)  # keys of vaebench.paper.published.PUBLISHED
    importance_samples: PositiveInt = 5000  # S of the test NLL, -L_S
    test_points: PositiveInt | None = None  # None: the whole test set
    # dataset: the test set binarized once by the dataset's fixed seed (vaebench.inputs);
    # vampprior: numpy.random.seed(777) over validation then test, as the VampPrior code does
    test_binarization: Binarization = "dataset"
    tolerance: PositiveFloat = 1.0  # nats: "within" when the whole interval lies within it
    level: float = Field(0.95, gt=0, lt=1)  # confidence level of every interval
    # train key -> values; or an axis name -> train-block fragments (mappings) that vary
    # together, e.g. layers: [{latent_dims: [50], hidden: [[200, 200]]}, ...]
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    differences: list[str] = Field(default_factory=list)  # protocol differences that remain

    @field_validator("published")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for key in v:
            published(key)
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
        return v


def parse_paper(raw: dict[str, Any]) -> PaperConfig:
    """The validated paper block of a preset's raw mapping; one-line ``ConfigError`` if bad."""
    from vaebench.config import ConfigError

    try:
        paper = PaperConfig.model_validate(raw.get("paper"))
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(["paper", *(str(p) for p in e["loc"])])
        raise ConfigError(f"{loc}: {e['msg'].removeprefix('Value error, ')} "
                          f"(got {e.get('input')!r})") from None
    try:
        check_study(raw, paper)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return paper


def check_study(raw: dict[str, Any], paper: PaperConfig) -> None:
    """A paper preset is one model on one dataset; its grid keys are that model's train keys."""
    from vaebench.models import config_class

    study = raw.get("study") or {}
    models, datasets = study.get("models") or [], study.get("datasets") or []
    if len(models) != 1 or len(datasets) != 1 or study.get("linear"):
        raise ValueError("paper: a paper preset trains one model on one dataset; got models "
                         f"{models} and datasets {datasets}"
                         + (" and linear cells" if study.get("linear") else ""))
    fields = config_class(models[0]).model_fields
    for key, values in paper.grid.items():
        if key in fields:
            continue
        if not all(isinstance(v, dict) for v in values):
            raise ValueError(f"paper.grid.{key}: not a key of train.{models[0]} (valid "
                             f"choices: {', '.join(fields)}), nor an axis of train-block "
                             "fragments (a list of mappings)")
        for fragment in values:
            for k in fragment:
                if k not in fields:
                    raise ValueError(f"paper.grid.{key}: {k!r} is not a key of "
                                     f"train.{models[0]}; valid choices: {', '.join(fields)}")


def _slug(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(_slug(v) for v in value)
    return str(value).replace(".", "p")


def variants(raw: dict[str, Any], paper: PaperConfig) -> list[tuple[str, dict[str, Any]]]:
    """(name, params) for every combination of the grid; the one study itself without one.

    Each variant's params are the preset with the grid's values written into the model's
    train block and the grid removed from its paper block, so every variant is a plain study.
    """
    check_study(raw, paper)
    model = raw["study"]["models"][0]
    keys = list(paper.grid)
    out = []
    for values in itertools.product(*(list(enumerate(paper.grid[k], 1)) for k in keys)):
        params = copy.deepcopy(raw)
        block = dict(params["train"][model])
        names = []
        for key, (index, value) in zip(keys, values, strict=True):
            if isinstance(value, dict):  # an axis of fragments: named by its position
                block.update(copy.deepcopy(value))
                names.append(f"{key}-{index}")
            else:
                block[key] = value
                names.append(f"{key}-{_slug(value)}")
        params["train"][model] = block
        params["paper"] = {k: v for k, v in params["paper"].items() if k != "grid"}
        out.append(("_".join(names) or "study", params))
    return out
