"""Convolutional VAE for square RGB frames (the Neural Network Dreams / World Models vision model)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conv import ConvDecoder, ConvEncoder, check_frame_size


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Architecture of the VAE."""

    frame_size: int = 64
    """Side of the square RGB frame in pixels: 64, 128 or 256."""
    latent_size: int = 32
    """Dimensions of the latent vector z."""
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
            raise ValueError(f"invalid VAEConfig: {self}")


class VAE(nn.Module):
    """Frames (B,3,S,S) in [0,1] <-> latents (B,D)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(frame_size=config.frame_size, base_channels=config.base_channels,
                                   max_channels=config.max_channels,
                                   out_features=2 * config.latent_size)
        self.decoder = ConvDecoder(frame_size=config.frame_size, latent_size=config.latent_size,
                                   base_channels=config.base_channels,
                                   max_channels=config.max_channels, sphere=config.sphere)

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,S,S) -> mean (B,D), log-variance (B,D)."""
        mu, logvar = self.encoder(frames).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B,D) -> (B,3,S,S) in [0,1]."""
        return self.decoder(z)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,3,S,S) -> reconstruction (B,3,S,S), mean (B,D), log-variance (B,D)."""
        mu, logvar = self.encode(frames)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0,I)) per sample, (B,D) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
