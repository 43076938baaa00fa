"""The display clock: real-lamp speed at any refresh rate, pauses and holds without jumps."""

import pytest

from lavalamp.daemon.clock import DisplayClock


def test_position_advances_at_lamp_fps_times_speed():
    clock = DisplayClock(lamp_fps=5.0, speed=2.0, now=100.0, position=3.0)
    assert clock.position(100.0) == 3.0
    assert clock.position(101.0) == pytest.approx(13.0)
    assert clock.frame(100.25) == (5, pytest.approx(0.5))


def test_sixty_hz_display_of_a_five_fps_lamp_interpolates_smoothly():
    clock = DisplayClock(lamp_fps=5.0, now=0.0)
    shown = [clock.frame(t / 60) for t in range(61)]
    assert shown[0] == (0, 0.0) and shown[-1][0] == 5
    steps = [(i + w) - (j + v) for (j, v), (i, w) in zip(shown, shown[1:])]
    assert all(s == pytest.approx(5 / 60) for s in steps)


def test_pause_and_resume_do_not_jump():
    clock = DisplayClock(lamp_fps=10.0, now=0.0)
    clock.pause(1.0)
    assert clock.position(5.0) == pytest.approx(10.0) and clock.paused
    clock.resume(5.0)
    assert clock.position(5.5) == pytest.approx(15.0) and not clock.paused


def test_hold_and_speed_change_continue_from_where_it_was():
    clock = DisplayClock(lamp_fps=10.0, now=0.0)
    clock.hold(2.0, 7.0)
    assert clock.position(3.0) == pytest.approx(17.0)
    clock.set_speed(3.0, 0.5)
    assert clock.position(4.0) == pytest.approx(22.0)


def test_bad_rates_are_refused():
    with pytest.raises(ValueError):
        DisplayClock(lamp_fps=0.0)


def test_a_speed_change_while_paused_keeps_the_position():
    clock = DisplayClock(lamp_fps=5.0, now=0.0)
    clock.pause(10.0)  # position 50
    clock.set_speed(30.0, 2.5)  # remote control while the display is off
    assert clock.position(40.0) == 50.0
    clock.resume(60.0)
    assert clock.position(61.0) == 50.0 + 12.5
