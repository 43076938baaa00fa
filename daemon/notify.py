"""sd_notify for systemd (READY, WATCHDOG, STATUS, STOPPING); a silent no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

try:  # systemd-python, where installed
    from systemd import daemon as _systemd_daemon
except ImportError:  # pragma: no cover - depends on the machine
    _systemd_daemon = None


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False when there is none."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    if _systemd_daemon is not None:
        return bool(_systemd_daemon.notify(state))
    return _send(state)


def _send(state: str) -> bool:
    """The sd_notify datagram protocol, for machines without systemd-python."""
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half systemd's WatchdogSec), or None if not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds / 2 if seconds > 0 else None


def under_systemd() -> bool:
    """Whether stderr goes to the journal (systemd sets JOURNAL_STREAM for its services)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
