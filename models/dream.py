"""The dream: an endless latent trajectory stepped by the lamp's RNN and decoded to frames."""

from __future__ import annotations

import numpy as np
import torch

from .checkpoint import Lamp, LampLoadError
from .stepper import LatentStepper

PROOF_CONTEXTS = 16  # start contexts decoded when a lamp is loaded (spread over all of them)
PROOF_STEPS = 300  # dream steps a lamp must take with finite latents when it is loaded
PROOF_DECODES = 6  # of those, frames decoded
PROOF_UPSAMPLES = 2  # of each set of proof frames, enlarged by the upsampler (the rest stay small)
DECODE_BATCH = 32  # frames decode_frames decodes at once
MIN_FRAME_SPREAD = 0.05 / 255  # a frame whose every channel varies less than this is flat


class NonFiniteFrames(ValueError):
    """The lamp decoded NaN or infinite pixels."""


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames (B,3,S,S) in [0,1] -> contiguous uint8 array (B,S,S,3).

    The scaling writes straight into channels-last order, so that every later pass (rounding, the
    cast, and whoever reads the frames: the motion measure, the ring, a video writer) runs over
    contiguous memory; a permuted view would make each of them gather across channels.
    """
    b, c, h, w = frames.shape
    out = torch.empty((b, h, w, c), dtype=frames.dtype, device=frames.device)
    torch.mul(frames, 255, out=out.permute(0, 3, 1, 2))
    return out.clamp_(0, 255).round_().to(torch.uint8).cpu().numpy()


def frames_to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (B,S,S,3) -> float (B,3,S,S) in [0,1] (the inverse of frames_to_uint8)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


def check_frames(frames: torch.Tensor) -> torch.Tensor:
    """`frames` (B,3,S,S) if every pixel is finite, else NonFiniteFrames (a cast to uint8 would
    turn NaN into black and the lamp would look merely dark)."""
    if bool(torch.isfinite(frames.sum())):  # one reduction: NaN and inf carry through a sum
        return frames
    bad = int((~torch.isfinite(frames)).sum())  # or finite values so large their sum overflows
    if bad:
        raise NonFiniteFrames(f"{bad} non-finite pixel values")
    return frames


@torch.inference_mode()
def prove_lamp(lamp: Lamp) -> None:
    """Refuse (LampLoadError) a lamp that could not be shown, before it is: its latent statistics
    and start contexts finite, finite and non-flat frames decoded from its real start contexts,
    finite latents for PROOF_STEPS dream steps and finite, non-flat frames from some of them; its
    fixed detail, if any, finite and within -1..1."""
    for name in ("latent_mean", "latent_std", "start_contexts"):
        if not bool(torch.isfinite(getattr(lamp, name)).all()):
            raise LampLoadError(f"{name} holds non-finite values")
    detail = lamp.fixed_detail
    if detail is not None and not bool((torch.isfinite(detail) & (detail.abs() <= 1.0)).all()):
        raise LampLoadError("fixed_detail holds values that are not finite or outside -1..1 "
                            "(it is added to pixels of 0..1)")
    contexts = lamp.start_contexts
    pick = torch.linspace(0, len(contexts) - 1, min(len(contexts), PROOF_CONTEXTS)).round().long()
    _prove_frames(lamp, contexts[pick, -1], "its start contexts")
    latents = Dream(lamp, seed=0).advance(PROOF_STEPS)
    bad = (~torch.isfinite(latents)).any(dim=1).nonzero()
    if len(bad):
        raise LampLoadError(f"the lamp dreams non-finite latents (from step {int(bad[0]) + 1} of a "
                            f"{PROOF_STEPS}-step test dream)")
    _prove_frames(lamp, latents[PROOF_STEPS // PROOF_DECODES - 1::PROOF_STEPS // PROOF_DECODES],
                  "a test dream")


def _prove_frames(lamp: Lamp, latents: torch.Tensor, where: str) -> None:
    """Refuse a lamp whose frames from `latents` are misshapen, non-finite or flat: all of them at
    the decoder's size, PROOF_UPSAMPLES of them (first to last) also through the upsampler (its
    cost per frame is many times the decoder's, and damaged weights show in any frame)."""
    small = lamp.decode_base(latents.to(lamp.latent_mean.device))
    _check_proof(small, lamp.base_size, where)
    if lamp.upsampler is not None:
        picks = torch.linspace(0, len(small) - 1, min(len(small), PROOF_UPSAMPLES)).round().long()
        _check_proof(lamp.upsampler(small[picks]), lamp.frame_size, where)


def _check_proof(frames: torch.Tensor, size: int, where: str) -> None:
    expected = (3, size, size)
    if tuple(frames.shape[1:]) != expected:
        raise LampLoadError(f"the lamp decodes frames of shape {tuple(frames.shape)[1:]} from "
                            f"{where}, not {expected}")
    try:
        check_frames(frames)
    except NonFiniteFrames as exc:
        raise LampLoadError(f"the lamp decodes non-finite frames from {where} ({exc}: are its "
                            "weights damaged?)") from None
    pixels = frames.flatten(2)  # (B,3,S*S)
    spread = (pixels.amax(dim=2) - pixels.amin(dim=2)).amax(dim=1)  # per frame, widest channel
    flat = int((spread < MIN_FRAME_SPREAD).sum())
    if flat:
        raise LampLoadError(f"the lamp decodes flat frames (a single colour) from {where}: "
                            f"{flat} of {len(frames)}")


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

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Standardized latents (B,D) -> uint8 frames (B,S,S,3) (see decode_frames)."""
        return decode_frames(self.lamp, latents)


@torch.inference_mode()
def decode_frames(lamp: Lamp, latents: torch.Tensor, *, base: bool = False) -> np.ndarray:
    """Standardized latents (B,D) -> uint8 frames (B,S,S,3) of the lamp (with `base`, of its decoder,
    before any upsampler), DECODE_BATCH at a time (a large lamp's activations for hundreds of
    frames at once would take gigabytes)."""
    decode = lamp.decode_base if base else lamp.decode
    device = lamp.latent_mean.device
    return np.concatenate([frames_to_uint8(decode(latents[i:i + DECODE_BATCH].to(device)))
                           for i in range(0, max(len(latents), 1), DECODE_BATCH)])
