"""The renderer: layout and blending maths, pygame drawing and keys, and a real window under Xvfb."""

import dataclasses
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from lavalamp.daemon.config import DisplayConfig
from lavalamp.daemon.renderer import PygameRenderer, blend, layout, pixel_shift

from .daemon_helpers import Running, screenshot, write_config
from .fakes import mean_abs_diff, save_fake_lamp


def test_fit_letterboxes_fill_crops_stretch_covers():
    assert layout((1280, 720), 64, "fit") == ((0, 0, 64, 64), (280, 0, 720, 720))
    assert layout((1280, 720), 64, "fill") == ((0, 14, 64, 36), (0, 0, 1280, 720))
    assert layout((1280, 720), 64, "stretch") == ((0, 0, 64, 64), (0, 0, 1280, 720))


def test_blend_cross_fades_and_dims():
    a, b = np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 100, np.uint8)
    assert blend(a, b, 0.0) is a
    assert int(blend(a, b, 0.5)[0, 0, 0]) == 150
    assert int(blend(a, b, 1.0)[0, 0, 0]) == 100
    assert int(blend(a, None, 0.0, brightness=0.5)[0, 0, 0]) == 100


def gradient(size=64):
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    frame = np.zeros((size, size, 3), np.uint8)
    frame[..., 0] = ramp[None, :]  # red grows to the right
    frame[..., 1] = ramp[:, None]  # green grows downwards
    frame[..., 2] = 90
    return frame


@pytest.fixture
def window():
    r = PygameRenderer(config=DisplayConfig(fullscreen=False, width=320, height=240, vsync=False),
                       frame_size=64)
    r.open()
    yield r
    r.close()


def test_drawn_pixels_are_the_frame_scaled_not_garbage(window):
    import pygame

    frame = gradient()
    window.draw(frame, None, 0.0, 1.0)
    shown = pygame.surfarray.array3d(window.screen).transpose(1, 0, 2)  # (H,W,3)
    assert shown[:, :40].max() == 0 and shown[:, -40:].max() == 0  # letterbox bars
    lamp = shown[:, 40:280]
    assert abs(int(lamp[120, 0, 0]) - 0) < 12 and abs(int(lamp[120, -1, 0]) - 255) < 12
    assert abs(int(lamp[0, 120, 1]) - 0) < 12 and abs(int(lamp[-1, 120, 1]) - 255) < 12
    assert np.abs(lamp[..., 2].astype(int) - 90).max() <= 2


def test_cross_fade_and_dimming_reach_the_screen(window):
    import pygame

    white, black = np.full((64, 64, 3), 240, np.uint8), np.zeros((64, 64, 3), np.uint8)
    window.draw(white, black, 0.25, 1.0)
    assert abs(int(pygame.surfarray.array3d(window.screen)[160, 120, 0]) - 180) <= 3
    window.draw(white, None, 0.0, 0.5)
    assert abs(int(pygame.surfarray.array3d(window.screen)[160, 120, 0]) - 120) <= 3


def test_the_colour_transform_reaches_the_screen_and_the_snapshot(window):
    import pygame

    from lavalamp.daemon.colour import ColourTransform

    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    window.draw(red, None, 0.0, 1.0, ColourTransform(hue_degrees=120))
    r, g, b = (int(v) for v in pygame.surfarray.array3d(window.screen)[160, 120])
    assert g > r + 40 and g > b  # a third of a turn: red shows green
    assert np.array_equal(window.last_frame[32, 32], [r, g, b]) and not window.blanked
    window.blank()
    assert window.blanked


def test_keys_become_commands_and_quit_keys_can_be_disabled(window):
    import pygame

    for key in (pygame.K_f, pygame.K_r, pygame.K_SPACE, pygame.K_q, pygame.K_a):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    assert window.events() == ["fullscreen", "reseed", "pause", "quit"]
    window.apply(dataclasses.replace(window.config, quit_keys=False))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert window.events() == ["quit"]  # closing the window still quits


@pytest.fixture
def xvfb():
    if not (shutil.which("Xvfb") and shutil.which("xwd")):
        pytest.skip("Xvfb or xwd is not installed (apt-get install xvfb x11-apps)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24",
                               "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # written once the server accepts connections
    yield f":{number}"
    server.terminate()
    server.wait(10)


@pytest.mark.xvfb
@pytest.mark.slow
def test_a_lit_moving_lamp_fullscreen_under_xvfb(xvfb, tmp_path):
    lamp = save_fake_lamp(tmp_path / "lamp.safetensors", contrast=100)
    config = write_config(tmp_path / "c.yaml", {"display": {"fullscreen": True, "width": 1280,
                                                            "height": 720, "fps": 30}})
    run = Running(["--model", lamp, "--config", config],
                  env={"DISPLAY": xvfb, "SDL_VIDEODRIVER": "x11"})
    try:
        run.wait_for_line("first frame on screen")
        first = screenshot(xvfb, tmp_path / "first.xwd")
        deadline, later = time.monotonic() + 10, first
        while mean_abs_diff(later, first) <= 0.05 and time.monotonic() < deadline:
            later = screenshot(xvfb, tmp_path / "later.xwd")  # one display step may change little
        code, _ = run.stop(signal.SIGTERM)
    finally:
        run.kill()
    assert first.shape == (720, 1280, 3)
    lamp_area, bars = first[:, 280:1000], np.concatenate([first[:, :270], first[:, 1010:]], axis=1)
    assert lamp_area.mean() > 30, "the lamp is dark"
    assert len(np.unique(lamp_area.reshape(-1, 3), axis=0)) > 50, "the lamp is one colour"
    assert bars.max() < 10, "letterbox bars are not black"
    assert mean_abs_diff(later, first) > 0.05, "the lamp does not move"
    assert code == 0


def test_the_pixel_shift_orbits_within_its_radius_and_comes_back():
    assert pixel_shift(123.0, 0, 600) == (0, 0)  # off by default
    orbit = [pixel_shift(t, 8, 600) for t in range(0, 600, 5)]
    assert max(abs(dx) for dx, _ in orbit) == 8 and max(abs(dy) for _, dy in orbit) == 8
    assert all(dx * dx + dy * dy <= 8 * 8 + 8 for dx, dy in orbit)
    assert pixel_shift(0, 8, 600) == (8, 0) and pixel_shift(150, 8, 600) == (0, 8)
    assert pixel_shift(600, 8, 600) == pixel_shift(0, 8, 600)
    assert len(set(orbit)) > 20  # it visits many places, not two


def test_pixel_shift_screenshots_minutes_apart_show_the_lamp_moved_by_the_orbit():
    import pygame

    config = DisplayConfig(fullscreen=False, width=320, height=240, vsync=False,
                           pixel_shift_px=8, pixel_shift_period_s=600)
    r = PygameRenderer(config=config, frame_size=64)
    r.open()
    try:
        shots = {}
        for minutes in (0, 2.5, 5):  # lamp time driven by the test: no waiting
            r.clock = lambda m=minutes: 1000 * 600 + m * 60
            r.draw(gradient(), None, 0.0, 1.0)
            shots[minutes] = pygame.surfarray.array3d(r.screen).transpose(1, 0, 2).astype(int)
    finally:
        r.close()
    # at 0 min the picture sits 8 px right of its place; 2.5 min later 8 px lower; 5 min: 8 px left
    a, b, c = shots[0], shots[2.5], shots[5]
    assert not np.array_equal(a, b)
    assert np.array_equal(b[40 + 8:200 + 8, 80:240], a[40:200, 80 + 8:240 + 8])  # moved (-8, +8)
    assert np.array_equal(c[40:200, 80 - 8:240 - 8], a[40:200, 80 + 8:240 + 8])  # moved (-16, 0)
    for shot in (a, b, c):  # the whole lamp stays on screen (it is 16 px smaller for the orbit)
        lit = np.argwhere(shot.sum(axis=2) > 0)
        assert lit[:, 0].min() >= 0 and lit[:, 0].max() < 240
        assert 240 - 16 - 2 <= lit[:, 0].max() - lit[:, 0].min() + 1 <= 240


def test_without_pixel_shift_the_picture_never_moves(window):
    import pygame

    shots = []
    for t in (0, 150, 300):
        window.clock = lambda t=t: t
        window.draw(gradient(), None, 0.0, 1.0)
        shots.append(pygame.surfarray.array3d(window.screen).copy())
    assert all(np.array_equal(shots[0], s) for s in shots[1:])
