"""The checks `lavalamp run` makes before it shows anything, made without showing anything: what
`check-config` adds to the config file's own validation (unless --offline)."""

from __future__ import annotations

import socket
from pathlib import Path

from .config import Config, is_loopback

# What only `lavalamp run` itself can find out: check-config says so rather than pretend.
NOT_CHECKED = "the display (only run opens it)"


class PreflightError(ValueError):
    """A check `lavalamp run` would fail; the message names the key and the problem."""


def check_for_run(config: Config, model_path: Path) -> list[str]:
    """Every start-up check of `lavalamp run` on this machine, in its order: the device, the lamp
    (loaded and proved showable), the ring buffer's memory, the addresses it binds. One line per
    check passed; PreflightError (or LampLoadError) at the first that fails."""
    from lavalamp.models.checkpoint import load_lamp
    from lavalamp.models.device import DeviceError, resolve_device

    from .ring import RingBufferError, check_capacity

    try:
        device = resolve_device(config.model.device)
    except DeviceError as exc:
        raise PreflightError(f"model.device: {exc}") from None
    lamp = load_lamp(model_path, device)
    done = [f"model.device {config.model.device!r}: {device}",
            f"lamp {lamp.name!r} from {model_path}: loads, decodes finite frames and dreams"]
    shape = (lamp.frame_size, lamp.frame_size, 3)
    try:
        size = check_capacity(config.buffer.depth_frames, shape)
    except RingBufferError as exc:
        raise PreflightError(str(exc)) from None
    done.append(f"buffer.depth_frames {config.buffer.depth_frames}: {size / 2**20:.0f} MiB")
    if config.metrics.enabled:
        done.append(check_bind(config.metrics.address, config.metrics.port, "metrics"))
    if config.control.enabled:
        done += check_control(config)
    return done


def check_bind(address: str, port: int, section: str) -> str:
    """That a TCP server can listen on address:port now; PreflightError naming the keys if not."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen()
    except OSError as exc:
        raise PreflightError(f"{section}.address/{section}.port: cannot listen on {address}:{port}: "
                             f"{exc.strerror or exc} (is another lamp running? set {section}.port "
                             f"to a free port, or {section}.enabled: false)") from None
    return f"{section} {address}:{port}: free to listen on"


def check_control(config: Config) -> list[str]:
    """The control API's rules: a token off loopback, a readable token file, a free address."""
    from .control import ControlError, read_secret

    c = config.control
    if c.token_file is None and not is_loopback(c.address):
        raise PreflightError(f"control.token_file: required when control.address is not loopback "
                             f"(got {c.address!r})")
    if c.token_file is not None:
        try:
            read_secret(c.token_file, "control.token_file")
        except ControlError as exc:
            raise PreflightError(str(exc)) from None
    return [check_bind(c.address, c.port, "control")]
