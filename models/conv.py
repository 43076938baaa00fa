"""Convolutional building blocks of the VAE: an image encoder and an image decoder."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .limits import check_frame_size
from .latent import project_to_sphere

BASE_RESOLUTION = 4  # the decoder starts from a 4x4 feature map
MAX_CHANNELS = 256  # the default cap on channels at the coarse stages


def stride_stages(frame_size: int) -> int:
    """Number of stride-2 stages between 4x4 and `frame_size`; refuses unsupported sizes."""
    return int(math.log2(check_frame_size(frame_size) // BASE_RESOLUTION))


def stage_widths(frame_size: int, base_channels: int, max_channels: int) -> list[int]:
    """Channels at each resolution from frame_size/2 down to 4x4 (encoder order)."""
    stages = stride_stages(frame_size)
    return [min(base_channels * 2**i, max_channels) for i in range(stages)]


@dataclass(frozen=True, kw_only=True)
class ConvConfig:
    """Architecture of the convolutional image models (the VAE's encoder and decoder)."""

    frame_size: int = 64
    """Side of the square RGB frame in pixels: 64, 128 or 256."""
    latent_size: int = 32
    """Dimensions of the latent vector."""
    base_channels: int = 32
    """Channels of the full-resolution stage; each halving of resolution doubles them."""
    max_channels: int = MAX_CHANNELS
    """Cap on channels at the coarse stages."""
    sphere: bool = True
    """Decode only the latent's direction (projected to mean 0 / std 1 across dimensions), so every
    latent a dream can reach lies on the manifold the decoder was trained on (duralava's renormalization)."""

    def __post_init__(self) -> None:
        check_frame_size(self.frame_size)
        if self.latent_size < 1 or self.base_channels < 1 or self.max_channels < self.base_channels:
            raise ValueError(f"invalid {type(self).__name__}: {self}")

    def decoder(self) -> "ConvDecoder":
        """A decoder of this architecture."""
        return ConvDecoder(frame_size=self.frame_size, latent_size=self.latent_size,
                           base_channels=self.base_channels, max_channels=self.max_channels,
                           sphere=self.sphere)

    def encoder(self, out_features: int) -> "ConvEncoder":
        """An encoder of this architecture producing `out_features` numbers per frame."""
        return ConvEncoder(frame_size=self.frame_size, base_channels=self.base_channels,
                           max_channels=self.max_channels, out_features=out_features)


class ConvEncoder(nn.Module):
    """Image (B,3,S,S) in [0,1] -> features (B,out_features) through stride-2 convolutions."""

    def __init__(self, *, frame_size: int, base_channels: int, max_channels: int,
                 out_features: int, batch_norm: bool = True) -> None:
        super().__init__()
        widths = stage_widths(frame_size, base_channels, max_channels)
        layers: list[nn.Module] = []
        in_ch = 3
        for i, ch in enumerate(widths):
            layers.append(nn.Conv2d(in_ch, ch, 4, stride=2, padding=1, bias=not batch_norm or i == 0))
            if batch_norm and i > 0:  # DCGAN: no normalization on the first layer
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = ch
        self.features = nn.Sequential(*layers)  # (B, widths[-1], 4, 4)
        self.head = nn.Linear(widths[-1] * BASE_RESOLUTION**2, out_features)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> (B,out_features)."""
        return self.head(self.features(frames * 2 - 1).flatten(1))


class ConvDecoder(nn.Module):
    """Latent (B,D) -> image (B,3,S,S) in [0,1] through stride-2 transposed convolutions."""

    def __init__(self, *, frame_size: int, latent_size: int, base_channels: int,
                 max_channels: int, sphere: bool = False) -> None:
        super().__init__()
        self.sphere = sphere
        widths = stage_widths(frame_size, base_channels, max_channels)[::-1]  # 4x4 first
        self.start_channels = widths[0]
        self.project = nn.Sequential(
            nn.Linear(latent_size, widths[0] * BASE_RESOLUTION**2),
            nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        outs = widths[1:] + [widths[-1]]
        for in_ch, out_ch in zip(widths, outs):
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        # a 3x3 convolution to RGB smooths the checkerboard of the last transposed convolution
        layers += [nn.Conv2d(outs[-1], 3, 3, padding=1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,D) -> (B,3,S,S) in [0,1]; with `sphere`, only the direction of z matters."""
        if self.sphere:
            z = project_to_sphere(z)
        x = self.project(z).view(z.shape[0], self.start_channels, BASE_RESOLUTION, BASE_RESOLUTION)
        return self.layers(x)
