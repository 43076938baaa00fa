"""Motion of frames: the mean absolute change between frames, on the 0..255 pixel scale."""

from __future__ import annotations

import numpy as np


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames (or frame stacks), 0..255."""
    return float(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).mean())


def step_motion(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0..255) between each pair of consecutive frames (T,...) -> (T-1,)."""
    return np.array([mean_abs_diff(frames[i + 1], frames[i]) for i in range(len(frames) - 1)],
                    dtype=np.float64)
