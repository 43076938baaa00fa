"""sd_notify: a silent no-op without systemd, the datagram protocol with it."""

import socket

from lavalamp.daemon import notify

from .daemon_helpers import NotifySocket


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False


def test_messages_reach_a_path_socket(tmp_path, monkeypatch):
    server = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", server.path)
    try:
        assert notify.notify("READY=1") and notify.notify("STATUS=fine")
        assert server.drain(0.2) == ["READY=1", "STATUS=fine"]
    finally:
        server.close()


def test_messages_reach_an_abstract_socket(monkeypatch):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0lavalamp-test-notify")
        monkeypatch.setenv("NOTIFY_SOCKET", "@lavalamp-test-notify")
        assert notify._send("WATCHDOG=1")
        server.settimeout(5)
        assert server.recv(100) == b"WATCHDOG=1"


def test_a_vanished_socket_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify._send("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    monkeypatch.delenv("WATCHDOG_PID")
    assert notify.watchdog_interval() is None
