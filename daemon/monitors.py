"""Which monitors are lit now: XRandR's active monitors on X11, SDL's display count elsewhere.

SDL 2 only drops a display when its output is disconnected: a monitor switched off with
`xrandr --output X --off` (or by a KVM, or a TV's power button on some drivers) stays in SDL's
list. XRandR's list of active monitors is what the X server shows, so on X11 it is asked
directly (libX11 + libXrandr, both already loaded with SDL's X11 driver).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import NamedTuple

log = logging.getLogger(__name__)


class Rect(NamedTuple):
    """A monitor's place on the desktop, in pixels."""

    x: int
    y: int
    w: int
    h: int

    def contains(self, x: int, y: int) -> bool:
        """Whether the point lies on this monitor."""
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h


class _MonitorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_ulong), ("primary", ctypes.c_int), ("automatic", ctypes.c_int),
                ("noutput", ctypes.c_int), ("x", ctypes.c_int), ("y", ctypes.c_int),
                ("width", ctypes.c_int), ("height", ctypes.c_int), ("mwidth", ctypes.c_int),
                ("mheight", ctypes.c_int), ("outputs", ctypes.POINTER(ctypes.c_ulong))]


class XRandRMonitors:
    """The X server's active monitors, over a connection of our own (main thread only)."""

    def __init__(self) -> None:
        x11, xrandr = (ctypes.util.find_library(n) for n in ("X11", "Xrandr"))
        if not (x11 and xrandr and os.environ.get("DISPLAY")):
            raise OSError("libX11/libXrandr or $DISPLAY missing")
        self._x = ctypes.CDLL(x11)
        self._xrr = ctypes.CDLL(xrandr)
        self._x.XOpenDisplay.restype = ctypes.c_void_p
        self._x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self._x.XDefaultRootWindow.restype = ctypes.c_ulong
        self._x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self._x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self._xrr.XRRGetMonitors.restype = ctypes.POINTER(_MonitorInfo)
        self._xrr.XRRGetMonitors.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_int)]
        self._xrr.XRRFreeMonitors.argtypes = [ctypes.POINTER(_MonitorInfo)]
        self._display = self._x.XOpenDisplay(None)
        if not self._display:
            raise OSError(f"cannot open X display {os.environ.get('DISPLAY')!r}")
        self._root = self._x.XDefaultRootWindow(self._display)

    def rects(self) -> list[Rect]:
        """The active monitors' rectangles, as `xrandr --listmonitors` shows them."""
        count = ctypes.c_int(0)
        info = self._xrr.XRRGetMonitors(self._display, self._root, 1, ctypes.byref(count))
        if not info:
            return []
        try:
            return [Rect(info[i].x, info[i].y, info[i].width, info[i].height)
                    for i in range(count.value)]
        finally:
            self._xrr.XRRFreeMonitors(info)

    def close(self) -> None:
        """Close our connection."""
        if self._display:
            self._x.XCloseDisplay(self._display)
            self._display = None


def monitor_source(driver: str) -> XRandRMonitors | None:
    """XRandR's monitor list under SDL's x11 driver, else None (SDL's own list is used)."""
    if driver != "x11":
        return None
    try:
        return XRandRMonitors()
    except (OSError, AttributeError) as exc:
        log.info("monitor hot-unplug from SDL's display list only (no XRandR: %s)", exc)
        return None
