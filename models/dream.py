"""The dream: an endless latent trajectory stepped by the lamp's RNN and decoded to frames."""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import Lamp
from .stepper import LatentStepper


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames (B,3,S,S) in [0,1] -> uint8 array (B,S,S,3)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def frames_to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (B,S,S,3) -> float (B,3,S,S) in [0,1] (the inverse of frames_to_uint8)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


def fresh_seed() -> int:
    """A random seed from the operating system."""
    return int(np.random.SeedSequence().entropy % 2**63)


class Dream:
    """One dream of a lamp: latents stepped on the CPU in NumPy, frames decoded on the lamp's device.

    Not thread-safe: use it from one thread (the producer).
    """

    def __init__(self, lamp: Lamp, *, temperature: float = 1.0, seed: int | None = None) -> None:
        self.lamp = lamp
        self.stepper = LatentStepper(lamp.rnn)
        self.temperature = temperature
        self.reseed(seed)

    @property
    def temperature(self) -> float:
        """Sampling temperature relative to the lamp's calibrated one (1 = moves like its footage)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = float(value)
        self.stepper.temperature = max(self._temperature * self.lamp.temperature, 1e-3)

    @property
    def latent(self) -> torch.Tensor:
        """The current latent (1,D) on the CPU."""
        return torch.from_numpy(self._x.copy()).unsqueeze(0)

    @torch.inference_mode()
    def reseed(self, seed: int | None = None) -> None:
        """Start afresh from one of the lamp's real start contexts, picked by `seed` (None = random)."""
        self.seed = fresh_seed() if seed is None else int(seed)
        self.stepper.reseed(self.seed)
        contexts = self.lamp.start_contexts
        context = contexts[int(self.stepper.rng.integers(len(contexts)))].unsqueeze(0)  # (1,T,D)
        state = self.lamp.rnn(context[:, :-1])[1] if context.shape[1] > 1 else None
        self._state = self.stepper.state_from_torch(state)
        self._x = context[0, -1].cpu().numpy().astype(np.float32)
        self.steps = 0

    def advance(self, steps: int) -> torch.Tensor:
        """Step the dream `steps` times; return the new latents (steps,D) on the CPU."""
        out = np.empty((steps, self.lamp.latent_size), np.float32)
        self._x, self._state = self.stepper.run(self._x, self._state, steps, out)
        self.steps += steps
        return torch.from_numpy(out)

    def skip(self, steps: int) -> None:
        """Step the dream `steps` times without keeping the latents (the fast way to hour ten)."""
        self._x, self._state = self.stepper.run(self._x, self._state, steps)
        self.steps += steps

    def set_latent(self, latent: torch.Tensor) -> None:
        """Replace the current latent (1,D) or (D,), e.g. after a renormalization by the guard."""
        self._x = latent.detach().reshape(-1).cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Standardized latents (B,D) -> uint8 frames (B,S,S,3)."""
        return frames_to_uint8(self.lamp.decode(latents.to(self.lamp.latent_mean.device)))
