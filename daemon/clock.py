"""The display clock: wall time -> fractional position in the generated frames, at real-lamp speed."""

from __future__ import annotations

import math

START_FRAMES = 2  # a clock starts once it has the frame it shows first and the next, to fade toward


class DisplayClock:
    """Maps monotonic seconds to a position in generated frames advancing at lamp_fps * speed.

    The integer part of the position is the frame on screen, the fraction the weight of the next
    one in the cross-fade. The clock can be paused (display off), held back (buffer underrun) and
    re-timed (speed change) without the position jumping.
    """

    def __init__(self, *, lamp_fps: float, speed: float = 1.0, now: float = 0.0,
                 position: float = 0.0) -> None:
        if lamp_fps <= 0 or speed <= 0:
            raise ValueError(f"lamp_fps and speed must be positive, got {lamp_fps} and {speed}")
        self.lamp_fps = lamp_fps
        self.speed = speed
        self._origin = now
        self._origin_position = position
        self._paused_at: float | None = None

    @property
    def rate(self) -> float:
        """Generated frames per second of wall time."""
        return self.lamp_fps * self.speed

    def position(self, now: float) -> float:
        """Fractional generated-frame position at time `now`."""
        if self._paused_at is not None:
            now = self._paused_at
        return self._origin_position + (now - self._origin) * self.rate

    def frame(self, now: float) -> tuple[int, float]:
        """(index of the frame on screen, weight 0..1 of the frame after it) at `now`."""
        pos = self.position(now)
        index = math.floor(pos)
        return index, pos - index

    def hold(self, now: float, position: float) -> None:
        """Set the position at `now` (e.g. back to the newest frame on an underrun)."""
        self._origin, self._origin_position = now, position
        if self._paused_at is not None:  # a paused clock stays at that position
            self._paused_at = now

    def set_speed(self, now: float, speed: float) -> None:
        """Change the speed from `now` on, continuing from the current position."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.hold(now, self.position(now))
        self.speed = speed

    def pause(self, now: float) -> None:
        """Stop the clock at `now`."""
        if self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        """Run on from where the clock was paused."""
        if self._paused_at is not None:
            position = self.position(now)
            self._paused_at = None
            self.hold(now, position)

    @property
    def paused(self) -> bool:
        """Whether the clock is paused."""
        return self._paused_at is not None
