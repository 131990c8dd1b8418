"""Typed per-dataset configurations. Defaults describe the default study."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vaebench.data.dsprites import N_COMBINATIONS


class _DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, description="Seed of numpy.random.default_rng for splits/sampling.")


class DigitsConfig(_DataConfig):
    """sklearn ``load_digits`` (1797 images), stratified into train/val/test (1257/270/270)."""

    val_size: int = Field(270, ge=0, description="Validation images (stratified by class).")
    test_size: int = Field(270, ge=1, description="Test images (stratified by class).")

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.val_size + self.test_size >= 1797:
            raise ValueError(
                f"val_size + test_size = {self.val_size + self.test_size} must be below 1797 "
                "(the number of digits images)"
            )
        return self


class _HoldoutConfig(_DataConfig):
    val_size: int = Field(
        5000, ge=0, description="Validation images: the last val_size of a seeded permutation."
    )
    n_train: int | None = Field(
        None, ge=1, description="Optional training subsample (the first n_train of the rest)."
    )
    val_split: Literal["random", "last"] = Field(
        "random", description="random: val drawn by a seeded permutation; last: the last "
        "val_size images in file order, unshuffled (the VampPrior / Exemplar VAE split)."
    )


class FashionMNISTConfig(_HoldoutConfig):
    """Fashion-MNIST (Xiao et al. 2017): 60000 train (val held out from it) and 10000 test."""


class MNISTConfig(_HoldoutConfig):
    """MNIST (LeCun et al. 1998): 60000 train (val held out from it) and 10000 test."""


class CIFAR10Config(_HoldoutConfig):
    """CIFAR-10 (Krizhevsky 2009): 50000 train (val held out from it) and 10000 test."""


class DSpritesConfig(_DataConfig):
    """Procedural dSprites-like images: a seeded subsample of the full 737280-point factor grid."""

    n_samples: int = Field(20000, ge=3, le=N_COMBINATIONS, description="Distinct grid points.")
    val_size: int = Field(2000, ge=0)
    test_size: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.val_size + self.test_size >= self.n_samples:
            raise ValueError(
                f"val_size + test_size = {self.val_size + self.test_size} must be below "
                f"n_samples = {self.n_samples}"
            )
        return self


class LinearGaussianConfig(_DataConfig):
    """Samples of a pPCA model x = W z + mu + sigma eps (Tipping & Bishop 1999).

    W = Q diag(sqrt(v)) with Q (d, k) orthonormal and column variances v linearly spaced from
    ``signal_var_max`` down to ``signal_var_min``, so the top-k eigen-directions are well separated.
    """

    d: int = Field(20, ge=2, description="Data dimension.")
    k: int = Field(4, ge=1, description="Latent dimension (k < d).")
    sigma2: float = Field(0.1, gt=0, description="Isotropic noise variance.")
    signal_var_max: float = Field(4.0, gt=0, description="Squared norm of the first column of W.")
    signal_var_min: float = Field(1.0, gt=0, description="Squared norm of the last column of W.")
    n_train: int = Field(10000, ge=1)
    n_val: int = Field(2000, ge=0)
    n_test: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        if self.k >= self.d:
            raise ValueError(f"k = {self.k} must be below d = {self.d}")
        if self.signal_var_min > self.signal_var_max:
            raise ValueError(
                f"signal_var_min = {self.signal_var_min} must not exceed "
                f"signal_var_max = {self.signal_var_max}"
            )
        return self
