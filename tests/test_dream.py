"""The dream's frame helpers: non-finite pixels caught and counted, floats to rounded uint8 frames,
the motion between frames."""

import numpy as np
import pytest
import torch

from lavalamp.models.dream import NonFiniteFrames, check_frames, frames_to_uint8
from lavalamp.models.motion import MOTION_CHUNK, mean_abs_diff, step_motion


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_one_non_finite_pixel_is_caught_and_counted(bad):
    frames = torch.rand(4, 3, 32, 32)
    frames[2, 1, 5, 7] = bad
    with pytest.raises(NonFiniteFrames, match="^1 non-finite pixel values"):
        check_frames(frames)


def test_finite_frames_pass_even_when_their_sum_overflows():
    frames = torch.full((2, 3, 16, 16), 3e38)  # finite, but their float32 sum is inf
    assert check_frames(frames) is frames
    assert frames_to_uint8(frames).max() == 255 and frames_to_uint8(-frames).max() == 0


def test_frames_become_rounded_uint8_in_channels_last_order():
    frames = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 0.999, 1.2, -0.3]).reshape(1, 1, 1, 7)
    frames = frames.expand(1, 3, 1, 7).clone()
    frames[0, 2] = 1.0
    out = frames_to_uint8(frames)
    assert out.shape == (1, 1, 7, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 1, 2, 255, 255, 0] and (out[..., 2] == 255).all()


def test_frames_come_out_contiguous_with_each_pixel_where_a_permute_puts_it():
    frames = torch.rand(3, 3, 8, 5) * 1.4 - 0.2
    out = frames_to_uint8(frames)
    expected = frames.mul(255).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, expected)


def test_step_motion_is_the_mean_absolute_change_of_each_step_exactly():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (7 + 2 * MOTION_CHUNK, 9, 11, 3), dtype=np.uint8)
    frames[3] = frames[2]  # a step with no change
    frames[5], frames[6] = 0, 255  # the largest change, both ways round
    wide = frames.astype(np.int16)
    per_step = [float(np.abs(wide[i + 1] - wide[i]).mean()) for i in range(len(frames) - 1)]
    assert step_motion(frames).tolist() == per_step
    assert per_step[2] == 0.0 and per_step[5] == 255.0
    assert step_motion(frames[1:], previous=frames[0]).tolist() == per_step
    assert step_motion(frames[:1]).shape == (0,) and step_motion(frames[:1], frames[0]).tolist() == [0.0]


def test_mean_abs_diff_is_the_same_measure_for_frames_stacks_and_means():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 256, (2, 5, 6, 7, 3), dtype=np.uint8)
    assert mean_abs_diff(a, b) == float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    assert mean_abs_diff(a[0], b[0]) == step_motion(np.stack([b[0], a[0]]))[0]
    assert mean_abs_diff(np.array([10.7, 3.2]), np.array([2.0, 9.9])) == 7.0  # others cut to int16: 8, 6
