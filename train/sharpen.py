"""Sharpening: the lamp's last image stage trained on L1, edges and a multi-scale patch discriminator.

After Mathieu, Couprie and LeCun ("Deep multi-scale video prediction beyond mean square error"):
L1 alone settles for the average of the frames a latent could mean, which is blur; the gradient
difference loss charges for soft edges, and discriminators at two scales charge for anything that
does not look like footage. The sharpened module is the upsampler (small decoded frame -> large
frame, trained on random crops) or, for a lamp without one, the decoder itself. The encoder is
never touched, so the latents, the latent RNN and the dream's stability stay as they were.

Failures are watched for at every validation and end the stage with the last good weights: a
discriminator that wins outright (its running accuracy above WIN_ACCURACY at WIN_PATIENCE
validations in a row), a collapse (outputs varying across frames less than MIN_DIVERSITY times as
much as the footage does, relative to the module as the stage found it), a drift away from the footage (validation L1 above MAX_L1_GROWTH times
its value when the discriminator joined), and non-finite losses.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lavalamp.models.dream import frames_to_float

from .losses import edge_energy, gradient_difference, hinge_discriminator, hinge_generator

DISCRIMINATOR_SCALES = (1, 2)
"""Each discriminator judges the image average-pooled by one of these factors."""
CONTEXT_PX = 4
"""Input pixels around a training crop, so the crop's border sees what the full frame would."""
WIN_ACCURACY = 0.99
WIN_PATIENCE = 3
MIN_DIVERSITY = 0.5
MAX_L1_GROWTH = 2.0
ADAPTIVE_WEIGHT_MAX = 100.0


@dataclass(frozen=True, kw_only=True)
class SharpenConfig:
    """How the sharpening stage trains (built from the run's TrainConfig)."""

    adversarial: bool = True
    """Train against the discriminators (False: L1 and gradient difference only)."""
    batch: int = 16
    """Crops (or frames) per step."""
    crop: int = 96
    """Side of a training crop at the output size; a frame's side or more means whole frames."""
    lr: float = 5e-4
    """Peak learning rate of the sharpened module."""
    disc_lr: float = 2e-4
    """Learning rate of the discriminators."""
    gdl_weight: float = 1.0
    """Weight of the gradient difference loss against L1."""
    adversarial_weight: float = 0.1
    """Weight of the adversarial loss, on top of its adaptive balance against the reconstruction."""
    adversarial_start: float = 0.25
    """Share of the stage trained on reconstruction alone before the discriminators join."""


class PatchDiscriminator(nn.Module):
    """Images (B,C,H,W) in -1..1 -> realness logits of overlapping patches (B,1,H/4,W/4)."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.layers = nn.Sequential(
            sn(nn.Conv2d(channels, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(2 * width, 4 * width, 3, padding=1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(4 * width, 1, 3, padding=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,1,H/4,W/4)."""
        return self.layers(x)


class MultiScaleDiscriminator(nn.Module):
    """One patch discriminator per scale; conditioned ones also see the blurry input enlarged."""

    def __init__(self, *, conditioned: bool, scales: tuple[int, ...] = DISCRIMINATOR_SCALES) -> None:
        super().__init__()
        self.scales = scales
        channels = 6 if conditioned else 3
        self.nets = nn.ModuleList(PatchDiscriminator(channels) for _ in scales)

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None) -> list[torch.Tensor]:
        """Images (B,3,H,W) in [0,1] (and condition, same shape) -> logits at every scale."""
        x = images * 2 - 1
        if condition is not None:
            x = torch.cat([x, condition * 2 - 1], dim=1)
        return [net(F.avg_pool2d(x, s) if s > 1 else x) for s, net in zip(self.scales, self.nets)]


@dataclass
class Pairs:
    """What the sharpened module learns from: its inputs and the frames it should make.

    inputs are small decoded frames (N,3,s,s) for an upsampler, or latents (N,D) for a decoder;
    targets are the footage's frames (N,S,S,3) uint8 at the lamp's size.
    """

    inputs: torch.Tensor
    targets: np.ndarray
    val_inputs: torch.Tensor
    val_targets: np.ndarray

    @property
    def upsampling(self) -> bool:
        """Whether the inputs are frames (an upsampler) rather than latents (a decoder)."""
        return self.inputs.dim() == 4

    @property
    def factor(self) -> int:
        """Output pixels per input pixel (1 for a decoder)."""
        return self.targets.shape[1] // self.inputs.shape[-1] if self.upsampling else 1


class Sharpener:
    """One sharpening run: the module, its discriminators, their optimizers and the failure watch."""

    def __init__(self, module: nn.Module, pairs: Pairs, config: SharpenConfig,
                 device: torch.device) -> None:
        self.module, self.pairs, self.config, self.device = module, pairs, config, device
        self.disc = MultiScaleDiscriminator(conditioned=pairs.upsampling).to(device)
        self.opt = torch.optim.Adam(module.parameters(), lr=config.lr, betas=(0.5, 0.9))
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=config.disc_lr, betas=(0.5, 0.9))
        self.last_layer = [p for p in module.parameters() if p.dim() == 4][-1]
        size = pairs.targets.shape[1]
        self.crop = min(config.crop, size) // pairs.factor * pairs.factor
        self.margin = CONTEXT_PX if pairs.upsampling and self.crop < size else 0
        self.padded = F.pad(pairs.inputs.float(), (self.margin,) * 4, mode="replicate").to(
            pairs.inputs.dtype) if self.margin else None
        self.disc_accuracy = 0.5
        self.wins = 0
        self.reference_l1: float | None = None
        self.last_good = copy.deepcopy(module.state_dict())
        self.start_diversity = self.validate()["diversity"]

    # ------------------------------------------------------------------ batches
    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and target images (B,3,c,c) of one step: random crops, or whole frames."""
        picks = rng.integers(len(self.pairs.targets), size=self.config.batch)
        if self.margin == 0:
            return self.pairs.inputs[picks].float(), frames_to_float(self.pairs.targets[picks])
        f, size = self.pairs.factor, self.pairs.targets.shape[1]
        small, m = self.crop // f, self.margin
        xs, ys = [], []
        for i in picks:
            oy, ox = rng.integers(0, size // f - small + 1, size=2)
            xs.append(self.padded[i, :, oy:oy + small + 2 * m, ox:ox + small + 2 * m])
            ys.append(self.pairs.targets[i, oy * f:(oy + small) * f, ox * f:(ox + small) * f])
        return torch.stack(xs).float(), frames_to_float(np.stack(ys))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The module's output for a batch of inputs, cropped to the target, and the condition."""
        out = self.module(x)
        if not self.pairs.upsampling:
            return out, None
        m, f = self.margin, self.pairs.factor
        core = x[..., m:x.shape[-1] - m, m:x.shape[-1] - m] if m else x
        if m:
            out = out[..., m * f:out.shape[-1] - m * f, m * f:out.shape[-1] - m * f]
        condition = F.interpolate(core, size=out.shape[-2:], mode="bilinear", align_corners=False)
        return out, condition

    # ------------------------------------------------------------------ steps
    def step(self, rng: np.random.Generator, *, adversarial: bool, lr_scale: float) -> dict[str, float]:
        """One optimizer step of the module (and of the discriminators once they have joined)."""
        for group in self.opt.param_groups:
            group["lr"] = self.config.lr * lr_scale
        x, target = self.batch(rng)
        x, target = x.to(self.device), target.to(self.device)
        out, condition = self._forward(x)
        l1 = (out - target).abs().mean()
        gdl = gradient_difference(out, target)
        reconstruction = l1 + self.config.gdl_weight * gdl
        parts = {"l1": float(l1.detach()), "gdl": float(gdl.detach())}
        loss = reconstruction
        if adversarial:
            parts.update(self._disc_step(out.detach(), target, condition))
            self.disc.requires_grad_(False)
            g_adv = hinge_generator(self.disc(out, condition))
            self.disc.requires_grad_(True)
            weight = self._adaptive_weight(reconstruction, g_adv)
            loss = reconstruction + weight * g_adv
            parts.update(g_adv=float(g_adv.detach()), adv_weight=weight)
        if not torch.isfinite(loss):
            raise FloatingPointError("the sharpening loss is not finite")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.module.parameters(), 5.0)
        self.opt.step()
        return parts

    def _disc_step(self, fake: torch.Tensor, real: torch.Tensor,
                   condition: torch.Tensor | None) -> dict[str, float]:
        real_logits, fake_logits = self.disc(real, condition), self.disc(fake, condition)
        loss = hinge_discriminator(real_logits, fake_logits)
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_opt.step()
        with torch.no_grad():
            hits = [torch.cat([(r > 0).flatten(), (f < 0).flatten()]).float().mean()
                    for r, f in zip(real_logits, fake_logits)]
            accuracy = float(torch.stack(hits).mean())
        self.disc_accuracy = 0.95 * self.disc_accuracy + 0.05 * accuracy
        return {"d_loss": float(loss.detach()), "d_accuracy": self.disc_accuracy}

    def _adaptive_weight(self, reconstruction: torch.Tensor, adversarial: torch.Tensor) -> float:
        """Balance the adversarial gradient against the reconstruction's at the last layer (taming)."""
        g_rec = torch.autograd.grad(reconstruction, self.last_layer, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adversarial, self.last_layer, retain_graph=True)[0]
        ratio = float(g_rec.norm() / (g_adv.norm() + 1e-4))
        return self.config.adversarial_weight * min(ratio, ADAPTIVE_WEIGHT_MAX)

    # ------------------------------------------------------------------ validation and failures
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """L1, edge-energy ratio and diversity of the module's whole frames on the validation pairs."""
        was_training = self.module.training
        self.module.eval()
        try:
            return self._validate()
        finally:
            self.module.train(was_training)

    def _validate(self) -> dict[str, float]:
        outs = []
        for chunk in torch.split(self.pairs.val_inputs, 16):
            outs.append(self.module(chunk.float().to(self.device)).cpu())
        out, target = torch.cat(outs), frames_to_float(self.pairs.val_targets)
        diversity = float(out.std(0).mean() / target.std(0).mean().clamp_min(1e-6))
        return {"l1": float((out - target).abs().mean()),
                "edge_ratio": float(edge_energy(out) / edge_energy(target).clamp_min(1e-6)),
                "diversity": diversity}

    def failure(self, val: dict[str, float], *, adversarial: bool) -> str | None:
        """Why the module just went wrong, or None; keeps the weights of every good validation."""
        reason = None
        if not all(math.isfinite(v) for v in val.values()):
            reason = "the module makes non-finite frames"
        elif val["diversity"] < MIN_DIVERSITY * self.start_diversity:
            reason = (f"collapse: frames vary across the footage {val['diversity']:.3f} times as "
                      f"much as the footage does, down from {self.start_diversity:.3f} at the start")
        elif adversarial:
            if self.reference_l1 is None:
                self.reference_l1 = val["l1"]
            self.wins = self.wins + 1 if self.disc_accuracy > WIN_ACCURACY else 0
            if self.wins >= WIN_PATIENCE:
                reason = (f"the discriminator wins outright (accuracy {self.disc_accuracy:.3f} at "
                          f"{self.wins} validations in a row)")
            elif val["l1"] > MAX_L1_GROWTH * self.reference_l1:
                reason = (f"drifting from the footage: validation L1 {val['l1']:.4f}, "
                          f"{MAX_L1_GROWTH}x more than {self.reference_l1:.4f} when the "
                          f"discriminator joined")
        if reason is None:
            self.last_good = copy.deepcopy(self.module.state_dict())
        return reason

    def restore_last_good(self) -> None:
        """Put back the weights of the last validation that passed."""
        self.module.load_state_dict(self.last_good)

    # ------------------------------------------------------------------ resumable state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue (tensors and plain values only)."""
        return {"module": self.module.state_dict(), "disc": self.disc.state_dict(),
                "opt": self.opt.state_dict(), "disc_opt": self.disc_opt.state_dict(),
                "last_good": self.last_good, "disc_accuracy": self.disc_accuracy, "wins": self.wins,
                "reference_l1": self.reference_l1, "start_diversity": self.start_diversity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s output."""
        self.module.load_state_dict(state["module"])
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.disc_opt.load_state_dict(state["disc_opt"])
        self.last_good = state["last_good"]
        self.disc_accuracy, self.wins = state["disc_accuracy"], state["wins"]
        self.reference_l1, self.start_diversity = state["reference_l1"], state["start_diversity"]
