"""Training objectives as modules, so DistributedDataParallel can wrap a whole loss computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lavalamp.models.latent import normality_penalty, project_to_sphere
from lavalamp.models.rnn import HeadOutput, LatentRNN, mdn_nll
from lavalamp.models.vae import VAE, kl_divergence


def psnr(images: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images against frames, both in [0,1] (no gradient)."""
    return -10 * torch.log10(F.mse_loss(images.detach(), frames).clamp_min(1e-10))


class VAELoss(nn.Module):
    """Frames (B,3,S,S) -> (loss, {parts}): summed squared error per frame plus weighted KL."""

    def __init__(self, vae: VAE, *, kl_weight: float, l1_weight: float = 0.0) -> None:
        super().__init__()
        self.vae, self.kl_weight, self.l1_weight = vae, kl_weight, l1_weight

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon, mu, logvar = self.vae(frames)
        sse = F.mse_loss(recon, frames, reduction="none").flatten(1).sum(1).mean()
        l1 = (recon - frames).abs().flatten(1).sum(1).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = sse + self.l1_weight * l1 + self.kl_weight * kl
        return loss, {"loss": loss.detach(), "sse": sse.detach(), "kl": kl.detach(),
                      "psnr": psnr(recon, frames)}


class RNNLoss(nn.Module):
    """Latent windows (B,T,D) -> (loss, {parts}).

    Teacher forcing over the whole window, plus free-running rollouts: after `warmup` real
    latents the RNN is fed its own samples for `rollout` steps and is scored on returning to the
    real trajectory, so it learns to correct the errors it makes when dreaming on its own.
    """

    def __init__(self, rnn: LatentRNN, *, warmup: int, rollout: int, rollout_weight: float,
                 context_noise: float, normality_weight: float, temperature: float = 1.0) -> None:
        super().__init__()
        self.rnn = rnn
        self.warmup, self.rollout, self.rollout_weight = warmup, rollout, rollout_weight
        self.context_noise, self.normality_weight = context_noise, normality_weight
        self.temperature = temperature

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy = self._noisy(u)
        out, _ = self.rnn(noisy[:, :-1])
        target = u[:, 1:] - noisy[:, :-1] if self.rnn.config.residual else u[:, 1:]
        tf = self._score(out, target)
        loss, parts = tf, {"teacher": tf.detach()}
        if self.rollout > 0 and self.rollout_weight > 0:
            free = self._rollout_loss(u)
            loss = loss + self.rollout_weight * free
            parts["rollout"] = free.detach()
        if self.rnn.config.head == "deterministic" and self.normality_weight > 0:
            pen = normality_penalty(self.rnn.next_latent(noisy[:, :-1], out.mu[..., 0, :]))
            loss = loss + self.normality_weight * pen
            parts["normality"] = pen.detach()
        parts["loss"] = loss.detach()
        return loss, parts

    def _noisy(self, u: torch.Tensor) -> torch.Tensor:
        if self.context_noise <= 0:
            return u
        noisy = u + torch.randn_like(u) * self.context_noise
        return project_to_sphere(noisy) if self.rnn.config.sphere else noisy

    def _score(self, out: HeadOutput, target: torch.Tensor) -> torch.Tensor:
        if self.rnn.config.head == "mdn":
            return mdn_nll(out, target)
        return F.mse_loss(out.mu[..., 0, :], target)

    def _rollout_loss(self, u: torch.Tensor) -> torch.Tensor:
        """Feed the RNN its own samples after a warm-up and score each step against the truth."""
        steps = min(self.rollout, u.shape[1] - self.warmup - 1)
        _, state = self.rnn(u[:, : self.warmup - 1])
        z = u[:, self.warmup - 1]
        losses = []
        for t in range(self.warmup - 1, self.warmup - 1 + steps):
            out, state = self.rnn.step(z, state)
            truth = u[:, t + 1]
            target = truth - z if self.rnn.config.residual else truth
            losses.append(self._score(out, target))
            with torch.no_grad():
                z = self.rnn.next_latent(z, self.rnn.sample(out, self.temperature))
        return torch.stack(losses).mean()


class RefineLoss(nn.Module):
    """Frames (B,3,S,S) -> (loss, {parts}): the VAE's decoder sharpened on its encoder's means.

    The decoder learned from noisy posterior samples, so it renders each latent as an average of
    its neighbours' frames: soft wax edges. Here it learns to reproduce each frame from the
    encoder's mean (L1 on the pixels and on their horizontal and vertical differences, which
    weigh the edges). The encoder is frozen, so the latents the RNN learns from do not change.
    """

    def __init__(self, vae: VAE, *, edge_weight: float = 1.0) -> None:
        super().__init__()
        self.vae, self.edge_weight = vae, edge_weight

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            mu, _ = self.vae.encode(frames)
        out = self.vae.decode(mu)
        l1 = (out - frames).abs().mean()
        edges = sum((d(out) - d(frames)).abs().mean() for d in (_dx, _dy))
        loss = l1 + self.edge_weight * edges
        return loss, {"loss": loss.detach(), "l1": l1.detach(), "edges": edges.detach(),
                      "psnr": psnr(out, frames)}


def _dx(x: torch.Tensor) -> torch.Tensor:
    return x[..., :, 1:] - x[..., :, :-1]


def _dy(x: torch.Tensor) -> torch.Tensor:
    return x[..., 1:, :] - x[..., :-1, :]


def gradient_difference(images: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Mathieu et al.'s gradient difference loss: | |d images| - |d frames| | over both directions.

    A blurred edge has a smaller pixel difference than the sharp one it should be, so blur costs
    here even where an L1 on pixels would settle for the average of two possible edges.
    """
    return sum((d(images).abs() - d(frames).abs()).abs().mean() for d in (_dx, _dy))


def edge_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically neighbouring pixels (B,C,H,W)."""
    return 0.5 * sum(d(images.float()).abs().mean() for d in (_dx, _dy))


def hinge_discriminator(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """The discriminator's hinge loss summed over scales (real logits above 1, fake below -1)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake))


def hinge_generator(fake: list[torch.Tensor]) -> torch.Tensor:
    """The generator's adversarial loss summed over scales: raise the discriminator's fake logits."""
    return -sum(f.mean() for f in fake)
