"""Prometheus metrics of the daemon, on a registry passed in, and their HTTP endpoint."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import start_http_server as _start_http_server

from lavalamp.models.latent import LatentStats

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


class DaemonMetrics:
    """Every metric the daemon exports, labelled series pre-created at 0. Thread-safe."""

    def __init__(self, registry: CollectorRegistry, *, process: bool = True) -> None:
        self.registry = registry
        r = {"registry": registry}
        self.frames_displayed = Counter("lavalamp_frames_displayed", "Frames put on screen.", **r)
        self.frames_generated = Counter("lavalamp_frames_generated",
                                        "Lamp frames decoded by the producer thread.", **r)
        self.display_fps = Gauge("lavalamp_display_frames_per_second",
                                 "Frames put on screen per second (recent average).", **r)
        self.generation_fps = Gauge("lavalamp_generation_frames_per_second",
                                    "Frames the producer decodes per second of its working time "
                                    "(its capacity; a full buffer keeps it idle the rest).", **r)
        self.display_target_fps = Gauge("lavalamp_display_target_frames_per_second",
                                        "Configured display refresh cap in frames per second.", **r)
        self.frame_seconds = Histogram("lavalamp_frame_seconds",
                                       "Time between consecutive displayed frames in seconds.",
                                       buckets=FRAME_SECONDS_BUCKETS, **r)
        self.ring_frames = Gauge("lavalamp_ring_buffer_frames",
                                 "Generated frames waiting in the ring buffer.", **r)
        self.ring_capacity = Gauge("lavalamp_ring_buffer_capacity_frames",
                                   "Frames the ring buffer holds when full.", **r)
        self.underruns = Counter("lavalamp_ring_buffer_underruns",
                                 "Times the display caught up with the producer and had to hold "
                                 "a frame (the lamp stalls).", **r)
        self._latent_metrics(r)
        self._state_metrics(r)
        if process:
            ProcessCollector(registry=registry)

    def _latent_metrics(self, r: dict) -> None:
        self.latent = {s: Gauge(f"lavalamp_latent_{s}",
                                f"{s.capitalize()} of the latent over the guard's sliding window.", **r)
                       for s in STATISTICS}
        self.latent_reference = Gauge("lavalamp_latent_reference",
                                      "Latent statistics of the training footage (checkpoint).",
                                      ["statistic"], **r)
        for s in STATISTICS:
            self.latent_reference.labels(s)
        self.reference_distance = Gauge("lavalamp_latent_reference_distance",
                                        "Distance of the window's latent statistics from the "
                                        "reference.", **r)
        self.renormalizations = Counter("lavalamp_renormalizations",
                                        "Soft drifts corrected by renormalizing the latent.", **r)
        self.reseeds = Counter("lavalamp_reseeds", "Fresh dreams started, by reason.", ["reason"], **r)
        for reason in RESEED_REASONS:
            self.reseeds.labels(reason)
        self.motion = Gauge("lavalamp_motion", "Mean absolute difference between consecutive "
                            "generated frames (0..255).", **r)

    def _state_metrics(self, r: dict) -> None:
        self.display_on = Gauge("lavalamp_display_on", "1 while the lamp is shown, 0 while the "
                                "schedule blanks the screen.", **r)
        self.display_scheduled_on = Gauge("lavalamp_display_scheduled_on",
                                          "What the schedule says now: 1 on, 0 off.", **r)
        self.brightness = Gauge("lavalamp_display_brightness_ratio",
                                "Brightness of the lamp (1 full, lower when dimmed).", **r)
        self.producer_errors = Counter("lavalamp_producer_errors",
                                       "Exceptions in the producer thread (each one restarts it).", **r)
        self.heartbeat_age = Gauge("lavalamp_producer_heartbeat_age_seconds",
                                   "Seconds since the producer thread last showed progress.", **r)
        self.model_swaps = Counter("lavalamp_model_swaps", "Checkpoint hot-swaps, by result.",
                                   ["result"], **r)
        for result in SWAP_RESULTS:
            self.model_swaps.labels(result)
        self.config_reloads = Counter("lavalamp_config_reloads", "Config reloads (SIGHUP), by result.",
                                      ["result"], **r)
        for result in SWAP_RESULTS:
            self.config_reloads.labels(result)
        self.model_info = Info("lavalamp_model", "The lamp being shown.", **r)
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

    def set_reference(self, reference: LatentStats) -> None:
        """Publish the checkpoint's reference statistics."""
        for s in STATISTICS:
            self.latent_reference.labels(s).set(getattr(reference, s))

    def set_latent(self, stats: LatentStats, distance: float) -> None:
        """Publish the window's latent statistics and their distance from the reference."""
        for s in STATISTICS:
            self.latent[s].set(getattr(stats, s))
        self.reference_distance.set(distance)


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
