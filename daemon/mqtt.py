"""MQTT remote control with Home Assistant discovery: a thin bridge that never makes the lamp wait."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Callable

from .config import ConfigError, MqttConfig
from .live import SETTINGS, field_meta
from .metrics import DaemonMetrics

log = logging.getLogger(__name__)

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30  # paho's backoff: 1, 2, 4 ... 30 s between tries
KEEPALIVE_S = 30
STOP_WAIT_S = 1.0  # longest the daemon's stop waits for the client's thread


class MqttError(RuntimeError):
    """MQTT cannot start: paho-mqtt missing, or an unreadable password file."""


def node_id(topic_prefix: str) -> str:
    """The lamp's id in Home Assistant, from its topic prefix ('lavalamp/bar' -> 'lavalamp_bar')."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic_prefix)


def on_off(payload: str) -> bool:
    """'ON' / 'OFF' (any case) as a bool; ValueError otherwise."""
    text = payload.strip().upper()
    if text not in ("ON", "OFF"):
        raise ValueError(f"expected ON or OFF, got {payload!r}")
    return text == "ON"


def number(payload: str) -> float:
    """A number payload as float; ValueError naming it otherwise."""
    try:
        return float(payload)
    except ValueError:
        raise ValueError(f"expected a number, got {payload!r}") from None


# The numbers Home Assistant shows (setting -> name, step, unit); their ranges come from the config.
NUMBERS = {"speed": ("Speed", 0.05, "x"), "temperature": ("Temperature", 0.05, None),
           "hue_degrees": ("Hue", 1, "°"), "saturation": ("Saturation", 0.05, None)}
SENSORS = {"display_fps": ("Displayed fps", "fps", "measurement"),
           "drift": ("Latent drift", None, "measurement"),
           "reseeds": ("Reseeds", None, "total_increasing")}


class Topics:
    """Every topic of one lamp, under its prefix."""

    def __init__(self, config: MqttConfig) -> None:
        self.base = config.topic_prefix
        self.discovery = config.discovery_prefix
        self.node = node_id(config.topic_prefix)
        self.availability = f"{self.base}/availability"
        self.sensors = f"{self.base}/sensors"
        self.ha_status = f"{self.discovery}/status"

    def state(self, name: str) -> str:
        return f"{self.base}/{name}/state"

    def command(self, name: str) -> str:
        return f"{self.base}/{name}/set"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery}/{component}/{self.node}/{object_id}/config"


def discovery(topics: Topics, lamp_name: str, version: str) -> dict[str, dict]:
    """Home Assistant's discovery payloads (topic -> config), one device grouping them."""
    t, node = topics, topics.node
    common = {"availability_topic": t.availability, "payload_available": "online",
              "payload_not_available": "offline",
              "device": {"identifiers": [node], "name": f"Lava lamp {t.base}",
                         "manufacturer": "neural-lavalamp", "model": lamp_name,
                         "sw_version": version}}
    out = {t.config("light", "lamp"): {
        "name": None, "unique_id": f"{node}_lamp", "command_topic": t.command("display"),
        "state_topic": t.state("display"), "brightness_command_topic": t.command("brightness"),
        "brightness_state_topic": t.state("brightness"), "brightness_scale": 100,
        "payload_on": "ON", "payload_off": "OFF"}}
    out[t.config("button", "new_dream")] = {
        "name": "New dream", "unique_id": f"{node}_new_dream", "command_topic": t.command("reseed"),
        "payload_press": "PRESS", "icon": "mdi:shuffle-variant"}
    out[t.config("button", "next_lamp")] = {
        "name": "Next lamp", "unique_id": f"{node}_next_lamp",
        "command_topic": t.command("next_lamp"), "payload_press": "PRESS", "icon": "mdi:skip-next"}
    out[t.config("text", "lamp")] = {  # a lamp of model.library by name, never a path
        "name": "Lamp", "unique_id": f"{node}_lamp_name", "command_topic": t.command("lamp"),
        "pattern": r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", "icon": "mdi:lava-lamp"}
    out[t.config("switch", "paused")] = {
        "name": "Pause", "unique_id": f"{node}_paused", "command_topic": t.command("paused"),
        "state_topic": t.state("paused"), "payload_on": "ON", "payload_off": "OFF",
        "icon": "mdi:pause"}
    for name, (title, step, unit) in NUMBERS.items():
        lo, hi = field_meta(SETTINGS[name])["range"]
        out[t.config("number", name)] = {
            "name": title, "unique_id": f"{node}_{name}", "command_topic": t.command(name),
            "state_topic": t.state(name), "min": lo, "max": hi, "step": step, "mode": "slider",
            **({"unit_of_measurement": unit} if unit else {})}
    for name, (title, unit, state_class) in SENSORS.items():
        out[t.config("sensor", name)] = {
            "name": title, "unique_id": f"{node}_{name}", "state_topic": t.sensors,
            "value_template": f"{{{{ value_json.{name} }}}}", "state_class": state_class,
            **({"unit_of_measurement": unit} if unit else {})}
    return {topic: {**payload, **common} for topic, payload in out.items()}


def state_payloads(topics: Topics, settings: dict[str, Any]) -> dict[str, str]:
    """The retained state of every entity that has one (topic -> payload)."""
    flag = lambda on: "ON" if on else "OFF"  # noqa: E731
    out = {topics.state("display"): flag(settings["display_on"]),
           topics.state("brightness"): str(round(settings["brightness"] * 100)),
           topics.state("paused"): flag(settings["paused"])}
    for name in NUMBERS:
        out[topics.state(name)] = f"{settings[name]:g}"
    return out


class MqttBridge:
    """Connects in the background (paho's thread, reconnecting with backoff), announces the lamp,
    turns commands into the daemon's requests and publishes its state on change. `lamp` offers
    live, command(), status() and a `listeners` list. Nothing here ever blocks the frame loop."""

    def __init__(self, *, lamp: Any, config: MqttConfig, metrics: DaemonMetrics,
                 version: str = "") -> None:
        self.lamp, self.config, self.metrics, self.version = lamp, config, metrics, version
        self.topics = Topics(config)
        self._client = self._make_client()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._republish = threading.Event()  # after each (re)connect: everything again
        self._sent: dict[str, str] = {}
        self.connected = False
        self._outage_since: float | None = None
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-publish",
                                           daemon=True)
        self.handlers: dict[str, Callable[[str], None]] = self._command_handlers()

    def _make_client(self):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MqttError("mqtt.enabled needs paho-mqtt: pip install 'neural-lavalamp[mqtt]'") \
                from None
        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"lavalamp-{self.topics.node}")
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        if c.username is not None:
            client.username_pw_set(c.username, _password(c.password_file))
        if c.tls:
            client.tls_set()
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_message = self._on_connect_fail, self._on_message
        return client

    def _command_handlers(self) -> dict[str, Callable[[str], None]]:
        t, request = self.topics, lambda changes: self.lamp.live.request(changes, "mqtt")
        handlers = {
            t.command("display"): lambda p: request({"state.display_on": on_off(p)}),
            t.command("paused"): lambda p: request({"state.paused": on_off(p)}),
            t.command("brightness"): lambda p: request({SETTINGS["brightness"]: number(p) / 100}),
            t.command("reseed"): lambda p: self.lamp.command("reseed", "mqtt"),
            t.command("next_lamp"): lambda p: self.lamp.command("next_lamp", "mqtt"),
            t.command("lamp"): lambda p: self.lamp.choose_lamp(p.strip()),
        }
        for name in NUMBERS:
            handlers[t.command(name)] = lambda p, key=SETTINGS[name]: request({key: number(p)})
        return handlers

    def start(self) -> None:
        """Connect in the background and start publishing."""
        self.metrics.mqtt_enabled.set(1)
        self.metrics.mqtt_connected.set(0)
        self.lamp.listeners.append(self._changed.set)
        self._client.connect_async(self.config.host, self.config.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._publisher.start()
        log.info("MQTT: connecting to %s:%d as %s (topics %s/...)", self.config.host,
                 self.config.port, self.config.username or "anonymous", self.topics.base)

    def stop(self) -> None:
        """Say offline, disconnect, and leave within STOP_WAIT_S whatever the broker does."""
        self._stop.set()
        self._changed.set()

        def close() -> None:
            if self.connected:
                self._client.publish(self.topics.availability, "offline", qos=0, retain=True)
            self._client.disconnect()
            self._client.loop_stop()

        closer = threading.Thread(target=close, name="mqtt-stop", daemon=True)
        closer.start()
        closer.join(STOP_WAIT_S)
        self._publisher.join(STOP_WAIT_S)
        self.metrics.mqtt_connected.set(0)

    # paho's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._outage(f"the broker refused the connection: {reason_code}")
            return
        if self._outage_since is not None:
            log.info("MQTT: connected again after %.0f s", time.monotonic() - self._outage_since)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        self._outage_since = None
        self.connected = True
        self.metrics.mqtt_connected.set(1)
        client.subscribe([(topic, 0) for topic in self.handlers] + [(self.topics.ha_status, 0)])
        self._republish.set()
        self._changed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        self.metrics.mqtt_connected.set(0)
        if not self._stop.is_set():
            self._outage(f"lost the broker ({reason_code})")

    def _on_connect_fail(self, client, userdata) -> None:
        self._outage(f"cannot reach the broker at {self.config.host}:{self.config.port}")

    def _outage(self, why: str) -> None:
        """Count every failure; log only the first of an outage."""
        self.connected = False
        self.metrics.mqtt_connected.set(0)
        self.metrics.mqtt_disconnects.inc()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("MQTT: %s; the lamp goes on, retrying every %d..%d s", why,
                        RECONNECT_MIN_S, RECONNECT_MAX_S)

    def _on_message(self, client, userdata, message) -> None:
        payload = message.payload.decode("utf-8", "replace")
        if message.topic == self.topics.ha_status:
            if payload == "online":  # Home Assistant restarted: announce the lamp again
                self._republish.set()
                self._changed.set()
            return
        handler = self.handlers.get(message.topic)
        if handler is None:
            return
        try:
            handler(payload)
        except (ValueError, ConfigError) as exc:
            log.warning("MQTT: %s: %s (ignored)", message.topic, exc)

    # the publishing thread: reads snapshots, never waits on the frame loop
    def _publish_loop(self) -> None:
        next_sensors = 0.0
        while not self._stop.is_set():
            wait = max(0.05, next_sensors - time.monotonic()) if self.connected else 1.0
            self._changed.wait(wait)
            self._changed.clear()
            if self._stop.is_set() or not self.connected:
                continue
            due = time.monotonic() >= next_sensors
            try:
                self._publish(due)
            except Exception:  # noqa: BLE001 - a bug here must not end remote control
                log.exception("MQTT: publishing failed")
            if due:
                next_sensors = time.monotonic() + self.config.sensors_every_s

    def _publish(self, sensors: bool) -> None:
        everything = self._republish.is_set()
        self._republish.clear()
        if everything:
            self._sent.clear()
            lamp_name = self.lamp.status()["lamp"]["name"]
            for topic, payload in discovery(self.topics, lamp_name, self.version).items():
                self._client.publish(topic, json.dumps(payload), qos=1, retain=True)
            self._client.publish(self.topics.availability, "online", qos=1, retain=True)
        for topic, payload in state_payloads(self.topics, self.lamp.live.settings()).items():
            if self._sent.get(topic) != payload:
                self._client.publish(topic, payload, qos=0, retain=True)
                self._sent[topic] = payload
        if sensors or everything:
            st = self.lamp.status()
            self._client.publish(self.topics.sensors, json.dumps({
                "display_fps": st["display_fps"], "drift": st["guard"]["distance"],
                "reseeds": st["guard"]["reseeds_total"]}), qos=0, retain=False)


def _password(path: str | None) -> str | None:
    if path is None:
        return None
    from .control import ControlError, read_secret

    try:
        return read_secret(path, "mqtt.password_file")
    except ControlError as exc:
        raise MqttError(str(exc)) from None
