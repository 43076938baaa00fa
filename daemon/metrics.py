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


SCREEN = "screen"


class ScreenMetrics:
    """The per-screen series of one screen (or one dream) of DaemonMetrics, pre-created at 0.

    Producer, frame source and frame loop take one of these: they count into their own
    `screen` label without knowing that there may be others.
    """

    def __init__(self, metrics: "DaemonMetrics", screen: str) -> None:
        self.screen = screen
        for name in metrics.PER_SCREEN:
            family = getattr(metrics, f"_{name}")
            setattr(self, name, _Bound(family, screen) if family._labelnames != (SCREEN,)
                    else family.labels(screen))
        for s in STATISTICS:
            self.latent_reference.labels(s)
        for reason in RESEED_REASONS:
            self.reseeds.labels(reason)
        for result in SWAP_RESULTS:
            self.model_swaps.labels(result)
        self.latent = {s: metrics._latent[s].labels(screen) for s in STATISTICS}
        for name in metrics.SHARED:
            setattr(self, name, getattr(metrics, name))

    def set_reference(self, reference: LatentStats) -> None:
        """Publish the checkpoint's reference statistics."""
        for s in STATISTICS:
            self.latent_reference.labels(s).set(getattr(reference, s))

    def set_latent(self, stats: LatentStats, distance: float) -> None:
        """Publish the window's latent statistics and their distance from the reference."""
        for s in STATISTICS:
            self.latent[s].set(getattr(stats, s))
        self.reference_distance.set(distance)


class _Bound:
    """A family with more labels than `screen`, its screen label filled in: `.labels(reason)`."""

    def __init__(self, family, screen: str) -> None:
        self._family, self._screen = family, screen

    def labels(self, *values: str):
        """The child of these other label values on this screen."""
        return self._family.labels(*values, self._screen)


class DaemonMetrics:
    """Every metric the daemon exports. Thread-safe.

    Series of one screen carry a `screen` label (the monitor index); `for_screen` gives the view
    of one screen. DaemonMetrics itself reads and counts like the view of its `screen` (the one
    screen of a single-monitor daemon).
    """

    PER_SCREEN = ("frames_displayed", "frames_generated", "display_fps", "generation_fps",
                  "frame_seconds", "ring_frames", "ring_capacity", "underruns",
                  "latent_reference", "reference_distance", "renormalizations", "reseeds",
                  "motion", "producer_errors", "heartbeat_age", "model_swaps", "model_info")
    SHARED = ("display_target_fps", "display_on", "display_scheduled_on", "brightness", "up",
              "registry", "speed", "temperature", "hue", "saturation", "paused", "live_changes",
              "control_requests", "mqtt_enabled", "mqtt_connected", "mqtt_disconnects",
              "config_reloads")

    def __init__(self, registry: CollectorRegistry, *, process: bool = True,
                 screen: str = "0") -> None:
        self.registry = registry
        r = {"registry": registry, "labelnames": (SCREEN,)}
        self._frames_displayed = Counter("lavalamp_frames_displayed", "Frames put on screen.", **r)
        self._frames_generated = Counter("lavalamp_frames_generated",
                                         "Lamp frames decoded by the producer thread.", **r)
        self._display_fps = Gauge("lavalamp_display_frames_per_second",
                                  "Frames put on screen per second (recent average).", **r)
        self._generation_fps = Gauge("lavalamp_generation_frames_per_second",
                                     "Frames the producer decodes per second of its working time "
                                     "(its capacity; a full buffer keeps it idle the rest).", **r)
        self._frame_seconds = Histogram("lavalamp_frame_seconds",
                                        "Time between consecutive displayed frames in seconds.",
                                        buckets=FRAME_SECONDS_BUCKETS, **r)
        self._ring_frames = Gauge("lavalamp_ring_buffer_frames",
                                  "Generated frames waiting in the ring buffer.", **r)
        self._ring_capacity = Gauge("lavalamp_ring_buffer_capacity_frames",
                                    "Frames the ring buffer holds when full.", **r)
        self._underruns = Counter("lavalamp_ring_buffer_underruns",
                                  "Times the display caught up with the producer and had to hold "
                                  "a frame (the lamp stalls).", **r)
        self._latent_metrics(r)
        self._state_metrics(r)
        self._shared_metrics(registry)
        self._default = self.for_screen(screen)
        if process:
            ProcessCollector(registry=registry)

    def _latent_metrics(self, r: dict) -> None:
        self._latent = {s: Gauge(f"lavalamp_latent_{s}",
                                 f"{s.capitalize()} of the latent over the guard's sliding window.",
                                 **r) for s in STATISTICS}
        self._latent_reference = Gauge("lavalamp_latent_reference",
                                       "Latent statistics of the training footage (checkpoint).",
                                       registry=r["registry"], labelnames=("statistic", SCREEN))
        self._reference_distance = Gauge("lavalamp_latent_reference_distance",
                                         "Distance of the window's latent statistics from the "
                                         "reference.", **r)
        self._renormalizations = Counter("lavalamp_renormalizations",
                                         "Soft drifts corrected by renormalizing the latent.", **r)
        self._reseeds = Counter("lavalamp_reseeds", "Fresh dreams started, by reason.",
                                registry=r["registry"], labelnames=("reason", SCREEN))
        self._motion = Gauge("lavalamp_motion", "Mean absolute difference between consecutive "
                             "generated frames (0..255).", **r)

    def _state_metrics(self, r: dict) -> None:
        self._producer_errors = Counter("lavalamp_producer_errors",
                                        "Exceptions in the producer thread (each one restarts it).",
                                        **r)
        self._heartbeat_age = Gauge("lavalamp_producer_heartbeat_age_seconds",
                                    "Seconds since the producer thread last showed progress.", **r)
        self._model_swaps = Counter("lavalamp_model_swaps", "Checkpoint hot-swaps, by result.",
                                    registry=r["registry"], labelnames=("result", SCREEN))
        self._model_info = Info("lavalamp_model", "The lamp being shown.", **r)

    def _shared_metrics(self, registry: CollectorRegistry) -> None:
        r = {"registry": registry}
        self.display_target_fps = Gauge("lavalamp_display_target_frames_per_second",
                                        "Configured display refresh cap in frames per second.", **r)
        self.display_on = Gauge("lavalamp_display_on", "1 while the lamp is shown, 0 while the "
                                "schedule blanks the screen.", **r)
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
