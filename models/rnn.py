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

    @property
    def components(self) -> int:
        """Gaussians the head predicts (1 for the deterministic head)."""
        return self.mixtures if self.head == "mdn" else 1


class HeadOutput(NamedTuple):
    """What the head predicts for the next latent (or for its step when residual).

    logit_pi (...,K) mixture logits; mu (...,K,D) means; log_sigma (...,K,D) log std devs.
    The deterministic head has K=1 and log_sigma all -inf-like (unused).
    """

    logit_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor


class LatentRNN(nn.Module):
    """One module for training (`forward` over sequences) and dreaming (`step` one latent at a time)."""

    def __init__(self, config: LatentRNNConfig) -> None:
        super().__init__()
        self.config = config
        core = nn.GRU if config.cell == "gru" else nn.LSTM
        self.core = core(config.latent_size, config.hidden_size, config.num_layers, batch_first=True)
        k, d = config.components, config.latent_size
        self.head = nn.Linear(config.hidden_size, k * (1 + 2 * d) if config.head == "mdn" else d)

    def forward(self, z: torch.Tensor, state: State | None = None) -> tuple[HeadOutput, State]:
        """Latents (B,T,D) -> head output for each next latent (B,T,...), final state."""
        hidden, state = self.core(z, state)  # hidden (B,T,H)
        return self._split(self.head(hidden)), state

    def step(self, z: torch.Tensor, state: State | None = None) -> tuple[HeadOutput, State]:
        """One latent (B,D) -> head output for the next latent (B,...), new state."""
        out, state = self.forward(z.unsqueeze(1), state)
        return HeadOutput(*(t.squeeze(1) for t in out)), state

    def _split(self, raw: torch.Tensor) -> HeadOutput:
        k, d = self.config.components, self.config.latent_size
        lead = raw.shape[:-1]
        if self.config.head == "deterministic":
            mu = raw.view(*lead, 1, d)
            return HeadOutput(raw.new_zeros(*lead, 1), mu, torch.full_like(mu, LOG_SIGMA_MIN))
        logit_pi, rest = raw.split([k, 2 * k * d], dim=-1)
        mu, log_sigma = rest.view(*lead, k, 2 * d).split([d, d], dim=-1)
        return HeadOutput(logit_pi, mu, log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX))

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
        index = choice.expand(*probs.shape[:-1], 1, out.mu.shape[-1])
        mu = out.mu.gather(-2, index).squeeze(-2)
        sigma = out.log_sigma.gather(-2, index).squeeze(-2).exp() * math.sqrt(temperature)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * noise


def mdn_nll(out: HeadOutput, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per latent dimension of target (...,D) under the mixture."""
    target = target.unsqueeze(-2)  # (...,1,D)
    z = (target - out.mu) * torch.exp(-out.log_sigma)
    log_prob = (-0.5 * z.pow(2) - out.log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)  # (...,K)
    log_mix = F.log_softmax(out.logit_pi, dim=-1) + log_prob
    return -torch.logsumexp(log_mix, dim=-1).mean() / target.shape[-1]
