"""The frame source: a dream, its drift guard and cross-faded reseeds; what the daemon shows."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from lavalamp.models import one_line
from lavalamp.models.checkpoint import Lamp
from lavalamp.models.dream import Dream, NonFiniteFrames, check_frames, frames_to_uint8
from lavalamp.models.latent import LatentStats
from lavalamp.models.motion import step_motion

from .config import GuardConfig, ModelConfig
from .guard import Action, DriftGuard

log = logging.getLogger(__name__)


MAX_FROZEN_DREAMS = 3  # fresh dreams in a row that freeze without ever moving: the lamp is broken


class LampBroken(RuntimeError):
    """The lamp produces unusable latents or frames even right after a fresh start, or freezes
    after every fresh start: no reseed can help, only a supervisor (and its alert)."""


class FrameSource:
    """Produces the lamp's frames in order, batch by batch. Call `next_batch` from one thread only.

    Other threads may `request_reseed` and `request_swap`; the requests are carried out at the
    start of the next batch. Every reseed and swap cross-fades from the last frame shown. A seeded
    source draws the seeds of its later reseeds from that seed, so it dreams the same frames again.

    What it did is kept in plain attributes (reseeds by reason, renormalizations, refused swaps,
    the latest latent statistics and motion) that metrics.DreamCollector reads at scrape time.
    """

    def __init__(self, *, lamp: Lamp, guard: GuardConfig, temperature: float = 1.0,
                 seed: int | None = None,
                 crossfade_frames: int = ModelConfig.crossfade_frames) -> None:
        self.temperature = temperature
        self.crossfade_frames = crossfade_frames
        self.frame_size = lamp.frame_size
        self._lock = threading.Lock()
        self._pending_reseed: tuple[str, int | None] | None = None
        self._pending_temperature: float | None = None
        self._pending_crossfade: int | None = None
        self._pending_seeds = False  # the pending reseed's seed also seeds the later reseeds
        self.last_reseed: tuple[str, float] | None = None  # (reason, Unix time) of the last one
        self._pending_lamp: Lamp | None = None
        self._pending_guard: GuardConfig | None = None
        self._guard_config = guard
        self._last: np.ndarray | None = None  # last frame emitted (S,S,3) uint8
        self._last_raw: np.ndarray | None = None  # last frame decoded, before any cross-fade
        self._fade_from: np.ndarray | None = None
        self._fade_done = 0
        self.motion = 0.0  # mean absolute change of the latest frame (0..255)
        self.reseeds: dict[str, int] = {}  # fresh dreams started, by reason
        self.renormalizations = 0
        self.swaps = {"refused": 0}  # lamps refused when installed
        self.latent_stats = LatentStats(0.0, 0.0, 0.0, 0.0)  # of the guard's window, latest batch
        self.latent_distance = 0.0  # of latent_stats from the lamp's reference
        self._frozen_dreams = 0  # dreams in a row that froze without moving
        self._seeds = None if seed is None else np.random.default_rng(seed)
        self._install(lamp, seed)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of every frame this source emits."""
        return (self.frame_size, self.frame_size, 3)

    def _install(self, lamp: Lamp, seed: int | None) -> None:
        """Make `lamp` the one dreamed: all its parts built first, then installed together, so a
        lamp that fails half-way leaves the running one whole."""
        dream = Dream(lamp, temperature=self.temperature, seed=seed)
        guard = DriftGuard(config=self._guard_config, reference=lamp.reference,
                           lamp_fps=lamp.data.lamp_fps, latent_size=lamp.latent_size)
        self.lamp, self.dream, self.guard = lamp, dream, guard
        log.info("dreaming %r from seed %d", lamp.name, self.dream.seed)

    def request_reseed(self, reason: str, seed: int | None = None) -> None:
        """Ask for a fresh dream at the next batch (any thread); `seed` None draws the next one."""
        with self._lock:
            self._pending_reseed = (reason, seed)
            self._pending_seeds = False

    def request_seed(self, seed: int | None) -> None:
        """Ask for a fresh dream from a new first seed (model.seed changed; None = random from now)."""
        with self._lock:
            self._pending_reseed = ("config", seed)
            self._pending_seeds = True

    def request_temperature(self, temperature: float) -> None:
        """Ask for a new sampling temperature from the next batch on, the dream going on (any thread)."""
        with self._lock:
            self._pending_temperature = temperature

    def request_crossfade(self, frames: int) -> None:
        """Ask for cross-fades over `frames` generated frames from the next batch on (any thread)."""
        with self._lock:
            self._pending_crossfade = frames

    def request_swap(self, lamp: Lamp) -> None:
        """Ask for an already-validated lamp to replace the current one at the next batch."""
        with self._lock:
            self._pending_lamp = lamp

    def request_guard(self, config: GuardConfig) -> None:
        """Ask for new guard thresholds at the next batch (config reload)."""
        with self._lock:
            self._pending_guard = config

    def _next_seed(self) -> int | None:
        """The seed of the next fresh dream: drawn from the source's seed, or None (random)."""
        return None if self._seeds is None else int(self._seeds.integers(2**63))

    def reseed(self, reason: str, seed: int | None = None) -> None:
        """Start a fresh dream now (producer thread), cross-faded from the last frame."""
        self.dream.reseed(self._next_seed() if seed is None else seed)
        self.guard.reset()
        self._last_raw = None
        self.reseeds[reason] = self.reseeds.get(reason, 0) + 1
        self.last_reseed = (reason, time.time())
        self._start_fade()
        log.info("reseeded (%s): seed %d", reason, self.dream.seed)

    def _apply_requests(self) -> None:
        with self._lock:
            reseed, lamp, guard = self._pending_reseed, self._pending_lamp, self._pending_guard
            temperature, crossfade = self._pending_temperature, self._pending_crossfade
            self._pending_reseed = self._pending_lamp = self._pending_guard = None
            self._pending_temperature = self._pending_crossfade = None
            if reseed is not None and self._pending_seeds:
                self._seeds = None if reseed[1] is None else np.random.default_rng(reseed[1])
            self._pending_seeds = False
        if temperature is not None:
            self.temperature = self.dream.temperature = temperature
            log.info("temperature %.3g", temperature)
        if crossfade is not None:
            self.crossfade_frames = crossfade
        if guard is not None:
            self._guard_config = guard
            self.guard = DriftGuard(config=guard, reference=self.lamp.reference,
                                    lamp_fps=self.lamp.data.lamp_fps, latent_size=self.lamp.latent_size)
        if lamp is not None:
            self._swap(lamp)
        elif reseed is not None:
            self.reseed(*reseed)

    def _swap(self, lamp: Lamp) -> None:
        try:
            self._install(lamp, self._next_seed())
        except Exception as exc:  # noqa: BLE001 - the running lamp stays, whole
            log.error("new checkpoint refused: %s; the current lamp keeps running",
                      one_line(f"{type(exc).__name__}: {exc}"))
            self.swaps["refused"] += 1
            return
        self._last_raw = None
        self._start_fade()

    def next_batch(self, n: int) -> np.ndarray:
        """The next n frames (n,S,S,3) uint8, guarded and cross-faded."""
        self._apply_requests()
        latents = self._guarded_latents(n)
        raw = self._decoded(latents)
        action = self._observe_motion(raw)
        frames = self._fade(raw)
        self._last, self._last_raw = frames[-1].copy(), raw[-1].copy()
        if action.kind == "reseed":
            log.warning("drift guard: %s (motion %.3f)", action.reason, self.motion)
            self._count_frozen(action.reason)
            self.reseed(action.reason)
        return frames

    def _count_frozen(self, reason: str) -> None:
        if reason != "frozen":
            return
        self._frozen_dreams += 1
        if self._frozen_dreams >= MAX_FROZEN_DREAMS:
            raise LampBroken(f"the lamp froze in {self._frozen_dreams} fresh dreams in a row "
                             "without ever moving")

    def _guarded_latents(self, n: int) -> torch.Tensor:
        latents = self.dream.advance(n)
        action = self.guard.check_latents(latents)
        if action.kind == "reseed":
            log.warning("drift guard: %s (latent stats %s)", action.reason, self.guard.stats.describe())
            self.reseed(action.reason)
            latents = self.dream.advance(n)
            if self.guard.check_latents(latents).reason == "non_finite":
                raise LampBroken("the lamp produces non-finite latents right after a fresh start")
        elif action.kind == "renormalize":
            log.info("drift guard: renormalizing (latent stats %s)", self.guard.stats.describe())
            self.dream.set_latent(self.guard.renormalize(self.dream.latent.double()).float())
            self.renormalizations += 1
        self.latent_stats, self.latent_distance = self.guard.stats, self.guard.distance
        return latents

    def _decoded(self, latents: torch.Tensor) -> np.ndarray:
        """Frames for `latents`; non-finite frames are caught like non-finite latents: a fresh
        dream, and LampBroken if its frames are not finite either."""
        try:
            return self._decode(latents)
        except NonFiniteFrames as exc:
            log.warning("drift guard: the lamp decoded non-finite frames (%s)", exc)
        self.reseed("non_finite")
        try:
            return self._decode(self._guarded_latents(len(latents)))
        except NonFiniteFrames as exc:
            raise LampBroken(f"the lamp decodes non-finite frames right after a fresh start ({exc})") \
                from None

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            frames = check_frames(self.lamp.decode(latents.to(self.lamp.latent_mean.device)))
            if self.lamp.frame_size != self.frame_size:
                frames = F.interpolate(frames, size=(self.frame_size, self.frame_size),
                                       mode="bilinear", antialias=True, align_corners=False)
        return frames_to_uint8(frames)

    def _observe_motion(self, frames: np.ndarray) -> Action:
        """Mean absolute change of each new frame from the one before (0..255), to the guard."""
        previous = self._last_raw if self._last_raw is not None else frames[0]
        motion = step_motion(frames, previous)
        if motion.max() >= self._guard_config.freeze_motion:
            self._frozen_dreams = 0
        self.motion = float(motion[-1])
        return self.guard.check_motion(motion.tolist())

    def _start_fade(self) -> None:
        if self._last is not None:
            self._fade_from = self._last.copy()
            self._fade_done = 0

    def _fade(self, frames: np.ndarray) -> np.ndarray:
        if self._fade_from is None:
            return frames
        total = self.crossfade_frames
        steps = np.arange(self._fade_done + 1, self._fade_done + 1 + len(frames))
        weight = np.clip(steps / (total + 1), 0.0, 1.0)[:, None, None, None]
        mixed = self._fade_from * (1.0 - weight) + frames * weight
        self._fade_done += len(frames)
        if self._fade_done >= total:
            self._fade_from = None
        return np.rint(mixed).astype(np.uint8)
