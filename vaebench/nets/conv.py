"""A small convolutional encoder/decoder for images: two stride-2 convolutions each way.

Spatial sizes are rounded so 8x8, 28x28, 32x32 and 64x64 inputs all work; the decoder crops
its output to the input size. The condition vector joins at the fully connected layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaebench.nets.linear import Linear


class ConvEncoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, hidden: list[int],
                 cond_dim: int = 0, channels: tuple[int, int] = (32, 64)):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, 2, 1), nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 4, 2, 1), nn.ReLU(),
        )
        feat = channels[1] * math.ceil(h / 4) * math.ceil(w / 4)
        width = hidden[0] if hidden else 256
        self.fc = nn.Sequential(Linear(feat + cond_dim, width), nn.ReLU(),
                                Linear(width, 2 * latent_dim))

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lead = x.shape[:-1]
        h = self.conv(x.reshape(-1, *self.image_shape)).flatten(1)
        if c is not None:
            h = torch.cat([h, c.reshape(-1, c.shape[-1])], dim=-1)
        mu, logvar = self.fc(h).reshape(*lead, -1).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, hidden: list[int],
                 cond_dim: int = 0, channels: tuple[int, int] = (64, 32)):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = image_shape
        self.h4, self.w4 = math.ceil(h / 4), math.ceil(w / 4)
        self.c0 = channels[0]
        width = hidden[0] if hidden else 256
        self.fc = nn.Sequential(Linear(latent_dim + cond_dim, width), nn.ReLU(),
                                Linear(width, channels[0] * self.h4 * self.w4), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels[0], channels[1], 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(channels[1], c, 4, 2, 1),
        )

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        lead = z.shape[:-1]
        z = z.reshape(-1, z.shape[-1])
        if c is not None:
            c = c.expand(*lead, c.shape[-1]).reshape(-1, c.shape[-1])
            z = torch.cat([z, c], dim=-1)
        h = self.fc(z).reshape(-1, self.c0, self.h4, self.w4)
        out = self.deconv(h)[..., : self.image_shape[1], : self.image_shape[2]]
        return out.reshape(*lead, -1)
