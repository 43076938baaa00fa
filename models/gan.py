"""DCGAN-family generator and discriminator over a noise latent, as in duralava."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conv import ConvDecoder, ConvEncoder, check_frame_size


@dataclass(frozen=True, kw_only=True)
class GANConfig:
    """Architecture of the GAN."""

    frame_size: int = 64
    """Side of the square RGB frame in pixels: 64, 128 or 256."""
    latent_size: int = 64
    """Dimensions of the noise vector (duralava: 64, kept standard normal)."""
    base_channels: int = 32
    """Channels of the full-resolution stage; each halving of resolution doubles them."""
    max_channels: int = 256
    """Cap on channels at the coarse stages."""
    sphere: bool = True
    """Decode only the latent's direction (projected to mean 0 / std 1 across dimensions), so every
    latent a dream can reach lies on the manifold the decoder was trained on (duralava's renormalization)."""

    def __post_init__(self) -> None:
        check_frame_size(self.frame_size)
        if self.latent_size < 1 or self.base_channels < 1 or self.max_channels < self.base_channels:
            raise ValueError(f"invalid GANConfig: {self}")


class Generator(nn.Module):
    """Noise (B,D) -> frames (B,3,S,S) in [0,1]."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = ConvDecoder(frame_size=config.frame_size, latent_size=config.latent_size,
                                   base_channels=config.base_channels,
                                   max_channels=config.max_channels, sphere=config.sphere)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,D) -> (B,3,S,S)."""
        return self.decoder(z)


class Discriminator(nn.Module):
    """Frames (B,3,S,S) in [0,1] -> realness logits (B,)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(frame_size=config.frame_size, base_channels=config.base_channels,
                                   max_channels=config.max_channels, out_features=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> (B,)."""
        return self.encoder(frames).squeeze(1)
