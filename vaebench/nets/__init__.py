"""Encoder and decoder architectures. They know nothing about losses or likelihoods.

An encoder maps (x, c) to (mu, logvar) of a diagonal Gaussian; a decoder maps (z, c) to a
flat tensor of ``out_features`` decoder parameters (logits, or means). ``c`` is an optional
condition vector (one-hot label for the conditional VAE) concatenated to the inputs.
"""

from __future__ import annotations

from vaebench.nets.conv import ConvDecoder, ConvEncoder
from vaebench.nets.gated import GatedMLPDecoder, GatedMLPEncoder
from vaebench.nets.mlp import MLPDecoder, MLPEncoder

ARCHITECTURES = ("mlp", "conv", "gated_mlp", "linear")


def build_encoder(arch: str, in_dim: int, image_shape: tuple[int, int, int] | None,
                  latent_dim: int, hidden: list[int], cond_dim: int = 0):
    if arch == "mlp":
        return MLPEncoder(in_dim, latent_dim, hidden, cond_dim)
    if arch == "gated_mlp":
        return GatedMLPEncoder(in_dim, latent_dim, hidden, cond_dim)
    if arch == "conv":
        if image_shape is None:
            raise ValueError("arch 'conv' needs an image dataset; valid choices here: mlp, linear")
        return ConvEncoder(image_shape, latent_dim, hidden, cond_dim)
    raise ValueError(f"unknown arch {arch!r}; valid choices: {', '.join(ARCHITECTURES)}")


def build_decoder(arch: str, out_dim: int, image_shape: tuple[int, int, int] | None,
                  latent_dim: int, hidden: list[int], cond_dim: int = 0):
    if arch == "mlp":
        return MLPDecoder(out_dim, latent_dim, hidden, cond_dim)
    if arch == "gated_mlp":
        return GatedMLPDecoder(out_dim, latent_dim, hidden, cond_dim)
    if arch == "conv":
        if image_shape is None:
            raise ValueError("arch 'conv' needs an image dataset; valid choices here: mlp, linear")
        return ConvDecoder(image_shape, latent_dim, hidden, cond_dim)
    raise ValueError(f"unknown arch {arch!r}; valid choices: {', '.join(ARCHITECTURES)}")
