"""Evaluation of a lamp against reference footage: drift, motion, freezing, repetition, colour and critics.

`lavalamp eval --model LAMP --reference CLIP.npz [CLIP.npz ...] --out DIR` dreams N frames (after
skipping S steps undecoded, guard off), compares them with the reference clips and writes
DIR/report.json and DIR/contact_sheet.png. Several clips (of one frame rate) are one reference of
many lamp states: one simulator seed is one lamp, with its own amount of wax and number of blobs,
so a one-clip reference measures that clip as much as the lamp. Nothing compared in time (motion,
freezing, clip critics) spans two clips.

Time base. The lamp makes one frame per `lamp.data.lamp_fps` of real lamp time (source fps /
frame step). The reference clip has its own `fps`; it is area-resized to the lamp's frame size
and, wherever motion matters, taken every k = round(reference fps / lamp fps) frames (the
"lamp-rate reference"), so one step means the same real time on both sides.

Report (report.json); distances and differences are on the 0..255 pixel scale:
- `latent_drift`: latent_stats (mean/std/skew/kurtosis of standardized latents u) in DRIFT_WINDOWS
  equal windows across the run; `first_window`, `last_window`, the lamp's `reference`, and each
  window's `LatentStats.distance` to it (`max_distance_from_reference`, `last_distance_from_reference`).
- `motion`: mean absolute difference between consecutive frames, generated vs lamp-rate reference,
  and `ratio` = generated / reference (1 = moves like the real lamp).
- `frozen`: the run is cut into windows of FROZEN_WINDOW_S lamp-seconds; a window is frozen when
  its motion is below FROZEN_SHARE_OF_REFERENCE of the reference motion. Share of frozen windows,
  generated and reference.
- `repetition`: for every frame, the RMS distance (on frames area-shrunk to REPETITION_SIZE) to its
  nearest neighbour among frames at least `min_gap_steps` away; median/min, and the share of frames
  whose nearest far neighbour is closer than the reference's median distance between consecutive
  lamp-rate frames (a near-duplicate: the dream came back to where it was). Reference figures are
  null when the reference is not longer than the gap.
- `sharpness`: edge energy (mean absolute difference between horizontally and vertically
  neighbouring pixels, at the lamp's own frame size) of each side, and `ratio` = generated /
  reference (1 = as sharp as the footage; below: softer; above: noisier); the same ratio between
  alternating time blocks of the reference as a baseline; and the fixed grain (the std, 0..255, of
  the noise pattern that stays put, see models/grain.py) of the dream and of the reference.
- `colour`: mean RGB of each side and their distance; total-variation distance (0..1) between joint
  RGB histograms (HISTOGRAM_BINS per channel); the same histogram distance between alternating
  time blocks of the reference as a baseline.
- `critic`: classifier two-sample tests, generated vs reference and reference A vs B (balanced
  accuracy on held-out time blocks, 0.5 = indistinguishable); see critic.py.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lavalamp.models.atomic import atomic_write_bytes
from lavalamp.models.checkpoint import Lamp, load_lamp
from lavalamp.models.dream import Dream
from lavalamp.models.grain import estimate_grain
from lavalamp.models.latent import LatentStats, latent_stats
from lavalamp.models.limits import check_temperature
from lavalamp.models.motion import step_motion

from .critic import (BASELINE_BLOCKS, CLIP_FRAMES, MAX_CRITIC_SEEDS, alternating_blocks, critics,
                     minimum_lengths, shrink_frames)
from .footage import FootageError, open_source, resize_frame
from .losses import edge_energy
from .runlog import contact_sheet

DRIFT_WINDOWS = 10
"""Latent statistics are taken in this many equal windows across the run."""
FROZEN_WINDOW_S = 2.0
"""Length of a freeze window in lamp-seconds: real lamps change visibly within 1-2 s, and a display
that stands still for 2 s reads as stuck."""
FROZEN_SHARE_OF_REFERENCE = 0.1
"""A window is frozen when its motion is below this share of the reference's mean motion."""
FROZEN_FLOOR = 0.01
"""Least freeze threshold (0..255), so that a motionless reference still calls a still clip frozen."""
REPETITION_SIZE = 32
"""Frames are area-shrunk to this side before nearest-neighbour search (speed; same for both sides)."""
HISTOGRAM_BINS = 8
"""Bins per channel of the joint RGB colour histogram."""
CONTACT_COLUMNS = 8
"""Frames per row of the contact sheet."""


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What to generate and how hard the critics train."""

    frames: int = 2000
    """Frames to generate and compare."""
    skip: int = 0
    """Dream steps taken (not decoded) before the compared frames start."""
    seed: int = 0
    """Seed of the dream and of the critics."""
    temperature: float = 1.0
    """Sampling temperature of the dream, relative to the lamp's calibrated one."""
    batch_size: int = 64
    """Frames decoded per batch."""
    min_gap_steps: int = 300
    """Repetition looks for neighbours at least this many steps apart."""
    critic_steps: int = 600
    """Training steps of each critic (batches of `critic_batch`)."""
    critic_batch: int = 64
    """Examples per critic step, half from each side."""
    critic_seeds: int = 1
    """Critics trained per test, each from its own seed; the report gives their mean accuracy and
    spread (a single critic's accuracy moves by a few points from seed to seed)."""

    def __post_init__(self) -> None:
        if self.frames < minimum_lengths(1)[0]:
            raise ValueError(f"frames must be at least {minimum_lengths(1)[0]} (what the critics "
                             f"need), got {self.frames}")
        if self.skip < 0 or self.min_gap_steps < 1 or self.critic_steps < 0:
            raise ValueError(f"skip >= 0, min_gap_steps >= 1 and critic_steps >= 0 are required: {self}")
        if not 1 <= self.critic_seeds <= MAX_CRITIC_SEEDS:
            raise ValueError(f"critic seeds (--critic-seeds) must be in 1..{MAX_CRITIC_SEEDS}, "
                             f"got {self.critic_seeds}")
        check_temperature(self.temperature, "temperature (--temperature)")


# ---------------------------------------------------------------- inputs


def load_reference(path: str | Path, frame_size: int) -> tuple[np.ndarray, float]:
    """A reference clip (any footage source) area-resized to frame_size: frames (T,S,S,3), fps."""
    reader = open_source(Path(path))
    box = (0, 0, *reader.size)
    frames = np.stack([resize_frame(image, box, frame_size) for image in reader.images()])
    if len(frames) < minimum_lengths(1)[1]:
        raise FootageError(f"{path}: reference has {len(frames)} frames; at least "
                           f"{minimum_lengths(1)[1]} needed")
    return frames, reader.fps


def load_references(paths: list[str | Path], frame_size: int) -> tuple[list[np.ndarray], float]:
    """Several reference clips of one frame rate: their frames and that rate."""
    clips, rates = zip(*(load_reference(path, frame_size) for path in paths))
    if len(set(rates)) > 1:
        raise FootageError("reference clips must share one frame rate, got "
                           + ", ".join(f"{Path(p).name} {r:g} fps" for p, r in zip(paths, rates)))
    return list(clips), rates[0]


def as_clips(reference: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """A reference as a list of clips (one array is one clip)."""
    return list(reference) if isinstance(reference, (list, tuple)) else [reference]


@torch.inference_mode()
def generate(lamp: Lamp, config: EvalConfig) -> tuple[np.ndarray, torch.Tensor]:
    """Dream config.frames frames after config.skip undecoded steps: frames (N,S,S,3), latents (N,D)."""
    dream = Dream(lamp, temperature=config.temperature, seed=config.seed)
    for done in range(0, config.skip, 4096):
        dream.advance(min(4096, config.skip - done))
    frames, latents = [], []
    for done in range(0, config.frames, config.batch_size):
        u = dream.advance(min(config.batch_size, config.frames - done))
        latents.append(u.cpu())
        frames.append(dream.decode(u))
    return np.concatenate(frames), torch.cat(latents)


def lamp_rate_step(reference_fps: float, lamp_fps: float) -> int:
    """Reference frames per lamp step: round(reference fps / lamp fps), at least 1."""
    return max(1, int(round(reference_fps / lamp_fps)))


# ---------------------------------------------------------------- metrics


def _stats_dict(stats: LatentStats) -> dict[str, float | None]:
    return {k: _finite(v) for k, v in stats._asdict().items()}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def latent_drift(latents: torch.Tensor, reference: LatentStats) -> dict[str, Any]:
    """Latent statistics in DRIFT_WINDOWS windows across the run and their distance to the reference."""
    windows = [w for w in torch.tensor_split(latents, min(DRIFT_WINDOWS, len(latents))) if len(w)]
    stats = [latent_stats(w) for w in windows]
    distances = [s.distance(reference) for s in stats]
    return {"window_steps": len(windows[0]), "windows": [_stats_dict(s) for s in stats],
            "first_window": _stats_dict(stats[0]), "last_window": _stats_dict(stats[-1]),
            "reference": _stats_dict(reference),
            "max_distance_from_reference": _finite(max(distances)),
            "last_distance_from_reference": _finite(distances[-1])}


def clips_motion(clips: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """step_motion of every clip, end to end (no step spans two clips)."""
    return np.concatenate([step_motion(clip) for clip in as_clips(clips)])


def motion(generated: np.ndarray, reference: np.ndarray | list[np.ndarray]) -> dict[str, float | None]:
    """Mean motion per step of both (reference at lamp rate) and their ratio."""
    gen, ref = float(step_motion(generated).mean()), float(clips_motion(reference).mean())
    return {"generated_mean_abs_diff": gen, "reference_mean_abs_diff": ref,
            "ratio": gen / ref if ref > 0 else None}


def frozen_share(frames: np.ndarray | list[np.ndarray], window_steps: int,
                 threshold: float) -> float | None:
    """Share of consecutive windows of `window_steps` steps (within each clip) below threshold."""
    means = []
    for clip in as_clips(frames):
        diffs = step_motion(clip)
        count = len(diffs) // window_steps
        means.append(diffs[: count * window_steps].reshape(count, window_steps).mean(axis=1))
    means = np.concatenate(means)
    return float((means < threshold).mean()) if len(means) else None


def frozen(generated: np.ndarray, reference: np.ndarray | list[np.ndarray],
           lamp_fps: float) -> dict[str, Any]:
    """Frozen-window shares of both, windows of FROZEN_WINDOW_S lamp-seconds."""
    window = max(1, int(round(FROZEN_WINDOW_S * lamp_fps)))
    threshold = max(FROZEN_SHARE_OF_REFERENCE * float(clips_motion(reference).mean()), FROZEN_FLOOR)
    return {"window_seconds": FROZEN_WINDOW_S, "window_steps": window,
            "threshold_mean_abs_diff": threshold,
            "generated_share": frozen_share(generated, window, threshold),
            "reference_share": frozen_share(reference, window, threshold)}

def nearest_far_rms(frames: np.ndarray, min_gap: int) -> np.ndarray | None:
    """Per frame, the RMS distance to its nearest frame at least `min_gap` steps away (None if none)."""
    if len(frames) <= min_gap:
        return None
    x = shrink_frames(frames, REPETITION_SIZE).flatten(1).double()
    squares = (x * x).sum(1)
    index = torch.arange(len(x))
    best = torch.full((len(x),), math.inf, dtype=torch.float64)
    for start in range(0, len(x), 256):
        rows = slice(start, start + 256)
        d2 = squares[rows, None] + squares[None, :] - 2 * x[rows] @ x.T
        d2[(index[rows, None] - index[None, :]).abs() < min_gap] = math.inf
        best[rows] = d2.min(dim=1).values
    return (best.clamp_min(0) / x.shape[1]).sqrt().numpy()


def repetition(generated: np.ndarray, reference: np.ndarray | list[np.ndarray],
               min_gap: int) -> dict[str, Any]:
    """Nearest far neighbours of both, and the share of near-duplicates (see module docstring)."""
    steps = []
    for clip in as_clips(reference):
        ref = shrink_frames(clip, REPETITION_SIZE)
        steps.append(((ref[1:] - ref[:-1]) ** 2).flatten(1).mean(1).sqrt())
    threshold = float(torch.cat(steps).median())
    reference = np.concatenate(as_clips(reference))

    def summary(frames: np.ndarray) -> dict[str, float] | None:
        nearest = nearest_far_rms(frames, min_gap)
        if nearest is None:
            return None
        return {"median_nearest_rms": float(np.median(nearest)), "min_nearest_rms": float(nearest.min()),
                "near_duplicate_share": float((nearest < threshold).mean())}

    return {"min_gap_steps": min_gap, "near_duplicate_rms": threshold,
            "generated": summary(generated), "reference": summary(reference)}


def colour_histogram(frames: np.ndarray) -> np.ndarray:
    """Joint RGB histogram with HISTOGRAM_BINS bins per channel, summing to 1."""
    bins = (frames.reshape(-1, 3) // (256 // HISTOGRAM_BINS)).astype(np.int64)
    flat = (bins[:, 0] * HISTOGRAM_BINS + bins[:, 1]) * HISTOGRAM_BINS + bins[:, 2]
    counts = np.bincount(flat, minlength=HISTOGRAM_BINS**3).astype(float)
    return counts / counts.sum()


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between the colour histograms of two frame sets (0 same, 1 disjoint)."""
    return float(0.5 * np.abs(colour_histogram(a) - colour_histogram(b)).sum())


def colour(generated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Mean colours, their distance, and histogram distances (with a reference A-vs-B baseline)."""
    gen_mean = generated.reshape(-1, 3).mean(0)
    ref_mean = reference.reshape(-1, 3).mean(0)
    a, b = alternating_blocks(len(reference), BASELINE_BLOCKS)
    return {"generated_mean_rgb": gen_mean.tolist(), "reference_mean_rgb": ref_mean.tolist(),
            "mean_rgb_distance": float(np.linalg.norm(gen_mean - ref_mean)),
            "histogram_distance": histogram_distance(generated, reference),
            "reference_baseline_histogram_distance": histogram_distance(reference[a], reference[b])}


def frame_edge_energy(frames: np.ndarray) -> float:
    """Edge energy (0..255, see losses.edge_energy) of uint8 frames (T,S,S,3), at their own size."""
    total = 0.0
    for start in range(0, len(frames), 64):
        chunk = torch.from_numpy(frames[start:start + 64]).permute(0, 3, 1, 2)
        total += float(edge_energy(chunk)) * len(chunk)
    return total / len(frames)


def sharpness(generated: np.ndarray, joined: np.ndarray,
              clips: list[np.ndarray]) -> dict[str, float | None]:
    """Edge energy of both, their ratio, the ratio between the reference's alternating blocks
    (`joined`: the clips one after another), and the fixed grain of each side (grain.py: the
    median over the reference's clips)."""
    gen, ref = frame_edge_energy(generated), frame_edge_energy(joined)
    a, b = alternating_blocks(len(joined), BASELINE_BLOCKS)
    return {"generated_edge_energy": gen, "reference_edge_energy": ref,
            "ratio": gen / ref if ref > 0 else None,
            "reference_baseline_ratio": frame_edge_energy(joined[a]) / max(
                frame_edge_energy(joined[b]), 1e-9),
            "generated_grain": estimate_grain([generated])["std"],
            "reference_grain": estimate_grain(clips)["std"]}


# ---------------------------------------------------------------- report


def check_reference_length(length: int, reference_fps: float, lamp_fps: float) -> int:
    """The lamp-rate step, once the reference is known to be long enough for every metric."""
    step = lamp_rate_step(reference_fps, lamp_fps)
    needed = minimum_lengths(step)[1]
    if length < needed:
        raise FootageError(f"reference of {length} frames is too short: at least {needed} at "
                           f"{reference_fps:g} fps are needed for clips of {CLIP_FRAMES} lamp steps")
    return step


def evaluate_frames(generated: np.ndarray, reference: np.ndarray | list[np.ndarray], *,
                    lamp_fps: float, reference_fps: float, config: EvalConfig) -> dict[str, Any]:
    """Every frame-based metric of generated frames (N,S,S,3) against reference clips (T,S,S,3)."""
    clips = as_clips(reference)
    step = check_reference_length(min(len(c) for c in clips), reference_fps, lamp_fps)
    lamp_rate = [clip[::step] for clip in clips]
    joined = np.concatenate(clips) if len(clips) > 1 else clips[0]
    return {"reference": {"fps": reference_fps, "clips": len(clips), "frames": len(joined),
                          "lamp_rate_step": step, "lamp_rate_frames": sum(len(c) for c in lamp_rate),
                          "lamp_seconds": len(joined) / reference_fps},
            "motion": motion(generated, lamp_rate),
            "frozen": frozen(generated, lamp_rate, lamp_fps),
            "repetition": repetition(generated, lamp_rate, config.min_gap_steps),
            "colour": colour(generated, joined),
            "sharpness": sharpness(generated, joined, clips),
            "critic": critics(generated, clips, step, config)}


def evaluate(model: str | Path, reference: str | Path | list[str | Path], config: EvalConfig
             ) -> tuple[dict[str, Any], Image.Image]:
    """Load, dream, compare: the report and the contact sheet."""
    started = time.monotonic()
    lamp = load_lamp(model, "cpu")
    paths = reference if isinstance(reference, (list, tuple)) else [reference]
    clips, ref_fps = load_references(paths, lamp.frame_size)
    for path, clip in zip(paths, clips):
        try:
            check_reference_length(len(clip), ref_fps, lamp.data.lamp_fps)
        except FootageError as exc:
            raise FootageError(f"{path}: {exc}") from None
    frames, latents = generate(lamp, config)
    generated_s = time.monotonic() - started
    report = {"model": {"path": str(model), "name": lamp.name, "frame_size": lamp.frame_size,
                        "latent_size": lamp.latent_size, "lamp_fps": lamp.data.lamp_fps,
                        "data": lamp.data.description},
              "generation": {**{k: v for k, v in asdict(config).items()
                                if k in ("frames", "skip", "seed", "temperature")},
                             "lamp_seconds": config.frames / lamp.data.lamp_fps, "seconds": generated_s},
              "latent_drift": latent_drift(latents, lamp.reference)}
    report.update(evaluate_frames(frames, clips, lamp_fps=lamp.data.lamp_fps,
                                  reference_fps=ref_fps, config=config))
    report["reference"]["path"] = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
    report["seconds"] = time.monotonic() - started
    step = report["reference"]["lamp_rate_step"]
    return report, comparison_sheet(frames, np.concatenate([clip[::step] for clip in clips]))


def comparison_sheet(generated: np.ndarray, reference: np.ndarray) -> Image.Image:
    """Rows: reference and generated frames spread over each clip, then consecutive ones of each."""
    rows = {"reference, spread": _spread(reference), "generated, spread": _spread(generated),
            "reference, consecutive": reference[:CONTACT_COLUMNS],
            "generated, consecutive": generated[-CONTACT_COLUMNS:]}
    return contact_sheet(list(rows.values()), labels=list(rows))


def _spread(frames: np.ndarray) -> np.ndarray:
    return frames[np.linspace(0, len(frames) - 1, CONTACT_COLUMNS).round().astype(int)]


def write_outputs(out: Path, report: dict[str, Any], sheet: Image.Image) -> None:
    """DIR/report.json and DIR/contact_sheet.png, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=2, allow_nan=False).encode() + b"\n")
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    atomic_write_bytes(out / "contact_sheet.png", png.getvalue())
