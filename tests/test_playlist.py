"""The playlist: order, skipping lamps that fail, timed changes, and a lamp change as a cross-fade."""

import random
import threading
import time

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import PlaylistConfig, load_config
from lavalamp.daemon.playlist import Playlist
from lavalamp.daemon.schedule import Schedule
from lavalamp.daemon.service import EXIT_OK, Daemon
from lavalamp.models.checkpoint import save_lamp

from .daemon_helpers import drive, free_port, write_config
from .fakes import make_lamp, mean_abs_diff, metric, save_fake_lamp, wait_until


def playlist(tmp_path, lamps, order="sequential", seed=0):
    for name in lamps:
        (tmp_path / f"{name}.safetensors").touch()
    return Playlist(config=PlaylistConfig(lamps=tuple(lamps), order=order, every_s=60),
                    library=tmp_path, rng=random.Random(seed))


def test_sequential_goes_round_in_the_order_listed(tmp_path):
    p = playlist(tmp_path, ["a", "b", "c"])
    assert [p.current] + [p.advance() for _ in range(5)] == ["a", "b", "c", "a", "b", "c"]
    assert p.path() == tmp_path / "c.safetensors"


def test_shuffle_shows_every_lamp_once_a_round_and_never_one_twice_in_a_row(tmp_path):
    p = playlist(tmp_path, ["a", "b", "c", "d"], order="shuffle", seed=3)
    shown = [p.current] + [p.advance() for _ in range(39)]
    rounds = [shown[i:i + 4] for i in range(0, 40, 4)]
    assert all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    assert all(x != y for x, y in zip(shown, shown[1:]))
    assert len({tuple(r) for r in rounds}) > 1  # a fresh order each round


def test_a_refused_lamp_is_skipped_but_not_round_and_round_forever(tmp_path):
    p = playlist(tmp_path, ["a", "b", "c"])
    assert p.advance() == "b"
    assert p.refused("a") is None  # not the lamp asked for any more: nothing to skip
    assert p.refused("b") == "c"
    assert p.refused("c") == "a"
    assert p.refused("a") is None  # all three failed in a row: the lamp on screen stays
    p.advance()
    assert p.refused(p.current) is not None  # a timed change tries again


def test_choose_takes_library_names_only(tmp_path):
    p = playlist(tmp_path, ["a", "b"])
    (tmp_path / "other.safetensors").touch()
    assert p.choose("other") == "other" and p.path() == tmp_path / "other.safetensors"
    with pytest.raises(ValueError, match="no lamp 'missing'"):
        p.choose("missing")
    with pytest.raises(ValueError, match="is not a lamp name"):
        p.choose("../a")


def test_the_schedule_moves_on_every_s_and_keeps_the_job_through_a_reload(tmp_path):
    fired = threading.Event()
    config = load_config(None).schedule
    s = Schedule(config=config, model_path=None, on_state=lambda changes: None,
                 on_reseed=lambda: None, on_model_change=lambda: None)
    s.set_playlist(0.05, None, fired.set)
    s.start()
    try:
        assert fired.wait(5)
        s.configure(config)
        assert s.next_run("next_lamp") is not None
        s.set_playlist(None, "30 6 * * *", fired.set)
        assert (s.next_run("next_lamp").hour, s.next_run("next_lamp").minute) == (6, 30)
    finally:
        s.shutdown()


# --- end to end: a headless daemon changing lamps -------------------------------------------

@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "lamps"
    folder.mkdir()
    for name, seed, tint in (("first", 1, 1.5), ("second", 2, -0.8)):  # bright, then darker
        lamp = make_lamp(name=name, seed=seed, contrast=100)
        with torch.no_grad():
            lamp.decoder.layers[-2].bias.add_(tint)
        save_lamp(lamp, folder / f"{name}.safetensors")
    (folder / "broken.safetensors").write_bytes(b"half-written garbage")
    return folder


@pytest.mark.slow
def test_a_lamp_change_cross_fades_skips_a_broken_lamp_and_never_stalls(tmp_path, library):
    config_path = write_config(tmp_path / "c.yaml", {
        "model": {"library": str(library), "seed": 4, "crossfade_frames": 12},
        "playlist": {"lamps": ["first", "broken", "second"], "every_s": 3600},
        "buffer": {"depth_frames": 16, "batch_frames": 4},
        "display": {"speed": 4, "fps": 60}})
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config_path), config_path=config_path, model_path=None,
               headless=True, registry=registry)
    shown: list[tuple[float, np.ndarray]] = []

    def record():
        assert wait_until(lambda: getattr(d, "renderer", None) is not None)
        draw = d.renderer.draw

        def draw_and_keep(*args, **kwargs):
            draw(*args, **kwargs)
            shown.append((time.monotonic(), d.renderer.last_frame.copy()))
        d.renderer.draw = draw_and_keep
        record.started = wait_until(lambda: len(shown) > 30)
        record.before = len(shown)
        d.next_lamp()  # as the playlist's timer does: "broken" fails, so "second" comes instead
        record.swapped = wait_until(lambda: d.source.lamp.name == "second")
        generated = metric(registry, "lavalamp_frames_generated_total")
        record.faded = wait_until(
            lambda: metric(registry, "lavalamp_frames_generated_total") > generated + 24)
        settle = d.ring.end_seq
        record.settled = wait_until(lambda: d.ring.first_seq > settle + 2, timeout=20)
        d.request_stop("test")

    thread = threading.Thread(target=record)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(30)
    assert record.started and record.swapped and record.faded and record.settled
    assert metric(registry, "lavalamp_model_swaps_total", {"result": "refused"}) == 1
    assert metric(registry, "lavalamp_model_swaps_total", {"result": "loaded"}) == 1
    assert d.playlist.current == "second"
    frames = [f for _, f in shown]
    old, new = frames[record.before - 1], frames[-1]
    assert min(f.mean() for f in frames) > 40, "a black frame"
    cut = mean_abs_diff(old, new)
    steps = [mean_abs_diff(a, b) for a, b in zip(frames[record.before - 1:], frames[record.before:])]
    assert cut > 40, "the two lamps look alike: the test would not see a cut"
    assert max(steps) < cut / 10, f"a cut, not a cross-fade: step {max(steps):.1f} of {cut:.1f}"
    assert metric(registry, "lavalamp_ring_buffer_underruns_total") == 0, "the lamp stalled"
    gaps = np.diff([t for t, _ in shown])
    assert gaps.max() < 0.25, f"the display stopped for {gaps.max():.3f} s"


def test_the_control_api_moves_on_and_chooses_lamps_by_name_never_by_path(tmp_path, library):
    from .test_control import call_json

    port = free_port()
    config_path = write_config(tmp_path / "c.yaml", {
        "model": {"library": str(library)}, "control": {"enabled": True, "port": port},
        "playlist": {"lamps": ["first", "second"], "every_s": 3600},
        "buffer": {"depth_frames": 16, "batch_frames": 4}})
    d = Daemon(config=load_config(config_path), config_path=config_path, model_path=None,
               headless=True, registry=CollectorRegistry())

    def steer(d):
        assert wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total")
                          > 2, timeout=30)
        out = {"lamps": call_json(port, "GET", "/api/lamps")}
        out["next"] = call_json(port, "POST", "/api/next_lamp")
        out["second"] = wait_until(lambda: d.source.lamp.name == "second")
        out["path"] = call_json(port, "POST", "/api/lamp", {"name": str(library / "first")})
        out["unknown"] = call_json(port, "POST", "/api/lamp", {"name": "nope"})
        out["chosen"] = call_json(port, "POST", "/api/lamp", {"name": "first"})
        out["first"] = wait_until(lambda: d.source.lamp.name == "first")
        out["status"] = call_json(port, "GET", "/api/status")[1]
        return out

    out = drive(d, steer)
    assert out["lamps"] == (200, {"lamps": ["broken", "first", "second"]})
    assert out["next"] == (200, {"done": "next_lamp"}) and out["second"]
    assert out["path"][0] == 400 and "is not a lamp name" in out["path"][1]["error"]
    assert out["unknown"][0] == 400 and "no lamp 'nope'" in out["unknown"][1]["error"]
    assert out["chosen"] == (200, {"lamp": "first"}) and out["first"]
    assert out["status"]["playlist"] == {"lamp": "first", "lamps": ["first", "second"]}


def test_next_lamp_without_a_playlist_is_a_clear_400(tmp_path):
    from .test_control import call_json

    port = free_port()
    config_path = write_config(tmp_path / "c.yaml", {"control": {"enabled": True, "port": port}})
    d = Daemon(config=load_config(config_path), config_path=config_path,
               model_path=str(save_fake_lamp(tmp_path / "l.safetensors")), headless=True,
               registry=CollectorRegistry())
    shown = lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total") > 2  # noqa: E731
    status, body = drive(d, lambda d: (wait_until(shown, timeout=30),
                                       call_json(port, "POST", "/api/next_lamp"))[1])
    assert status == 400 and "no playlist is configured" in body["error"]


@pytest.mark.slow
def test_mqtt_moves_on_and_chooses_lamps_by_name_never_by_path(tmp_path, library, caplog):
    from .mqtt_support import Broker, Watcher, require_mqtt

    require_mqtt()
    broker = Broker(tmp_path, free_port()).start()
    config_path = write_config(tmp_path / "c.yaml", {
        "model": {"library": str(library)}, "mqtt": {"enabled": True, "port": broker.port},
        "playlist": {"lamps": ["first", "second"], "every_s": 3600},
        "buffer": {"depth_frames": 16, "batch_frames": 4}})
    d = Daemon(config=load_config(config_path), config_path=config_path, model_path=None,
               headless=True, registry=CollectorRegistry())

    def steer(d):
        assert wait_until(lambda: metric(d.metrics.registry, "lavalamp_mqtt_connected") == 1,
                          timeout=20)
        ha = Watcher(broker.port, ["lavalamp/#"])
        try:
            ha.publish("lavalamp/next_lamp/set", "PRESS")
            assert wait_until(lambda: d.source.lamp.name == "second")
            ha.publish("lavalamp/lamp/set", str(library / "first"))  # a path: refused
            ha.publish("lavalamp/lamp/set", "first")
            assert wait_until(lambda: d.source.lamp.name == "first")
        finally:
            ha.close()

    try:
        drive(d, steer)
    finally:
        broker.kill()
    assert "lavalamp/lamp/set: lamp " in caplog.text and "is not a lamp name" in caplog.text
