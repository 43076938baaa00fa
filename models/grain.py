"""A lamp's fixed grain: the footage's sensor noise, estimated from the footage and drawn as one
fixed pattern of white noise that the lamp adds to every frame it makes, as the camera did.

A decoder trained on many clips learns their mean, not any one clip's noise pattern, so its frames
are cleaner than the footage: a critic tells the simulator's frames with and without their grain
(std 1.2 of 255) apart with 0.98 accuracy at 128 px. The lamp puts the grain back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRAIN_SEED = 1969
"""Seed of every lamp's grain pattern (one camera per lamp; the pattern is the same every start)."""
MAX_GRAIN = 64.0
"""Largest grain std (0..255) a lamp may carry: beyond it the noise is the picture."""
GRAIN_FRAMES = 240
"""Frames of each sequence the estimate averages, spread over the sequence."""
MIN_GRAIN_FRAMES = 32
"""Fewest frames a sequence needs for an estimate: fewer do not average the moving wax away."""
HIGHPASS_GAIN = (8 / 9) ** 0.5
"""How much of white noise's std the 3x3 high-pass keeps: sqrt((1 - 1/9)^2 + 8 / 81)."""
OUTLIER_SPREAD = 4.0
"""High-passed values further than this many robust stds from the median are edges, not grain."""
QUANTIZATION_VARIANCE = 1 / 12
"""Variance (in levels^2) of rounding to whole levels, which the lamp's own uint8 frames add again."""


def grain_pattern(size: int, std: float, *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The lamp's grain (3,size,size) on the [0,1] pixel scale, white noise of `std` levels of 255,
    the same for every call with the same size."""
    generator = torch.Generator().manual_seed(GRAIN_SEED)
    noise = torch.randn((3, size, size), generator=generator) * (std / 255.0)
    return noise.to(device=device, dtype=dtype)


def estimate_grain(sequences: list[np.ndarray]) -> dict[str, float | int | list[float]]:
    """The fixed grain of uint8 footage sequences (T,S,S,3): `std` in levels of 255 (the median over
    sequences long enough to measure, 0 when none is), with each sequence's own figure."""
    per_sequence = [sequence_grain(s) for s in sequences if len(s) >= MIN_GRAIN_FRAMES]
    std = float(np.median(per_sequence)) if per_sequence else 0.0
    return {"std": round(std, 4), "sequences": len(per_sequence),
            "per_sequence": [round(v, 4) for v in per_sequence]}


@torch.no_grad()
def sequence_grain(frames: np.ndarray) -> float:
    """Std (levels of 255) of the pattern that stays put in one sequence (T,S,S,3): the time mean of
    each frame's 3x3 high-pass keeps the fixed grain and averages the moving wax away; its robust
    std (the lamp's static edges are few pixels) is corrected for the high-pass and for the rounding
    that the lamp's own frames add again."""
    picks = np.linspace(0, len(frames) - 1, min(len(frames), GRAIN_FRAMES)).round().astype(int)
    total = None
    for start in range(0, len(picks), 32):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[picks[start:start + 32]]))
        x = chunk.permute(0, 3, 1, 2).float()
        high = (x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)).sum(0)
        total = high if total is None else total + high
    spread = robust_std((total / len(picks)).flatten())
    return float(max(0.0, (spread / HIGHPASS_GAIN) ** 2 - QUANTIZATION_VARIANCE) ** 0.5)


def robust_std(values: torch.Tensor) -> float:
    """The std of the bulk of `values`: of those within OUTLIER_SPREAD robust stds (1.4826 median
    absolute deviations) of the median, so that a few edges do not count, whatever the bulk's shape
    (rounding makes it flat-topped, where the deviation alone overstates the std by a quarter)."""
    deviation = (values - values.median()).abs()
    limit = OUTLIER_SPREAD * 1.4826 * float(deviation.median())
    if limit <= 0:
        return 0.0
    inliers = values[deviation <= limit]
    return float(inliers.std()) if len(inliers) > 1 else 0.0
