"""Helpers for tests that run `lavalamp run` as a real subprocess or in this process."""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

QUICK = {"display": {"fps": 120}, "metrics": {"enabled": False}}


def write_config(path: Path, sections: dict | None = None) -> str:
    """A YAML config: QUICK merged with `sections`."""
    merged = {k: dict(v) for k, v in QUICK.items()}
    for name, values in (sections or {}).items():
        merged.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(merged))
    return str(path)


class Running:
    """A `lavalamp run` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "lavalamp.daemon", "run", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=full_env)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._queue.put(line)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        """The first stderr line containing `text`, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; got:\n{''.join(self.lines)}")

    def stop(self, sig: int, timeout: float = 10.0) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds it took)."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start

    def output(self) -> str:
        """All stderr so far (after the process ended: all of it)."""
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def receive_until(self, predicate, timeout: float = 30.0) -> list[str]:
        """Collect messages until predicate(message) holds for one; all collected so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append(message)
            if predicate(message):
                return self.messages
        raise AssertionError(f"no such notify message within {timeout} s; got {self.messages}")

    def drain(self, seconds: float) -> list[str]:
        """Every message that arrives within `seconds`."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        self.messages += got
        return got

    def close(self) -> None:
        self.sock.close()


def read_xwd(path: Path) -> np.ndarray:
    """An `xwd` screenshot (ZPixmap, 24 or 32 bits per pixel) as an RGB array (H,W,3)."""
    data = path.read_bytes()
    f = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order, bits, bytes_per_line, ncolors = \
        f[0], f[4], f[5], f[7], f[11], f[12], f[19]
    step = bits // 8
    rows = np.frombuffer(data, np.uint8, count=height * bytes_per_line,
                         offset=header_size + 12 * ncolors).reshape(height, bytes_per_line)
    pixel_bytes = rows[:, :width * step].reshape(height, width, step).astype(np.uint32)
    order = range(step) if byte_order == 0 else reversed(range(step))  # LSBFirst: byte 0 is low
    pixels = sum(pixel_bytes[..., k] << (8 * i) for i, k in enumerate(order))
    channels = [(pixels & m) >> ((m & -m).bit_length() - 1) for m in f[14:17]]
    return np.stack(channels, -1).astype(np.uint8)


def screenshot(display: str, path: Path, attempts: int = 5) -> np.ndarray:
    """The whole X screen of `display` (every monitor) as an RGB array, via xwd. Right after an
    xrandr change the root window is still being resized and xwd's read of it can fail with
    BadDrawable; it is tried again then, `attempts` times in all."""
    for attempt in range(attempts):
        done = subprocess.run(["xwd", "-root", "-silent", "-out", str(path)], capture_output=True,
                              env={**os.environ, "DISPLAY": display}, timeout=20)
        if done.returncode == 0:
            return read_xwd(path)
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"xwd failed {attempts} times on {display}: {done.stderr.decode()[-500:]}")


def drive(daemon, action, timeout: float = 60.0):
    """Run `daemon` on this (the main) thread while `action(daemon)` runs on another; stop the
    daemon when the action ends and re-raise what it raised. The action's result is returned."""
    outcome: dict = {}

    def worker() -> None:
        try:
            outcome["result"] = action(daemon)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc
        finally:
            daemon.request_stop("test")

    thread = threading.Thread(target=worker, name="test-action")
    thread.start()
    code = daemon.run()
    thread.join(timeout)
    if "error" in outcome:
        raise outcome["error"]
    assert code == 0, f"the daemon exited {code}"
    return outcome.get("result")


XORG_TWO_MONITORS = Path(__file__).resolve().parents[1] / "deploy" / "xorg-two-monitors.conf"


def start_xorg(log: Path, config: Path = XORG_TWO_MONITORS) -> tuple[subprocess.Popen, str]:
    """An Xorg server (as root) on the first free display, started with `config` and logging to
    `log`; (the server, its DISPLAY) once it accepts connections."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xorg", "-displayfd", str(write), "-noreset", "-nolisten", "tcp",
                               "-config", str(config), "-logfile", str(log)],
                              pass_fds=(write,), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # written once the server accepts connections
    return server, f":{number}"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_reload_keeps_running(daemon, registry, rewrite) -> None:
    """Run `daemon` headless; once it shows frames, `rewrite()` its config and SIGHUP it; assert the
    reload was refused, the lamp went on showing frames, and the daemon stopped cleanly."""
    import os
    import signal
    import threading

    from lavalamp.daemon.service import EXIT_OK

    from .fakes import metric, wait_until

    results = {}

    def poke():
        shown = lambda: metric(registry, "lavalamp_frames_displayed_total")  # noqa: E731
        results["showing"] = wait_until(lambda: shown() > 2, 30)
        rewrite()
        os.kill(os.getpid(), signal.SIGHUP)
        results["refused"] = wait_until(
            lambda: metric(registry, "lavalamp_config_reloads_total", {"result": "refused"}) == 1, 30)
        now = shown()
        results["still_running"] = wait_until(lambda: shown() > now + 5, 30)
        daemon.request_stop("test")

    thread = threading.Thread(target=poke)
    thread.start()
    assert daemon.run() == EXIT_OK
    thread.join(30)
    assert results == {"showing": True, "refused": True, "still_running": True}, results
