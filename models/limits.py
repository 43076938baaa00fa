"""What a lamp may be asked for: the sides of its frames and the range of its sampling temperature."""

from __future__ import annotations

FRAME_SIZES = (64, 128, 256)
"""Sides in pixels of the square frames of lamps, footage and the simulator."""
TEMPERATURE_RANGE = (0.05, 3.0)
"""Sampling temperatures of a dream, relative to the lamp's calibrated one (1 = moves like its footage)."""


def check_frame_size(value: int, name: str = "frame_size") -> int:
    """`value` if it is one of FRAME_SIZES, else a ValueError naming `name` and the sizes."""
    if value not in FRAME_SIZES:
        raise ValueError(f"{name} must be one of {', '.join(map(str, FRAME_SIZES))}, got {value}")
    return value


def check_temperature(value: float, name: str = "temperature") -> float:
    """`value` if it lies in TEMPERATURE_RANGE, else a ValueError naming `name` and the range."""
    low, high = TEMPERATURE_RANGE
    if not low <= value <= high:  # NaN too
        raise ValueError(f"{name} must be in {low:g}..{high:g}, got {value}")
    return value
