"""Hostile input, class 6: footage and eval. Every documented minimum is the real one: footage
too small, empty or flat is refused before training (not trained into a flat grey lamp), and eval
refuses a reference or a --frames too short for its critics with the number it needs, before any
work, instead of crashing half-way."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavalamp.daemon.cli import main
from lavalamp.train.critic import minimum_lengths
from lavalamp.train.evaluate import EvalConfig
from lavalamp.train.footage import FootageConfig, FootageError, load_footage
from lavalamp.train.simulator import LavaLampSimulator, SimulatorConfig

from .fakes import save_fake_lamp


def clip(tmp_path, frames: np.ndarray, name: str = "clip.npz") -> str:
    path = tmp_path / name
    np.savez(path, frames=frames, fps=30.0)
    return str(path)


def moving(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("height, width", [(64, 0), (0, 64), (0, 0), (1, 1), (8, 64), (64, 15)])
def test_frames_too_small_are_refused(tmp_path, height, width):
    path = clip(tmp_path, moving(40, height, width))
    with pytest.raises(FootageError, match=f"frames of {width}x{height} pixels.*at least 16x16"):
        load_footage([path])


def test_a_crop_too_small_is_refused(tmp_path):
    path = clip(tmp_path, moving(40))
    with pytest.raises(FootageError, match="frames of 4x64 pixels after cropping"):
        load_footage([path], FootageConfig(crop=(0, 0, 4, 64)))


def test_an_image_folder_of_tiny_images_is_refused(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(moving(20, 8, 8)):
        Image.fromarray(frame).save(folder / f"{i}.png")
    with pytest.raises(FootageError, match="frames of 8x8 pixels"):
        load_footage([str(folder)])


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_footage_is_refused(tmp_path, value):
    frames = np.full((40, 64, 64, 3), value, np.uint8)
    with pytest.raises(FootageError, match="a single flat colour throughout"):
        load_footage([clip(tmp_path, frames)])


def test_training_on_zero_width_footage_exits_2_and_writes_nothing(tmp_path, capsys):
    path = clip(tmp_path, moving(60, 64, 0))
    run_dir = tmp_path / "run"
    code = main(["train", path, "--steps", "2", "--run-dir", str(run_dir), "--no-progress"])
    assert code == 2 and "frames of 0x64 pixels" in capsys.readouterr().err
    assert not (run_dir / "lamp.safetensors").exists()


def test_ordinary_footage_still_loads(tmp_path):
    footage = load_footage([clip(tmp_path, moving(40, 48, 40))])
    assert footage.sequences[0].shape == (40, 64, 64, 3)


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def reference(tmp_path, count: int) -> str:
    frames = LavaLampSimulator(config=SimulatorConfig(frame_size=64, fps=30.0), seed=1).frames(count)
    return clip(tmp_path, frames, "reference.npz")


def evaluate(lamp_path, ref, tmp_path, frames: int) -> int:
    return main(["eval", "--model", lamp_path, "--reference", ref, "--frames", str(frames),
                 "--critic-steps", "2", "--out", str(tmp_path / "out")])


def test_the_minimums_grow_with_the_lamp_rate_step():
    gens, refs = zip(*(minimum_lengths(step) for step in (1, 2, 6, 10)))
    assert len(set(gens)) == 1 and list(refs) == sorted(refs) and refs[0] < refs[-1]


@pytest.mark.parametrize("short_by", [1, 40, 100])
def test_a_reference_shorter_than_the_critics_need_is_refused_with_the_number(tmp_path, lamp_path,
                                                                             short_by, capsys):
    needed = minimum_lengths(6)[1]  # the fake lamp: 5 lamp fps, the reference 30 fps
    ref = reference(tmp_path, needed - short_by)
    assert evaluate(lamp_path, ref, tmp_path, frames=minimum_lengths(1)[0]) == 2
    err = capsys.readouterr().err
    assert f"at least {needed}" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_reference_of_exactly_the_minimum_and_the_minimum_frames_are_evaluated(tmp_path, lamp_path):
    ref = reference(tmp_path, minimum_lengths(6)[1])
    assert evaluate(lamp_path, ref, tmp_path, frames=minimum_lengths(1)[0]) == 0
    assert (tmp_path / "out" / "report.json").exists()


def test_frames_below_the_critics_minimum_are_refused(tmp_path, lamp_path, capsys):
    ref = reference(tmp_path, minimum_lengths(6)[1])
    least = minimum_lengths(1)[0]
    assert evaluate(lamp_path, ref, tmp_path, frames=least - 1) == 2
    assert f"frames must be at least {least}" in capsys.readouterr().err
    with pytest.raises(ValueError):
        EvalConfig(frames=least - 1)
