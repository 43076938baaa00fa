"""The HTTP control API and its web page: a thin layer over the daemon's own commands and settings."""

from __future__ import annotations

import hmac
import io
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lavalamp.models import one_line

from .config import ConfigError, ControlConfig, is_loopback
from .live import APPLY_TIMEOUT_S, Ticket, resolve
from .metrics import DaemonMetrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
STOP_POLL_S = 0.05  # how often the server looks for a stop request (socketserver polls 0.5 s)
PAGE = "control_page.html"


class ControlError(RuntimeError):
    """The control API cannot start (no token off loopback, address in use, unreadable token)."""


class ApiError(Exception):
    """A request refused with an HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def read_secret(path: str, key: str) -> str:
    """The first line of a secret file, stripped; ControlError naming `key` if it is unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ControlError(f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ControlError(f"{key}: {path} is empty (write the secret on its first line)")
    return secret


class ControlServer:
    """Serves the API and the page from its own threads; they only make requests of the daemon and
    read its snapshots. `lamp` offers status(), snapshot_png(), live, commands and command()."""

    def __init__(self, *, lamp: Any, config: ControlConfig, metrics: DaemonMetrics) -> None:
        self.lamp = lamp
        self.config = config
        self.metrics = metrics
        if config.token_file is None and not is_loopback(config.address):
            raise ControlError(f"control.token_file: required when control.address is not "
                               f"loopback (got {config.address!r})")
        self.token = read_secret(config.token_file, "control.token_file") \
            if config.token_file else None
        self.page = resources.files(__package__).joinpath(PAGE).read_bytes()
        self._server = self._bind()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="control-http",
                                        args=(STOP_POLL_S,), daemon=True)

    def _bind(self) -> ThreadingHTTPServer:
        handler = type("Handler", (Handler,), {"api": self, "timeout": CLIENT_TIMEOUT_S})
        server_class = type("Server", (ThreadingHTTPServer,), {
            "daemon_threads": True,
            "address_family": socket.AF_INET6 if ":" in self.config.address else socket.AF_INET})
        try:
            return server_class((self.config.address, self.config.port), handler)
        except OSError as exc:
            raise ControlError(f"cannot serve the control API on {self.config.address}:"
                               f"{self.config.port}: {exc.strerror or exc} (set control.port to a "
                               "free port, or control.enabled: false)") from None

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        log.info("control API and page on http://%s:%d/ (%s)", self.config.address, self.port,
                 "token required" if self.token else "no token: loopback only")

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)

    # the routes: (method, path) -> handler(request) -> (status, content type, body bytes)
    def route(self, method: str, path: str):
        """The function serving a request; ApiError 404 or 405 when there is none."""
        routes = {("GET", "/"): self.get_page, ("GET", "/api/status"): self.get_status,
                  ("GET", "/api/settings"): self.get_settings,
                  ("PATCH", "/api/settings"): self.patch_settings,
                  ("GET", "/api/snapshot.png"): self.get_snapshot,
                  ("GET", "/api/lamps"): self.get_lamps, ("POST", "/api/lamp"): self.post_lamp}
        for name in self.lamp.commands:
            routes[("POST", f"/api/{name}")] = lambda request, name=name: self.post_command(name)
        if (method, path) in routes:
            return routes[(method, path)]
        allowed = sorted(m for m, p in routes if p == path)
        if allowed:
            raise ApiError(405, f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})",
                           {"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such path: {path} (the API lives under /api/: status, settings, "
                       f"snapshot.png, lamps, lamp, {', '.join(self.lamp.commands)})")

    def get_page(self, request: "Handler"):
        return 200, "text/html; charset=utf-8", self.page

    def get_status(self, request: "Handler"):
        return json_reply(200, self.lamp.status())

    def get_settings(self, request: "Handler"):
        return json_reply(200, self.lamp.live.settings())

    def patch_settings(self, request: "Handler"):
        body = request.json_body()
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "expected a JSON object of one or more settings, e.g. "
                           '{"brightness": 0.5}')
        try:
            done = self.lamp.live.request(resolve(body), "http")
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        self._wait(done)
        return json_reply(200, self.lamp.live.settings())

    def post_command(self, name: str):
        try:
            self._wait(self.lamp.command(name, "http"))
        except ValueError as exc:  # e.g. next_lamp without a playlist
            raise ApiError(400, str(exc)) from None
        return json_reply(200, {"done": name})

    def get_lamps(self, request: "Handler"):
        try:
            return json_reply(200, {"lamps": self.lamp.lamp_names()})
        except ValueError as exc:
            raise ApiError(404, str(exc)) from None

    def post_lamp(self, request: "Handler"):
        """{"name": NAME}: cross-fade to that lamp of the library (a name, never a path)."""
        body = request.json_body()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ApiError(400, 'expected a JSON object naming a lamp of the library, e.g. '
                           '{"name": "classic"}')
        try:
            self.lamp.choose_lamp(name)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return json_reply(200, {"lamp": name})

    def get_snapshot(self, request: "Handler"):
        return 200, "image/png", self.lamp.snapshot_png()

    @staticmethod
    def _wait(done: Ticket | None) -> None:
        if done is None:
            return
        if not done.wait(APPLY_TIMEOUT_S):
            raise ApiError(503, f"the lamp did not apply the change within {APPLY_TIMEOUT_S:g} s "
                           "(starting or stopping?); it applies it when it can")
        if done.error is not None:
            raise ApiError(500, f"the lamp could not apply the change and kept its settings: "
                           f"{done.error}")

    def authorize(self, request: "Handler", path: str) -> None:
        """Token and origin checks; ApiError 401 or 403. The page itself holds no data."""
        if self.token is not None and path != "/":
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    value.strip().encode(), self.token.encode()):
                raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                               "(the token is in the file control.token_file names)",
                               {"WWW-Authenticate": 'Bearer realm="lavalamp"'})
        host = request.headers.get("Host", "")
        if is_loopback(self.config.address) and not is_loopback(_host_name(host)):
            raise ApiError(403, f"Host {host!r} is not this machine: refused (DNS rebinding?)")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            raise ApiError(403, f"cross-origin request from {origin!r} refused")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port ('[::1]:80' -> '::1')."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def json_reply(status: int, data: Any) -> tuple[int, str, bytes]:
    """A JSON response."""
    return status, "application/json", json.dumps(data, allow_nan=False).encode() + b"\n"


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON (errors too), count it by status."""

    api: ControlServer
    server_version = "lavalamp"
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        path = urlsplit(self.path).path
        headers: dict[str, str] = {}
        try:
            self.body = self._read_body()
            self.api.authorize(self, path)
            status, kind, body = self.api.route(self.command, path)(self)
        except ApiError as exc:
            status, kind, body = json_reply(exc.status, {"error": exc.message})
            headers = exc.headers
        except Exception:  # noqa: BLE001 - a bug answers 500 and the lamp goes on
            log.exception("control API: %s %s failed", self.command, path)
            status, kind, body = json_reply(500, {"error": "internal error (see the lamp's log)"})
        self.api.metrics.control_requests.labels(str(status)).inc()
        self.send_response(status)
        for name, value in {"Content-Type": kind, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                            **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        """The whole body (so the connection can serve the next request); ApiError 400 or 413."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "Content-Length is not a number of bytes")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"request body of {length} bytes is over {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    def json_body(self) -> Any:
        """The request's JSON body; ApiError 400 when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep,
            raise ApiError(400, f"invalid JSON body: {one_line(str(exc) or type(exc).__name__)}") \
                from None  # or an integer too long to convert

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Requests at debug level (the request line only: headers, and so the token, never)."""
        log.debug("%s %s", self.address_string(), format % args)


def encode_png(frame) -> bytes:
    """A uint8 RGB frame (H,W,3) as PNG bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame, "RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()

