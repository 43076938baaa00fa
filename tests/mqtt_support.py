"""A real mosquitto broker on a free loopback port, and a test client that remembers what it saw."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from .deploy_support import require_tool, unavailable


def require_mqtt() -> str:
    """mosquitto's path, with paho-mqtt importable; skip locally, fail in CI, when either is missing."""
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        unavailable("paho-mqtt is not installed (pip install -e '.[test]')")
    return require_tool("mosquitto")


class Broker:
    """mosquitto on 127.0.0.1:port, anonymous or with one user; start, kill, start again."""

    def __init__(self, folder: Path, port: int, user: tuple[str, str] | None = None) -> None:
        self.mosquitto = require_mqtt()
        self.port, self.proc = port, None
        lines = [f"listener {port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:  # else mosquitto drops to its own user, who cannot read tmp_path
            lines.append("user root")
        if user is None:
            lines.append("allow_anonymous true")
        else:
            passwords = folder / "passwords"
            subprocess.run([require_tool("mosquitto_passwd"), "-b", "-c",
                            str(passwords), *user], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        self.proc = subprocess.Popen([self.mosquitto, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Watcher:
    """A paho client subscribed to `topics`, keeping the latest payload of every topic."""

    def __init__(self, port: int, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.latest: dict[str, str] = {}
        self.retained: dict[str, bool] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lavalamp-test")
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *a: (self.client.subscribe([(t, 1) for t in topics]),
                                             connected.set())
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "the test client could not connect"

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.latest[message.topic] = message.payload.decode()
            self.retained[message.topic] = bool(message.retain)
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 15.0) -> bool:
        """Wait until predicate(latest) holds; whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.latest):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
