"""Writing clips: every format reads back, bad paths and sizes are refused; `lavalamp simulate` end to end."""

import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from lavalamp.models.video import write_video
from lavalamp.train.simulator import simulate


@pytest.fixture(scope="module")
def clip():
    """12 frames in which every frame differs from the one before (5 fps: visible steps)."""
    frames = simulate(12, seed=7, size=64, fps=5.0)
    assert all(np.any(a != b) for a, b in zip(frames[:-1], frames[1:]))
    return frames


def lavalamp(*args):
    return subprocess.run([sys.executable, "-m", "lavalamp.daemon", *args], capture_output=True,
                          text=True, timeout=120)


def test_npz_holds_the_exact_frames_and_fps(tmp_path, clip):
    write_video(tmp_path / "c.npz", clip, 5.0)
    with np.load(tmp_path / "c.npz") as data:
        assert np.array_equal(data["frames"], clip) and float(data["fps"]) == 5.0


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_animated_images_hold_every_frame_at_the_right_pace(tmp_path, clip, suffix):
    write_video(tmp_path / f"c{suffix}", clip, 5.0)
    with Image.open(tmp_path / f"c{suffix}") as im:
        assert im.n_frames == len(clip) and im.size == (64, 64)
        assert im.info["duration"] == pytest.approx(200.0)
        im.seek(3)
        got = np.asarray(im.convert("RGB"))
    tolerance = 0 if suffix == ".png" else 12  # GIF keeps 256 colours per frame
    assert np.abs(got.astype(int) - clip[3]).mean() <= tolerance


def test_mp4_decodes_to_the_frames(tmp_path, clip):
    write_video(tmp_path / "c.mp4", clip, 5.0)
    with av.open(str(tmp_path / "c.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 5
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == len(clip) and decoded[0].shape == (64, 64, 3)
    assert np.abs(decoded[6].astype(int) - clip[6]).mean() < 6  # lossy but close


def test_unknown_suffix_names_it_and_the_supported_ones(tmp_path, clip):
    with pytest.raises(ValueError, match=r"'\.avi'.*\.npz, \.png, \.gif, \.mp4"):
        write_video(tmp_path / "c.avi", clip, 5.0)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_file(tmp_path):
    odd = np.zeros((2, 63, 63, 3), np.uint8)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "c.mp4", odd, 30.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npz", ".png", ".gif", ".mp4"])
def test_simulate_command_writes_each_format(tmp_path, suffix):
    out = tmp_path / f"lamp{suffix}"
    result = lavalamp("simulate", "--frames", "6", "--seed", "3", "--size", "64", "--fps", "10",
                      "--palette", "classic", "--out", str(out))
    assert result.returncode == 0, result.stderr
    if suffix == ".npz":
        with np.load(out) as data:
            expected = simulate(6, seed=3, size=64, fps=10.0, palette="classic")
            assert np.array_equal(data["frames"], expected) and float(data["fps"]) == 10.0
    elif suffix == ".mp4":
        with av.open(str(out)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6
    else:
        with Image.open(out) as im:
            assert im.n_frames == 6


@pytest.mark.parametrize("args, message", [
    (["--frames", "0", "--out", "{d}/a.npz"], "--frames must be >= 1"),
    (["--frames", "5", "--size", "100", "--out", "{d}/a.npz"], "--size must be one of 64, 128, 256"),
    (["--frames", "5", "--out", "{d}/a.avi"], "'.avi'"),
    (["--frames", "5", "--out", "{d}/missing/a.npz"], "does not exist"),
])
@pytest.mark.slow
def test_simulate_refuses_bad_input_with_one_line_and_exit_2(tmp_path, args, message):
    result = lavalamp("simulate", *[a.format(d=tmp_path) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
