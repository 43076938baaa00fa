"""The colour transform: identity by default, luminance kept by hue turns, grey at saturation 0."""

import numpy as np
import pytest

from lavalamp.daemon.colour import LUMA, ColourTransform


def frame(size=256, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_the_default_transform_leaves_the_frame_alone():
    f = frame()
    assert ColourTransform()(f) is f
    assert ColourTransform(hue_degrees=360.0)(f) is f


def test_hue_turns_red_toward_green_and_blue_and_back():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    third = ColourTransform(hue_degrees=120)(red)[0, 0].astype(int)
    assert third[1] > third[0] and third[1] > third[2]  # red turned a third: green leads
    minus = ColourTransform(hue_degrees=-120)(red)[0, 0].astype(int)
    assert minus[2] > minus[0] and minus[2] > minus[1]  # the other way: blue leads
    f = frame(64).astype(np.float32) * 0.5 + 64  # mid-tones: no clipping on the way
    there = ColourTransform(hue_degrees=70)(f.astype(np.uint8))
    back = ColourTransform(hue_degrees=-70)(there)
    assert np.abs(back.astype(int) - f.astype(np.uint8).astype(int)).mean() < 2.0


@pytest.mark.parametrize("hue", [30, 90, 180])
def test_a_hue_turn_keeps_the_luminance(hue):
    f = (frame(64).astype(np.float32) * 0.25 + 96).astype(np.uint8)  # no clipping at 255 or 0
    turned = ColourTransform(hue_degrees=hue)(f)
    assert turned.shape == f.shape and turned.dtype == np.uint8
    assert np.abs(turned @ LUMA - f @ LUMA).max() < 1.5
    assert np.abs(turned.astype(int) - f.astype(int)).mean() > 3  # yet the colours changed


def test_saturation_zero_is_grey_and_two_is_more_vivid():
    f = frame(32)
    grey = ColourTransform(saturation=0.0)(f).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 1
    mid = (frame(32, seed=1).astype(np.float32) * 0.3 + 90).astype(np.uint8)
    vivid = ColourTransform(saturation=2.0)(mid).astype(int)
    assert vivid.std(axis=2).mean() > 1.5 * mid.astype(int).std(axis=2).mean()
