"""Published numbers that a paper preset reproduces: one typed record each, with its source.

The one home of these figures in the code (the reference sheet, ../shared/references.md, lists
them too). A record names the table it comes from, the protocol behind it, and the values of
the train block that select it in a preset's grid (``match``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

EXEMPLAR_VAE = ("Exemplar VAE (S. Norouzi, D. J. Fleet, M. Norouzi, NeurIPS 2020), Table 1 "
                "(density estimation); code: github.com/sajadn/Exemplar-VAE")
BURDA = ("Importance Weighted Autoencoders (Y. Burda, R. Grosse, R. Salakhutdinov, ICLR 2016), "
         "Table 1; code: github.com/yburda/iwae")


class Published(BaseModel):
    """One published test NLL (nats per image, −L_5000 on the whole test set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    source: str
    dataset: str
    model: str  # as the paper names it
    nll: float
    pm: float | None = None  # the ± the table prints (its spread over training runs)
    active_units: int | None = None
    match: dict[str, Any] = {}  # train-block values that select this record in a grid
    protocol: str = ""


def _burda(layers: int, objective: str, k: int, nll: float, au: int | None = None) -> Published:
    latent = [50] if layers == 1 else [100, 50]
    return Published(
        key=f"burda2016-mnist-{layers}l-{objective}-k{k}", source=BURDA, dataset="mnist",
        model=f"{objective.upper()}, {layers} stochastic layer{'s' if layers > 1 else ''}, "
              f"k = {k}",
        nll=nll, active_units=au,
        match={"objective": objective, "k": k, "latent_dims": latent},
        protocol="MNIST binarized dynamically (59,600 training images), batch 20, Adam, "
                 "3^i epochs at 0.001·10^(−i/7) for i = 0..7; NLL = −L_5000 on the 10,000 "
                 "test images")


PUBLISHED: dict[str, Published] = {p.key: p for p in [
    Published(key="exemplar-vae-fashion-mnist-vae", source=EXEMPLAR_VAE,
              dataset="fashion-mnist", model="VAE, Gaussian prior", nll=228.70, pm=0.15,
              protocol="2×300 gated dense layers, z = 40, Bernoulli decoder; Adam lr 5e-4 on "
                       "unit-norm gradients, batch 100; KL warm-up over 100 epochs; early "
                       "stopping on the validation ELBO, patience 50, at most 2000 epochs; "
                       "train = images 0..49,999, validation = 50,000..59,999; dynamic "
                       "binarization; NLL = −L_5000 on the 10,000 test images binarized once"),
    _burda(1, "vae", 1, 86.76, 19), _burda(1, "vae", 5, 86.47), _burda(1, "vae", 50, 86.35),
    _burda(1, "iwae", 1, 86.76, 19), _burda(1, "iwae", 5, 85.54), _burda(1, "iwae", 50, 84.78, 25),
    _burda(2, "vae", 1, 85.33), _burda(2, "vae", 50, 84.78),
    _burda(2, "iwae", 1, 85.33), _burda(2, "iwae", 5, 83.89), _burda(2, "iwae", 50, 82.90),
]}


def published(key: str) -> Published:
    if key not in PUBLISHED:
        raise ValueError(f"unknown published result {key!r}; valid choices: "
                         + ", ".join(PUBLISHED))
    return PUBLISHED[key]


def matching(keys: list[str], train: dict[str, Any]) -> Published | None:
    """The record among ``keys`` whose ``match`` values all equal ``train``'s, if any."""
    for key in keys:
        rec = published(key)
        if all(train.get(k) == v for k, v in rec.match.items()):
            return rec
    return None
