"""The playlist: lamps of the library in turn (sequential or shuffled), skipping those that fail."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

from .config import PlaylistConfig
from .library import lamp_path

log = logging.getLogger(__name__)


class Playlist:
    """Which lamp of the library is on now and which comes next. Thread-safe.

    `advance` moves on (a timed change, "next lamp"); `choose` jumps to a lamp by name; `refused`
    skips a lamp that failed to load, at most once round the whole list in a row.
    """

    def __init__(self, *, config: PlaylistConfig, library: str | Path,
                 rng: random.Random | None = None) -> None:
        if not config.lamps:
            raise ValueError("a playlist needs at least one lamp")
        self.config = config
        self.library = Path(library)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._order: list[str] = []
        self._position = -1
        self._skipped = 0
        self.current = self._step()

    def path(self, name: str | None = None) -> Path:
        """The file of `name` (default: the current lamp) in the library."""
        return lamp_path(self.library, name or self.current)

    def _round(self) -> list[str]:
        order = list(self.config.lamps)
        if self.config.order == "shuffle":
            self._rng.shuffle(order)
            if len(order) > 1 and self._order and order[0] == self._order[-1]:
                order.append(order.pop(0))  # never the same lamp twice in a row across rounds
        return order

    def _step(self) -> str:
        self._position += 1
        if self._position >= len(self._order):
            self._order, self._position = self._round(), 0
        return self._order[self._position]

    def advance(self) -> str:
        """Move on to the next lamp; its name."""
        with self._lock:
            self._skipped = 0
            self.current = self._step()
            return self.current

    def choose(self, name: str) -> str:
        """Show `name` next (a lamp of the library, in the playlist or not); ValueError if it is
        not a lamp file of the library."""
        path = lamp_path(self.library, name)
        if not path.is_file():
            raise ValueError(f"no lamp {name!r} in the library {self.library}")
        with self._lock:
            self._skipped = 0
            self.current = name
            return name

    def refused(self, name: str) -> str | None:
        """`name` failed to load: the lamp to try instead, or None (not the current lamp any more,
        or every lamp of the list failed in a row: keep what is on)."""
        with self._lock:
            if name != self.current:
                return None
            self._skipped += 1
            if self._skipped >= len(self.config.lamps):
                log.error("playlist: none of its %d lamp(s) loads; the lamp on screen stays",
                          len(self.config.lamps))
                return None
            self.current = self._step()
            log.warning("playlist: lamp %r skipped, trying %r", name, self.current)
            return self.current

    def loaded(self, name: str) -> None:
        """`name` is on screen now."""
        with self._lock:
            if name == self.current:
                self._skipped = 0
