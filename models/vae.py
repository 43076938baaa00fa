"""Convolutional VAE for square RGB frames (the Neural Network Dreams / World Models vision model)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conv import ConvConfig


@dataclass(frozen=True, kw_only=True)
class VAEConfig(ConvConfig):
    """Architecture of the VAE (World Models: 32-dimensional latent)."""


class VAE(nn.Module):
    """Frames (B,3,S,S) in [0,1] <-> latents (B,D)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = config.encoder(out_features=2 * config.latent_size)
        self.decoder = config.decoder()

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
