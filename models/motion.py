"""Motion of frames: the mean absolute change between frames, on the 0..255 pixel scale."""

from __future__ import annotations

import numpy as np


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames (or frame stacks), 0..255."""
    return float(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).mean())


def step_motion(frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute difference (0..255) between each pair of consecutive frames (T,...) -> (T-1,);
    with `previous` (the frame before the first), also the first frame's change from it -> (T,)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = frames.astype(np.int16)
    if previous is not None:
        frames = np.concatenate([np.asarray(previous, frames.dtype)[None], frames])
    if len(frames) < 2:
        return np.zeros(0, np.float64)
    later, earlier = frames[1:], frames[:-1]
    diff = np.maximum(later, earlier)
    diff -= np.minimum(later, earlier)  # |a - b| without leaving uint8 (or int16)
    return diff.reshape(len(diff), -1).sum(axis=1, dtype=np.int64) / diff[0].size
