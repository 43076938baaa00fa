"""Latent-space maths: moment statistics, projection and renormalization, spherical interpolation."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

EPS = 1e-6


class LatentStats(NamedTuple):
    """Moments of all elements of a window of latents (Gaussian: 0, 1, 0, 3)."""

    mean: float
    std: float
    skew: float
    kurtosis: float

    def distance(self, other: "LatentStats") -> float:
        """One number for how far apart two sets of moments are (kurtosis weighted down)."""
        return float(((self.mean - other.mean) ** 2 + (self.std - other.std) ** 2
                      + (self.skew - other.skew) ** 2
                      + ((self.kurtosis - other.kurtosis) / 4) ** 2) ** 0.5)

    def describe(self) -> str:
        """The four moments in one line of a log message."""
        return "mean %.3f std %.3f skew %.3f kurtosis %.3f" % self


STANDARD_NORMAL = LatentStats(0.0, 1.0, 0.0, 3.0)


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, std, skew and (non-excess) kurtosis of all elements of x, as differentiable scalars."""
    mean = x.mean()
    centred = x - mean
    var = centred.pow(2).mean()
    std = var.clamp_min(EPS**2).sqrt()
    skew = centred.pow(3).mean() / std**3
    kurtosis = centred.pow(4).mean() / var.clamp_min(EPS**2) ** 2
    return mean, std, skew, kurtosis


def latent_stats(window: torch.Tensor | np.ndarray) -> LatentStats:
    """Statistics over every element of a window of latents (N,D); NaN if any is not finite.

    The formulas of `moments`, in float64 NumPy: a report, not a loss, and several times faster
    than torch on the small windows the drift guard takes them over every batch.
    """
    x = window.detach().cpu().numpy() if isinstance(window, torch.Tensor) else window
    x = np.asarray(x, np.float64).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        nan = float("nan")
        return LatentStats(nan, nan, nan, nan)
    mean = np.add.reduce(x) / x.size
    centred = x - mean
    squares = centred * centred
    var = max(float(np.add.reduce(squares)) / x.size, EPS**2)
    std = var**0.5
    skew = float(np.dot(squares, centred)) / x.size / std**3
    kurtosis = float(np.dot(squares, squares)) / x.size / var**2
    return LatentStats(float(mean), std, skew, kurtosis)


def normality_penalty(z: torch.Tensor) -> torch.Tensor:
    """duralava's penalty keeping produced latents standard normal: mean^2+(std-1)^2+skew^2+(kurt-3)^2."""
    mean, std, skew, kurtosis = moments(z)
    return mean**2 + (std - 1) ** 2 + skew**2 + (kurtosis - 3) ** 2


def project_to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Each row (...,D) shifted and scaled to mean 0 and std 1 across its D elements."""
    centred = z - z.mean(dim=-1, keepdim=True)
    return centred / centred.pow(2).mean(dim=-1, keepdim=True).clamp_min(EPS**2).sqrt()


def renormalize(z: torch.Tensor | np.ndarray, current: LatentStats, reference: LatentStats,
                strength: float = 1.0) -> torch.Tensor | np.ndarray:
    """Move latents z (...,D) whose window has `current` mean/std toward `reference` mean/std.

    strength 1 maps the window's mean and std exactly onto the reference; 0 leaves z unchanged.
    Plain arithmetic, so z may be a tensor or a NumPy array (the drift guard keeps NumPy).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in 0..1, got {strength}")
    scale = reference.std / max(current.std, EPS)
    target = (z - current.mean) * scale + reference.mean
    return z + strength * (target - z)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a and b (...,D) at t in [0,1]; linear when parallel."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() > 0:
        t = t.unsqueeze(-1)
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    cos = ((a * b).sum(-1, keepdim=True) / (a_norm * b_norm).clamp_min(EPS)).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-4
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    wb = torch.where(parallel, t, torch.sin(t * omega) / safe_sin)
    return wa * a + wb * b
