"""The dream's frame helpers: non-finite pixels caught and counted, floats to rounded uint8 frames."""

import numpy as np
import pytest
import torch

from lavalamp.models.dream import NonFiniteFrames, check_frames, frames_to_uint8


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
