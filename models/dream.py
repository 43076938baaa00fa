"""The dream: an endless latent trajectory stepped by the lamp's RNN and decoded to frames."""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import Lamp


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames (B,3,S,S) in [0,1] -> uint8 array (B,S,S,3)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class Dream:
    """One dream of a lamp. Not thread-safe: use it from one thread (the producer)."""

    def __init__(self, lamp: Lamp, *, temperature: float = 1.0, seed: int | None = None) -> None:
        self.lamp = lamp
        self.temperature = temperature
        self.device = lamp.latent_mean.device
        self.generator = torch.Generator(device=self.device)
        self.latent: torch.Tensor = torch.zeros(1, lamp.latent_size, device=self.device)  # (1,D)
        self.state = None
        self.steps = 0
        self.reseed(seed)

    @torch.inference_mode()
    def reseed(self, seed: int | None = None) -> None:
        """Start afresh from one of the lamp's real start contexts, picked by `seed` (None = random)."""
        if seed is None:
            seed = int(torch.seed() % 2**63)
        self.seed = seed
        self.generator.manual_seed(seed)
        contexts = self.lamp.start_contexts
        pick = int(torch.randint(len(contexts), (1,), generator=self.generator, device=self.device))
        context = contexts[pick].unsqueeze(0)  # (1,T,D)
        if context.shape[1] > 1:
            _, self.state = self.lamp.rnn(context[:, :-1])
        else:
            self.state = None
        self.latent = context[:, -1].clone()
        self.steps = 0

    @torch.inference_mode()
    def advance(self, steps: int) -> torch.Tensor:
        """Step the dream `steps` times; return the new latents (steps,D), the last one current."""
        out = torch.empty(steps, self.lamp.latent_size, device=self.device)
        rnn, z, state = self.lamp.rnn, self.latent, self.state
        for i in range(steps):
            head, state = rnn.step(z, state)
            z = rnn.advance(z, rnn.sample(head, self.temperature, self.generator))
            out[i] = z[0]
        self.latent, self.state = z, state
        self.steps += steps
        return out

    def set_latent(self, latent: torch.Tensor) -> None:
        """Replace the current latent (1,D) or (D,), e.g. after a renormalization by the guard."""
        self.latent = latent.reshape(1, -1).to(self.device)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Standardized latents (B,D) -> uint8 frames (B,S,S,3)."""
        return frames_to_uint8(self.lamp.decode(latents.to(self.device)))
