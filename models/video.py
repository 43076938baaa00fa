"""Writing frame sequences to .npz, animated .png (APNG), .gif or .mp4 files, atomically."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_write_bytes, check_output_file

SUPPORTED_SUFFIXES = (".npz", ".png", ".gif", ".mp4")


def check_video_path(path: str | Path) -> str:
    """The lower-case suffix of `path` if write_video can write it, else a ValueError naming it."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"cannot write {suffix or 'files without a suffix'!r} ({Path(path).name}): "
                         f"supported formats are {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix


def check_output_path(path: str | Path) -> str:
    """check_video_path, and that a file can be written there (atomic.check_output_file)."""
    suffix = check_video_path(path)
    check_output_file(path)
    return suffix


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write (T, H, W, 3) uint8 RGB frames to `path`, choosing the format by its suffix.

    .npz holds `frames` and `fps` exactly; .png is an animated PNG (APNG) and .gif an animated GIF
    (both lossless in time: a frame identical to the one before is stored once with a longer
    duration; GIF timing is rounded to 10 ms and its colours to a 256-colour palette per frame);
    .mp4 is H.264 (yuv420p), which needs even frame sizes. The file appears whole or not at all.
    """
    suffix = check_video_path(path)
    frames = _checked_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    atomic_write_bytes(path, _ENCODERS[suffix](frames, float(fps)))


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, "
                         f"got {frames.dtype} {frames.shape}")
    return frames


def _encode_npz(frames: np.ndarray, fps: float) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames, fps=np.float64(fps))
    return buf.getvalue()


def _encode_animation(fmt: str) -> Callable[[np.ndarray, float], bytes]:
    def encode(frames: np.ndarray, fps: float) -> bytes:
        from PIL import Image

        images = [Image.fromarray(f, mode="RGB") for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format=fmt, save_all=True, append_images=images[1:],
                       duration=1000.0 / fps, loop=0)
        return buf.getvalue()

    return encode


def _encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    import av

    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (H.264, yuv420p) needs even frame sizes, got {width}x{height}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


_ENCODERS: dict[str, Callable[[np.ndarray, float], bytes]] = {
    ".npz": _encode_npz,
    ".png": _encode_animation("PNG"),
    ".gif": _encode_animation("GIF"),
    ".mp4": _encode_mp4,
}
