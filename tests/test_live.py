"""The one path for live changes: which fields are live, validation, and each kind applied in place."""

import dataclasses
import logging
import threading

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import Config, ConfigError, load_config, parse_config
from lavalamp.daemon.live import (SETTINGS, LampState, LiveSettings, changed_keys, field_meta,
                                  flatten, is_live, merge, resolve)
from lavalamp.daemon.service import Daemon

from .daemon_helpers import drive, write_config
from .fakes import metric, save_fake_lamp, wait_until

RESTART_ONLY = {"model.device", "model.torch_threads", "buffer.depth_frames", "buffer.batch_frames",
                "metrics.enabled", "metrics.address", "metrics.port", "control.enabled",
                "control.address", "control.port", "control.token_file",
                "display.screens", "display.multi"}  # which monitors, how many dreams


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def daemon(tmp_path, model, sections=None):
    config_path = write_config(tmp_path / "c.yaml", sections)
    return Daemon(config=load_config(config_path), config_path=config_path, model_path=model,
                  headless=True, registry=CollectorRegistry())


def running(d) -> bool:
    return wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total") > 2,
                      timeout=30)


def another_value(meta, default):
    """A valid value different from `default`, for booleans, numbers and choices."""
    if isinstance(default, bool):
        return not default
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != default)
    if isinstance(default, (int, float)) and meta["range"]:
        lo, hi = meta["range"]
        value = default + max((hi - lo) * 0.01, 1) if default + 1 <= hi else default - 1
        value = min(max(value, lo), hi)
        return int(value) if isinstance(default, int) else float(value)
    return None


def test_every_field_declares_live_or_restart_and_the_restart_ones_are_few():
    flat = flatten(Config())
    restart = {k for k in flat if not is_live(k)}
    assert all("live" in field_meta(k) for k in flat)
    assert restart - {k for k in restart if k.startswith("mqtt.")} == RESTART_ONLY
    assert {"display.brightness", "model.temperature", "model.seed", "model.path",
            "producer.stall_s", "model.crossfade_frames", "schedule.dim"} <= set(flat) - restart


def test_the_shipped_config_marks_each_sections_restart_keys():
    from .test_config import ROOT

    lines = [ln for ln in (ROOT / "config.yaml").read_text().splitlines() if ln and ln[0].isalpha()]
    for line in lines:
        section = line.split(":")[0]
        fields = dataclasses.fields(getattr(Config(), section))
        restart = [f.name for f in fields if not f.metadata["live"]]
        if len(restart) == len(fields):
            assert line.endswith("(restart: all keys)"), line
        elif restart:
            assert line.endswith(f"(restart: {', '.join(restart)})"), line
        else:
            assert "restart" not in line, line


def test_a_partial_change_is_validated_with_the_config_files_messages():
    with pytest.raises(ConfigError) as from_file:
        parse_config({"display": {"brightness": 1.5}})
    with pytest.raises(ConfigError) as live:
        merge(Config(), LampState(), {"display.brightness": 1.5})
    assert str(live.value) == str(from_file.value) == \
        "display.brightness: expected a number in 0..1, got 1.5"
    with pytest.raises(ConfigError, match="state.display_on|display_on: expected true or false"):
        merge(Config(), LampState(), {"state.display_on": "yes"})
    with pytest.raises(ConfigError, match="schedule.display_off is set but schedule.display_on"):
        merge(Config(), LampState(), {"schedule.display_off": "0 23 * * *"})
    config, state = merge(Config(), LampState(), {"display.speed": 3, "state.paused": True})
    assert config.display.speed == 3.0 and state.paused and changed_keys(Config(), config) == \
        ["display.speed"]


def test_remote_names_resolve_to_live_keys_only():
    assert resolve({"brightness": 0.5, "guard.freeze_s": 9}) == {"display.brightness": 0.5,
                                                                 "guard.freeze_s": 9}
    assert all(is_live(key) for key in SETTINGS.values())
    for name, message in (("metrics.port", "takes effect only at the next start"),
                          ("colour", "unknown setting"), ("state.dimmed", "unknown setting"),
                          ("display.nope", "unknown setting"),
                          ("model.path", "names a file, which remote control may not")):
        with pytest.raises(ConfigError, match=message):
            resolve({name: 1})


def test_requests_from_many_threads_coalesce_and_each_caller_is_told():
    live = LiveSettings(Config())
    done = []
    threads = [threading.Thread(target=lambda i=i: done.append(
        live.request({"display.hue_degrees": float(i)} if i % 2 else {"display.speed": 1 + i},
                     "http"))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pending = live.take()
    assert len(pending.done) == 8 and live.take() is None
    assert pending.config.display.hue_degrees in {1.0, 3.0, 5.0, 7.0}
    assert pending.config.display.speed in {1.0, 3.0, 5.0, 7.0}  # every change kept, none lost
    later = live.request({"display.fps": 30}, "http")  # arrives while the first is being applied
    live.applied(pending.config, pending.state, pending)
    assert all(event.is_set() for event in pending.done) and not later.is_set()
    second = live.take()
    assert second.config.display.hue_degrees == pending.config.display.hue_degrees
    assert second.config.display.fps == 30


def test_live_settings_apply_in_place_without_a_reseed(tmp_path, lamp_path):
    d = daemon(tmp_path, lamp_path, {"schedule": {"watch_model_s": 0}})

    def change(d):
        assert running(d)
        seed, lamp = d.source.dream.seed, d.source.lamp
        d.live.request({"display.fps": 50, "display.speed": 2, "model.temperature": 0.5,
                        "display.brightness": 0.3, "display.hue_degrees": 40,
                        "display.saturation": 0.5, "model.crossfade_frames": 5,
                        "producer.stall_s": 9, "logging.level": "DEBUG"}, "http").wait(10)
        assert wait_until(lambda: d.source.dream.temperature == 0.5)
        assert wait_until(lambda: d.source.crossfade_frames == 5)
        shown = metric(d.metrics.registry, "lavalamp_frames_displayed_total")
        assert wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total")
                          > shown + 5)
        return seed, lamp

    seed, lamp = drive(d, change)
    r = d.metrics.registry
    assert d.source.dream.seed == seed and d.source.lamp is lamp  # the same dream goes on
    assert sum(metric(r, "lavalamp_reseeds_total", {"reason": x}) for x in
               ("manual", "remote", "config", "schedule")) == 0
    assert metric(r, "lavalamp_model_swaps_total", {"result": "loaded"}) == 0
    assert metric(r, "lavalamp_display_target_frames_per_second") == 50
    assert metric(r, "lavalamp_display_speed_ratio") == 2
    assert metric(r, "lavalamp_model_temperature_ratio") == 0.5
    assert metric(r, "lavalamp_display_hue_degrees") == 40
    assert metric(r, "lavalamp_live_changes_total", {"source": "http"}) == 1
    assert d.producer.config.stall_s == 9 and logging.getLogger().level == logging.DEBUG
    assert d.colour.hue_degrees == 40 and d.colour.saturation == 0.5
    logging.getLogger().setLevel(logging.WARNING)


def test_the_frame_on_screen_takes_brightness_and_colour(tmp_path, lamp_path):
    d = daemon(tmp_path, lamp_path)

    def change(d):
        assert running(d)
        d.live.request({"display.brightness": 0.0}, "http").wait(10)
        assert wait_until(lambda: d.renderer.last_frame.max() == 0)
        d.live.request({"display.brightness": 1.0, "display.saturation": 0.0}, "http").wait(10)
        assert wait_until(lambda: d.renderer.last_frame.max() > 0)
        frame = d.renderer.last_frame.astype(int)
        return frame

    frame = drive(d, change)
    assert abs(frame[..., 0] - frame[..., 1]).max() <= 1  # grey: saturation 0
    assert abs(frame[..., 1] - frame[..., 2]).max() <= 1


def test_sighup_applies_what_changed_and_logs_restart_only_keys(tmp_path, lamp_path, caplog):
    caplog.set_level(logging.INFO)
    d = daemon(tmp_path, lamp_path, {"schedule": {"watch_model_s": 0}})
    loads = []

    def change(d):
        assert running(d)
        d.producer.request_load = lambda *a: loads.append(a)  # the model must not be reloaded
        d.live.request({"display.brightness": 0.4}, "http").wait(10)  # a remote change first
        write_config(tmp_path / "c.yaml", {"display": {"fps": 45}, "buffer": {"depth_frames": 32},
                                           "model": {"torch_threads": 2},
                                           "schedule": {"watch_model_s": 0}})
        d._reload = True  # what SIGHUP's handler does
        assert wait_until(lambda: d.config.display.fps == 45)

    drive(d, change)
    assert d.config.buffer.depth_frames == 64 and d.ring.capacity == 64
    assert d.config.model.torch_threads == 1
    assert d.config.display.brightness == 0.4  # the file did not change it: the remote change stays
    assert "buffer.depth_frames changed to 32: it takes effect at the next start (not applied)" \
        in caplog.text
    assert "model.torch_threads changed to 2" in caplog.text
    assert loads == [] and "loading" not in caplog.text


def test_the_model_is_reloaded_when_its_path_or_file_changes(tmp_path, lamp_path):
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    save_fake_lamp(first, contrast=30, name="first")
    save_fake_lamp(second, contrast=30, name="second", seed=4)
    d = daemon(tmp_path, None, {"model": {"path": str(first)}, "schedule": {"watch_model_s": 0}})
    swaps = lambda: metric(d.metrics.registry, "lavalamp_model_swaps_total", {"result": "loaded"})

    def change(d):
        assert running(d)
        write_config(tmp_path / "c.yaml", {"model": {"path": str(second)},
                                           "schedule": {"watch_model_s": 0}})
        d._reload = True
        assert wait_until(lambda: d.source.lamp.name == "second", timeout=30)
        save_fake_lamp(second, contrast=30, name="second-rewritten", seed=5)
        d._reload = True  # same config, the file rewritten: loaded again
        assert wait_until(lambda: d.source.lamp.name == "second-rewritten", timeout=30)
        d._reload = True  # nothing changed at all: nothing loaded
        assert wait_until(lambda: not d._reload)
        shown = metric(d.metrics.registry, "lavalamp_frames_displayed_total")
        assert wait_until(lambda: metric(d.metrics.registry, "lavalamp_frames_displayed_total")
                          > shown + 10)

    drive(d, change)
    assert swaps() == 2


def test_a_new_seed_starts_a_dream_from_it(tmp_path, lamp_path):
    d = daemon(tmp_path, lamp_path)

    def change(d):
        assert running(d)
        d.live.request({"model.seed": 1234}, "http").wait(10)
        assert wait_until(lambda: d.source.dream.seed == 1234)

    drive(d, change)
    assert metric(d.metrics.registry, "lavalamp_reseeds_total", {"reason": "config"}) == 1
    assert d.source.last_reseed[0] == "config"


def test_display_state_from_remote_and_keyboard_takes_the_same_path(tmp_path, lamp_path):
    d = daemon(tmp_path, lamp_path)

    def change(d):
        assert running(d)
        d.live.request({"state.display_on": False}, "mqtt").wait(10)
        assert wait_until(lambda: d.renderer.blanked)
        assert metric(d.metrics.registry, "lavalamp_display_on") == 0
        assert d.producer._paused.is_set()
        d.live.request({"state.display_on": True}, "mqtt").wait(10)
        events = iter([["pause"]])
        d.renderer.events = lambda: next(events, [])
        assert wait_until(lambda: d.live.state.paused)
        assert metric(d.metrics.registry, "lavalamp_display_paused") == 1

    drive(d, change)
    r = d.metrics.registry
    assert metric(r, "lavalamp_live_changes_total", {"source": "keyboard"}) == 1
    assert metric(r, "lavalamp_live_changes_total", {"source": "mqtt"}) == 2
    assert metric(r, "lavalamp_live_changes_total", {"source": "schedule"}) == 1  # its word at start


def test_display_on_says_what_is_on_screen_while_the_schedule_still_says_on(tmp_path, lamp_path):
    """Paused or with its monitor gone, the lamp is not on screen: display_on 0, scheduled_on 1
    (what LavalampDisplayOffOutsideSchedule alerts on)."""
    d = daemon(tmp_path, lamp_path)
    r = d.metrics.registry
    on = lambda: (metric(r, "lavalamp_display_on"), metric(r, "lavalamp_display_scheduled_on"))  # noqa: E731

    def change(d):
        assert running(d) and wait_until(lambda: on() == (1, 1))
        d.command("pause", "http").wait(10)
        assert wait_until(lambda: on() == (0, 1))
        d.command("resume", "http").wait(10)
        assert wait_until(lambda: on() == (1, 1))
        events = iter([["lost:0"]])
        d.renderer.events = lambda: next(events, [])
        assert wait_until(lambda: on() == (0, 1))
        events = iter([["back:0"]])
        assert wait_until(lambda: on() == (1, 1))

    drive(d, change)
    assert on() == (0, 1)  # a stopped daemon shows nothing


def test_every_live_key_is_applied_and_every_restart_key_kept(tmp_path, lamp_path, caplog):
    """Each live field of every kind (bool, int, float, choice) reaches the running config; each
    restart-only one is kept at its running value and logged."""
    caplog.set_level(logging.WARNING)
    d = daemon(tmp_path, lamp_path, {"display": {"fps": 120}})
    flat = flatten(d.config)
    changes = {k: another_value(field_meta(k), v) for k, v in flat.items()}
    changes = {k: v for k, v in changes.items() if v is not None and k != "logging.level"}
    live = {k: v for k, v in changes.items() if is_live(k)}
    restart = {k: v for k, v in changes.items() if not is_live(k)}
    assert len(live) > 30 and len(restart) >= 8

    def change(d):
        assert running(d)
        d.live.request(changes, "sighup").wait(10)

    drive(d, change)
    after = flatten(d.config)
    assert {k: after[k] for k in live} == live
    assert {k: after[k] for k in restart} == {k: flat[k] for k in restart}
    for key in restart:
        assert f"{key} changed to" in caplog.text
