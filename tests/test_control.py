"""The HTTP control API: status, commands, settings, snapshots, errors, tokens, a flood of requests."""

import html.parser
import http.client
import io
import json
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import ConfigError, load_config, parse_config
from lavalamp.daemon.live import SETTINGS, field_meta
from lavalamp.daemon.service import EXIT_USAGE, Daemon

from .daemon_helpers import drive, free_port, write_config
from .fakes import metric, save_fake_lamp, wait_until


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    # 128 px: nothing in the API may assume the lamp's frame size (64 elsewhere)
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30,
                          frame_size=128, name="api-lamp")


def daemon(tmp_path, model, control=None, **sections):
    port = free_port()
    config_path = write_config(tmp_path / "c.yaml", {"control": {"enabled": True, "port": port,
                                                                 **(control or {})}, **sections})
    d = Daemon(config=load_config(config_path), config_path=config_path, model_path=model,
               headless=True, registry=CollectorRegistry())
    return d, port


def call(port, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request; a dict body is sent as JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    result = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return result


def call_json(port, method, path, body=None, headers=None):
    status, head, data = call(port, method, path, body, headers)
    assert head["Content-Type"] == "application/json", (status, data)
    return status, json.loads(data)


def serving(d, port) -> bool:
    return wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total") > 2,
                      timeout=30)


def test_status_tells_what_the_lamp_is_doing(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return call_json(port, "GET", "/api/status")

    status, st = drive(d, check)
    assert status == 200
    assert st["lamp"] == {"name": "api-lamp", "frame_size": 128, "latent_size": 8, "lamp_fps": 5.0}
    assert st["seed"] == str(d.source.dream.seed) and st["uptime_s"] > 0
    assert st["display_fps"] > 0 and st["generation_fps"] > 0
    assert 0 <= st["ring"]["frames"] <= st["ring"]["capacity"] == 64
    for name in SETTINGS:
        assert name in st, name
    assert st["brightness"] == 1.0 and st["display_on"] is True and st["paused"] is False
    assert set(st["guard"]) >= {"mean", "std", "skew", "kurtosis", "distance", "renormalizations",
                                "reseeds", "reseeds_total"}
    assert st["last_reseed"] is None


def test_settings_change_the_lamp_status_and_metrics(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        answer = call_json(port, "PATCH", "/api/settings",
                           {"brightness": 0.25, "speed": 2, "temperature": 0.7, "hue_degrees": -90,
                            "saturation": 1.5, "guard.freeze_s": 30})
        after = call_json(port, "GET", "/api/status")[1]
        settings = call_json(port, "GET", "/api/settings")[1]
        return answer, after, settings

    (status, answer), after, settings = drive(d, check)
    assert status == 200 and answer == settings
    assert answer["brightness"] == 0.25 and answer["speed"] == 2.0 and answer["hue_degrees"] == -90
    assert after["brightness"] == 0.25 and after["effective_brightness"] == 0.25
    assert after["temperature"] == 0.7 and after["saturation"] == 1.5
    assert d.config.guard.freeze_s == 30
    r = d.metrics.registry
    assert metric(r, "lavalamp_display_brightness_ratio") == 0.25
    assert metric(r, "lavalamp_display_speed_ratio") == 2.0
    assert metric(r, "lavalamp_display_hue_degrees") == -90
    assert metric(r, "lavalamp_live_changes_total", {"source": "http"}) == 1


def test_commands_reseed_pause_and_resume(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)
    r = d.metrics.registry
    shown = lambda: metric(r, "lavalamp_frames_displayed_total")

    def check(d):
        assert serving(d, port)
        assert call_json(port, "POST", "/api/reseed") == (200, {"done": "reseed"})
        assert wait_until(lambda: metric(r, "lavalamp_reseeds_total", {"reason": "remote"}) == 1)
        reseeded = call_json(port, "GET", "/api/status")[1]
        assert call_json(port, "POST", "/api/pause")[0] == 200
        paused = call_json(port, "GET", "/api/status")[1]
        before = shown()
        time.sleep(0.3)  # an observation window: nothing may be drawn in it
        held = shown() - before
        assert call_json(port, "POST", "/api/resume")[0] == 200
        assert wait_until(lambda: shown() > before + 3)
        return reseeded, paused, held

    reseeded, paused, held = drive(d, check)
    assert reseeded["last_reseed"]["reason"] == "remote" and reseeded["guard"]["reseeds_total"] == 1
    assert paused["paused"] is True and held <= 1
    assert d.live.state.paused is False


@pytest.mark.parametrize("body, message", [
    (b"{not json", "invalid JSON body"),
    (b"[1, 2]", "expected a JSON object of one or more settings"),
    (b"{}", "expected a JSON object of one or more settings"),
    (b'{"brightness": 1.5}', "display.brightness: expected a number in 0..1, got 1.5"),
    (b'{"speed": "fast"}', "display.speed: expected a number in 0.05..20, got 'fast'"),
    (b'{"display_on": 1}', "display_on: expected true or false, got 1"),
    (b'{"temperature": true}', "model.temperature: expected a number in 0.05..3, got True"),
    (b'{"colour": 3}', "colour: unknown setting"),
    (b'{"metrics.port": 80}', "metrics.port: takes effect only at the next start"),
    (b'{"model.path": "/etc/shadow"}', "model.path: names a file, which remote control may not"),
    (b'{"brightness": 0.5, "hue_degrees": 999}', "display.hue_degrees: expected a number in"),
])
def test_bad_settings_are_400_with_the_config_files_message(tmp_path, lamp_path, body, message):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return call_json(port, "PATCH", "/api/settings", body)

    status, answer = drive(d, check)
    assert status == 400 and message in answer["error"], answer
    assert d.config.display.brightness == 1.0  # a refused change changes nothing, not even in part


def test_the_messages_are_the_config_files_own():
    with pytest.raises(ConfigError, match=r"display.speed: expected a number in 0.05..20, got 'fast'"):
        parse_config({"display": {"speed": "fast"}})


def test_wrong_method_unknown_path_and_huge_bodies(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return (call(port, "GET", "/api/reseed"), call(port, "OPTIONS", "/api/settings"),
                call(port, "GET", "/api/nothing"), call(port, "GET", "/etc/passwd"),
                call(port, "PATCH", "/api/settings", b"{" + b" " * 70000 + b"}"))

    wrong, delete, missing, outside, huge = drive(d, check)
    assert wrong[0] == 405 and wrong[1]["Allow"] == "POST"
    assert delete[0] == 405 and delete[1]["Allow"] == "GET, PATCH"
    assert missing[0] == outside[0] == 404 and huge[0] == 413
    for status, head, body in (wrong, delete, missing, outside, huge):
        assert head["Content-Type"] == "application/json" and json.loads(body)["error"]
    r = d.metrics.registry
    assert metric(r, "lavalamp_control_requests_total", {"code": "405"}) == 2
    assert metric(r, "lavalamp_control_requests_total", {"code": "404"}) == 2


def test_the_snapshot_is_the_frame_on_screen(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        call_json(port, "POST", "/api/pause")
        shot = call(port, "GET", "/api/snapshot.png")
        on_screen = d.renderer.last_frame.copy()
        call_json(port, "PATCH", "/api/settings", {"display_on": False})
        dark = call(port, "GET", "/api/snapshot.png")
        return shot, on_screen, dark

    (status, head, png), on_screen, dark = drive(d, check)
    assert status == 200 and head["Content-Type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (128, 128, 3) and np.array_equal(image, on_screen) and image.std() > 1
    assert np.asarray(Image.open(io.BytesIO(dark[2]))).max() == 0  # display off: black


def test_a_token_is_needed_when_configured_and_never_logged(tmp_path, lamp_path, caplog):
    caplog.set_level(logging.DEBUG)
    token = "s3cret-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    d, port = daemon(tmp_path, lamp_path, {"token_file": str(tmp_path / "token")})

    def check(d):
        assert serving(d, port)
        return (call(port, "GET", "/api/status"),
                call(port, "GET", "/api/status", headers={"Authorization": "Bearer wrong"}),
                call(port, "POST", "/api/reseed", headers={"Authorization": token}),
                call(port, "GET", "/api/status", headers={"Authorization": f"Bearer {token}"}),
                call(port, "GET", "/"))

    none, wrong, no_scheme, right, page = drive(d, check)
    for status, head, body in (none, wrong, no_scheme):
        assert status == 401 and head["WWW-Authenticate"].startswith("Bearer")
        assert "token" in json.loads(body)["error"]
    assert right[0] == 200 and page[0] == 200  # the page holds no data: it asks for the token
    assert metric(d.metrics.registry, "lavalamp_reseeds_total", {"reason": "remote"}) == 0
    assert token not in caplog.text


def test_off_loopback_needs_a_readable_token(tmp_path, lamp_path, caplog):
    with pytest.raises(ConfigError, match="control.token_file: required when control.address is "
                       "not loopback"):
        parse_config({"control": {"enabled": True, "address": "0.0.0.0"}})
    d, _ = daemon(tmp_path, lamp_path, {"address": "0.0.0.0",
                                        "token_file": str(tmp_path / "missing")})
    assert d.run() == EXIT_USAGE
    assert f"control.token_file: cannot read {tmp_path / 'missing'}" in caplog.text
    (tmp_path / "empty").write_text("\n")
    d, _ = daemon(tmp_path, lamp_path, {"token_file": str(tmp_path / "empty")})
    assert d.run() == EXIT_USAGE and "is empty" in caplog.text


def test_a_port_in_use_is_a_clear_start_up_error(tmp_path, lamp_path, caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        d, _ = daemon(tmp_path, lamp_path, {"port": taken.getsockname()[1]})
        assert d.run() == EXIT_USAGE
    assert "cannot serve the control API on 127.0.0.1" in caplog.text


def test_other_sites_and_rebound_names_are_refused(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return (call(port, "POST", "/api/reseed", headers={"Origin": "http://evil.example"}),
                call(port, "GET", "/api/status", headers={"Host": "evil.example"}),
                call(port, "POST", "/api/pause", headers={"Origin": f"http://127.0.0.1:{port}",
                                                          "Host": f"127.0.0.1:{port}"}),
                call(port, "GET", "/api/status", headers={"Host": f"localhost:{port}"}))

    cross, rebound, same, local = drive(d, check)
    assert cross[0] == rebound[0] == 403 and same[0] == local[0] == 200
    assert metric(d.metrics.registry, "lavalamp_reseeds_total", {"reason": "remote"}) == 0


@pytest.mark.slow
def test_a_flood_of_requests_never_stalls_the_frame_loop(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path, display={"fps": 60})
    drawn = []

    def flood(d):
        assert serving(d, port)
        draw = d.renderer.draw
        d.renderer.draw = lambda *a: (drawn.append(time.monotonic()), draw(*a))
        codes = []

        def client(i):
            for j in range(24):
                path, method, body = [("/api/status", "GET", None),
                                      ("/api/snapshot.png", "GET", None),
                                      ("/api/settings", "PATCH", {"hue_degrees": (i * 25 + j) % 180}),
                                      ("/api/settings", "PATCH", b"{broken")][j % 4]
                codes.append(call(port, method, path, body)[0])

        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(60)
        return codes

    codes = drive(d, flood)
    assert len(codes) == 192 and codes.count(400) == 48 and codes.count(200) == 144
    gaps = np.diff(drawn)
    assert len(drawn) > 10 and gaps.max() < 1.0, f"longest gap between frames {gaps.max():.2f} s"


class _Sliders(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs, self.external = {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "range":
            self.inputs[attrs["id"]] = (float(attrs["min"]), float(attrs["max"]))
        for key in ("src", "href", "action"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])


def test_the_page_is_served_whole_and_its_sliders_match_the_config(tmp_path, lamp_path):
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return call(port, "GET", "/")

    status, head, body = drive(d, check)
    assert status == 200 and head["Content-Type"].startswith("text/html")
    page = _Sliders()
    page.feed(body.decode())
    assert not page.external and b"http://" not in body and b"https://" not in body  # no CDN
    assert set(page.inputs) == {"brightness", "speed", "temperature", "hue_degrees", "saturation"}
    for name, (lo, hi) in page.inputs.items():
        assert (lo, hi) == tuple(field_meta(SETTINGS[name])["range"]), name


def test_a_change_the_lamp_cannot_apply_is_a_500_and_changes_nothing(tmp_path, lamp_path,
                                                                     monkeypatch):
    from lavalamp.daemon import renderer

    def refuse(self, display):
        if display.scaling == "fill":
            raise RuntimeError("the display cannot do that")

    monkeypatch.setattr(renderer.HeadlessRenderer, "apply", refuse)
    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return call_json(port, "PATCH", "/api/settings", {"display.scaling": "fill", "speed": 3})

    status, answer = drive(d, check)
    assert status == 500 and "RuntimeError: the display cannot do that" in answer["error"]
    assert d.config.display.scaling == "fit" and d.config.display.speed == 1.0
