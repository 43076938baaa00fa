"""The producer thread: owns torch, fills the ring buffer ahead of the display, survives crashes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from lavalamp.models.checkpoint import LampLoadError, load_lamp

from .clock import START_FRAMES
from .config import ProducerConfig, one_line
from .ring import RingBuffer
from .source import FrameSource, LampBroken

log = logging.getLogger(__name__)

FAULT_ENV = "LAVALAMP_FAULT"
FAULT_KINDS = ("hang-producer", "crash-producer")
POLL_S = 0.1  # longest the thread waits before looking at its flags again


class Fault(NamedTuple):
    """An injected fault (tests): hang forever, or raise every `after_s` seconds, from `after_s` on."""

    kind: str
    after_s: float


class InjectedFault(RuntimeError):
    """The exception `crash-producer` raises."""


def parse_fault(text: str | None) -> Fault | None:
    """`hang-producer:SECONDS` or `crash-producer:SECONDS` -> Fault; None/empty -> None."""
    if not text:
        return None
    kind, _, seconds = text.partition(":")
    try:
        after_s = float(seconds)
    except ValueError:
        after_s = -1.0
    if kind not in FAULT_KINDS or not after_s >= 0:
        raise ValueError(f"{FAULT_ENV}={text!r}: expected hang-producer:SECONDS or "
                         "crash-producer:SECONDS")
    return Fault(kind, after_s)


def fault_from_env() -> Fault | None:
    """The fault named by $LAVALAMP_FAULT, if any."""
    return parse_fault(os.environ.get(FAULT_ENV))


class Producer:
    """Decodes frames in batches into the ring buffer on its own thread; restarts after a crash.

    `failed` is set (with `failure` saying why) when crashes come too often: the daemon then
    exits non-zero so that its supervisor restarts it. Its counts are plain attributes that
    metrics.DreamCollector reads at scrape time.
    """

    def __init__(self, *, source: FrameSource, ring: RingBuffer,
                 config: ProducerConfig, batch_frames: int = 8, torch_threads: int = 1,
                 fault: Fault | None = None,
                 name: str = "producer",
                 on_load: Callable[[Path, Lamp | None], None] | None = None) -> None:
        self.source = source
        self.ring = ring
        self.config = config  # replaced whole by a config reload (frame loop)
        self.batch_frames = batch_frames
        self.torch_threads = torch_threads
        self.fault = fault
        self.on_load = on_load  # (path, the lamp or None if refused) after each load, this thread
        self.failed = threading.Event()
        self.failure = ""
        self.generation_fps = 0.0  # frames decoded per second of working time, latest batch
        self.frames_generated = 0
        self.errors = 0  # crashes, each followed by a restart (or by giving up)
        self.swaps = {"loaded": 0, "refused": 0}  # checkpoints loaded on request, by result
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._beat = time.monotonic()
        self._crashes: deque[float] = deque()
        self._load_request: tuple[Path, torch.device] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._started = time.monotonic()
        self._next_crash = self._started + (self.fault.after_s if self.fault else 0.0)
        self._thread.start()

    @property
    def name(self) -> str:
        """The thread's name."""
        return self._thread.name

    def request_stop(self) -> None:
        """Ask the thread to stop, without waiting."""
        self._stop.set()

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to stop and wait up to `timeout` s; False if it lingers."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def pause(self, paused: bool) -> None:
        """Pause generation (display off) or resume it."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def heartbeat_age(self) -> float:
        """Seconds since the thread last showed progress."""
        return time.monotonic() - self._beat

    def request_load(self, path: str | Path, device: torch.device) -> None:
        """Load a checkpoint on the producer thread, validate it and cross-fade it in (or refuse it)."""
        with self._lock:
            self._load_request = (Path(path), device)

    def _run(self) -> None:
        torch.set_num_threads(self.torch_threads)
        with torch.inference_mode():
            while not self._stop.is_set():
                try:
                    self._loop()
                except LampBroken as exc:  # a fresh dream was tried already: only a restart helps
                    self.failure = f"the lamp is broken: {exc}"
                    log.critical("%s: giving up", self.failure)
                    self.failed.set()
                    return
                except Exception as exc:  # noqa: BLE001 - any crash restarts the dream
                    if self._crashed(exc):
                        return

    def _crashed(self, exc: Exception) -> bool:
        """Log and count a crash; True when crashes come too often and the thread must end."""
        log.error("producer crashed; restarting from a fresh seed", exc_info=exc)
        self.errors += 1
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.config.failure_window_s:
            self._crashes.popleft()
        if len(self._crashes) >= self.config.max_failures:
            self.failure = (f"producer crashed {len(self._crashes)} times within "
                            f"{self.config.failure_window_s:g} s; last: {exc!r}")
            log.critical("%s: giving up", self.failure)
            self.failed.set()
            return True
        try:
            self.source.reseed("producer_restart")
        except Exception as again:  # noqa: BLE001
            return self._crashed(again)
        return False

    def _loop(self) -> None:
        batch = min(self.batch_frames, self.ring.capacity)
        while not self._stop.is_set():
            self._beat = time.monotonic()
            self._inject_fault()
            self._load_if_requested()
            if self._paused.is_set():
                self._stop.wait(POLL_S)
                continue
            # the first batch is what the display clock needs to start (so that it starts at
            # once); the second tops it up to a whole batch, so that the ring still fills to its
            # last slot
            made = self.frames_generated
            size = min(START_FRAMES, batch) if made == 0 else batch - made % batch
            if not self.ring.wait_for_space(size, POLL_S):
                continue
            started = time.perf_counter()
            frames = self.source.next_batch(size)
            self.ring.put(frames)
            elapsed = max(time.perf_counter() - started, 1e-6)
            self.frames_generated += len(frames)
            self.generation_fps = len(frames) / elapsed

    def _inject_fault(self) -> None:
        if self.fault is None or time.monotonic() < self._next_crash:
            return
        if self.fault.kind == "hang-producer":
            log.warning("injected fault: the producer hangs now")
            threading.Event().wait()  # forever: only the watchdog can help now
        self._next_crash += max(self.fault.after_s, POLL_S)
        raise InjectedFault("injected fault: crash-producer")

    def _load_if_requested(self) -> None:
        with self._lock:
            request, self._load_request = self._load_request, None
        if request is None:
            return
        path, device = request
        try:
            lamp = load_lamp(path, device)  # proves the lamp can be shown, or refuses it
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint must never stop the lamp
            reason = str(exc) if isinstance(exc, LampLoadError) else f"{type(exc).__name__}: {exc}"
            log.error("new checkpoint refused: %s; the current lamp keeps running", one_line(reason))
            self.swaps["refused"] += 1
            if self.on_load:
                self.on_load(path, None)
            return
        log.info("new checkpoint %s (%r) accepted: cross-fading it in", path, lamp.name)
        self.source.request_swap(lamp)
        self.swaps["loaded"] += 1
        if self.on_load:
            self.on_load(path, lamp)

