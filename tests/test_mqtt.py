"""MQTT and Home Assistant discovery against a real mosquitto: announce, steer, survive the broker."""

import json
import logging
import signal
import time

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import Config, MqttConfig, load_config, parse_config
from lavalamp.daemon.mqtt import Topics, discovery, node_id, number, on_off, state_payloads
from lavalamp.daemon.service import EXIT_USAGE, Daemon

from .daemon_helpers import Running, drive, free_port, write_config
from .fakes import metric, save_fake_lamp, wait_until
from .mqtt_support import Broker, Watcher, require_mqtt


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30,
                          name="mqtt-lamp")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, free_port()).start()
    yield b
    b.kill()


def daemon(tmp_path, model, port, **mqtt):
    config = write_config(tmp_path / "c.yaml", {"mqtt": {"enabled": True, "port": port,
                                                         "sensors_every_s": 1, **mqtt}})
    return Daemon(config=load_config(config), config_path=config, model_path=model, headless=True,
                  registry=CollectorRegistry())


def connected(d, value=1, timeout=20.0):
    return wait_until(lambda: metric(d.metrics.registry, "lavalamp_mqtt_connected") == value,
                      timeout=timeout)


def shown(d):
    return metric(d.metrics.registry, "lavalamp_frames_displayed_total")


def test_discovery_payloads_group_one_device_with_unique_ids():
    topics = Topics(MqttConfig(topic_prefix="lavalamp/bar"))
    payloads = discovery(topics, "default-lamp", "0.1.0")
    ids = [p["unique_id"] for p in payloads.values()]
    assert len(ids) == len(set(ids)) == 12 and all(i.startswith("lavalamp_bar_") for i in ids)
    assert {json.dumps(p["device"]) for p in payloads.values()} == {json.dumps(
        {"identifiers": ["lavalamp_bar"], "name": "Lava lamp lavalamp/bar",
         "manufacturer": "neural-lavalamp", "model": "default-lamp", "sw_version": "0.1.0"})}
    assert sorted(t.split("/")[1] for t in payloads) == [
        "button", "button", "light", "number", "number", "number", "number", "sensor", "sensor",
        "sensor", "switch", "text"]
    assert all(t.startswith("homeassistant/") and t.endswith("/config") for t in payloads)
    speed = payloads["homeassistant/number/lavalamp_bar/speed/config"]
    assert (speed["min"], speed["max"]) == (0.05, 20.0)  # the config's own range
    assert all(p["availability_topic"] == "lavalamp/bar/availability" for p in payloads.values())
    settings = {"display_on": True, "brightness": 0.42, "paused": False, "speed": 1.0,
                "temperature": 0.5, "hue_degrees": -30.0, "saturation": 1.0}
    states = state_payloads(topics, settings)
    assert states["lavalamp/bar/brightness/state"] == "42"
    assert states["lavalamp/bar/display/state"] == "ON"
    assert states["lavalamp/bar/hue_degrees/state"] == "-30"
    # every state topic a payload names is one the daemon publishes
    named = {p[k] for p in payloads.values() for k in ("state_topic", "brightness_state_topic")
             if k in p}
    assert named == set(states) | {"lavalamp/bar/sensors"}


def test_payload_parsing_and_topic_checks():
    assert on_off(" on ") is True and on_off("OFF") is False and number("2.5") == 2.5
    for bad, parse in (("maybe", on_off), ("fast", number)):
        with pytest.raises(ValueError, match=repr(bad)):
            parse(bad)
    assert node_id("lava lamp/bar.1") == "lava_lamp_bar_1"
    for prefix in ("lavalamp/#", "lavalamp/+/x", "/lavalamp", "lavalamp/"):
        with pytest.raises(Exception, match="mqtt.topic_prefix: expected a topic without wildcards"):
            parse_config({"mqtt": {"topic_prefix": prefix}})
    with pytest.raises(Exception, match="mqtt.username and mqtt.password_file: required"):
        parse_config({"mqtt": {"enabled": True, "host": "broker.example"}})
    assert Config().mqtt.enabled is False


def test_home_assistant_sees_the_lamp_and_steers_it(tmp_path, lamp_path, broker, caplog):
    caplog.set_level(logging.WARNING)
    d = daemon(tmp_path, lamp_path, broker.port)
    r = d.metrics.registry

    def steer(d):
        assert connected(d)
        first = Watcher(broker.port, ["lavalamp/availability"])  # online comes after discovery
        assert first.wait(lambda m: m.get("lavalamp/availability") == "online")
        first.close()
        ha = Watcher(broker.port, ["homeassistant/#", "lavalamp/#"])  # comes late: all retained
        try:
            assert ha.wait(lambda m: len([t for t in m if t.startswith("homeassistant/")]) == 12)
            assert ha.wait(lambda m: m.get("lavalamp/availability") == "online")
            assert ha.wait(lambda m: m.get("lavalamp/display/state") == "ON")
            configs = {t: json.loads(p) for t, p in ha.latest.items()
                       if t.startswith("homeassistant/")}
            assert all(ha.retained[t] for t in configs)
            commands = {p[k] for p in configs.values() for k in
                        ("command_topic", "brightness_command_topic") if k in p}
            assert commands == set(d.mqtt.handlers)  # each one the daemon subscribed to
            ha.publish("lavalamp/brightness/set", "40")
            assert ha.wait(lambda m: m.get("lavalamp/brightness/state") == "40")
            assert metric(r, "lavalamp_display_brightness_ratio") == pytest.approx(0.4)
            ha.publish("lavalamp/display/set", "OFF")
            assert ha.wait(lambda m: m.get("lavalamp/display/state") == "OFF")
            assert wait_until(lambda: metric(r, "lavalamp_display_on") == 0)
            ha.publish("lavalamp/display/set", "ON")
            ha.publish("lavalamp/speed/set", "fast")  # refused, logged, nothing else happens
            ha.publish("lavalamp/speed/set", "2.5")
            assert ha.wait(lambda m: m.get("lavalamp/speed/state") == "2.5")
            ha.publish("lavalamp/hue_degrees/set", "500")  # out of range: refused
            ha.publish("lavalamp/reseed/set", "PRESS")
            assert wait_until(lambda: metric(r, "lavalamp_reseeds_total", {"reason": "remote"}) == 1)
            assert ha.wait(lambda m: json.loads(m.get("lavalamp/sensors", "{}")).get("reseeds") == 1)
            assert json.loads(ha.latest["lavalamp/sensors"])["display_fps"] > 0
        finally:
            ha.close()

    drive(d, steer)
    assert d.config.display.speed == 2.5 and d.config.display.hue_degrees == 0.0
    assert "lavalamp/speed/set: expected a number, got 'fast' (ignored)" in caplog.text
    assert "display.hue_degrees: expected a number in -180..180, got 500.0 (ignored)" in caplog.text
    assert metric(r, "lavalamp_live_changes_total", {"source": "mqtt"}) >= 4
    assert metric(r, "lavalamp_mqtt_enabled") == 1
    watcher = Watcher(broker.port, ["lavalamp/availability"])  # a clean stop says offline
    assert watcher.wait(lambda m: m.get("lavalamp/availability") == "offline")
    watcher.close()


def test_losing_the_broker_never_touches_the_lamp_and_it_reconnects(tmp_path, lamp_path, broker,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    d = daemon(tmp_path, lamp_path, broker.port)

    def outage(d):
        assert connected(d)
        broker.kill()
        assert connected(d, 0)
        before = shown(d)
        assert wait_until(lambda: shown(d) > before + 20)  # the lamp goes on without the broker
        broker.start()
        assert connected(d, 1, timeout=40)  # backoff: 1, 2, 4 ... s between tries
        ha = Watcher(broker.port, ["lavalamp/#"])
        ha.publish("lavalamp/paused/set", "ON")  # commands work again
        assert wait_until(lambda: d.live.state.paused)
        assert ha.wait(lambda m: m.get("lavalamp/availability") == "online")
        ha.close()

    drive(d, outage)
    assert caplog.text.count("MQTT: lost the broker") == 1
    assert "MQTT: connected again after" in caplog.text
    assert metric(d.metrics.registry, "lavalamp_mqtt_disconnects_total") >= 1


@pytest.mark.slow
def test_a_refused_login_or_no_broker_at_all_leaves_the_lamp_alone(tmp_path, lamp_path, caplog):
    caplog.set_level(logging.WARNING)
    secured = Broker(tmp_path, free_port(), user=("lamp", "right")).start()
    (tmp_path / "wrong").write_text("wrong\n")
    (tmp_path / "right").write_text("right\n")
    try:
        for port, password, expect in ((secured.port, "wrong", "refused the connection"),
                                       (free_port(), "right", "cannot reach the broker")):
            caplog.clear()
            d = daemon(tmp_path, lamp_path, port, username="lamp",
                       password_file=str(tmp_path / password))

            def run(d):
                assert wait_until(lambda: metric(d.metrics.registry,
                                                 "lavalamp_mqtt_disconnects_total") >= 2,
                                  timeout=30)  # it has tried twice, with backoff
                before = shown(d)
                assert wait_until(lambda: shown(d) > before + 10)
                return time.monotonic()

            asked = drive(d, run)
            assert time.monotonic() - asked < 2.5  # stopping does not wait for the broker
            assert metric(d.metrics.registry, "lavalamp_mqtt_connected") == 0
            assert caplog.text.count(expect) == 1, caplog.text  # once per outage, not per try
        d = daemon(tmp_path, lamp_path, secured.port, username="lamp",
                   password_file=str(tmp_path / "right"))
        drive(d, lambda d: connected(d) or pytest.fail("the right password did not connect"))
    finally:
        secured.kill()


def test_an_unreadable_password_file_stops_start_up(tmp_path, lamp_path, caplog):
    require_mqtt()
    d = daemon(tmp_path, lamp_path, free_port(), username="lamp",
               password_file=str(tmp_path / "missing"))
    assert d.run() == EXIT_USAGE
    assert "mqtt.password_file: cannot read" in caplog.text


@pytest.mark.slow
def test_a_killed_daemon_is_marked_offline_by_its_last_will(tmp_path, lamp_path, broker):
    config = write_config(tmp_path / "c.yaml", {"mqtt": {"enabled": True, "port": broker.port}})
    run = Running(["--headless", "--model", lamp_path, "--config", config])
    try:
        run.wait_for_line("MQTT: connected")
        ha = Watcher(broker.port, ["lavalamp/availability"])
        assert ha.wait(lambda m: m.get("lavalamp/availability") == "online")
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(10)
        assert ha.wait(lambda m: m.get("lavalamp/availability") == "offline", timeout=60)
        ha.close()
    finally:
        run.kill()
