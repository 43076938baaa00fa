"""Putting frames on screen: the pygame renderer (main thread) and a headless one with no window."""

from __future__ import annotations

import logging
import os

import numpy as np

from .colour import ColourTransform
from .config import DisplayConfig

log = logging.getLogger(__name__)

WINDOW_SIZE = 720  # side of the window when windowed with width/height 0
SOFTWARE_DRIVERS = ("x11", "wayland")  # SDL drivers with a cheap native shared-memory framebuffer
FRAMEBUFFER_HINT = "SDL_FRAMEBUFFER_ACCELERATION"
REOPEN_TRIES = 3
INVISIBLE_DRIVERS = ("offscreen", "dummy")  # SDL drivers that draw nowhere


class DisplayLost(RuntimeError):
    """The display went away and could not be opened again."""


def _refuse_invisible_fallback(driver: str) -> None:
    """SDL falls back to drawing nowhere when it finds no display; that is only fine when asked for."""
    import pygame

    if driver in INVISIBLE_DRIVERS and os.environ.get("SDL_VIDEODRIVER", "") != driver:
        raise pygame.error(f"no display found (SDL fell back to its {driver!r} driver)")


def blend(a: np.ndarray, b: np.ndarray | None, weight: float, brightness: float = 1.0) -> np.ndarray:
    """Cross-fade uint8 frames a -> b by `weight` (0..1) and scale by `brightness` (0..1)."""
    wa, wb = int(round((1 - weight) * brightness * 256)), int(round(weight * brightness * 256))
    if b is None or wb == 0:
        if wa == 256:
            return a
        return ((a.astype(np.uint16) * wa) >> 8).astype(np.uint8)
    return ((a.astype(np.uint16) * wa + b.astype(np.uint16) * wb) >> 8).astype(np.uint8)


def compose(a: np.ndarray, b: np.ndarray | None, weight: float, brightness: float,
            colour: ColourTransform | None) -> np.ndarray:
    """The small frame to put on screen: the cross-fade, dimmed, then recoloured."""
    frame = blend(a, b, weight, brightness)
    return frame if colour is None else colour(frame)


def layout(screen: tuple[int, int], frame: int, scaling: str) -> tuple[tuple[int, int, int, int],
                                                                        tuple[int, int, int, int]]:
    """(source crop rect in the frame, destination rect on screen), each (x, y, w, h)."""
    sw, sh = screen
    if scaling == "stretch":
        return (0, 0, frame, frame), (0, 0, sw, sh)
    if scaling == "fill":
        scale = max(sw / frame, sh / frame)
        cw, ch = min(frame, round(sw / scale)), min(frame, round(sh / scale))
        return ((frame - cw) // 2, (frame - ch) // 2, cw, ch), (0, 0, sw, sh)
    side = min(sw, sh)  # fit: a square lamp letterboxed
    return (0, 0, frame, frame), ((sw - side) // 2, (sh - side) // 2, side, side)


class HeadlessRenderer:
    """Same calls as the pygame renderer, no window: keeps the last composed frame."""

    def __init__(self, *, config: DisplayConfig, frame_size: int) -> None:
        self.config = config
        self.frame_size = frame_size
        self.last_frame: np.ndarray | None = None
        self.blanked = False

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def apply(self, config: DisplayConfig) -> None:
        """Take a new display config."""
        self.config = config

    def events(self) -> list[str]:
        """No keyboard, no window: no events."""
        return []

    def draw(self, a: np.ndarray, a_seq: int, b: np.ndarray | None, b_seq: int, weight: float,
             brightness: float, colour: ColourTransform | None = None) -> None:
        """Compose the frame that would be on screen."""
        self.last_frame = compose(a, b, weight, brightness, colour)
        self.blanked = False

    def blank(self) -> None:
        """The screen would be black."""
        self.blanked = True


class PygameRenderer:
    """Fullscreen or windowed pygame output, letterboxed, cropped or stretched."""

    def __init__(self, *, config: DisplayConfig, frame_size: int,
                 title: str = "neural lavalamp") -> None:
        self.config = config
        self.frame_size = frame_size
        self.title = title
        self._dirty = True
        self.screen = None
        self.last_frame: np.ndarray | None = None  # the small frame last drawn (snapshots)
        self.blanked = False

    def open(self) -> None:
        """Open the window on the configured display."""
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        os.environ.setdefault("SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS", "0")
        import pygame

        try:
            pygame.display.init()
            _refuse_invisible_fallback(pygame.display.get_driver())
            pygame.display.set_caption(self.title)
            self._set_mode()
        except pygame.error as exc:
            pygame.display.quit()
            raise DisplayLost(f"cannot open the display ({exc}); is DISPLAY set, or "
                              "SDL_VIDEODRIVER=kmsdrm on a console? --headless runs without one"
                              ) from None

    def close(self) -> None:
        """Close the window."""
        import pygame

        pygame.display.quit()

    def apply(self, config: DisplayConfig) -> None:
        """Take a new display config, re-setting the mode in the same window if it matters."""
        old, self.config = self.config, config
        if (old.fullscreen, old.display, old.width, old.height, old.vsync, old.framebuffer) != \
                (config.fullscreen, config.display, config.width, config.height, config.vsync,
                 config.framebuffer):
            self._set_mode()
        else:
            self._relayout()
        self._set_cursor()

    def _size(self) -> tuple[int, int]:
        import pygame

        c = self.config
        if c.width and c.height:
            return c.width, c.height
        if not c.fullscreen:
            return WINDOW_SIZE, WINDOW_SIZE
        sizes = pygame.display.get_desktop_sizes()
        return sizes[min(c.display, len(sizes) - 1)] if sizes else (0, 0)

    def _choose_framebuffer(self) -> None:
        """SDL's framebuffer hint from display.framebuffer, unless the environment already sets it.

        Under Xvfb, SDL's default OpenGL framebuffer runs on llvmpipe and costs 6x the CPU of the
        shared-memory path (measured: 19 ms vs 3 ms per 1920x1080 frame).
        """
        import pygame

        choice = self.config.framebuffer
        if choice == "auto":
            choice = "software" if pygame.display.get_driver() in SOFTWARE_DRIVERS else "accelerated"
        if FRAMEBUFFER_HINT not in os.environ or getattr(self, "_hint_set", False):
            os.environ[FRAMEBUFFER_HINT] = "0" if choice == "software" else "1"
            self._hint_set = True
        self._accelerated = os.environ[FRAMEBUFFER_HINT] != "0"

    def _set_mode(self) -> None:
        import pygame

        c = self.config
        self._choose_framebuffer()
        flags = pygame.FULLSCREEN if c.fullscreen else pygame.RESIZABLE
        display = min(c.display, max(pygame.display.get_num_displays() - 1, 0))
        vsync = c.vsync and self._accelerated  # pygame's vsync always goes through OpenGL
        try:
            self.screen = pygame.display.set_mode(self._size(), flags, display=display,
                                                  vsync=int(vsync))
        except pygame.error as exc:
            if not vsync:
                raise
            log.info("vsync not available here (%s): using the fps cap alone", exc)
            self.screen = pygame.display.set_mode(self._size(), flags, display=display)
        self._set_cursor()
        log.info("display %dx%d %s on display %d (%s, %s framebuffer, %s)",
                 *self.screen.get_size(), "fullscreen" if c.fullscreen else "windowed", display,
                 pygame.display.get_driver(), "accelerated" if self._accelerated else "software",
                 "vsync" if vsync else f"paced at {c.fps:g} fps")
        self._relayout()

    def _set_cursor(self) -> None:
        import pygame

        pygame.mouse.set_visible(not self.config.hide_cursor)

    def _relayout(self) -> None:
        self._crop, self._dest = layout(self.screen.get_size(), self.frame_size, self.config.scaling)
        self._dirty = True

    def events(self) -> list[str]:
        """Commands from the keyboard and window: quit, fullscreen, reseed, pause."""
        import pygame

        commands = []
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                commands.append("quit")
            elif event.type == pygame.KEYDOWN:
                commands += self._key(event.key)
            elif event.type in (pygame.WINDOWSIZECHANGED, pygame.WINDOWEXPOSED,
                                pygame.WINDOWDISPLAYCHANGED):
                self._relayout()
        return commands

    def _key(self, key: int) -> list[str]:
        import pygame

        if key in (pygame.K_ESCAPE, pygame.K_q):
            return ["quit"] if self.config.quit_keys else []
        return {pygame.K_f: ["fullscreen"], pygame.K_r: ["reseed"],
                pygame.K_SPACE: ["pause"]}.get(key, [])

    def toggle_fullscreen(self) -> None:
        """Switch between fullscreen and a window."""
        import dataclasses

        self.config = dataclasses.replace(self.config, fullscreen=not self.config.fullscreen)
        self._set_mode()

    def draw(self, a: np.ndarray, a_seq: int, b: np.ndarray | None, b_seq: int, weight: float,
             brightness: float, colour: ColourTransform | None = None) -> None:
        """Show frame a cross-faded toward b by `weight`, at `brightness`, recoloured.

        The fade, the dimming and the colour are done at the lamp's resolution; the result is
        scaled straight into the screen: one pass over the screen's pixels per displayed frame.
        """
        import pygame

        frame = np.ascontiguousarray(compose(a, b, weight, brightness, colour))
        self.last_frame, self.blanked = frame, False
        try:
            if self._dirty:
                self.screen.fill((0, 0, 0))
                self._dirty = False
            h, w = frame.shape[:2]
            source = pygame.image.frombuffer(frame, (w, h), "RGB").subsurface(self._crop)
            source = source.convert()  # the screen's pixel format: smoothscale needs the same
            scale = pygame.transform.smoothscale if self.config.smooth else pygame.transform.scale
            scale(source, self._dest[2:], self.screen.subsurface(self._dest))
            pygame.display.flip()
        except pygame.error as exc:
            self._reopen(exc)

    def blank(self) -> None:
        """Black screen (display off by schedule)."""
        import pygame

        self.blanked = True
        try:
            self.screen.fill((0, 0, 0))
            pygame.display.flip()
            self._dirty = True
        except pygame.error as exc:
            self._reopen(exc)

    def _reopen(self, exc: Exception) -> None:
        import pygame

        log.error("display error: %s; opening the display again", exc)
        for attempt in range(1, REOPEN_TRIES + 1):
            try:
                pygame.display.quit()
                self.open()
                return
            except DisplayLost as again:
                log.error("reopening the display failed (%d/%d): %s", attempt, REOPEN_TRIES, again)
                pygame.time.wait(500 * attempt)
        raise DisplayLost(f"the display is gone and could not be opened again: {exc}")
