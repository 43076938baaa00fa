"""Prometheus metrics of the daemon, on a registry passed in, and their HTTP endpoint."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import start_http_server as _start_http_server
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, Metric)

if TYPE_CHECKING:
    from .producer import Producer
    from .ring import RingBuffer
    from .source import FrameSource

RESEED_REASONS = ("non_finite", "hard_drift", "frozen", "loop", "schedule", "manual", "remote",
                  "config", "producer_restart")
SWAP_RESULTS = ("loaded", "refused")
CHANGE_SOURCES = ("sighup", "schedule", "keyboard", "http", "mqtt")
CONTROL_CODES = ("200", "400", "401", "403", "404", "405", "413", "500", "503")
STATISTICS = ("mean", "std", "skew", "kurtosis")
FRAME_SECONDS_BUCKETS = (0.004, 0.008, 0.012, 0.0167, 0.02, 0.025, 0.0334, 0.05, 0.075, 0.1,
                         0.25, 0.5, 1.0)


class MetricsError(RuntimeError):
    """The metrics endpoint cannot start (address in use, or not an address of this machine)."""


SCREEN = "screen"


class ScreenMetrics:
    """The per-screen series the frame loop counts into for one screen, pre-created at 0.

    The frame loop takes one of these per screen: it counts into its own `screen` label without
    knowing that there may be others. (A dream's own series are read by DreamCollector.)
    """

    def __init__(self, metrics: "DaemonMetrics", screen: str) -> None:
        self.screen = screen
        for name in metrics.PER_SCREEN:
            setattr(self, name, getattr(metrics, f"_{name}").labels(screen))
        for name in metrics.SHARED:
            setattr(self, name, getattr(metrics, name))


@dataclass
class _Dream:
    source: "FrameSource"
    producer: "Producer | None"
    ring: "RingBuffer | None"


class DreamCollector:
    """The series of each dream (its frame source, producer and ring buffer), read from the parts
    at scrape time: they keep their own counts and need no metrics at all (`lavalamp render`)."""

    def __init__(self) -> None:
        self._dreams: dict[str, _Dream] = {}

    def watch(self, screen: str, *, source: "FrameSource", producer: "Producer | None" = None,
              ring: "RingBuffer | None" = None) -> None:
        """Export the series of this dream with the `screen` label `screen`."""
        self._dreams = {**self._dreams, screen: _Dream(source, producer, ring)}

    def describe(self) -> list[Metric]:
        """The families (so that registering does not collect)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """Every family with one series per dream (and label value), read now."""
        families = self._families()
        for screen, dream in self._dreams.items():
            _add_source(families, screen, dream.source)
            swaps = dict(dream.source.swaps)
            if dream.producer is not None:
                _add_producer(families, screen, dream.producer)
                swaps = {r: swaps.get(r, 0) + n for r, n in dict(dream.producer.swaps).items()}
            for result in SWAP_RESULTS:
                families["model_swaps"].add_metric([result, screen], swaps.get(result, 0))
            if dream.ring is not None:
                families["ring_frames"].add_metric([screen], len(dream.ring))
                families["ring_capacity"].add_metric([screen], dream.ring.capacity)
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, Metric]:
        return {key: kind(name, doc, labels=[*labels, SCREEN])
                for key, (kind, name, doc, labels) in DREAM_SERIES.items()}


# A dream's series (DreamCollector): key -> (family, name, help, labels before `screen`).
DREAM_SERIES = {
    "frames_generated": (CounterMetricFamily, "lavalamp_frames_generated",
                         "Lamp frames decoded by the producer thread.", ()),
    "generation_fps": (GaugeMetricFamily, "lavalamp_generation_frames_per_second",
                       "Frames the producer decodes per second of its working time (its capacity; "
                       "a full buffer keeps it idle the rest).", ()),
    "ring_frames": (GaugeMetricFamily, "lavalamp_ring_buffer_frames",
                    "Generated frames waiting in the ring buffer.", ()),
    "ring_capacity": (GaugeMetricFamily, "lavalamp_ring_buffer_capacity_frames",
                      "Frames the ring buffer holds when full.", ()),
    **{f"latent_{s}": (GaugeMetricFamily, f"lavalamp_latent_{s}",
                       f"{s.capitalize()} of the latent over the guard's sliding window.", ())
       for s in STATISTICS},
    "latent_reference": (GaugeMetricFamily, "lavalamp_latent_reference",
                         "Latent statistics of the training footage (checkpoint).", ("statistic",)),
    "reference_distance": (GaugeMetricFamily, "lavalamp_latent_reference_distance",
                           "Distance of the window's latent statistics from the reference.", ()),
    "renormalizations": (CounterMetricFamily, "lavalamp_renormalizations",
                         "Soft drifts corrected by renormalizing the latent.", ()),
    "reseeds": (CounterMetricFamily, "lavalamp_reseeds", "Fresh dreams started, by reason.",
                ("reason",)),
    "motion": (GaugeMetricFamily, "lavalamp_motion",
               "Mean absolute difference between consecutive generated frames (0..255).", ()),
    "producer_errors": (CounterMetricFamily, "lavalamp_producer_errors",
                        "Exceptions in the producer thread (each one restarts it).", ()),
    "heartbeat_age": (GaugeMetricFamily, "lavalamp_producer_heartbeat_age_seconds",
                      "Seconds since the producer thread last showed progress.", ()),
    "model_swaps": (CounterMetricFamily, "lavalamp_model_swaps", "Checkpoint hot-swaps, by result.",
                    ("result",)),
    "model_info": (InfoMetricFamily, "lavalamp_model", "The lamp being shown.", ()),
}


def _add_source(families: dict[str, Metric], screen: str, source: "FrameSource") -> None:
    lamp, stats = source.lamp, source.latent_stats
    for s in STATISTICS:
        families[f"latent_{s}"].add_metric([screen], getattr(stats, s))
        families["latent_reference"].add_metric([s, screen], getattr(lamp.reference, s))
    families["reference_distance"].add_metric([screen], source.latent_distance)
    families["renormalizations"].add_metric([screen], source.renormalizations)
    reseeds = dict(source.reseeds)
    for reason in dict.fromkeys((*RESEED_REASONS, *reseeds)):
        families["reseeds"].add_metric([reason, screen], reseeds.get(reason, 0))
    families["motion"].add_metric([screen], source.motion)
    families["model_info"].add_metric([screen], {
        "name": lamp.name, "frame_size": str(lamp.frame_size),
        "latent_size": str(lamp.latent_size), "device": str(lamp.latent_mean.device),
        "lamp_fps": f"{lamp.data.lamp_fps:g}"})


def _add_producer(families: dict[str, Metric], screen: str, producer: "Producer") -> None:
    families["frames_generated"].add_metric([screen], producer.frames_generated)
    families["generation_fps"].add_metric([screen], producer.generation_fps)
    families["producer_errors"].add_metric([screen], producer.errors)
    families["heartbeat_age"].add_metric([screen], producer.heartbeat_age())


class DaemonMetrics:
    """Every metric the daemon exports. Thread-safe.

    Series of one screen carry a `screen` label (the monitor index); `for_screen` gives the view
    of one screen. DaemonMetrics itself reads and counts like the view of its `screen` (the one
    screen of a single-monitor daemon).
    """

    PER_SCREEN = ("frames_displayed", "display_fps", "frame_seconds", "underruns")
    SHARED = ("display_target_fps", "display_on", "display_scheduled_on", "brightness", "up",
              "registry", "speed", "temperature", "hue", "saturation", "paused", "live_changes",
              "control_requests", "mqtt_enabled", "mqtt_connected", "mqtt_disconnects",
              "config_reloads")

    def __init__(self, registry: CollectorRegistry, *, process: bool = True,
                 screen: str = "0") -> None:
        self.registry = registry
        r = {"registry": registry, "labelnames": (SCREEN,)}
        self._frames_displayed = Counter("lavalamp_frames_displayed", "Frames put on screen.", **r)
        self._display_fps = Gauge("lavalamp_display_frames_per_second",
                                  "Frames put on screen per second (recent average).", **r)
        self._frame_seconds = Histogram("lavalamp_frame_seconds",
                                        "Time between consecutive displayed frames in seconds.",
                                        buckets=FRAME_SECONDS_BUCKETS, **r)
        self._underruns = Counter("lavalamp_ring_buffer_underruns",
                                  "Times the display caught up with the producer and had to hold "
                                  "a frame (the lamp stalls).", **r)
        self.dreams = DreamCollector()
        registry.register(self.dreams)
        self._shared_metrics(registry)
        self._default = self.for_screen(screen)
        if process:
            ProcessCollector(registry=registry)

    def watch(self, screen: str, *, source: "FrameSource", producer: "Producer | None" = None,
              ring: "RingBuffer | None" = None) -> None:
        """Export the series of a dream (DreamCollector) under the `screen` label `screen`."""
        self.dreams.watch(screen, source=source, producer=producer, ring=ring)

    def _shared_metrics(self, registry: CollectorRegistry) -> None:
        r = {"registry": registry}
        self.display_target_fps = Gauge("lavalamp_display_target_frames_per_second",
                                        "Configured display refresh cap in frames per second.", **r)
        self.display_on = Gauge("lavalamp_display_on", "1 while the lamp is on screen and moving; "
                                "0 while the screen is blanked (by the schedule or remote "
                                "control), the lamp is paused, or no monitor shows it.", **r)
        self.display_scheduled_on = Gauge("lavalamp_display_scheduled_on",
                                          "What the schedule says now: 1 on, 0 off.", **r)
        self.brightness = Gauge("lavalamp_display_brightness_ratio",
                                "Brightness of the lamp (1 full, lower when dimmed).", **r)
        self.config_reloads = Counter("lavalamp_config_reloads", "Config reloads (SIGHUP), by result.",
                                      ["result"], **r)
        for result in SWAP_RESULTS:
            self.config_reloads.labels(result)
        self.up = Gauge("lavalamp_up", "1 while the frame loop runs.", **r)
        self._setting_metrics(r)
        self._remote_metrics(r)

    def _setting_metrics(self, r: dict) -> None:
        self.speed = Gauge("lavalamp_display_speed_ratio",
                           "Lamp speed relative to the real lamp (display.speed).", **r)
        self.temperature = Gauge("lavalamp_model_temperature_ratio", "Sampling temperature "
                                 "relative to the lamp's calibrated one (model.temperature).", **r)
        self.hue = Gauge("lavalamp_display_hue_degrees",
                         "Colour rotation of the lamp in degrees (display.hue_degrees).", **r)
        self.saturation = Gauge("lavalamp_display_saturation_ratio",
                                "Colour saturation of the lamp (display.saturation).", **r)
        self.paused = Gauge("lavalamp_display_paused", "1 while the lamp holds its frame.", **r)
        self.live_changes = Counter("lavalamp_live_changes", "Live changes of the settings or "
                                    "the display state applied, by where they came from.",
                                    ["source"], **r)
        for source in CHANGE_SOURCES:
            self.live_changes.labels(source)

    def _remote_metrics(self, r: dict) -> None:
        self.control_requests = Counter("lavalamp_control_requests", "Requests to the HTTP "
                                        "control API, by response status code.", ["code"], **r)
        for code in CONTROL_CODES:
            self.control_requests.labels(code)
        self.mqtt_enabled = Gauge("lavalamp_mqtt_enabled", "1 when MQTT remote control is "
                                  "configured (mqtt.enabled).", **r)
        self.mqtt_connected = Gauge("lavalamp_mqtt_connected",
                                    "1 while connected to the MQTT broker, else 0.", **r)
        self.mqtt_disconnects = Counter("lavalamp_mqtt_disconnects", "Times the connection to "
                                        "the MQTT broker was lost or refused.", **r)

    def for_screen(self, screen: str) -> ScreenMetrics:
        """The view of one screen's series (created at 0 on first use)."""
        return ScreenMetrics(self, screen)

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("registry",):
            raise AttributeError(name)
        return getattr(self._default, name)


def start_http_server(address: str, port: int,
                      registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics of `registry` on address:port from a daemon thread; MetricsError if it cannot."""
    try:
        return _start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {address}:{port}: {exc.strerror or exc}"
                           " (set metrics.port to a free port, or metrics.enabled: false)") from None


def stop_http_server(server: WSGIServer, thread: threading.Thread, timeout: float = 1.0) -> None:
    """Stop serving and close the socket."""
    server.shutdown()
    server.server_close()
    thread.join(timeout)
