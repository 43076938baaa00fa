"""`lavalamp render`: the daemon's frames, written at the lamp's real-time rate."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from lavalamp.daemon.cli import main
from lavalamp.daemon.config import GuardConfig
from lavalamp.daemon.offline_render import render
from lavalamp.daemon.source import FrameSource
from lavalamp.models.checkpoint import load_lamp

from .fakes import save_fake_lamp


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def rendered(tmp_path, lamp_path, *extra, name="out.npz"):
    out = tmp_path / name
    assert main(["render", "--model", lamp_path, "--out", str(out), *extra]) == 0
    return out


def test_npz_holds_the_frames_and_the_lamp_fps(tmp_path, lamp_path):
    data = np.load(rendered(tmp_path, lamp_path, "--frames", "12", "--seed", "4"))
    assert data["frames"].shape == (12, 64, 64, 3) and data["frames"].dtype == np.uint8
    assert float(data["fps"]) == 5.0  # 30 fps footage, every 6th frame


def test_it_writes_exactly_what_the_daemon_source_shows(tmp_path, lamp_path):
    data = np.load(rendered(tmp_path, lamp_path, "--frames", "10", "--seed", "4", "--guard", "off"))
    source = FrameSource(lamp=load_lamp(lamp_path),
                         guard=dataclasses.replace(GuardConfig(), enabled=False), seed=4)
    assert np.array_equal(data["frames"], render(source, frames=10, batch=3))


def test_skip_moves_on_without_decoding(tmp_path, lamp_path):
    plain = np.load(rendered(tmp_path, lamp_path, "--frames", "4", "--seed", "4", name="a.npz"))
    skipped = np.load(rendered(tmp_path, lamp_path, "--frames", "4", "--seed", "4", "--skip", "50",
                               name="b.npz"))
    again = np.load(rendered(tmp_path, lamp_path, "--frames", "4", "--seed", "4", "--skip", "50",
                             name="c.npz"))
    assert not np.array_equal(plain["frames"], skipped["frames"])
    assert np.array_equal(skipped["frames"], again["frames"])


def test_gif_and_apng_are_animations(tmp_path, lamp_path):
    for name in ("out.gif", "out.png"):
        with Image.open(rendered(tmp_path, lamp_path, "--frames", "6", "--seed", "1", name=name)) as im:
            assert im.n_frames >= 2 and im.size == (64, 64)


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames must be >= 1"),
    (["--frames", "3", "--skip", "-1"], "--skip must be >= 0"),
    (["--frames", "3", "--temperature", "9"], "--temperature must be in 0.05..3"),
    (["--frames", "3", "--out-suffix", ".avi"], "supported formats are"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, lamp_path, capsys, args, message):
    out = tmp_path / "out.npz"
    if "--out-suffix" in args:
        args, out = args[:2], tmp_path / "out.avi"
    assert main(["render", "--model", lamp_path, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_a_missing_model_exits_2(tmp_path, capsys):
    assert main(["render", "--model", str(tmp_path / "none.safetensors"), "--frames", "2",
                 "--out", str(tmp_path / "o.npz")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
