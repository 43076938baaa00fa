"""The lamp's fixed grain: estimated from footage, stored in the lamp, added to every frame."""

import numpy as np
import pytest
import torch

from lavalamp.models.checkpoint import load_lamp, save_lamp
from lavalamp.models.dream import Dream
from lavalamp.models.grain import GRAIN_SEED, estimate_grain, grain_pattern, sequence_grain

from .fakes import make_lamp


def footage(*, frames=120, size=64, grain=0.0, noise=0.0, seed=0):
    """Moving soft blobs on a vertical gradient, with a fixed grain and fresh per-frame noise,
    rounded to uint8 as a camera's frames are."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    background = np.stack([60 + 80 * y, 20 + 30 * y, 90 - 40 * y], axis=-1)
    fixed = rng.normal(0, grain, (size, size, 3))
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        cy, cx = 0.5 + 0.35 * np.sin(t / 9), 0.5 + 0.2 * np.cos(t / 13)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.01)[..., None] * np.array([150, 40, -50])
        frame = background + blob + fixed + rng.normal(0, noise, (size, size, 3))
        out[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return out


@pytest.mark.parametrize("grain", [0.6, 1.2, 3.0])
def test_the_estimate_finds_the_fixed_grain_under_moving_wax(grain):
    assert sequence_grain(footage(grain=grain)) == pytest.approx(grain, rel=0.12)


def test_clean_footage_and_fresh_noise_are_not_called_grain():
    assert sequence_grain(footage(grain=0.0)) < 0.15
    # noise drawn anew every frame is not a fixed pattern: it averages away over the frames
    assert sequence_grain(footage(grain=0.0, noise=2.0)) < 0.4


def test_the_estimate_is_the_median_over_long_enough_sequences():
    result = estimate_grain([footage(grain=1.0), footage(grain=2.0, seed=1),
                             footage(grain=1.5, seed=2), footage(frames=8, grain=30.0)])
    assert result["sequences"] == 3 and len(result["per_sequence"]) == 3
    assert result["std"] == pytest.approx(1.5, rel=0.12)
    assert estimate_grain([footage(frames=8, grain=5.0)]) == {"std": 0.0, "sequences": 0,
                                                              "per_sequence": []}


def test_the_pattern_is_fixed_white_noise_of_the_stated_std():
    a, b = grain_pattern(128, 2.0), grain_pattern(128, 2.0)
    assert a.shape == (3, 128, 128) and torch.equal(a, b)
    assert float(a.std() * 255) == pytest.approx(2.0, rel=0.03)
    neighbours = torch.corrcoef(torch.stack([a[:, :, 1:].flatten(), a[:, :, :-1].flatten()]))[0, 1]
    assert abs(float(neighbours)) < 0.03
    torch.manual_seed(5)
    assert torch.equal(grain_pattern(128, 2.0), a) and GRAIN_SEED  # the global seed plays no part


def test_a_lamp_adds_its_grain_to_every_frame_and_keeps_it_through_a_save(tmp_path):
    clean, grainy = make_lamp(upsample_to=128), make_lamp(upsample_to=128)
    grainy.grain = 2.5
    save_lamp(grainy, tmp_path / "grainy.safetensors")
    back = load_lamp(tmp_path / "grainy.safetensors")
    assert back.grain == 2.5 and load_lamp(_saved(clean, tmp_path)).grain == 0.0
    z = torch.randn(4, clean.latent_size)
    with torch.inference_mode():
        difference = back.decode(z) - clean.decode(z)
        assert torch.equal(back.decode_base(z), clean.decode_base(z))  # the decoder is untouched
    assert torch.allclose(difference, difference[:1].expand_as(difference), atol=1e-6)  # fixed
    assert float(difference.std() * 255) == pytest.approx(2.5, rel=0.05)
    frames = Dream(back, seed=3).decode(z)
    assert frames.dtype == np.uint8 and frames.shape == (4, 128, 128, 3)


def test_the_grain_follows_the_lamp_to_another_dtype():
    lamp = make_lamp()
    lamp.grain = 1.0
    with torch.inference_mode():
        first = lamp.decode(torch.zeros(1, lamp.latent_size))
        lamp.decoder.double()
        second = lamp.decode(torch.zeros(1, lamp.latent_size, dtype=torch.float64))
    assert second.dtype == torch.float64 and torch.allclose(first.double(), second, atol=1e-5)


def _saved(lamp, folder):
    path = folder / "clean.safetensors"
    save_lamp(lamp, path)
    return path


def test_a_new_grain_std_is_drawn_anew_even_after_decoding_with_the_old_one():
    lamp = make_lamp()
    z = torch.zeros(1, lamp.latent_size)
    with torch.inference_mode():
        clean = lamp.decode(z)
        lamp.grain = 1.0
        weak = lamp.decode(z) - clean
        lamp.grain = 4.0
        strong = lamp.decode(z) - clean
    assert float(strong.std() / weak.std()) == pytest.approx(4.0, rel=0.01)
