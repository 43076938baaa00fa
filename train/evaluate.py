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
  alternating time blocks of the reference as a baseline.
- `colour`: mean RGB of each side and their distance; total-variation distance (0..1) between joint
  RGB histograms (HISTOGRAM_BINS per channel); the same histogram distance between alternating
  time blocks of the reference as a baseline.
- `critic`: a classifier two-sample test. A small CNN learns to tell reference from generated
  (single frames at CRITIC_SIZE px, single frames at SHARP_CRITIC_SIZE px when the lamp is that
large, where blur shows, then CLIP_FRAMES consecutive lamp-rate frames stacked on channels at
CRITIC_SIZE px); its balanced
  accuracy on held-out time blocks is reported (0.5 = indistinguishable, 1 = always told apart).
  Baselines run the same test between alternating time blocks of the reference (A vs B), giving
  the accuracy a perfect lamp would get on this reference. Held-out examples are whole time blocks
  (HELD_OUT_BLOCKS of CRITIC_BLOCKS per side), and training examples within half a block of a
  held-out one are dropped (across sides too when both come from the reference), because
  neighbouring frames are near-identical. `chance_standard_error` is the spread of the accuracy of a
  coin-flipping critic on that many held-out examples; neighbouring examples are correlated, so the
  real spread is larger. A short reference (a few hundred frames) gives few held-out examples and a
  non-stationary lamp: read the generated accuracy against the baseline, not against 0.5 alone
  (on the 64 px development clips, 300-step baselines ranged 0.25..0.57).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lavalamp.models import EXIT_USAGE
from lavalamp.models.atomic import atomic_write_bytes, check_output_folder
from lavalamp.models.checkpoint import Lamp, LampLoadError, load_lamp
from lavalamp.models.dream import Dream
from lavalamp.models.latent import LatentStats, latent_stats
from lavalamp.models.limits import TEMPERATURE_RANGE, check_temperature
from lavalamp.models.motion import step_motion

from .footage import FootageError, open_source, resize_frame
from .losses import edge_energy
from .runlog import contact_sheet

log = logging.getLogger(__name__)

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
CLIP_FRAMES = 4
"""Consecutive lamp-rate frames stacked on channels for the clip critic."""
CRITIC_SIZE = 64
"""Critic inputs larger than this are area-shrunk to it."""
SHARP_CRITIC_SIZE = 128
"""Side of the second frame critic (for lamps of at least this size): at 64 px blur is half hidden."""
CRITIC_BLOCKS = 10
"""Each side is cut into this many time blocks; blocks HELD_OUT_BLOCKS are the critic's test set."""
HELD_OUT_BLOCKS = (4, 9)
BASELINE_BLOCKS = 8
"""The reference baseline splits the reference into this many alternating blocks (A, B, A, ...)."""
CONTACT_COLUMNS = 8
"""Frames per row of the contact sheet."""
MAX_CRITIC_SEEDS = 20
CRITIC_SEED_STRIDE = 1000
"""Critic k of a test is seeded with the test's seed + k * CRITIC_SEED_STRIDE (k = 0 is the old one)."""


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


def _shrink(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 frames (T,S,S,3) -> float (T,3,s,s) area-shrunk to at most `size`."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x


def nearest_far_rms(frames: np.ndarray, min_gap: int) -> np.ndarray | None:
    """Per frame, the RMS distance to its nearest frame at least `min_gap` steps away (None if none)."""
    if len(frames) <= min_gap:
        return None
    x = _shrink(frames, REPETITION_SIZE).flatten(1).double()
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
        ref = _shrink(clip, REPETITION_SIZE)
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


def sharpness(generated: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Edge energy of both, their ratio, and the ratio between the reference's alternating blocks."""
    gen, ref = frame_edge_energy(generated), frame_edge_energy(reference)
    a, b = alternating_blocks(len(reference), BASELINE_BLOCKS)
    return {"generated_edge_energy": gen, "reference_edge_energy": ref,
            "ratio": gen / ref if ref > 0 else None,
            "reference_baseline_ratio": frame_edge_energy(reference[a]) / max(
                frame_edge_energy(reference[b]), 1e-9)}


def alternating_blocks(length: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of even and odd time blocks when 0..length-1 is cut into `blocks` equal blocks."""
    block = np.arange(length) * blocks // length
    return np.nonzero(block % 2 == 0)[0], np.nonzero(block % 2 == 1)[0]


# ---------------------------------------------------------------- critics


class Examples:
    """Critic examples from one frame set: example j stacks frames[starts[j] + offsets] on channels."""

    def __init__(self, frames: torch.Tensor, starts: np.ndarray, offsets: np.ndarray) -> None:
        self.frames = frames  # (T,3,s,s) uint8
        self.starts = np.asarray(starts)
        self.offsets = np.asarray(offsets)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def channels(self) -> int:
        return 3 * len(self.offsets)

    def batch(self, picks: np.ndarray) -> torch.Tensor:
        """Examples `picks` as floats (B, 3*L, s, s) in -1..1."""
        index = torch.from_numpy(self.starts[picks][:, None] + self.offsets[None, :])
        return self.frames[index].flatten(1, 2).float() / 127.5 - 1.0

    def subset(self, keep: np.ndarray) -> "Examples":
        return Examples(self.frames, self.starts[keep], self.offsets)

    def held_out(self) -> np.ndarray:
        """Mask of the held-out examples: time blocks HELD_OUT_BLOCKS of CRITIC_BLOCKS equal blocks."""
        block = np.arange(len(self)) * CRITIC_BLOCKS // len(self)
        return np.isin(block, HELD_OUT_BLOCKS)

    def near(self, times: np.ndarray) -> np.ndarray:
        """Mask of examples starting within a guard (half a critic block plus the clip span) of `times`."""
        guard = len(self.frames) // (2 * CRITIC_BLOCKS) + int(self.offsets[-1]) + 1
        if len(times) == 0:
            return np.zeros(len(self), bool)
        times = np.sort(times)
        right = np.clip(np.searchsorted(times, self.starts), 0, len(times) - 1)
        left = np.clip(right - 1, 0, len(times) - 1)
        distance = np.minimum(np.abs(self.starts - times[left]), np.abs(self.starts - times[right]))
        return distance <= guard


def held_out_split(real: Examples, fake: Examples) -> tuple[Examples, Examples, Examples, Examples]:
    """(real train, real test, fake train, fake test), split by time blocks, not random examples.

    Neighbouring frames are near-identical, so training examples near a held-out one are dropped;
    when both sides come from one clip, that holds across sides too.
    """
    real_test, fake_test = real.held_out(), fake.held_out()
    real_train = ~real.near(real.starts[real_test])
    fake_train = ~fake.near(fake.starts[fake_test])
    if real.frames is fake.frames:
        real_train &= ~real.near(fake.starts[fake_test])
        fake_train &= ~fake.near(real.starts[real_test])
    return (real.subset(real_train), real.subset(real_test),
            fake.subset(fake_train), fake.subset(fake_test))


def critic_frames(frames: np.ndarray, size: int = CRITIC_SIZE) -> torch.Tensor:
    """uint8 frames (T,S,S,3) -> uint8 tensor (T,3,s,s), area-shrunk to at most `size`."""
    return _shrink(frames, size).round().to(torch.uint8)


class Critic(nn.Module):
    """A small strided CNN scoring an example: > 0 reference, < 0 generated."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in (16, 32, 64, 64):
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,s,s) -> logits (B,)."""
        return self.out(self.features(x).mean(dim=(2, 3))).squeeze(1)


def critic_test(real: Examples, fake: Examples, *, steps: int, batch: int, seed: int) -> dict[str, Any]:
    """Train a critic on the training blocks of both sides; balanced accuracy on the held-out blocks."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    real_train, real_test, fake_train, fake_test = held_out_split(real, fake)
    critic = Critic(real.channels)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    half = max(1, batch // 2)
    target = torch.cat([torch.ones(half), torch.zeros(half)])
    for _ in range(steps):
        x = torch.cat([real_train.batch(rng.integers(len(real_train), size=half)),
                       fake_train.batch(rng.integers(len(fake_train), size=half))])
        loss = F.binary_cross_entropy_with_logits(critic(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    real_hits = float((_scores(critic, real_test) > 0).float().mean())
    fake_hits = float((_scores(critic, fake_test) < 0).float().mean())
    n_real, n_fake = len(real_test), len(fake_test)
    return {"accuracy": (real_hits + fake_hits) / 2,
            "chance_standard_error": 0.25 * math.sqrt(1 / n_real + 1 / n_fake),
            "reference_accuracy": real_hits,
            "generated_accuracy": fake_hits, "train_examples": [len(real_train), len(fake_train)],
            "test_examples": [len(real_test), len(fake_test)], "steps": steps}


@torch.inference_mode()
def _scores(critic: Critic, examples: Examples) -> torch.Tensor:
    picks = np.arange(len(examples))
    return torch.cat([critic(examples.batch(p)) for p in np.array_split(picks, max(1, len(picks) // 256))])


def clip_starts(lengths: list[int], span: int) -> np.ndarray:
    """Indices into clips of `lengths` frames end to end where `span` frames lie within one clip."""
    ends = np.cumsum(lengths)
    return np.concatenate([np.arange(end - n, max(end - n, end - span + 1))
                           for n, end in zip(lengths, ends)]).astype(int)


def critics(generated: np.ndarray, reference: np.ndarray | list[np.ndarray], step: int,
            config: EvalConfig) -> dict[str, Any]:
    """Frame and clip critics, generated vs reference and reference A vs B (see module docstring)."""
    clips = as_clips(reference)
    reference = np.concatenate(clips)
    lengths = [len(c) for c in clips]
    pairs = critic_pairs(critic_frames(generated), critic_frames(reference), step, lengths)
    if generated.shape[1] >= SHARP_CRITIC_SIZE:
        sharp = critic_pairs(critic_frames(generated, SHARP_CRITIC_SIZE),
                             critic_frames(reference, SHARP_CRITIC_SIZE), step, lengths)
        pairs[f"frames_{SHARP_CRITIC_SIZE}"] = sharp["frames"]
        pairs[f"reference_baseline_frames_{SHARP_CRITIC_SIZE}"] = sharp["reference_baseline_frames"]
    return {name: repeated_critic_test(real, fake, config, seed=config.seed + i)
            for i, (name, (real, fake)) in enumerate(pairs.items())}


def critic_pairs(gen: torch.Tensor, ref: torch.Tensor, step: int,
                 lengths: list[int] | None = None) -> dict[str, tuple[Examples, Examples]]:
    """The (real, fake) example sets of each critic test, from frames (T,...) of each side; the
    reference is clips of `lengths` frames end to end (one clip when None)."""
    one, clip = np.zeros(1, int), np.arange(CLIP_FRAMES)
    ref_clip_starts = clip_starts(lengths or [len(ref)], step * (CLIP_FRAMES - 1) + 1)
    a, b = alternating_blocks(len(ref_clip_starts), BASELINE_BLOCKS)
    fa, fb = alternating_blocks(len(ref), BASELINE_BLOCKS)
    return {
        "frames": (Examples(ref, np.arange(len(ref)), one), Examples(gen, np.arange(len(gen)), one)),
        "clips": (Examples(ref, ref_clip_starts, clip * step),
                  Examples(gen, np.arange(max(0, len(gen) - CLIP_FRAMES + 1)), clip)),
        "reference_baseline_frames": (Examples(ref, fa, one), Examples(ref, fb, one)),
        "reference_baseline_clips": (Examples(ref, ref_clip_starts[a], clip * step),
                                     Examples(ref, ref_clip_starts[b], clip * step)),
    }


@functools.lru_cache(maxsize=64)
def minimum_lengths(step: int) -> tuple[int, int]:
    """(generated frames, reference frames) every critic test needs at least, at this lamp-rate
    step: the shortest lengths for which every test keeps training and held-out examples on both
    sides after the time-block split (found by trying, so the documented minimum is the real one)."""
    def usable(gen: int, ref: int) -> bool:
        placeholder = lambda n: torch.empty((n, 0))  # noqa: E731 - only lengths matter here
        for real, fake in critic_pairs(placeholder(gen), placeholder(ref), step).values():
            if not (len(real) and len(fake)) or not all(map(len, held_out_split(real, fake))):
                return False
        return True

    plenty = 4 * CRITIC_BLOCKS * (step * CLIP_FRAMES + BASELINE_BLOCKS)
    gen = next(n for n in range(2 * CLIP_FRAMES, plenty) if usable(n, plenty))
    ref = next(n for n in range(step * (CLIP_FRAMES - 1) + 2 * BASELINE_BLOCKS, plenty)
               if usable(plenty, n))
    return gen, ref


def repeated_critic_test(real: Examples, fake: Examples, config: EvalConfig, *, seed: int) -> dict[str, Any]:
    """`config.critic_seeds` critic tests from different seeds: mean accuracies, each run's, the spread."""
    runs = [critic_test(real, fake, steps=config.critic_steps, batch=config.critic_batch,
                        seed=seed + k * CRITIC_SEED_STRIDE) for k in range(config.critic_seeds)]
    result = dict(runs[0])
    for key in ("accuracy", "reference_accuracy", "generated_accuracy"):
        result[key] = float(np.mean([r[key] for r in runs]))
    result["accuracy_runs"] = [r["accuracy"] for r in runs]
    result["accuracy_spread"] = float(np.std(result["accuracy_runs"]))
    return result


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
            "sharpness": sharpness(generated, joined),
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


def summary(report: dict[str, Any]) -> str:
    """A few readable lines of the report."""
    m, fz, rep, col, cr, sh = (report[k] for k in ("motion", "frozen", "repetition", "colour",
                                                   "critic", "sharpness"))
    sharp = f"frames_{SHARP_CRITIC_SIZE}"
    sharp_line = (f", frames at {SHARP_CRITIC_SIZE} px {_acc(cr[sharp])} (reference A/B "
                  f"{_acc(cr['reference_baseline_' + sharp])})") if sharp in cr else ""
    gen_rep, ref_rep = rep["generated"], rep["reference"]
    return "\n".join([
        f"lamp {report['model']['name']}: {report['generation']['frames']} frames "
        f"({report['generation']['lamp_seconds']:.0f} lamp-seconds at {report['model']['lamp_fps']:.3g} fps) "
        f"vs {report['reference']['lamp_rate_frames']} lamp-rate reference frames",
        f"motion per step: generated {m['generated_mean_abs_diff']:.2f}, reference "
        f"{m['reference_mean_abs_diff']:.2f}, ratio {_fmt(m['ratio'])}",
        f"frozen {fz['window_seconds']:g} s windows: generated {_pct(fz['generated_share'])}, "
        f"reference {_pct(fz['reference_share'])}",
        f"near-duplicates >= {rep['min_gap_steps']} steps apart: generated "
        f"{_pct(gen_rep and gen_rep['near_duplicate_share'])}, reference "
        f"{_pct(ref_rep and ref_rep['near_duplicate_share'])}",
        f"colour: mean RGB distance {col['mean_rgb_distance']:.1f}, histogram distance "
        f"{col['histogram_distance']:.2f} (reference A/B {col['reference_baseline_histogram_distance']:.2f})",
        f"sharpness (edge energy, generated / reference): {_fmt(sh['ratio'])} (reference A/B "
        f"{_fmt(sh['reference_baseline_ratio'])})",
        f"critic accuracy (0.5 = indistinguishable): frames {_acc(cr['frames'])} (reference A/B "
        f"{_acc(cr['reference_baseline_frames'])}){sharp_line}, clips {_acc(cr['clips'])} "
        f"(reference A/B {_acc(cr['reference_baseline_clips'])})",
        f"latent drift: max distance from reference {_fmt(report['latent_drift']['max_distance_from_reference'])}, "
        f"last window {_fmt(report['latent_drift']['last_distance_from_reference'])}",
    ])


def _acc(test: dict[str, Any]) -> str:
    """A critic's accuracy, with the spread across seeds when there were several."""
    spread = f" +- {test['accuracy_spread']:.2f}" if len(test["accuracy_runs"]) > 1 else ""
    return f"{test['accuracy']:.2f}{spread}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- command


def add_eval(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp eval`."""
    p = subparsers.add_parser("eval", help="compare a lamp's dream with reference footage",
                              description="Dream frames with a lamp and compare them with reference "
                                          "clips; writes DIR/report.json and DIR/contact_sheet.png.")
    defaults = EvalConfig()
    p.add_argument("--model", required=True, metavar="PATH", help="lamp checkpoint (.safetensors)")
    p.add_argument("--reference", required=True, nargs="+", metavar="CLIP",
                   help="reference footage: .npz with frames and fps (or a video / image folder); "
                        "several clips of one frame rate are one reference of many lamp states")
    p.add_argument("--frames", type=int, default=defaults.frames, metavar="N", help="frames to generate")
    p.add_argument("--skip", type=int, default=defaults.skip, metavar="S",
                   help="dream steps skipped (not decoded) before the compared frames")
    p.add_argument("--seed", type=int, default=defaults.seed, metavar="K", help="dream and critic seed")
    p.add_argument("--temperature", type=float, default=defaults.temperature, metavar="T",
                   help="sampling temperature relative to the lamp's calibrated one, "
                        f"{TEMPERATURE_RANGE[0]:g}..{TEMPERATURE_RANGE[1]:g} (default 1)")
    p.add_argument("--critic-steps", type=int, default=defaults.critic_steps, metavar="N",
                   help="training steps of each critic")
    p.add_argument("--critic-seeds", type=int, default=defaults.critic_seeds, metavar="N",
                   help="critics per test, each from its own seed: mean accuracy and spread "
                        f"(1..{MAX_CRITIC_SEEDS}; the critics take N times as long)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.json and contact_sheet.png")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """The `lavalamp eval` command: exit 0, or 2 with one line on stderr for bad input."""
    out = Path(args.out)
    try:
        config = EvalConfig(frames=args.frames, skip=args.skip, seed=args.seed,
                            temperature=args.temperature, critic_steps=args.critic_steps,
                            critic_seeds=args.critic_seeds)
        check_output_folder(out, "--out")
    except ValueError as exc:
        print(f"lavalamp eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report, sheet = evaluate(args.model, args.reference, config)
    except (LampLoadError, FootageError) as exc:
        print(f"lavalamp eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    write_outputs(out, report, sheet)
    print(summary(report))
    print(f"wrote {out / 'report.json'} and {out / 'contact_sheet.png'} in {report['seconds']:.0f} s")
    return 0
