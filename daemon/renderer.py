"""Putting frames on screen: the pygame renderer (main thread) and a headless one with no window."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time

import numpy as np

from .colour import ColourTransform
from .config import DisplayConfig
from .monitors import Rect, monitor_source

log = logging.getLogger(__name__)

WINDOW_SIZE = 720  # side of the window when windowed with width/height 0
SOFTWARE_DRIVERS = ("x11", "wayland")  # SDL drivers with a cheap native shared-memory framebuffer
FRAMEBUFFER_HINT = "SDL_FRAMEBUFFER_ACCELERATION"
REOPEN_TRIES = 3
INVISIBLE_DRIVERS = ("offscreen", "dummy")  # SDL drivers that draw nowhere
MONITOR_POLL_S = 1.0  # how often the windows renderer looks for unplugged monitors
CENTERED_ON_DISPLAY = 0x2FFF0000  # SDL_WINDOWPOS_CENTERED_DISPLAY(0): OR in a display index


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


def pixel_shift(now: float, px: int, period_s: float) -> tuple[int, int]:
    """Where the picture is on its orbit at `now`: (dx, dy), at most `px` from its place."""
    if px <= 0:
        return (0, 0)
    angle = 2 * math.pi * (now % period_s) / period_s
    return round(px * math.cos(angle)), round(px * math.sin(angle))


def screen_labels(config: DisplayConfig, count: int) -> list[int]:
    """The monitor indexes display.screens asks for among `count` monitors (missing ones logged)."""
    if config.screens == "primary":
        return [min(config.display, max(count - 1, 0))]
    if config.screens == "all":
        return list(range(max(count, 1)))
    missing = [i for i in config.screens if i >= count]
    if missing:
        log.error("display.screens: monitor(s) %s not found (%d monitor(s) here): left out",
                  missing, count)
    return [i for i in config.screens if i < count]


class Painter:
    """Draws lamp frames into one surface: its layout, its pixel shift, black where nothing is."""

    def __init__(self, frame_size: int) -> None:
        self.frame_size = frame_size
        self.crop = self.dest = (0, 0, 0, 0)
        self.shift = (0, 0)
        self.margin = 0
        self.dirty = True

    def relayout(self, size: tuple[int, int], scaling: str, margin: int = 0) -> None:
        """Lay the frame out on a surface of `size`, `margin` pixels in from every edge (room
        for the pixel shift: the picture never leaves the surface)."""
        margin = max(0, min(margin, (min(size) - 1) // 2))
        inner = (size[0] - 2 * margin, size[1] - 2 * margin)
        self.crop, (x, y, w, h) = layout(inner, self.frame_size, scaling)
        self.dest = (x + margin, y + margin, w, h)
        self.margin = margin
        self.dirty = True

    def paint(self, surface, frame: np.ndarray, *, smooth: bool, shift: tuple[int, int]) -> None:
        """Scale `frame` (H,W,3 uint8) into `surface` at its place moved by `shift`."""
        import pygame

        m = self.margin
        shift = (max(-m, min(m, shift[0])), max(-m, min(m, shift[1])))
        if shift != self.shift:
            self.shift, self.dirty = shift, True
        if self.dirty:
            surface.fill((0, 0, 0))
            self.dirty = False
        h, w = frame.shape[:2]
        source = pygame.image.frombuffer(frame, (w, h), "RGB").subsurface(self.crop)
        source = source.convert(surface)  # the surface's pixel format: smoothscale needs the same
        dest = pygame.Rect(self.dest).move(shift)
        scale = pygame.transform.smoothscale if smooth else pygame.transform.scale
        scale(source, dest.size, surface.subsurface(dest))


class HeadlessRenderer:
    """Same calls as the pygame renderers, no window: keeps the last composed frame of each screen."""

    def __init__(self, *, config: DisplayConfig, frame_size: int) -> None:
        self.config = config
        self.frame_size = frame_size
        self.last_frame: np.ndarray | None = None
        self.frames: dict[str, np.ndarray] = {}
        self.shifts: dict[str, tuple[int, int]] = {}
        self.blanked = False
        self.clock = time.monotonic

    def open(self) -> list[str]:
        """Nothing to open; the screens asked for (`all` is one screen here)."""
        c = self.config
        if c.screens == "primary":
            return [str(c.display)]
        return ["0"] if c.screens == "all" else [str(i) for i in c.screens]

    def close(self) -> None:
        """Nothing to close."""

    def apply(self, config: DisplayConfig) -> None:
        """Take a new display config."""
        self.config = config

    def events(self) -> list[str]:
        """No keyboard, no window: no events."""
        return []

    def draw(self, a: np.ndarray, b: np.ndarray | None, weight: float, brightness: float,
             colour: ColourTransform | None = None, screen: str | None = None) -> None:
        """Compose the frame that would be on `screen`."""
        self.last_frame = compose(a, b, weight, brightness, colour)
        key = screen or "0"
        self.frames[key] = self.last_frame
        self.shifts[key] = pixel_shift(self.clock(), self.config.pixel_shift_px,
                                       self.config.pixel_shift_period_s)
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
        self._painter = Painter(frame_size)
        self.screen = None
        self.clock = time.monotonic
        self.last_frame: np.ndarray | None = None  # the small frame last drawn (snapshots)
        self.blanked = False

    def open(self) -> list[str]:
        """Open the window on the configured display; its label (the monitor index)."""
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
        return [str(self._display)]

    def close(self) -> None:
        """Close the window."""
        import pygame

        pygame.display.quit()

    def apply(self, config: DisplayConfig) -> None:
        """Take a new display config, re-setting the mode in the same window if it matters."""
        old, self.config = self.config, config
        if (old.fullscreen, old.width, old.height, old.vsync, old.framebuffer) != \
                (config.fullscreen, config.width, config.height, config.vsync,
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
        display = screen_labels(c, pygame.display.get_num_displays())[0]
        self._display = display
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
        self._painter.relayout(self.screen.get_size(), self.config.scaling,
                               self.config.pixel_shift_px)

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
        return _key(key, self.config.quit_keys)

    def toggle_fullscreen(self) -> None:
        """Switch between fullscreen and a window."""
        self.config = dataclasses.replace(self.config, fullscreen=not self.config.fullscreen)
        self._set_mode()

    def draw(self, a: np.ndarray, b: np.ndarray | None, weight: float, brightness: float,
             colour: ColourTransform | None = None, screen: str | None = None) -> None:
        """Show frame a cross-faded toward b by `weight`, at `brightness`, recoloured (one
        screen: `screen` is its label and changes nothing).

        The fade, the dimming and the colour are done at the lamp's resolution; the result is
        scaled straight into the screen: one pass over the screen's pixels per displayed frame.
        """
        import pygame

        frame = np.ascontiguousarray(compose(a, b, weight, brightness, colour))
        self.last_frame, self.blanked = frame, False
        c = self.config
        try:
            self._painter.paint(self.screen, frame, smooth=c.smooth, shift=pixel_shift(
                self.clock(), c.pixel_shift_px, c.pixel_shift_period_s))
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
            self._painter.dirty = True
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


def _key(key: int, quit_keys: bool) -> list[str]:
    """The command of a key: quit (if quit keys are on), fullscreen, reseed, pause."""
    import pygame

    if key in (pygame.K_ESCAPE, pygame.K_q):
        return ["quit"] if quit_keys else []
    return {pygame.K_f: ["fullscreen"], pygame.K_r: ["reseed"],
            pygame.K_SPACE: ["pause"]}.get(key, [])


class ScreenWindow:
    """One monitor's window (pygame.Window): where it is, and the painter drawing into it."""

    def __init__(self, *, index: int, size: tuple[int, int], config: DisplayConfig,
                 frame_size: int, title: str) -> None:
        import pygame

        self.index = index
        place = CENTERED_ON_DISPLAY | index  # SDL centres it on that monitor: at its origin
        if config.fullscreen:
            self.window = pygame.Window(title=title, size=size, position=(place, place),
                                        fullscreen_desktop=True)
        else:
            side = config.width and config.height and (config.width, config.height)
            self.window = pygame.Window(title=title, size=side or (WINDOW_SIZE, WINDOW_SIZE),
                                        position=(place, place), resizable=True)
        x, y = self.window.position
        self.rect = Rect(x, y, *self.window.size)  # the monitor's place, for the unplug check
        self.painter = Painter(frame_size)
        self.relayout(config)

    def relayout(self, config: DisplayConfig) -> None:
        """Lay the lamp out again (new size or new config)."""
        self.painter.relayout(self.window.size, config.scaling, config.pixel_shift_px)

    def paint(self, frame: np.ndarray, config: DisplayConfig, shift: tuple[int, int]) -> None:
        """Draw a composed lamp frame and show it."""
        self.painter.paint(self.window.get_surface(), frame, smooth=config.smooth, shift=shift)
        self.window.flip()

    def blank(self) -> None:
        """Show black."""
        self.window.get_surface().fill((0, 0, 0))
        self.window.flip()
        self.painter.dirty = True

    def centre(self) -> tuple[int, int]:
        """The centre of the monitor the window was opened on."""
        return self.rect.x + self.rect.w // 2, self.rect.y + self.rect.h // 2


class WindowsRenderer:
    """Several monitors: one borderless fullscreen window each, at each monitor's native size.

    A monitor that goes away (unplugged, switched off) has its window closed and is reported by
    `events` as "lost:LABEL"; when it comes back its window opens again ("back:LABEL").
    """

    def __init__(self, *, config: DisplayConfig, frame_size: int,
                 title: str = "neural lavalamp") -> None:
        self.config = config
        self.frame_size = frame_size
        self.title = title
        self.windows: dict[str, ScreenWindow] = {}
        self.last_frame: np.ndarray | None = None  # the small frame last drawn (snapshots)
        self.blanked = False
        self.gone: dict[str, Rect] = {}  # label -> the place of a monitor that went away
        self.clock = time.monotonic
        self._monitors = None
        self._next_poll = 0.0

    def open(self) -> list[str]:
        """Open a window on every monitor asked for; their labels (monitor indexes)."""
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        os.environ.setdefault("SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS", "0")
        import pygame

        try:
            pygame.display.init()
            driver = pygame.display.get_driver()
            _refuse_invisible_fallback(driver)
            self._choose_framebuffer(driver)
            sizes = pygame.display.get_desktop_sizes()
            for index in screen_labels(self.config, len(sizes)):
                self._open_window(index, sizes[index])
        except pygame.error as exc:
            self.close()
            raise DisplayLost(f"cannot open the display ({exc}); is DISPLAY set, or "
                              "SDL_VIDEODRIVER=kmsdrm on a console? --headless runs without one"
                              ) from None
        if not self.windows:
            self.close()
            raise DisplayLost(f"none of the monitors in display.screens {list(self.config.screens)}"
                              f" is here ({len(sizes)} monitor(s))")
        self._monitors = monitor_source(driver)
        pygame.mouse.set_visible(not self.config.hide_cursor)
        return list(self.windows)

    def _choose_framebuffer(self, driver: str) -> None:
        choice = self.config.framebuffer
        if choice == "auto":
            choice = "software" if driver in SOFTWARE_DRIVERS else "accelerated"
        os.environ.setdefault(FRAMEBUFFER_HINT, "0" if choice == "software" else "1")

    def _open_window(self, index: int, size: tuple[int, int]) -> None:
        w = ScreenWindow(index=index, size=size, config=self.config, frame_size=self.frame_size,
                         title=f"{self.title} ({index})")
        self.windows[str(index)] = w
        log.info("display %dx%d %s on monitor %d at +%d+%d (%s framebuffer, paced at %g fps)",
                 *w.rect[2:], "fullscreen" if self.config.fullscreen else "windowed", index,
                 w.rect.x, w.rect.y, "accelerated" if os.environ.get(FRAMEBUFFER_HINT) != "0"
                 else "software", self.config.fps)

    def close(self) -> None:
        """Close every window."""
        import pygame

        for w in self.windows.values():
            w.window.destroy()
        self.windows.clear()
        if self._monitors is not None:
            self._monitors.close()
            self._monitors = None
        pygame.display.quit()

    def apply(self, config: DisplayConfig) -> None:
        """Take a new display config; which monitors and their mode take effect at the next start."""
        old, self.config = self.config, config
        if (old.screens, old.multi, old.display) != (config.screens, config.multi, config.display):
            log.warning("display.screens / display.multi changed: they take effect at the next start")
        if old.fullscreen != config.fullscreen:
            self._set_fullscreen(config.fullscreen)
        for w in self.windows.values():
            w.relayout(config)
        import pygame

        pygame.mouse.set_visible(not config.hide_cursor)

    def toggle_fullscreen(self) -> None:
        """Switch every window between fullscreen and windowed."""
        self.config = dataclasses.replace(self.config, fullscreen=not self.config.fullscreen)
        self._set_fullscreen(self.config.fullscreen)

    def _set_fullscreen(self, fullscreen: bool) -> None:
        for w in self.windows.values():
            if fullscreen:
                w.window.set_fullscreen(desktop=True)
            else:
                w.window.set_windowed()
            w.relayout(self.config)

    def events(self) -> list[str]:
        """Commands: quit, fullscreen, reseed, pause, lost:LABEL and back:LABEL."""
        import pygame

        commands = []
        for event in pygame.event.get():
            if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
                commands.append("quit")
            elif event.type == pygame.KEYDOWN:
                commands += _key(event.key, self.config.quit_keys)
            elif event.type in (pygame.WINDOWSIZECHANGED, pygame.WINDOWEXPOSED):
                for w in self.windows.values():
                    if getattr(event, "window", None) in (None, w.window):
                        w.relayout(self.config)
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + MONITOR_POLL_S
            commands += self._check_monitors()
        return commands

    def _present(self) -> list[Rect] | int:
        """The lit monitors: their rectangles (XRandR), or SDL's count of displays."""
        import pygame

        if self._monitors is not None:
            return self._monitors.rects()
        return pygame.display.get_num_displays()

    def _is_here(self, label: str, rect: Rect, present: list[Rect] | int) -> bool:
        if isinstance(present, int):
            return int(label) < present
        centre = (rect.x + rect.w // 2, rect.y + rect.h // 2)
        return any(m.contains(*centre) for m in present)

    def _check_monitors(self) -> list[str]:
        """Close the windows of monitors that went away; open them again when they are back."""
        present, commands = self._present(), []
        for label, w in list(self.windows.items()):
            if not self._is_here(label, w.rect, present):
                log.warning("monitor %s (%dx%d at +%d+%d) is gone: its window is closed, the "
                            "other screens go on", label, *w.rect[2:], w.rect.x, w.rect.y)
                w.window.destroy()
                del self.windows[label]
                self.gone[label] = w.rect
                commands.append(f"lost:{label}")
        for label, rect in list(self.gone.items()):
            if self._is_here(label, rect, present):
                commands += self._reopen_window(label, rect)
        return commands

    def _reopen_window(self, label: str, rect: Rect) -> list[str]:
        import pygame

        try:
            sizes = pygame.display.get_desktop_sizes()
            index = int(label) if int(label) < len(sizes) else len(sizes) - 1
            self._open_window(index, (rect.w, rect.h))
        except pygame.error as exc:
            log.error("monitor %s is back but its window cannot open: %s", label, exc)
            return []
        if str(index) != label:
            self.windows[label] = self.windows.pop(str(index))
        del self.gone[label]
        log.info("monitor %s is back: its window is open again", label)
        return [f"back:{label}"]

    def draw(self, a: np.ndarray, b: np.ndarray | None, weight: float, brightness: float,
             colour: ColourTransform | None = None, screen: str | None = None) -> None:
        """Show a cross-faded, dimmed, recoloured frame on `screen` (None: on every screen)."""
        import pygame

        frame = np.ascontiguousarray(compose(a, b, weight, brightness, colour))
        self.last_frame, self.blanked = frame, False
        c = self.config
        shift = pixel_shift(self.clock(), c.pixel_shift_px, c.pixel_shift_period_s)
        targets = self.windows.values() if screen is None else \
            [self.windows[screen]] if screen in self.windows else []
        for w in targets:
            try:
                w.paint(frame, c, shift)
            except pygame.error as exc:
                raise DisplayLost(f"drawing on monitor {w.index} failed: {exc}") from None

    def blank(self) -> None:
        """Every screen black (display off by schedule)."""
        self.blanked = True
        for w in self.windows.values():
            w.blank()
