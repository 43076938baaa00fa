"""The frame loop (main thread): each turn applies queued changes, handles keys and window
events, publishes the state, draws every screen's frame and waits for the next display tick."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lavalamp.models import EXIT_FAILURE

from . import notify
from .clock import START_FRAMES, DisplayClock
from .metrics import ScreenMetrics
from .producer import Producer
from .ring import RingBuffer
from .source import FrameSource

if TYPE_CHECKING:
    from .service import Daemon

log = logging.getLogger(__name__)
_LOADED = time.monotonic()

EXIT_OK = 0
STATUS_EVERY_S = 2.0
OFF_POLL_S = 0.1  # frame-loop period while the screen is blanked or paused
FPS_SMOOTHING = 0.05


@dataclass
class Lane:
    """One dream: its frame source, ring buffer, producer and clock, and the screens showing it."""

    label: str  # the `screen` label of its metrics: its first screen's
    screens: list[str]
    metrics: ScreenMetrics
    source: FrameSource
    ring: RingBuffer
    producer: Producer
    clock: DisplayClock | None = None
    in_underrun: bool = False
    lost: set[str] = field(default_factory=set)  # its screens whose monitor went away

    @property
    def live(self) -> bool:
        """Whether any of its screens is there to show it."""
        return len(self.lost) < len(self.screens)


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux; else since this module loaded)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _LOADED


class FrameLoop:
    """Shows the daemon's lanes until a stop signal, a quit key, --max-frames or a fatal failure.

    Its attributes are what it keeps from one frame to the next; the daemon's parts (lanes,
    renderer, live settings, metrics) are the daemon's.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.watchdog_s = notify.watchdog_interval()
        self.displayed = 0
        self.ready = False  # READY=1 sent: the first frame (or the blank screen) is on screen
        self.fps = 0.0
        self.last_shown = 0.0
        self.next_tick = 0.0
        self.next_status = 0.0
        self.next_watchdog = 0.0

    def run(self) -> int:
        """Show frames until stopped; the exit status."""
        d = self.daemon
        d.metrics.up.set(1)
        d.publish_settings()
        while True:
            d.apply_requests()
            code = self._exit_code()
            code = self._handle_events() if code is None else code
            if code is not None:
                return code
            now = time.monotonic()
            on = self._publish_state(now)
            if not on:
                d.renderer.blank()
                self._mark_ready()  # a blank screen is what this hour should show
                time.sleep(OFF_POLL_S)
                continue
            if not self._start_clocks():
                continue
            if (d.live.state.paused and self.ready) or not any(lane.live for lane in d.lanes):
                time.sleep(OFF_POLL_S)
                continue
            self._show(time.monotonic())  # a clock may have started since `now`
            if d.max_frames is not None and self.displayed >= d.max_frames:
                log.info("%d frames displayed: done", self.displayed)
                return EXIT_OK
            self._pace()

    def _start_clocks(self) -> bool:
        """Start each shown dream's clock once it has START_FRAMES frames; whether all have started."""
        for lane in self.daemon.lanes:
            if lane.clock is not None or not lane.live:
                continue
            if not lane.ring.wait_for_frames(START_FRAMES, OFF_POLL_S):
                return False
            lane.clock = DisplayClock(lamp_fps=lane.source.lamp.data.lamp_fps,
                                      speed=self.daemon.config.display.speed, now=time.monotonic(),
                                      position=lane.ring.first_seq)
        return True

    def _exit_code(self) -> int | None:
        d = self.daemon
        if d.stop_reason:
            log.info("%s received", d.stop_reason)
            return EXIT_OK
        for lane in d.lanes:
            if lane.producer.failed.is_set():
                log.critical("stopping with a failure: %s", lane.producer.failure)
                return EXIT_FAILURE
        return None

    def _handle_events(self) -> int | None:
        """Keys and window events; EXIT_OK on quit."""
        d = self.daemon
        for command in d.renderer.events():
            if command == "quit":
                log.info("quit from the keyboard or window")
                return EXIT_OK
            if command == "fullscreen":
                d.renderer.toggle_fullscreen()
            elif command == "reseed":
                d.command("reseed", "keyboard")
            elif command == "pause":
                d.command("resume" if d.live.state.paused else "pause", "keyboard")
            elif command.startswith(("lost:", "back:")):
                self._screen_presence(command)
        return None

    def _screen_presence(self, command: str) -> None:
        """A monitor went away or came back: its dream pauses or goes on."""
        kind, label = command.split(":", 1)
        for lane in self.daemon.lanes:
            if label in lane.screens:
                (lane.lost.add if kind == "lost" else lane.lost.discard)(label)
                lane.producer.pause(not (lane.live and self.daemon.live.state.display_on))
                if not lane.live:
                    log.info("no screen shows the dream of screen %s: it pauses", lane.label)

    def _publish_state(self, now: float) -> bool:
        """Metrics, watchdog, status, producer pause and clock pause; whether the display is on."""
        d = self.daemon
        m, on = d.metrics, d.live.state.display_on
        m.display_scheduled_on.set(int(d.scheduled_on))
        m.display_on.set(int(d.lamp_on_screen()))
        m.brightness.set(d.brightness() if on else 0.0)
        if self.ready and self.watchdog_s and now >= self.next_watchdog:
            self.next_watchdog = now + self.watchdog_s
            self._watchdog()
        if self.ready and now >= self.next_status:
            self.next_status = now + STATUS_EVERY_S
            self._status(on)
        for lane in d.lanes:
            if lane.clock is None:
                continue
            if not on or d.live.state.paused or not lane.live:
                lane.clock.pause(now)
            else:
                lane.clock.resume(now)
        return on

    def _show(self, now: float) -> None:
        """Draw on every screen the frame its clock says, cross-faded toward the next; a dream
        whose producer is behind holds its newest frame."""
        d = self.daemon
        brightness = d.brightness()
        for lane in d.lanes:
            if lane.live:
                self._show_lane(lane, now, brightness)
        shown = time.monotonic()
        self.displayed += 1
        if self.displayed > 1:
            interval = shown - self.last_shown
            self.fps += FPS_SMOOTHING * (1.0 / max(interval, 1e-6) - self.fps)
            for lane in d.lanes:
                for label in lane.screens:
                    if label not in lane.lost:
                        d.screen_metrics[label].frame_seconds.observe(interval)
                        d.screen_metrics[label].display_fps.set(self.fps)
            d.display_fps = self.fps
        self.last_shown = shown
        self._mark_ready()

    def _show_lane(self, lane: Lane, now: float, brightness: float) -> None:
        d = self.daemon
        index, weight = lane.clock.frame(now)
        ring = lane.ring
        newest = ring.end_seq - 1
        underrun = index > newest or (index == newest and weight > 0)
        if underrun:
            lane.clock.hold(now, newest)
            index, weight = newest, 0.0
            if not lane.in_underrun:
                lane.metrics.underruns.inc()
                log.debug("ring buffer underrun at frame %d (screen %s)", newest, lane.label)
        lane.in_underrun = underrun
        ring.release_before(index)
        b = ring.get(index + 1) if weight > 0 else None
        for label in lane.screens:
            if label not in lane.lost:
                d.renderer.draw(ring.get(index), b, weight, brightness, d.colour, label)
                d.screen_metrics[label].frames_displayed.inc()

    def _mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.next_watchdog = self.next_status = time.monotonic()
            notify.notify("READY=1")
            log.info("first frame on screen %.2f s after the process started (%.2f s of CPU)",
                     process_age(), time.process_time())

    def _pace(self) -> None:
        """Sleep until the next display tick (the fps cap); never try to catch up a backlog."""
        period = 1.0 / self.daemon.config.display.fps
        self.next_tick = max(self.next_tick + period, self.last_shown - period)
        delay = self.next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _watchdog(self) -> None:
        age = self.daemon.producer_hung_for()
        if age is None:
            notify.notify("WATCHDOG=1")
        else:
            log.error("producer shows no progress for %.1f s: withholding the watchdog", age)
            notify.notify(f"STATUS=producer hung for {age:.0f} s: watchdog withheld")

    def _status(self, on: bool) -> None:
        if not on:
            notify.notify("STATUS=display off by schedule")
            return
        age = self.daemon.producer_hung_for()
        if age is not None:
            notify.notify(f"STATUS=producer hung for {age:.0f} s: watchdog withheld")
            return
        lanes = self.daemon.lanes
        screens = sum(len(lane.screens) - len(lane.lost) for lane in lanes)
        text = (f"STATUS={self.fps:.1f} fps shown"
                + (f" on {screens} screens" if len(self.daemon.screen_metrics) > 1 else "")
                + f", {min(lane.producer.generation_fps for lane in lanes):.1f} fps generation "
                f"capacity, buffer {min(len(lane.ring) for lane in lanes)}/{lanes[0].ring.capacity}, "
                f"drift {max(lane.source.guard.distance for lane in lanes):.3f}")
        notify.notify(text)
