"""The drift guard: watches the dream's latents and motion and says when to renormalize or reseed."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from lavalamp.models.latent import EPS, LatentStats, latent_stats, renormalize

from .config import GuardConfig

LOOP_SLOTS = 4096  # most old latents kept for loop detection


class Action(NamedTuple):
    """What the guard asks for: kind 'none', 'renormalize' or 'reseed', and the reseed reason."""

    kind: str
    reason: str = ""


NOTHING = Action("none")


class DriftGuard:
    """Pure logic on latents (n,D) and frame motion; the frame source carries out its actions.

    Kept in float64 NumPy: it runs on every batch, and on windows this small NumPy's per-call
    cost is a fraction of torch's.

    Soft drift of the window's mean/std renormalizes; hard drift of any moment, a non-finite
    latent, a frozen dream or a return to an old state reseeds. Non-finite latents always
    reseed, even with the guard disabled: they can never be shown.
    """

    def __init__(self, *, config: GuardConfig, reference: LatentStats, lamp_fps: float,
                 latent_size: int) -> None:
        self.config = config
        self.reference = reference
        self.lamp_fps = lamp_fps
        self._window = np.zeros((config.window_frames, latent_size))
        self._loop_stride = max(1, round(lamp_fps))
        self._loop_min_age = math.ceil(config.loop_min_age_s * lamp_fps)
        slots = math.ceil(config.loop_memory_s * lamp_fps / self._loop_stride)
        self._loop = np.zeros((min(max(slots, 1), LOOP_SLOTS), latent_size))
        self._loop_squares = np.zeros(len(self._loop))  # squared norm of each remembered latent
        self._freeze_frames = math.ceil(config.freeze_s * lamp_fps)
        self.stats = LatentStats(*(float("nan"),) * 4)
        self.reset()

    def reset(self) -> None:
        """Forget the past (after a reseed: the new dream starts with a clean slate)."""
        self._count = 0  # latents seen since the reset
        self._loop_steps = np.zeros(len(self._loop), np.int64)
        self._loop_count = 0
        self._frozen_run = 0

    @property
    def distance(self) -> float:
        """Distance of the window's statistics from the reference."""
        return self.stats.distance(self.reference)

    def check_latents(self, latents: torch.Tensor | np.ndarray) -> Action:
        """Take in the newest latents (n,D); say whether the dream must be corrected."""
        if isinstance(latents, torch.Tensor):
            latents = latents.detach().cpu().numpy()
        latents = np.asarray(latents, np.float64)
        if not np.isfinite(latents).all():
            return Action("reseed", "non_finite")
        looped = self._check_loop(latents) if self.config.enabled else False
        self._push_window(latents)
        self.stats = latent_stats(self._window[: min(self._count, len(self._window))])
        if not self.config.enabled:
            return NOTHING
        if looped:
            return Action("reseed", "loop")
        if self._count < max(8, len(self._window) // 2):
            return NOTHING  # too few latents for steady statistics
        return self._check_moments()

    def _check_moments(self) -> Action:
        c, s, r = self.config, self.stats, self.reference
        if (abs(s.mean - r.mean) > c.hard_mean or abs(s.std - r.std) > c.hard_std
                or abs(s.skew - r.skew) > c.hard_skew or abs(s.kurtosis - r.kurtosis) > c.hard_kurtosis):
            return Action("reseed", "hard_drift")
        if abs(s.mean - r.mean) > c.soft_mean or abs(s.std - r.std) > c.soft_std:
            return Action("renormalize")
        return NOTHING

    def renormalize(self, latent: torch.Tensor) -> torch.Tensor:
        """`latent` (...,D) moved onto the reference mean/std; the window is moved with it."""
        current = self.stats
        filled = min(self._count, len(self._window))
        self._window[:filled] = renormalize(self._window[:filled], current, self.reference,
                                            self.config.renormalize_strength)
        self.stats = latent_stats(self._window[:filled])
        return renormalize(latent, current, self.reference, self.config.renormalize_strength)

    def check_motion(self, motion: torch.Tensor | list[float]) -> Action:
        """Take in the motion of each new frame (0..255); reseed after a long enough freeze."""
        for m in motion:
            self._frozen_run = self._frozen_run + 1 if float(m) < self.config.freeze_motion else 0
        if self.config.enabled and self._frozen_run >= self._freeze_frames:
            return Action("reseed", "frozen")
        return NOTHING

    def _push_window(self, latents: np.ndarray) -> None:
        size = len(self._window)
        kept = latents[-size:]
        self._window[(self._count + np.arange(len(kept))) % size] = kept
        self._count += len(latents)

    def _check_loop(self, latents: np.ndarray) -> bool:
        """Whether any new latent comes back near a latent at least loop_min_age old; remember some."""
        steps = self._count + np.arange(len(latents))
        filled = min(self._loop_count, len(self._loop))
        looped = False
        if filled:
            squares = np.einsum("ij,ij->i", latents, latents)
            gap2 = (squares[:, None] + self._loop_squares[None, :filled]
                    - 2.0 * latents @ self._loop[:filled].T)  # squared distances (n, filled)
            young = steps[:, None] - self._loop_steps[None, :filled] < self._loop_min_age
            gap2[young] = np.inf
            limit = self.config.loop_distance * np.sqrt(np.maximum(squares, EPS**2))
            looped = bool((gap2.min(axis=1) < limit * limit).any())
        for i in np.flatnonzero(steps % self._loop_stride == 0):
            slot = self._loop_count % len(self._loop)
            self._loop[slot], self._loop_steps[slot] = latents[i], steps[i]
            self._loop_squares[slot] = float(np.dot(latents[i], latents[i]))
            self._loop_count += 1
        return looped
