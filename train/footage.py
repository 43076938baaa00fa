"""Footage ingestion: videos, image folders and .npz clips to square uint8 frame sequences for training.

A source is a video file (mp4, mov, webm, mkv, gif; decoded with PyAV), a folder of images
(png, jpg, jpeg, bmp, webp, taken in natural order: frame2 before frame10) or an `.npz` holding
`frames` (T,H,W,3) uint8 and `fps`. Every source becomes one sequence; no training window ever
spans two sources.

Each source is streamed frame by frame: cropped (a fixed box, or a box found automatically, see
`auto_crop_box`), area-resized to `frame_size` (Pillow `Image.BOX`) and optionally de-duplicated.
Full-resolution frames are never held together. Every distinct frame is kept: the trainer steps
the footage itself (TrainConfig.frame_step), from every phase.

Frame rates. `Footage.source_fps[i]` is the rate of the distinct frames of source i: the
container's rate, or, with de-duplication, that rate times the share of frames kept (a 60 fps
stream carrying 25 fps content reports about 25). A folder of images has no rate: it gets
`FootageConfig.default_fps` (30 unless set), and the description says so.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from lavalamp.models.limits import check_frame_size
from lavalamp.models.motion import mean_abs_diff

if TYPE_CHECKING:  # PyAV is imported when a video is opened: `lavalamp run` never pays for it
    import av

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
ANALYSIS_SIDE = 160
MIN_SOURCE_SIDE = 16  # pixels each way of the picture (after cropping) a lamp can learn from
"""Auto-crop analyses frames shrunk (area filter) so that their longer side is at most this."""
AUTO_CROP_THRESHOLD = 0.3
"""A pixel belongs to the lamp when its score (0..1, see `lamp_score`) is above this."""
AUTO_CROP_QUANTILE = 0.01
"""The lamp's box spans the 1st..99th percentile of lamp-pixel coordinates (specks ignored)."""
AUTO_CROP_MARGIN = 0.08
"""Padding added on each side of the auto-crop box, as a share of its longer side."""
BORDER_SHARE = 0.05
"""The background colour is the median of the outer 5 % of the mean frame."""


class FootageError(ValueError):
    """Footage that cannot be used; the message names the file or folder and the problem."""


@dataclass(frozen=True, kw_only=True)
class FootageConfig:
    """How sources become training frames."""

    frame_size: int = 64
    """Side of the square output frames in pixels: 64, 128 or 256."""
    crop: tuple[int, int, int, int] | None = None
    """Crop box (x0, y0, x1, y1) in source pixels, applied to every source; None = no fixed box."""
    auto_crop: bool = False
    """Find the lamp in each source and crop a square around it (ignored when `crop` is set)."""
    dedupe_threshold: float = 0.0
    """Drop a frame whose mean absolute difference (0..255, at frame_size) to the previous kept
    frame is below this; 0 = off. Set it above the codec noise between repeated frames and below
    the real motion between distinct ones, then check the reported effective fps: a 60 fps H.264
    stream of 25 fps lava footage (100 distinct frames) kept exactly 100 at 0.4..0.6, 101 at 0.3."""
    default_fps: float = 30.0
    """Frame rate assumed for a folder of images, or an .npz without `fps`."""
    val_fraction: float = 0.1
    """The last share of each sequence (in time) held out for validation; 0 = none."""
    mirror: bool = False
    """Also train on each sequence mirrored left-right, as a sequence of its own: twice the data
    from a short clip (wax physics has no left or right), for footage whose glare and background
    look right mirrored."""

    def __post_init__(self) -> None:
        check_frame_size(self.frame_size)
        if not 0.0 <= self.dedupe_threshold <= 255.0:
            raise ValueError(f"dedupe_threshold must be in 0..255, got {self.dedupe_threshold}")
        if not 0.0 < self.default_fps <= 1000.0:
            raise ValueError(f"default_fps must be in (0, 1000], got {self.default_fps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop is not None:
            x0, y0, x1, y1 = self.crop
            if not (x0 < x1 and y0 < y1):
                raise ValueError(f"crop must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1, got {self.crop}")


@dataclass(kw_only=True)
class Footage:
    """Training frames: one sequence per source, time-ordered, each (T,S,S,3) uint8 RGB."""

    sequences: list[np.ndarray]
    names: list[str]
    source_fps: list[float]
    val_fraction: float
    description: str

    @property
    def fps(self) -> float:
        """Source frame rate for the checkpoint: the frame-weighted mean over sequences."""
        counts = np.array([len(s) for s in self.sequences], dtype=float)
        return float(np.average(self.source_fps, weights=counts))

    @property
    def frame_size(self) -> int:
        """Side of the square frames in pixels."""
        return int(self.sequences[0].shape[1])

    @property
    def train(self) -> list[np.ndarray]:
        """The first (1 - val_fraction) of every sequence."""
        return [s[: len(s) - _val_length(len(s), self.val_fraction)] for s in self.sequences]

    @property
    def val(self) -> list[np.ndarray]:
        """The last val_fraction of every sequence (sequences too short for one are left out)."""
        tails = [s[len(s) - _val_length(len(s), self.val_fraction):] for s in self.sequences]
        return [t for t in tails if len(t)]

    def mirrored(self) -> "Footage":
        """This footage plus each sequence mirrored left-right (a sequence of its own)."""
        return dataclasses.replace(
            self, sequences=self.sequences + [np.ascontiguousarray(s[:, :, ::-1]) for s in self.sequences],
            names=self.names + [f"{n} (mirrored)" for n in self.names], source_fps=self.source_fps * 2,
            description=f"{self.description}; each also mirrored left-right")

    def at_size(self, size: int) -> "Footage":
        """This footage area-resized to `size` (itself when it is that size already)."""
        if size == self.frame_size:
            return self
        return dataclasses.replace(self, sequences=[area_resize(s, size) for s in self.sequences])


def _val_length(length: int, fraction: float) -> int:
    return int(round(length * fraction))


def load_footage(sources: Sequence[str | Path], config: FootageConfig | None = None, *,
                 min_frames: int = 1) -> Footage:
    """Read every source into one sequence; each must keep at least `min_frames` training frames."""
    config = config or FootageConfig()
    if not sources:
        raise FootageError("no footage given: name at least one video, image folder or .npz")
    readers = [open_source(Path(s), default_fps=config.default_fps) for s in sources]
    sequences, fps, lines = [], [], []
    for reader in readers:
        frames, source_fps, line = _ingest(reader, config, min_frames)
        sequences.append(frames)
        fps.append(source_fps)
        lines.append(line)
    if max(fps) > 1.1 * min(fps):
        lines.append(f"note: sources differ in frame rate ({', '.join(f'{f:.3g}' for f in fps)} fps); "
                     f"the lamp records their frame-weighted mean")
    footage = Footage(sequences=sequences, names=[r.path.name for r in readers], source_fps=fps,
                      val_fraction=config.val_fraction,
                      description="; ".join(lines))
    if config.mirror:
        footage = footage.mirrored()
    log.info("footage: %s", footage.description)
    return footage


# ---------------------------------------------------------------- sources


class _Reader(Protocol):
    """A source of frames: its name, size (W,H), frame rate and a stream of PIL RGB images."""

    path: Path
    size: tuple[int, int]
    fps: float
    fps_assumed: bool

    def images(self) -> Iterator[Image.Image]:
        """Every frame in order, as RGB images at source size."""


def open_source(path: Path, *, default_fps: float = 30.0) -> _Reader:
    """Open one source (checking that it is usable) without decoding all of it."""
    if not path.exists():
        raise FootageError(f"{path}: not found")
    if path.is_dir():
        return _ImageFolder(path, default_fps)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _NpzClip(path, default_fps)
    if suffix in VIDEO_SUFFIXES:
        return _Video(path, default_fps)
    raise FootageError(f"{path}: unsupported file type {suffix or '(no suffix)'!r}; expected a video "
                       f"({', '.join(VIDEO_SUFFIXES)}), an .npz or a folder of images")


class _Video:
    def __init__(self, path: Path, default_fps: float) -> None:
        self.path = path
        if path.stat().st_size == 0:
            raise FootageError(f"{path}: the file is empty")
        with self._open() as container:
            stream = self._stream(container)
            self.size = (stream.codec_context.width, stream.codec_context.height)
            rate = stream.average_rate or stream.guessed_rate
        self.fps_assumed = not rate or float(rate) <= 0
        self.fps = default_fps if self.fps_assumed else float(rate)

    def _open(self) -> av.container.InputContainer:
        import av
        try:
            return av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise FootageError(f"{self.path}: not a readable video ({exc})") from None

    def _stream(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        if not container.streams.video:
            raise FootageError(f"{self.path}: the file has no video stream")
        return container.streams.video[0]

    def images(self) -> Iterator[Image.Image]:
        import av
        with self._open() as container:
            stream = self._stream(container)
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    yield frame.to_image()
            except (av.FFmpegError, ValueError) as exc:
                raise FootageError(f"{self.path}: video is damaged ({exc})") from None


class _ImageFolder:
    def __init__(self, path: Path, default_fps: float) -> None:
        self.path = path
        self.files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                             and p.is_file()), key=natural_key)
        if not self.files:
            raise FootageError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.size = self._common_size()
        self.fps, self.fps_assumed = default_fps, True

    def _common_size(self) -> tuple[int, int]:
        first = _image_size(self.files[0])
        for file in self.files[1:]:
            size = _image_size(file)
            if size != first:
                raise FootageError(f"{self.path}: images differ in size: {self.files[0].name} is "
                                   f"{first[0]}x{first[1]} but {file.name} is {size[0]}x{size[1]}")
        return first

    def images(self) -> Iterator[Image.Image]:
        for file in self.files:
            try:
                with Image.open(file) as image:
                    yield image.convert("RGB")
            except (OSError, UnidentifiedImageError) as exc:
                raise FootageError(f"{file}: unreadable image ({exc})") from None


def _image_size(file: Path) -> tuple[int, int]:
    try:
        with Image.open(file) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise FootageError(f"{file}: unreadable image ({exc})") from None


def natural_key(path: Path) -> list[int | str]:
    """Sort key putting frame2 before frame10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class _NpzClip:
    def __init__(self, path: Path, default_fps: float) -> None:
        self.path = path
        archive = self._open()
        with archive:
            if "frames" not in archive.files:
                raise FootageError(f"{path}: .npz has no 'frames' array "
                                   f"(it holds: {', '.join(archive.files) or 'nothing'})")
            self.frames = self._read(archive, "frames")
            self.fps_assumed = "fps" not in archive.files
            self.fps = default_fps if self.fps_assumed else self._read_fps(archive)
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise FootageError(f"{path}: 'frames' must be (T,H,W,3) uint8 RGB, got "
                               f"shape {self.frames.shape} {self.frames.dtype}")
        self.size = (self.frames.shape[2], self.frames.shape[1])

    def _open(self) -> np.lib.npyio.NpzFile:
        try:
            archive = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise FootageError(f"{self.path}: not a readable .npz archive ({exc})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FootageError(f"{self.path}: a single .npy array, not an .npz archive with 'frames'")
        return archive

    def _read(self, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
        try:
            return archive[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise FootageError(f"{self.path}: {key!r} is unreadable ({exc})") from None

    def _read_fps(self, archive: np.lib.npyio.NpzFile) -> float:
        value = self._read(archive, "fps")
        if value.size != 1 or not np.issubdtype(value.dtype, np.number):
            raise FootageError(f"{self.path}: 'fps' must be one number, got {value.shape} {value.dtype}")
        fps = float(value.reshape(()))
        if not np.isfinite(fps) or fps <= 0:
            raise FootageError(f"{self.path}: 'fps' must be a positive number, got {fps}")
        return fps

    def images(self) -> Iterator[Image.Image]:
        for frame in self.frames:
            yield Image.fromarray(frame)


# ---------------------------------------------------------------- processing


def _ingest(reader: _Reader, config: FootageConfig, min_frames: int) -> tuple[np.ndarray, float, str]:
    """Stream one source through crop, resize and de-duplication."""
    _check_box(reader, (0, 0, *reader.size))
    box, how = _crop_box(reader, config)
    _check_box(reader, box)
    kept, decoded, extrema = [], 0, None
    for image in reader.images():
        decoded += 1
        extrema = _extrema(image, extrema)
        frame = resize_frame(image, box, config.frame_size)
        if kept and config.dedupe_threshold > 0 and \
                mean_abs_diff(frame, kept[-1]) < config.dedupe_threshold:
            continue
        kept.append(frame)
    if decoded == 0:
        raise FootageError(f"{reader.path}: contains no frames")
    frames = np.stack(kept)
    _check_length(reader, config, len(frames), min_frames)
    _check_not_flat(reader, extrema)
    fps = reader.fps * len(frames) / decoded
    return frames, fps, _describe(reader, config, box, how, decoded, fps, len(frames))


def _check_box(reader: _Reader, box: tuple[int, int, int, int]) -> None:
    """The picture a lamp learns from is at least MIN_SOURCE_SIDE pixels each way."""
    width, height = box[2] - box[0], box[3] - box[1]
    if width < MIN_SOURCE_SIDE or height < MIN_SOURCE_SIDE:
        raise FootageError(f"{reader.path}: frames of {width}x{height} pixels"
                           f"{' after cropping' if (width, height) != tuple(reader.size) else ''}; "
                           f"at least {MIN_SOURCE_SIDE}x{MIN_SOURCE_SIDE} are needed")


def _extrema(image: Image.Image, seen: tuple[tuple[int, int], ...] | None) -> tuple[tuple[int, int], ...]:
    """Each band's (lowest, highest) value over `image` and what was `seen` before it."""
    bands = image.getextrema()
    bands = (bands,) if isinstance(bands[0], (int, float)) else bands  # one band (L, P)
    if seen is None or len(seen) != len(bands):
        return bands
    return tuple((min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(seen, bands))


def _check_not_flat(reader: _Reader, extrema: tuple[tuple[int, int], ...] | None) -> None:
    """Footage that is one flat colour throughout would train a lamp showing that colour."""
    if extrema is not None and all(lo == hi for lo, hi in extrema):
        raise FootageError(f"{reader.path}: the footage is a single flat colour throughout: there "
                           "is no lamp in it to learn")


def _check_length(reader: _Reader, config: FootageConfig, length: int, min_frames: int) -> None:
    train = length - _val_length(length, config.val_fraction)
    if train < min_frames:
        raise FootageError(f"{reader.path}: too short: {length} frames leave {train} for "
                           f"training, fewer than one training window of {min_frames} frames")


def _describe(reader: _Reader, config: FootageConfig, box: tuple[int, int, int, int], how: str,
              decoded: int, fps: float, stored: int) -> str:
    rate = f"{reader.fps:.4g} fps" + (" (assumed: default_fps)" if reader.fps_assumed else "")
    dedupe = (f", dedupe kept {stored}/{decoded} -> {fps:.4g} fps"
              if config.dedupe_threshold > 0 else "")
    return (f"{reader.path.name}: {decoded} frames {reader.size[0]}x{reader.size[1]} at {rate}, "
            f"crop {box} ({how}){dedupe} -> {stored} frames {config.frame_size}px")


def resize_frame(image: Image.Image, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop `box` out of an image and area-resize it to (size,size,3) uint8."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.BOX, box=box), dtype=np.uint8)


def area_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 frames (T,S,S,3) -> (T,size,size,3): each output pixel the mean of its S/size square."""
    side = frames.shape[1]
    if side % size:
        raise ValueError(f"cannot area-resize {side} px frames to {size} px")
    k = side // size
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i in range(0, len(frames), 256):  # chunks keep the float copy small
        block = frames[i:i + 256].reshape(-1, size, k, size, k, 3).mean(axis=(2, 4), dtype=np.float32)
        out[i:i + 256] = np.rint(block)
    return out


def _crop_box(reader: _Reader, config: FootageConfig) -> tuple[tuple[int, int, int, int], str]:
    width, height = reader.size
    if config.crop is not None:
        x0, y0, x1, y1 = config.crop
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise FootageError(f"{reader.path}: crop box {config.crop} lies outside the "
                               f"{width}x{height} frame")
        return tuple(config.crop), "given"
    if config.auto_crop:
        return auto_crop_box(_thumbnails(reader), (width, height)), "auto"
    return (0, 0, width, height), "whole frame"


def _thumbnails(reader: _Reader) -> Iterator[np.ndarray]:
    width, height = reader.size
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    for image in reader.images():
        yield np.asarray(image.resize(size, Image.BOX), dtype=np.float32)


def lamp_score(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-pixel lamp score 0..1 from the mean frame (H,W,3) and the temporal std (H,W,3).

    The average of two normalised cues: how far the mean colour is from the background colour
    (the median of the frame's outer border), and how much the pixel changes over the clip.
    Each cue is divided by its 99th percentile and clipped to 1.
    """
    h, w = mean.shape[:2]
    bh, bw = max(1, round(h * BORDER_SHARE)), max(1, round(w * BORDER_SHARE))
    border = np.concatenate([mean[:bh].reshape(-1, 3), mean[-bh:].reshape(-1, 3),
                             mean[:, :bw].reshape(-1, 3), mean[:, -bw:].reshape(-1, 3)])
    differs = np.abs(mean - np.median(border, axis=0)).mean(axis=-1)
    moves = std.mean(axis=-1)
    return (_normalise(differs) + _normalise(moves)) / 2


def _normalise(x: np.ndarray) -> np.ndarray:
    top = float(np.percentile(x, 99))
    return np.clip(x / top, 0.0, 1.0) if top > 1e-6 else np.zeros_like(x)


def auto_crop_box(thumbnails: Iterable[np.ndarray], source_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square box (x0,y0,x1,y1) in source pixels around the lamp seen in shrunken frames.

    Method: per-pixel mean and temporal std over the clip (streamed); `lamp_score` marks pixels
    that differ from the background colour or move; the box spans the 1st..99th percentile of the
    marked pixels' coordinates, is padded by AUTO_CROP_MARGIN, grown to a square around its centre,
    cut to the frame's shorter side and shifted to lie inside the frame.
    """
    mean, std = _mean_std(thumbnails)
    marked = lamp_score(mean, std) > AUTO_CROP_THRESHOLD
    width, height = source_size
    if not marked.any():
        log.warning("auto-crop found no lamp; using the centred square")
        return _square(width / 2, height / 2, min(width, height), width, height)
    scale_x, scale_y = width / mean.shape[1], height / mean.shape[0]
    ys, xs = np.nonzero(marked)
    x0, x1 = np.quantile(xs, [AUTO_CROP_QUANTILE, 1 - AUTO_CROP_QUANTILE]) * scale_x
    y0, y1 = np.quantile(ys, [AUTO_CROP_QUANTILE, 1 - AUTO_CROP_QUANTILE]) * scale_y
    x1, y1 = x1 + scale_x, y1 + scale_y  # pixel index -> right/bottom edge
    side = max(x1 - x0, y1 - y0) * (1 + 2 * AUTO_CROP_MARGIN)
    return _square((x0 + x1) / 2, (y0 + y1) / 2, side, width, height)


def _mean_std(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std over a stream of frames (Welford, one pass)."""
    count, mean, m2 = 0, None, None
    for frame in frames:
        x = frame.astype(np.float64)
        if mean is None:
            mean, m2 = np.zeros_like(x), np.zeros_like(x)
        count += 1
        delta = x - mean
        mean += delta / count
        m2 += delta * (x - mean)
    if mean is None:
        raise FootageError("auto-crop: the source contains no frames")
    return mean, np.sqrt(m2 / count)


def _square(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    side = int(round(min(max(side, 1.0), width, height)))
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return (x0, y0, x0 + side, y0 + side)
