"""From stored data to model inputs: the preprocessing each likelihood needs, named.

- Bernoulli decoder on grey levels: dynamic binarization in training (a fresh Bernoulli draw
  each time, Burda et al. 2016), the test set binarized once with a fixed seed.
- Gaussian decoder on grey levels: uniform dequantization, (x + u) / levels.
- Continuous data: used as stored.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaebench.data import preprocess

# Seed streams of kernels.step_seed: eps and input noise, in training and validation, never
# share a seed.
TRAIN_EPS_STREAM = 0
VAL_SEED_STREAM = 1
TRAIN_INPUT_STREAM = 2
VAL_INPUT_STREAM = 3


def preprocessing_name(kind: str, likelihood: str) -> str:
    if kind != "image":
        return "none"
    return "dynamic binarization" if likelihood == "bernoulli" else "uniform dequantization"


def model_inputs(x: Tensor, kind: str, levels: int | None, likelihood: str, seed: int,
                 check: bool = True, out: Tensor | None = None) -> Tensor:
    """Preprocess a batch of stored data for a model with the given likelihood.

    The noise (binarization or dequantization) is a pure function of ``seed``: pass a new
    one for every batch (``kernels.step_seed``). ``check=False`` skips the grey-level range
    check, for data already checked (the trainer checks the whole training set once).
    ``out``: where the dynamic binarization writes its draws (``binarizes_into``); every
    other preprocessing returns its own tensor.
    """
    if kind != "image":
        return x.float()
    if likelihood == "bernoulli":
        return preprocess.dynamic_binarize(x, levels, seed, check=check, out=out)
    return preprocess.dequantize(x, levels, seeded_generator(seed), check=check)


def binarizes_into(kind: str, likelihood: str, device: torch.device) -> bool:
    """Whether ``model_inputs`` writes to a given ``out``: the dynamic binarization, on the
    CPU."""
    return kind == "image" and likelihood == "bernoulli" and device.type == "cpu"


def check_stored(x: Tensor, kind: str, levels: int | None) -> None:
    """Raise unless stored image data hold integer grey levels in 0..levels-1."""
    if kind == "image":
        preprocess.check_grey(x, levels)


def seeded_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def eval_seed(bundle) -> int:
    """The dataset's own seed for preprocessing held-out data once (recorded in its manifest)."""
    by = bundle.manifest.get("preprocessing", {}).get("by_decoder", {})
    return int(by.get("bernoulli", {}).get("fixed_binarize_seed", 0))


def fixed_inputs(bundle, x: np.ndarray, likelihood: str) -> Tensor:
    """Held-out data preprocessed once with the dataset's fixed seed, the same for every model:
    binarized once (Bernoulli decoders) or dequantized once (Gaussian decoders)."""
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if bundle.kind == "image" and likelihood == "bernoulli":
        return preprocess.fixed_binarize(xt, bundle.levels, eval_seed(bundle))
    return model_inputs(xt, bundle.kind, bundle.levels, likelihood, eval_seed(bundle))
