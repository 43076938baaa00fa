"""Several monitors: two virtual 1920x1080 monitors (Xorg's dummy driver) by screenshot, and headless."""

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon import service
from lavalamp.daemon.config import load_config
from lavalamp.daemon.producer import Fault
from lavalamp.daemon.service import EXIT_OK, Daemon

from .daemon_helpers import NotifySocket, Running, drive, screenshot, start_xorg, write_config
from .deploy_support import unavailable
from .fakes import mean_abs_diff, metric, save_fake_lamp, wait_until

W = 1920  # each monitor's width; the left one at +0+0, the right one at +1920+0


@pytest.fixture
def two_monitors(tmp_path):
    """An Xorg server with two RandR outputs (DUMMY0, DUMMY1); its DISPLAY."""
    missing = [b for b in ("Xorg", "xwd", "xrandr") if not shutil.which(b)]
    if missing or not Path("/usr/lib/xorg/modules/drivers/dummy_drv.so").exists():
        unavailable(f"two-monitor Xorg not installed ({', '.join(missing) or 'dummy driver'}): "
                    "apt-get install xserver-xorg-core xserver-xorg-video-dummy x11-xserver-utils "
                    "x11-apps")
    if os.geteuid() != 0:
        unavailable("Xorg with the dummy driver needs root here (see deploy/README.md)")
    server, display = start_xorg(tmp_path / "Xorg.log")
    try:
        monitors = xrandr(display, "--listmonitors")
        assert monitors.startswith("Monitors: 2"), monitors
        yield display
    finally:
        server.terminate()
        server.wait(10)


def xrandr(display, *args):
    return subprocess.run(["xrandr", *args], env={**os.environ, "DISPLAY": display}, check=True,
                          capture_output=True, text=True, timeout=20).stdout


def run_on(display, tmp_path, multi):
    """The shipped lamp on every monitor (a real lamp: two dreams of it look apart), seeded so
    that the dreams are the same every run (seeds 1 and 2 start from different footage)."""
    config = write_config(tmp_path / "c.yaml", {"display": {"screens": "all", "multi": multi,
                                                            "fps": 20}, "model": {"seed": 1}})
    return Running(["--config", config], env={"DISPLAY": display, "SDL_VIDEODRIVER": "x11"})


def halves(shot):
    return shot[:, :W], shot[:, W:]


def lamp_area(half):
    return half[:, 420:1500]  # fit: a 1080x1080 square in the middle of each 1920x1080 monitor


def changed(display, path, before, which, timeout=15.0):
    """A later screenshot in which the monitors `which` (0, 1) have all visibly moved."""
    deadline, later = time.monotonic() + timeout, before
    while time.monotonic() < deadline:
        later = screenshot(display, path)
        if all(mean_abs_diff(halves(later)[i], halves(before)[i]) > 0.05 for i in which):
            break
    return later


def assert_lit(half, what):
    area = lamp_area(half)
    assert area.mean() > 30, f"{what}: the lamp is dark"
    assert len(np.unique(area[::4, ::4].reshape(-1, 3), axis=0)) > 50, f"{what}: one colour"
    assert np.concatenate([half[:, :410], half[:, 1510:]], axis=1).max() < 10, \
        f"{what}: letterbox bars are not black"


@pytest.mark.xorg
@pytest.mark.slow
def test_two_monitors_dream_apart_and_one_unplugged_leaves_the_other_going(two_monitors,
                                                                           tmp_path):
    run = run_on(two_monitors, tmp_path, "independent")
    try:
        run.wait_for_line("first frame on screen")
        first = screenshot(two_monitors, tmp_path / "first.xwd")
        later = changed(two_monitors, tmp_path / "later.xwd", first, (0, 1))
        xrandr(two_monitors, "--output", "DUMMY1", "--off")
        run.wait_for_line("monitor 1 (1920x1080 at +1920+0) is gone")
        alone = screenshot(two_monitors, tmp_path / "alone.xwd")
        alone_later = changed(two_monitors, tmp_path / "alone-later.xwd", alone, (0,))
        xrandr(two_monitors, "--output", "DUMMY1", "--mode", "1920x1080", "--right-of", "DUMMY0")
        run.wait_for_line("monitor 1 is back")
        back = screenshot(two_monitors, tmp_path / "back.xwd")
        back = changed(two_monitors, tmp_path / "back-later.xwd", back, (1,))
        code, _ = run.stop(signal.SIGTERM)
    finally:
        run.kill()
    assert first.shape == (1080, 2 * W, 3)
    for i, name in enumerate(("left", "right")):
        assert_lit(halves(first)[i], name)
        assert mean_abs_diff(halves(later)[i], halves(first)[i]) > 0.05, f"{name} does not move"
    assert mean_abs_diff(*map(lamp_area, halves(first))) > 5, "independent dreams look the same"
    assert mean_abs_diff(halves(alone_later)[0], halves(alone)[0]) > 0.05, \
        "the left monitor stopped when the right one went"
    assert_lit(halves(back)[1], "right, plugged back")
    assert code == 0 and run.proc.returncode == 0


@pytest.mark.xorg
@pytest.mark.slow
def test_clone_shows_one_dream_on_both_monitors(two_monitors, tmp_path):
    run = run_on(two_monitors, tmp_path, "clone")
    try:
        run.wait_for_line("first frame on screen")
        first = screenshot(two_monitors, tmp_path / "first.xwd")
        later = changed(two_monitors, tmp_path / "later.xwd", first, (0, 1))
        # the two windows flip one after the other: a screenshot may fall between the flips
        shots = [first, later] + [screenshot(two_monitors, tmp_path / f"{i}.xwd") for i in range(3)]
        code, _ = run.stop(signal.SIGTERM)
    finally:
        run.kill()
    left, right = halves(first)
    assert_lit(left, "left")
    assert_lit(right, "right")
    apart = min(mean_abs_diff(*halves(shot)) for shot in shots)
    assert apart < 1.0, f"the clone differs between the monitors by {apart:.2f}"
    assert mean_abs_diff(halves(later)[0], left) > 0.05, "the clone does not move"
    assert "2 screen(s) 0, 1, 1 dream(s) (clone)" in run.output()
    assert code == 0


# --- the same without a display: every screen its own dream, or one dream cloned -------------

def headless(tmp_path, display, monkeypatch=None, **kwargs):
    config_path = write_config(tmp_path / "c.yaml", {"display": display, "model": {"seed": 1}})
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config_path), config_path=config_path,
               model_path=save_fake_lamp(tmp_path / "lamp.safetensors", contrast=100),
               headless=True, registry=registry, **kwargs)
    return d, registry


def test_independent_screens_each_dream_their_own_and_count_under_their_label(tmp_path):
    d, registry = headless(tmp_path, {"screens": [0, 1]}, max_frames=20)
    assert d.run() == EXIT_OK
    frames = d.renderer.frames
    assert sorted(frames) == ["0", "1"] and len(d.lanes) == 2
    assert mean_abs_diff(frames["0"], frames["1"]) > 1, "both screens show the same dream"
    assert d.lanes[0].source.dream.seed != d.lanes[1].source.dream.seed
    for screen in ("0", "1"):
        assert metric(registry, "lavalamp_frames_displayed_total", {"screen": screen}) == 20
        assert metric(registry, "lavalamp_frames_generated_total", {"screen": screen}) >= 2
        assert metric(registry, "lavalamp_ring_buffer_capacity_frames", {"screen": screen}) == 64
    assert metric(registry, "lavalamp_frames_displayed_total") == 40  # summed like PromQL's sum()


def test_clone_shows_one_dream_on_every_screen(tmp_path):
    d, registry = headless(tmp_path, {"screens": [0, 1], "multi": "clone"}, max_frames=20)
    assert d.run() == EXIT_OK
    assert len(d.lanes) == 1 and d.lanes[0].screens == ["0", "1"]
    assert np.array_equal(d.renderer.frames["0"], d.renderer.frames["1"])
    assert metric(registry, "lavalamp_frames_displayed_total", {"screen": "1"}) == 20
    assert metric(registry, "lavalamp_frames_generated_total", {"screen": "1"}) == 0  # no 2nd dream


@pytest.mark.slow
def test_a_hung_producer_of_any_screen_withholds_the_watchdog(tmp_path, monkeypatch):
    faults = iter([None, Fault("hang-producer", 0.5)])  # the second screen's producer hangs
    monkeypatch.setattr(service, "fault_from_env", lambda: next(faults))
    server = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", server.path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config_path = write_config(tmp_path / "c.yaml", {"display": {"screens": [0, 1]},
                                                     "buffer": {"depth_frames": 8, "batch_frames": 4},
                                                     "producer": {"stall_s": 0.5}})
    d = Daemon(config=load_config(config_path), config_path=config_path,
               model_path=save_fake_lamp(tmp_path / "lamp.safetensors", contrast=30),
               headless=True, registry=CollectorRegistry())

    def watch():
        try:
            server.receive_until(lambda m: m == "WATCHDOG=1")
            watch.hung = server.receive_until(lambda m: "producer hung" in m)[-1]
            watch.later = server.drain(0.6)
        finally:
            d.request_stop("test")

    thread = threading.Thread(target=watch)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(10)
    server.close()
    assert "watchdog withheld" in watch.hung and "WATCHDOG=1" not in watch.later
    assert d.lanes[0].producer.heartbeat_age() < 0.5  # the first screen's producer was fine


def test_pixel_shift_is_a_live_change_and_screens_wait_for_the_next_start(tmp_path, caplog):
    d, _ = headless(tmp_path, {"screens": [0, 1]})

    def change(d):
        assert wait_until(lambda: "1" in getattr(getattr(d, "renderer", None), "shifts", {}))
        before = dict(d.renderer.shifts)
        d.renderer.clock = lambda: 0.0  # on the orbit's start: (px, 0)
        assert d.live.request({"display.pixel_shift_px": 8, "display.screens": [0]},
                              "http").wait(5)
        assert wait_until(lambda: d.renderer.shifts.get("1") == (8, 0))
        return before

    before = drive(d, change)
    assert before == {"0": (0, 0), "1": (0, 0)}
    assert d.config.display.pixel_shift_px == 8 and d.config.display.screens == (0, 1)
    assert "display.screens changed to (0,): it takes effect at the next start" in caplog.text
