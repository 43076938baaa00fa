"""Latent RNN: a GRU or LSTM over latents with a mixture-density or a deterministic head."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .latent import project_to_sphere

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 2.0
CELLS = ("gru", "lstm")
HEADS = ("mdn", "deterministic")


@dataclass(frozen=True, kw_only=True)
class LatentRNNConfig:
    """Architecture of the latent RNN."""

    latent_size: int = 32
    """Dimensions of the latent vector it steps (must match the decoder)."""
    hidden_size: int = 256
    """Units of the recurrent core."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    cell: str = "gru"
    """Recurrent core: 'gru' or 'lstm'."""
    head: str = "mdn"
    """'mdn' (mixture of Gaussians, sampled with a temperature) or 'deterministic'."""
    mixtures: int = 5
    """Gaussians in the mixture-density head (ignored by the deterministic head)."""
    noise_rank: int = 0
    """Directions of correlated noise each Gaussian adds to its own per-dimension noise (0: the
    dimensions are independent; ignored by the deterministic head)."""
    residual: bool = True
    """Predict the step z[t+1] - z[t] instead of the absolute latent."""
    sphere: bool = True
    """Project every produced latent to mean 0 / std 1 across its dimensions (bounded dynamics)."""

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be 'gru' or 'lstm', got {self.cell!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be 'mdn' or 'deterministic', got {self.head!r}")
        if min(self.latent_size, self.hidden_size, self.num_layers, self.mixtures) < 1:
            raise ValueError(f"sizes must be positive: {self}")
        if not 0 <= self.noise_rank <= self.latent_size:
            raise ValueError(f"noise_rank must be in 0..latent_size ({self.latent_size}), got {self.noise_rank}")

    @property
    def components(self) -> int:
        """Gaussians the head predicts (1 for the deterministic head)."""
        return self.mixtures if self.head == "mdn" else 1

    @property
    def rank(self) -> int:
        """Correlated noise directions per Gaussian (0 for the deterministic head)."""
        return self.noise_rank if self.head == "mdn" else 0


class HeadOutput(NamedTuple):
    """What the head predicts for the next latent (or for its step when residual).

    logit_pi (...,K) mixture logits; mu (...,K,D) means; log_sigma (...,K,D) log std devs;
    factor (...,K,D,R) the correlated part: each Gaussian's covariance is diag(sigma^2) + F F^T.
    The deterministic head has K=1, log_sigma all -inf-like and R=0 (unused).
    """

    logit_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    factor: torch.Tensor


class LatentRNN(nn.Module):
    """One module for training (`forward` over sequences) and dreaming (`step` one latent at a time)."""

    def __init__(self, config: LatentRNNConfig) -> None:
        super().__init__()
        self.config = config
        core = nn.GRU if config.cell == "gru" else nn.LSTM
        self.core = core(config.latent_size, config.hidden_size, config.num_layers, batch_first=True)
        k, d, r = config.components, config.latent_size, config.rank
        self.head = nn.Linear(config.hidden_size, k * (1 + (2 + r) * d) if config.head == "mdn" else d)

    def forward(self, z: torch.Tensor, state: State | None = None) -> tuple[HeadOutput, State]:
        """Latents (B,T,D) -> head output for each next latent (B,T,...), final state."""
        hidden, state = self.core(z, state)  # hidden (B,T,H)
        return self._split(self.head(hidden)), state

    def step(self, z: torch.Tensor, state: State | None = None) -> tuple[HeadOutput, State]:
        """One latent (B,D) -> head output for the next latent (B,...), new state."""
        out, state = self.forward(z.unsqueeze(1), state)
        return HeadOutput(*(t.squeeze(1) for t in out)), state

    def _split(self, raw: torch.Tensor) -> HeadOutput:
        k, d, r = self.config.components, self.config.latent_size, self.config.rank
        lead = raw.shape[:-1]
        if self.config.head == "deterministic":
            mu = raw.view(*lead, 1, d)
            return HeadOutput(raw.new_zeros(*lead, 1), mu, torch.full_like(mu, LOG_SIGMA_MIN),
                              raw.new_zeros(*lead, 1, d, 0))
        logit_pi, rest = raw.split([k, k * (2 + r) * d], dim=-1)
        mu, log_sigma, factor = rest.view(*lead, k, (2 + r) * d).split([d, d, r * d], dim=-1)
        return HeadOutput(logit_pi, mu, log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX),
                          factor.reshape(*lead, k, d, r))

    def target(self, z: torch.Tensor) -> torch.Tensor:
        """What the head learns to predict from latents (B,T,D): next latents or their steps (B,T-1,D)."""
        return z[:, 1:] - z[:, :-1] if self.config.residual else z[:, 1:]

    def next_latent(self, z: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """Current latents (...,D) and a predicted head value -> next latents (...,D)."""
        nxt = z + prediction if self.config.residual else prediction
        return project_to_sphere(nxt) if self.config.sphere else nxt

    def sample(self, out: HeadOutput, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a head value (...,D) from the mixture; the deterministic head returns its mean."""
        if self.config.head == "deterministic":
            return out.mu[..., 0, :]
        temperature = max(float(temperature), 1e-3)
        probs = F.softmax(out.logit_pi / temperature, dim=-1)
        flat = probs.reshape(-1, probs.shape[-1])
        choice = torch.multinomial(flat, 1, generator=generator).view(*probs.shape[:-1], 1, 1)
        d, r = out.mu.shape[-1], out.factor.shape[-1]
        index = choice.expand(*probs.shape[:-1], 1, d)
        mu = out.mu.gather(-2, index).squeeze(-2)
        sigma = out.log_sigma.gather(-2, index).squeeze(-2).exp()
        noise = torch.randn((*mu.shape[:-1], d + r), generator=generator, device=mu.device, dtype=mu.dtype)
        spread = sigma * noise[..., :d]
        if r:
            factor = out.factor.gather(-3, index.unsqueeze(-1).expand(*index.shape, r)).squeeze(-3)
            spread = spread + (factor @ noise[..., d:, None]).squeeze(-1)
        return mu + math.sqrt(temperature) * spread


def mdn_nll(out: HeadOutput, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per latent dimension of target (...,D) under the mixture."""
    target = target.unsqueeze(-2)  # (...,1,D)
    z = (target - out.mu) * torch.exp(-out.log_sigma)
    log_prob = (-0.5 * z.pow(2) - out.log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)  # (...,K)
    if out.factor.shape[-1]:
        log_prob = log_prob + _low_rank_correction(z, out.factor * torch.exp(-out.log_sigma).unsqueeze(-1))
    log_mix = F.log_softmax(out.logit_pi, dim=-1) + log_prob
    return -torch.logsumexp(log_mix, dim=-1).mean() / target.shape[-1]


def _low_rank_correction(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """What the factor adds to the diagonal Gaussian's log density, by the Woodbury identity.

    With z = (x - mu) / sigma (...,D) and w = F / sigma (...,D,R), the covariance is
    sigma (I + w w^T) sigma; its inverse and log-determinant go through the R x R capacitance
    C = I + w^T w, so this costs O(D R^2) per Gaussian, not O(D^3).
    """
    r = w.shape[-1]
    capacitance = torch.eye(r, dtype=w.dtype, device=w.device) + w.transpose(-1, -2) @ w
    chol = torch.linalg.cholesky(capacitance)
    projected = torch.linalg.solve_triangular(chol, w.transpose(-1, -2) @ z.unsqueeze(-1), upper=False)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * projected.squeeze(-1).pow(2).sum(-1) - 0.5 * log_det
