"""Motion of frames: the mean absolute change between frames, on the 0..255 pixel scale."""

from __future__ import annotations

import numpy as np

MOTION_CHUNK = 32  # steps measured at a time


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames (or frame stacks), 0..255."""
    return float(_abs_diff_means(np.asarray(a)[None], np.asarray(b)[None])[0])


def step_motion(frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute difference (0..255) between each pair of consecutive frames (T,...) -> (T-1,);
    with `previous` (the frame before the first), also the first frame's change from it -> (T,)."""
    frames = np.asarray(frames)
    steps = np.empty(max(len(frames) - 1, 0), np.float64)
    for start in range(0, len(steps), MOTION_CHUNK):  # chunks: a long clip's temporaries stay small
        chunk = frames[start:start + MOTION_CHUNK + 1]
        steps[start:start + len(chunk) - 1] = _abs_diff_means(chunk[1:], chunk[:-1])
    if previous is None or not len(frames):
        return steps
    return np.concatenate([_abs_diff_means(frames[:1], np.asarray(previous)[None]), steps])


def _abs_diff_means(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per frame, the mean of |a - b| (exact: an integer sum), for uint8 frames or any others
    taken as int16."""
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        a, b = a.astype(np.int16), b.astype(np.int16)
    diff = np.maximum(a, b)
    diff -= np.minimum(a, b)  # |a - b| without leaving the dtype
    return diff.reshape(len(diff), -1).sum(axis=1, dtype=np.int64) / diff[0].size
