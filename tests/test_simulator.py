"""The procedural lava lamp: deterministic, lit like a lamp, slow but never still, blobs rise and sink."""

import numpy as np
import pytest

from lavalamp.models.motion import mean_abs_diff, step_motion
from lavalamp.train.simulator import PALETTES, LavaLampSimulator, SimulatorConfig, simulate


def test_same_seed_same_frames_other_seed_other_frames():
    a = simulate(12, seed=5, size=64)
    assert np.array_equal(a, simulate(12, seed=5, size=64))
    assert mean_abs_diff(a[-1], simulate(12, seed=6, size=64)[-1]) > 2.0


@pytest.mark.parametrize("size", [64, 128])
def test_frames_are_square_uint8_rgb(size):
    frames = simulate(3, seed=0, size=size)
    assert frames.shape == (3, size, size, 3) and frames.dtype == np.uint8


def test_streaming_in_pieces_equals_one_call():
    sim = LavaLampSimulator(config=SimulatorConfig(palette="classic"), seed=9)
    pieces = np.concatenate([sim.frames(7), sim.frames(0), sim.frames(13)])
    assert np.array_equal(pieces, simulate(20, seed=9, palette="classic"))


def test_simulated_time_follows_the_declared_fps():
    for fps in (15.0, 30.0, 60.0):
        sim = LavaLampSimulator(config=SimulatorConfig(fps=fps, warmup_s=0.0), seed=0)
        sim.frames(int(fps))
        sim.skip(1.0)
        assert sim.time_s == pytest.approx(2.0) and sim.frame_index == int(fps) * 2


def nearest_colour_share(frame: np.ndarray, colours: dict[str, tuple]) -> dict[str, float]:
    """Share of pixels whose nearest palette colour (by direction, so shading does not matter) is each."""
    names = list(colours)
    ref = np.array([colours[n] for n in names], dtype=np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    px = frame.reshape(-1, 3).astype(np.float64) + 1.0
    px /= np.linalg.norm(px, axis=1, keepdims=True)
    nearest = np.argmax(px @ ref.T, axis=1)
    return {n: float(np.mean(nearest == i)) for i, n in enumerate(names)}


@pytest.mark.parametrize("name", sorted(PALETTES))
def test_the_lamp_is_lit_with_wax_in_liquid(name):
    frame = simulate(60, seed=2, size=64, palette=name)[-1]
    pal = PALETTES[name]
    centre = frame[10:56, 20:44].astype(np.float64)
    corners = np.concatenate([frame[:8, :8], frame[:8, -8:], frame[-8:, :8], frame[-8:, -8:]])
    assert frame.std() > 20, "the frame is nearly one colour"
    if max(pal.background_top) < 50:  # a lamp in the dark: the glass glows, the room is dark
        assert centre.mean() > corners.mean() + 60
    else:  # a lamp in front of a wall: the glass is a different colour from the wall
        assert mean_abs_diff(centre.mean(axis=(0, 1)), corners.reshape(-1, 3).mean(axis=0)) > 40
    share = nearest_colour_share(frame[10:56, 16:48], {
        "wax": pal.wax_cool, "hot_wax": pal.wax_hot,
        "liquid": pal.liquid_top, "lit_liquid": pal.liquid_bottom})
    assert share["wax"] + share["hot_wax"] > 0.05, share
    assert share["liquid"] + share["lit_liquid"] > 0.3, share


def test_motion_is_slow_like_a_real_lamp_but_not_still():
    """Real footage at 64 px: consecutive frames differ by 0.25-1.1/255 on average (codec noise
    included) and frames 1 s apart by 4-15/255. A noiseless lamp sits at or under the low end."""
    frames = simulate(240, seed=4, size=64, fps=30.0)
    consecutive = step_motion(frames).mean()
    one_second = np.mean([mean_abs_diff(frames[i], frames[i + 30]) for i in range(0, 210, 10)])
    assert 0.04 < consecutive < 1.5, consecutive
    assert 1.0 < one_second < 20.0, one_second


def test_skipping_ahead_lands_on_the_same_frame_as_rendering_through():
    rendered = LavaLampSimulator(seed=12)
    rendered.frames(44)
    skipped = LavaLampSimulator(seed=12)
    skipped.skip(44 / 30)
    assert skipped.frame_index == 44
    assert np.array_equal(rendered.frames(1), skipped.frames(1))


@pytest.mark.slow
def test_a_long_run_never_freezes_and_never_repeats():
    sim = LavaLampSimulator(config=SimulatorConfig(frame_size=64), seed=11)
    samples = []
    for _ in range(100):  # 100 s, one frame a second
        sim.skip(29 / 30)
        samples.append(sim.frames(1)[0])
    samples = np.stack(samples)
    per_5s = [mean_abs_diff(samples[i], samples[i + 5]) for i in range(len(samples) - 5)]
    assert min(per_5s) > 1.0, "the lamp froze for 5 s"
    flat = samples.reshape(len(samples), -1).astype(np.float64)
    squares = (flat ** 2).sum(axis=1)
    rms = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0) / flat.shape[1])
    far_apart = np.abs(np.arange(len(samples))[:, None] - np.arange(len(samples))[None, :]) >= 10
    assert rms[far_apart].min() > 2.0, "two frames at least 10 s apart look the same"


@pytest.mark.slow
def test_blobs_rise_from_the_bottom_and_sink_from_the_top():
    sim = LavaLampSimulator(config=SimulatorConfig(frame_size=64), seed=3)
    rising_low, sinking_high = 0, 0
    for _ in range(90):  # 90 s of lamp time, checked every second
        sim.skip(1.0)
        b = sim.blobs
        rising_low += int(np.sum((b.vy > 0.01) & (b.y < 0.5)))
        sinking_high += int(np.sum((b.vy < -0.01) & (b.y > 0.5)))
    assert rising_low > 10 and sinking_high > 10, (rising_low, sinking_high)


def test_wax_pixels_move_up_and_down_in_the_picture():
    """Seen from outside: the centre of the bright wax in the upper half of the glass moves both ways."""
    sim = LavaLampSimulator(config=SimulatorConfig(palette="classic"), seed=8)
    frames = []
    for _ in range(60):  # 60 s, one frame a second
        sim.skip(29 / 30)
        frames.append(sim.frames(1)[0])
    frames = np.stack(frames)
    upper = frames[6:32, 16:48].astype(np.float64)
    wax = (upper[..., 0] > 200) & (upper[..., 2] < 150)
    rows = np.arange(upper.shape[1])[None, :, None]
    centroid = (wax * rows).sum(axis=(1, 2)) / np.maximum(wax.sum(axis=(1, 2)), 1)
    steps = np.diff(centroid[wax.sum(axis=(1, 2)) > 10])
    assert (steps > 0.3).sum() >= 3 and (steps < -0.3).sum() >= 3, steps


@pytest.mark.parametrize("bad", [dict(frame_size=100), dict(fps=0.0), dict(palette="plaid"),
                                 dict(n_blobs=0), dict(n_blobs=20, max_blobs=10), dict(speed=0.0)])
def test_bad_config_is_refused_with_the_field_named(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        SimulatorConfig(**bad)


def test_palette_is_chosen_by_seed_unless_given():
    cold = SimulatorConfig(warmup_s=0.0)
    chosen = {LavaLampSimulator(config=cold, seed=s).palette_name for s in range(20)}
    assert chosen == set(PALETTES)
    assert LavaLampSimulator(config=SimulatorConfig(palette="sunset"), seed=1).palette_name == "sunset"
