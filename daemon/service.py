"""`lavalamp run`: the daemon's lifecycle (its parts started in order, stopped in reverse), signals
and the one path of live changes; the frame loop itself is frame_loop.py."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prometheus_client import CollectorRegistry

from lavalamp.models import EXIT_FAILURE, EXIT_USAGE, os_error_exit
from lavalamp.models.checkpoint import LampLoadError, default_lamp_path, load_lamp
from lavalamp.models.device import DeviceError, resolve_device

from . import notify
from .cli import EARLY
from .colour import ColourTransform
from .config import Config, ConfigError, load_config, one_line
from .control import ControlError, ControlServer, encode_png
from .frame_loop import EXIT_OK, FrameLoop, Lane
from .library import lamp_names
from .live import LampState, LiveSettings, Pending, Ticket, changed_keys, flatten, is_live
from .metrics import (RESEED_REASONS, DaemonMetrics, MetricsError, ScreenMetrics,
                      start_http_server, stop_http_server)
from .mqtt import MqttBridge, MqttError
from .playlist import Playlist
from .producer import Producer, fault_from_env
from .renderer import DisplayLost, HeadlessRenderer, PygameRenderer, WindowsRenderer
from .ring import RingBuffer, RingBufferError
from .schedule import ModelWatch, Schedule
from .source import FrameSource

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
PRODUCER_JOIN_S = 0.8  # SIGTERM must end the process within 2 s, even with a hung producer
# how long a producer thread may hold the GIL while the frame loop waits for it: Python's 5 ms
# default made frame gaps of 40-60 ms while a new lamp loads (benchmarks/bench_screens.py)
GIL_SWITCH_S = 0.001
# display settings the frame loop reads itself; a change of any other display key goes to the renderer
FRAME_LOOP_DISPLAY_KEYS = ("display.brightness", "display.hue_degrees", "display.saturation",
                           "display.fps", "display.speed")


def add_run(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp run`."""
    p = subparsers.add_parser("run", help="show the lamp (the daemon)",
                              description="Dream the lamp and show it until stopped.")
    p.add_argument("--config", metavar="PATH", help="config file (default: the built-in defaults)")
    p.add_argument("--model", metavar="PATH", help="checkpoint to show (overrides model.path)")
    p.add_argument("--headless", action="store_true", help="run the whole pipeline with no window")
    p.add_argument("--max-frames", type=int, metavar="N", help="exit 0 after N displayed frames")
    p.add_argument("--windowed", action="store_true", help="a window instead of fullscreen")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Load the config and run the daemon until it is stopped; the exit status (bad arguments),
    else the process ends with it."""
    if args.max_frames is not None and args.max_frames < 1:
        log.error("--max-frames: expected a positive number of frames, got %d", args.max_frames)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    setup_logging(config.logging.level)
    daemon = Daemon(config=config, config_path=args.config, model_path=args.model,
                    headless=args.headless, windowed=args.windowed, max_frames=args.max_frames)
    exit_now(daemon.run())


def exit_now(code: int) -> None:
    """End the process once everything is stopped and the log is flushed.

    The interpreter's own teardown of torch takes about a second (more on a busy machine) and
    would eat most of the 2 s a SIGTERM may take; nothing is left for it to do. In-process
    callers use `Daemon.run`, which returns.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_logging(level: str) -> None:
    """The configured level; the journal when running under systemd with systemd-python."""
    root = logging.getLogger()
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(max(logging.getLevelName(level), logging.WARNING))
    if not notify.under_systemd():
        return
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return  # stderr goes to the journal anyway
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JournalHandler(SYSLOG_IDENTIFIER="lavalamp"))


def package_version() -> str:
    """The installed version of neural-lavalamp ('' when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neural-lavalamp")
    except PackageNotFoundError:
        return ""


def _finite(x: float) -> float | None:
    """A number for JSON: None for NaN and infinities."""
    return float(x) if np.isfinite(x) else None


def dump_stacks() -> None:
    """Every thread's stack to the log (SIGUSR1)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame))
        log.warning("stack of thread %s (%s):\n%s", names.get(ident, "?"), ident, stack)


def first_screen(display) -> str:
    """The `screen` label of the first screen display.screens names (before any is opened)."""
    if display.screens == "primary":
        return str(display.display)
    return "0" if display.screens == "all" else str(display.screens[0])


def make_playlist(config: Config) -> Playlist | None:
    """The configured playlist, or None."""
    if not config.playlist.lamps:
        return None
    return Playlist(config=config.playlist, library=config.model.library)


class Daemon:
    """Starts the parts in order, runs the frame loop, stops the parts in reverse."""

    def __init__(self, *, config: Config, config_path: str | None, model_path: str | None,
                 headless: bool = False, windowed: bool = False, max_frames: int | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.live = LiveSettings(config)
        self._file_config = config  # as last read from the file: SIGHUP applies what changed in it
        self.config_path = config_path
        self.model_arg = model_path
        self.headless = headless
        self.windowed = windowed
        self.max_frames = max_frames
        self.metrics = DaemonMetrics(registry or CollectorRegistry(),
                                     screen=first_screen(config.display))
        self.lanes: list[Lane] = []
        self.screen_metrics: dict[str, ScreenMetrics] = {}
        self.playlist: Playlist | None = None
        # the parts _start makes, in its order (None until then)
        self.device: torch.device | None = None
        self.renderer: HeadlessRenderer | PygameRenderer | WindowsRenderer | None = None
        self._model_watch: ModelWatch | None = None
        self.schedule: Schedule | None = None
        self.control: ControlServer | None = None
        self.mqtt: MqttBridge | None = None
        self.loop: FrameLoop | None = None
        self.started = time.monotonic()
        self.stop_reason: str | None = None  # set by a signal or request_stop: the loop ends
        self._reload = False
        self._reloader: threading.Thread | None = None
        self.exit_code = EXIT_OK
        self.colour = ColourTransform(hue_degrees=config.display.hue_degrees,
                                      saturation=config.display.saturation)
        self.scheduled_on = True  # what the schedule said last
        self.display_fps = 0.0
        self.listeners: list = []  # called with no arguments after each applied change (frame loop)
        self.commands = {"reseed": self._reseed, "pause": lambda source: self._set_paused(True, source),
                         "resume": lambda source: self._set_paused(False, source),
                         "next_lamp": lambda source: self.next_lamp()}

    @property
    def config(self) -> Config:
        """The config the daemon runs with now (live changes included)."""
        return self.live.config

    def command(self, name: str, source: str) -> Ticket | None:
        """Carry out one of `commands` (any thread): it only makes requests; the event, if any,
        is set once the frame loop has applied it."""
        return self.commands[name](source)

    def _reseed(self, source: str) -> None:
        self._reseed_all("manual" if source == "keyboard" else "remote")

    def _set_paused(self, paused: bool, source: str) -> Ticket:
        return self.live.request({"state.paused": paused}, source)

    def status(self) -> dict:
        """What the lamp is doing now, for remote control (any thread: reads snapshots only)."""
        lamp, state, guard = self.source.lamp, self.live.state, self.source.guard
        reseeds = {r: sum(lane.source.reseeds.get(r, 0) for lane in self.lanes)
                   for r in RESEED_REASONS}
        last = self.source.last_reseed
        return {
            "lamp": {"name": lamp.name, "frame_size": self.source.frame_size,
                     "latent_size": lamp.latent_size, "lamp_fps": lamp.data.lamp_fps},
            "seed": str(self.source.dream.seed),  # 63 bits: JavaScript and jq would round a number
            "uptime_s": round(time.monotonic() - self.started, 3),
            "display_fps": round(self.display_fps, 2),
            "generation_fps": round(self.producer.generation_fps, 2),
            "ring": {"frames": len(self.ring), "capacity": self.ring.capacity},
            "scheduled_on": self.scheduled_on, "dimmed": state.dimmed,
            "effective_brightness": round(self.brightness(), 4) if state.display_on else 0.0,
            **self.live.settings(),
            "guard": {**{k: _finite(v) for k, v in guard.stats._asdict().items()},
                      "distance": _finite(guard.distance),
                      "renormalizations": sum(lane.source.renormalizations
                                              for lane in self.lanes),
                      "reseeds": reseeds, "reseeds_total": sum(reseeds.values())},
            "last_reseed": None if last is None else {
                "reason": last[0], "at": datetime.fromtimestamp(last[1], timezone.utc).isoformat(
                    timespec="seconds")},
            "screens": [label for lane in self.lanes for label in lane.screens
                        if label not in lane.lost],
            "playlist": None if self.playlist is None else {
                "lamp": self.playlist.current, "lamps": list(self.playlist.config.lamps)},
        }

    def snapshot_png(self) -> bytes:
        """The small frame on screen now as PNG (black while the display is off; any thread)."""
        frame = getattr(self.renderer, "last_frame", None)
        if frame is None or self.renderer.blanked:
            frame = np.zeros(self.source.frame_shape, np.uint8)
        return encode_png(np.array(frame, copy=True))

    def model_path(self) -> Path:
        """The checkpoint to show: the playlist's lamp, else --model, else model.path, else the
        shipped lamp."""
        if self.playlist is not None:
            return self.playlist.path()
        chosen = self.model_arg or self.config.model.path
        return Path(chosen) if chosen else default_lamp_path()

    # the first dream's parts: all that a single-screen daemon has
    @property
    def source(self) -> FrameSource:
        return self.lanes[0].source

    @property
    def ring(self) -> RingBuffer:
        return self.lanes[0].ring

    @property
    def producer(self) -> Producer:
        return self.lanes[0].producer

    def display_config(self, config: Config):
        """The display section with --windowed applied."""
        return dataclasses.replace(config.display, fullscreen=False) if self.windowed \
            else config.display

    def request_stop(self, reason: str) -> None:
        """Make the frame loop end at its next frame (any thread)."""
        self.stop_reason = reason

    # signals: set flags on the main thread; the frame loop acts on them
    def _on_stop(self, signum: int, _frame) -> None:
        self.stop_reason = signal.Signals(signum).name

    def _on_hup(self, _signum: int, _frame) -> None:
        self._reload = True

    def _install_signals(self, stack: contextlib.ExitStack) -> None:
        handlers = {signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop,
                    signal.SIGHUP: self._on_hup, signal.SIGUSR1: lambda *_: dump_stacks()}
        for signum, handler in handlers.items():
            previous = signal.signal(signum, handler)
            stack.callback(signal.signal, signum, previous)
        if EARLY.reload:  # a SIGHUP while starting: the config may have changed since it was read
            EARLY.reload = False
            self._reload = True

    def run(self) -> int:
        """Run until stopped; EXIT_OK, EXIT_FAILURE (supervisor should restart) or EXIT_USAGE."""
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        with contextlib.ExitStack() as stack:
            self._install_signals(stack)
            try:
                self._start(stack)
            except (LampLoadError, DeviceError, MetricsError, ControlError, MqttError,
                    RingBufferError) as exc:
                log.error("%s", exc)
                return EXIT_USAGE
            except DisplayLost as exc:  # perhaps not up yet at boot: let the supervisor retry
                log.critical("%s", exc)
                return EXIT_FAILURE
            except OSError as exc:
                code, text = os_error_exit(exc)
                log.critical("cannot start: %s", text)
                return code
            except Exception as exc:  # noqa: BLE001 - one line, and let the supervisor retry
                log.debug("start-up failed", exc_info=exc)
                log.critical("cannot start: %s", one_line(f"{type(exc).__name__}: {exc}"))
                return EXIT_FAILURE
            try:
                self.loop = FrameLoop(self)
                return self.loop.run()
            except DisplayLost as exc:
                log.critical("%s", exc)
                return EXIT_FAILURE
            finally:
                notify.notify("STOPPING=1")
                log.info("stopping")
                self.metrics.up.set(0)
                self.metrics.display_on.set(0)

    def _start(self, stack: contextlib.ExitStack) -> None:
        c = self.config
        device = resolve_device(c.model.device)
        self.device = device
        self.playlist = make_playlist(c) if self.model_arg is None else None
        lamp = self._first_lamp(device)
        if c.metrics.enabled:
            server, thread = start_http_server(c.metrics.address, c.metrics.port, self.metrics.registry)
            stack.callback(stop_http_server, server, thread)
            log.info("metrics on http://%s:%d/metrics", c.metrics.address, c.metrics.port)
        renderer_class = HeadlessRenderer if self.headless else \
            PygameRenderer if c.display.screens == "primary" else WindowsRenderer
        self.renderer = renderer_class(config=self.display_config(c), frame_size=lamp.frame_size)
        screens = self.renderer.open()
        stack.callback(self.renderer.close)
        self.screen_metrics = {label: self.metrics.for_screen(label) for label in screens}
        groups = [screens] if c.display.multi == "clone" else [[label] for label in screens]
        self.lanes = [self._lane(lamp, group, i) for i, group in enumerate(groups)]
        self._model_watch = ModelWatch(self.model_path())
        self.schedule = Schedule(config=c.schedule, model_path=self.model_path(),
                                 on_state=self._from_schedule,
                                 on_reseed=lambda: self._reseed_all("schedule"),
                                 on_model_change=self._reload_model)
        self._set_playlist_job(c)
        self._apply_pending()  # what the schedule says now: off hours generate nothing at all
        for lane in self.lanes:
            lane.producer.start()
        stack.callback(self._stop_producer)
        self.schedule.start()
        stack.callback(self.schedule.shutdown)
        if len(screens) > 1:
            log.info("%d screen(s) %s, %d dream(s) (%s)", len(screens), ", ".join(screens),
                     len(self.lanes), c.display.multi)
        self._start_remote(stack)

    def _first_lamp(self, device):
        """The lamp to start with: the playlist's first that loads, else the model path's."""
        tries = len(self.playlist.config.lamps) if self.playlist else 1
        for attempt in range(tries):
            try:
                lamp = load_lamp(self.model_path(), device)
                break
            except LampLoadError as exc:
                if self.playlist is None or attempt == tries - 1:
                    raise
                log.error("playlist: %s", exc)
                self.playlist.refused(self.playlist.current)
        log.info("lamp %r from %s: %dx%d frames, latent %d, %.3g lamp fps, on %s", lamp.name,
                 self.model_path(), lamp.frame_size, lamp.frame_size, lamp.latent_size,
                 lamp.data.lamp_fps, device)
        return lamp

    def _lane(self, lamp, screens: list[str], number: int) -> Lane:
        """A dream for `screens`: its own source (own seed), ring and producer thread."""
        c = self.config
        metrics = self.screen_metrics[screens[0]]
        source = FrameSource(lamp=lamp, guard=c.guard, temperature=c.model.temperature,
                             seed=self._seed(number), crossfade_frames=c.model.crossfade_frames)
        ring = RingBuffer(capacity=c.buffer.depth_frames, frame_shape=source.frame_shape)
        producer = Producer(source=source, ring=ring, config=c.producer,
                            batch_frames=c.buffer.batch_frames,
                            torch_threads=c.model.torch_threads, fault=fault_from_env(),
                            name="producer" if number == 0 else f"producer-{screens[0]}",
                            on_load=self._on_load)
        self.metrics.watch(screens[0], source=source, producer=producer, ring=ring)
        return Lane(label=screens[0], screens=screens, metrics=metrics, source=source, ring=ring,
                    producer=producer)

    def _seed(self, number: int) -> int | None:
        """The seed of dream `number`: model.seed + number (each screen its own), or None."""
        seed = self.config.model.seed
        return None if seed is None else (seed + number) % 2**63

    def _reseed_all(self, reason: str) -> None:
        for lane in self.lanes:
            lane.source.request_reseed(reason)

    def _set_playlist_job(self, config: Config) -> None:
        p = config.playlist
        self.schedule.set_playlist(p.every_s, p.change,
                                   self.next_lamp if self.playlist is not None else None)

    def next_lamp(self) -> None:
        """Cross-fade to the playlist's next lamp (any thread; loaded on the producer threads)."""
        if self.playlist is None:
            raise ValueError("next lamp: no playlist is configured (playlist.lamps)")
        name = self.playlist.advance()
        log.info("playlist: next lamp %r", name)
        self._reload_model()

    def choose_lamp(self, name: str) -> None:
        """Cross-fade to the library's lamp `name` (any thread); ValueError if there is no such
        lamp (only names of model.library, never a path)."""
        library = self.config.model.library
        if library is None:
            raise ValueError("no lamp library: set model.library")
        if self.playlist is None:
            self.playlist = Playlist(config=dataclasses.replace(self.config.playlist,
                                                                lamps=(name,)), library=library)
        self.playlist.choose(name)
        log.info("lamp %r chosen", name)
        self._reload_model()

    def lamp_names(self) -> list[str]:
        """The lamps of the library by name (any thread); ValueError without a library."""
        library = self.config.model.library
        if library is None:
            raise ValueError("no lamp library: set model.library")
        try:
            return lamp_names(library)
        except OSError as exc:
            raise ValueError(f"cannot list the library {library}: {exc.strerror or exc}") from None

    def _on_load(self, path: Path, lamp) -> None:
        """The first producer loaded `path` (its thread): every other dream cross-fades to the
        same lamp (loaded and validated once); a refused playlist lamp is skipped."""
        if lamp is not None:
            for lane in self.lanes[1:]:
                lane.source.request_swap(lamp)
        playlist = self.playlist
        if playlist is None or path != playlist.path():
            return
        if lamp is not None:
            playlist.loaded(playlist.current)
        elif playlist.refused(playlist.current) is not None:
            self._reload_model()

    def _start_remote(self, stack: contextlib.ExitStack) -> None:
        """The control API and MQTT, last: they steer parts that must already run."""
        c = self.config
        if c.control.enabled:
            self.control = ControlServer(lamp=self, config=c.control, metrics=self.metrics)
            self.control.start()
            stack.callback(self.control.stop)
        if c.mqtt.enabled:
            self.mqtt = MqttBridge(lamp=self, config=c.mqtt, metrics=self.metrics,
                                   version=package_version())
            self.mqtt.start()
            stack.callback(self.mqtt.stop)

    def _stop_producer(self) -> None:
        hung = self.producer_hung_for() is not None
        wait = 0.0 if hung else PRODUCER_JOIN_S  # a hung thread will not answer: do not wait for it
        deadline = time.monotonic() + wait
        for lane in self.lanes:
            lane.producer.request_stop()  # all asked at once, then joined against one deadline
        for lane in self.lanes:
            if not lane.producer.stop(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("producer thread %s still busy after %.1f s; leaving it behind",
                            lane.producer.name, wait)

    def _from_schedule(self, changes: dict) -> None:
        """The schedule's word (scheduler thread): remembered for the metrics, then requested."""
        self.scheduled_on = changes.get("state.display_on", self.scheduled_on)
        self.live.request(changes, "schedule")

    def _reload_model(self) -> None:
        log.info("loading %s on the side", self.model_path())
        self._model_watch = ModelWatch(self.model_path())
        if self.lanes:  # the first dream's producer loads it; the others take the same lamp
            self.producer.request_load(self.model_path(), self.device)

    def _reload_config(self) -> None:
        """SIGHUP (frame loop): read the config on a thread of its own, so that no file, however
        big or slow to parse, stalls the frame loop; one reload at a time."""
        if self._reloader is not None and self._reloader.is_alive():
            return  # self._reload stays set: this SIGHUP is served once the running one is done
        self._reload = False
        self._reloader = threading.Thread(target=self._read_reload, name="config-reload",
                                          daemon=True)
        self._reloader.start()

    def _read_reload(self) -> None:
        """What changed in the file (refused whole if invalid) goes the one live path; a model
        file rewritten in place is loaded even if the config is the same. Anything that goes
        wrong is refused with one line and the lamp goes on as it was."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self._refuse_reload(exc)
            return
        old_file, self._file_config = self._file_config, new
        before, after = flatten(old_file), flatten(new)
        changes = {key: after[key] for key in after if after[key] != before[key]}
        try:
            self.live.request(changes, "sighup")
        except ConfigError as exc:
            self._file_config = old_file
            self._refuse_reload(exc)
            return
        if "model.path" not in changes and self._model_watch.changed():
            self._reload_model()
        log.info("config reloaded from %s: %d key(s) changed", self.config_path or
                 "built-in defaults", len(changes))

    def apply_requests(self) -> None:
        """Once per frame-loop turn: start a SIGHUP's reload, apply what is queued."""
        if self._reload:
            self._reload_config()
        self._apply_pending()

    def _apply_pending(self) -> None:
        """The one path every live change takes, on the frame loop: apply the queued config and
        state in place (no reseed unless asked), log restart-only keys that are not applied."""
        pending = self.live.take()
        if pending is None:
            return
        old = self.live.config
        try:
            new = self._keep_restart_only(old, pending)
            self._apply_config(old, new)
            self._apply_state(self.live.state, pending.state, pending.sources)
        except Exception as exc:  # noqa: BLE001 - no change may take the lamp down
            self._refuse_applying(pending, old, exc)
            return
        self.live.applied(new, pending.state, pending)
        if "sighup" in pending.sources:
            self.metrics.config_reloads.labels("loaded").inc()
        for source in pending.sources:
            self.metrics.live_changes.labels(source).inc()
        self.publish_settings()
        for listener in self.listeners:
            listener()

    def _refuse_applying(self, pending: Pending, old: Config, exc: Exception) -> None:
        """A change that failed half-way: put back what was applied, log one line, run on."""
        what = "config reload" if "sighup" in pending.sources else \
            f"change from {'+'.join(pending.sources)}"
        why = one_line(f"{type(exc).__name__}: {exc}")
        log.error("%s refused: %s; keeping the running config", what, why)
        if "sighup" in pending.sources:
            self.metrics.config_reloads.labels("refused").inc()
        try:
            self._apply_config(self.live.config, old)
            self._apply_state(pending.state, self.live.state, pending.sources)
        except Exception as again:  # noqa: BLE001
            log.error("could not put the running config back: %s",
                      one_line(f"{type(again).__name__}: {again}"))
        self.live.applied(old, self.live.state, pending, error=why)

    def _refuse_reload(self, exc: ConfigError) -> None:
        log.error("config reload refused: %s; keeping the running config", exc)
        self.metrics.config_reloads.labels("refused").inc()

    def _keep_restart_only(self, old: Config, pending: Pending) -> Config:
        """The pending config with every restart-only key kept at its running value (logged)."""
        sections = {}
        for key in changed_keys(old, pending.config):
            section, _, name = key.partition(".")
            value = getattr(getattr(pending.config, section), name)
            if is_live(key):
                log.info("%s: %s = %r (was %r)", "+".join(pending.sources), key, value,
                         getattr(getattr(old, section), name))
                continue
            log.warning("%s changed to %r: it takes effect at the next start (not applied)",
                        key, value)
            sections.setdefault(section, {})[name] = getattr(getattr(old, section), name)
        return dataclasses.replace(pending.config, **{
            s: dataclasses.replace(getattr(pending.config, s), **v) for s, v in sections.items()})

    def _apply_config(self, old: Config, new: Config) -> None:
        """Each changed live key to the part that reads it."""
        changed = set(changed_keys(old, new))
        if not changed:
            return
        self.live.config = new  # parts below read the daemon's config
        sections = {key.partition(".")[0] for key in changed}
        if "logging.level" in changed:
            setup_logging(new.logging.level)
        if {k for k in changed if k.startswith("display.")} - set(FRAME_LOOP_DISPLAY_KEYS):
            self.renderer.apply(self.display_config(new))
        if changed & {"display.hue_degrees", "display.saturation"}:
            self.colour = ColourTransform(hue_degrees=new.display.hue_degrees,
                                          saturation=new.display.saturation)
        for number, lane in enumerate(self.lanes):
            if "display.speed" in changed and lane.clock is not None:
                lane.clock.set_speed(time.monotonic(), new.display.speed)
            if "model.temperature" in changed:
                lane.source.request_temperature(new.model.temperature)
            if "model.seed" in changed:
                lane.source.request_seed(self._seed(number))
            if "model.crossfade_frames" in changed:
                lane.source.request_crossfade(new.model.crossfade_frames)
            if "producer" in sections:
                lane.producer.config = new.producer
            if "guard" in sections:
                lane.source.request_guard(new.guard)
        if self.model_arg is None and ("playlist" in sections or "model.library" in changed):
            self.playlist = make_playlist(new)
            self._set_playlist_job(new)
            if self.playlist is not None:
                self._reload_model()
        if "model.path" in changed:
            if self.model_arg:
                log.warning("model.path changed but --model %s overrides it", self.model_arg)
            else:
                self._reload_model()
        if "schedule" in sections:
            self.schedule.configure(new.schedule, self.model_path())
            self._set_playlist_job(new)

    def _apply_state(self, old: LampState, new: LampState, sources: list[str]) -> None:
        if new.display_on != old.display_on:
            log.info("%s: display %s", "+".join(sources), "on" if new.display_on else "off")
        if new.paused != old.paused:
            log.info("%s: %s", "+".join(sources), "paused" if new.paused else "resumed")
        for lane in self.lanes:
            lane.producer.pause(not (new.display_on and lane.live))

    def brightness(self) -> float:
        """The brightness on screen now: the setting, times the dim level while dimmed."""
        c, state = self.config, self.live.state
        return c.display.brightness * (c.schedule.dim_level if state.dimmed else 1.0)

    def publish_settings(self) -> None:
        m, c, state = self.metrics, self.config, self.live.state
        m.display_target_fps.set(c.display.fps)
        m.speed.set(c.display.speed)
        m.temperature.set(c.model.temperature)
        m.hue.set(c.display.hue_degrees)
        m.saturation.set(c.display.saturation)
        m.paused.set(int(state.paused))

    def lamp_on_screen(self) -> bool:
        """Whether the lamp is on screen and moving now: not blanked (by the schedule or remote
        control), not paused, and shown by at least one monitor."""
        state = self.live.state
        return state.display_on and not state.paused and any(lane.live for lane in self.lanes)

    def producer_hung_for(self) -> float | None:
        """Seconds without progress of the most behind producer once that counts as hung
        (producer.stall_s), else None."""
        age = max((lane.producer.heartbeat_age() for lane in self.lanes), default=0.0)
        return age if age >= self.config.producer.stall_s else None
