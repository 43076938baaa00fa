"""The upsampler: a thin learned stage that turns the decoder's small frame into a sharp large one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .limits import FRAME_SIZES

MIN_CHANNELS = 8
MAX_UPSAMPLER_CHANNELS = 128
MAX_UPSAMPLER_BLOCKS = 8


@dataclass(frozen=True, kw_only=True)
class UpsamplerConfig:
    """Architecture of the upsampler: most of its work at the small size, thin stages above it."""

    in_size: int = 64
    """Side of the frames it takes (the decoder's frame size) in pixels."""
    out_size: int = 256
    """Side of the frames it makes in pixels: 2 or 4 times in_size, 128 or 256."""
    channels: int = 32
    """Channels at in_size; each doubling of resolution halves them (at least 8)."""
    blocks: int = 3
    """3x3 convolutions at in_size before the first doubling (their reach is what sharpens edges)."""

    def __post_init__(self) -> None:
        for name in ("in_size", "out_size", "channels", "blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"upsampler {name} must be an integer, got {value!r}")
        if self.in_size not in FRAME_SIZES or self.out_size not in FRAME_SIZES or \
                self.out_size <= self.in_size:
            raise ValueError(f"upsampler sizes must be in {FRAME_SIZES} with out_size > in_size, "
                             f"got {self.in_size} -> {self.out_size}")
        if not MIN_CHANNELS <= self.channels <= MAX_UPSAMPLER_CHANNELS:
            raise ValueError(f"upsampler channels must be in {MIN_CHANNELS}..{MAX_UPSAMPLER_CHANNELS}, "
                             f"got {self.channels}")
        if not 1 <= self.blocks <= MAX_UPSAMPLER_BLOCKS:
            raise ValueError(f"upsampler blocks must be in 1..{MAX_UPSAMPLER_BLOCKS}, got {self.blocks}")

    @property
    def doublings(self) -> int:
        """Stride-2 upsampling stages between in_size and out_size."""
        return int(math.log2(self.out_size // self.in_size))


class Upsampler(nn.Module):
    """Frames (B,3,s,s) in [0,1] -> frames (B,3,S,S) in [0,1]: bilinear enlargement plus learned detail.

    The network predicts only what bilinear enlargement misses (a residual), so an untrained one
    already shows the small frame enlarged, and training spends itself on edges.
    """

    def __init__(self, config: UpsamplerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(config.blocks):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(config.doublings):
            out = max(c // 2, MIN_CHANNELS)
            layers += [nn.Conv2d(c, 4 * out, 3, padding=1), nn.PixelShuffle(2),  # (B,out,2s,2s)
                       nn.LeakyReLU(0.2, inplace=True),
                       nn.Conv2d(out, out, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.detail = nn.Sequential(*layers)
        nn.init.zeros_(self.detail[-1].weight)  # starts as plain bilinear enlargement
        nn.init.zeros_(self.detail[-1].bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,3,s,s) -> (B,3,S,S), S = s * 2**doublings."""
        size = frames.shape[-1] * 2 ** self.config.doublings
        base = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
        return (base + self.detail(frames)).clamp(0.0, 1.0)
