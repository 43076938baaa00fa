"""DCGAN-family generator and discriminator over a noise latent, as in duralava."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conv import ConvConfig


@dataclass(frozen=True, kw_only=True)
class GANConfig(ConvConfig):
    """Architecture of the GAN."""

    latent_size: int = 64
    """Dimensions of the noise vector (duralava: 64, kept standard normal)."""


class Generator(nn.Module):
    """Noise (B,D) -> frames (B,3,S,S) in [0,1]."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = config.decoder()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,D) -> (B,3,S,S)."""
        return self.decoder(z)


class Discriminator(nn.Module):
    """Frames (B,3,S,S) in [0,1] -> realness logits (B,)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = config.encoder(out_features=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> (B,)."""
        return self.encoder(frames).squeeze(1)
