"""The critics of `lavalamp eval`: small CNNs that learn to tell reference footage from a dream.

A classifier two-sample test. A small CNN learns to tell reference from generated: single frames
at CRITIC_SIZE px, single frames at SHARP_CRITIC_SIZE px when the lamp is that large (where blur
shows), then CLIP_FRAMES consecutive lamp-rate frames stacked on channels at CRITIC_SIZE px. Its
balanced accuracy on held-out time blocks is reported (0.5 = indistinguishable, 1 = always told
apart). Baselines run the same test between alternating time blocks of the reference (A vs B),
giving the accuracy a perfect lamp would get on this reference. Held-out examples are whole time
blocks (HELD_OUT_BLOCKS of CRITIC_BLOCKS per side), and training examples within half a block of a
held-out one are dropped (across sides too when both come from the reference), because
neighbouring frames are near-identical. `chance_standard_error` is the spread of the accuracy of a
coin-flipping critic on that many held-out examples; neighbouring examples are correlated, so the
real spread is larger. A short reference (a few hundred frames) gives few held-out examples and a
non-stationary lamp: read the generated accuracy against the baseline, not against 0.5 alone
(on the 64 px development clips, 300-step baselines ranged 0.25..0.57).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .evaluate import EvalConfig

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
MAX_CRITIC_SEEDS = 20
CRITIC_SEED_STRIDE = 1000
"""Critic k of a test is seeded with the test's seed + k * CRITIC_SEED_STRIDE (k = 0 is the old one)."""


def shrink_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 frames (T,S,S,3) -> float (T,3,s,s) area-shrunk to at most `size`."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x

def alternating_blocks(length: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of even and odd time blocks when 0..length-1 is cut into `blocks` equal blocks."""
    block = np.arange(length) * blocks // length
    return np.nonzero(block % 2 == 0)[0], np.nonzero(block % 2 == 1)[0]

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
    return shrink_frames(frames, size).round().to(torch.uint8)


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


def critics(generated: np.ndarray, clips: list[np.ndarray], step: int,
            config: EvalConfig) -> dict[str, Any]:
    """Frame and clip critics, generated vs reference clips and reference A vs B (see module docstring)."""
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
