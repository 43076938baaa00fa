"""Metrics: the contract's names with help text, read from a private registry and over HTTP."""

import ast
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.metrics import (RESEED_REASONS, DaemonMetrics, MetricsError, start_http_server,
                                     stop_http_server)

from .fakes import watched_dream as dream

DAEMON = Path(__file__).resolve().parents[1] / "daemon"

CONTRACT = """lavalamp_frames_displayed_total lavalamp_frames_generated_total
lavalamp_display_frames_per_second lavalamp_generation_frames_per_second
lavalamp_display_target_frames_per_second lavalamp_frame_seconds_bucket lavalamp_ring_buffer_frames
lavalamp_ring_buffer_capacity_frames lavalamp_ring_buffer_underruns_total lavalamp_latent_mean
lavalamp_latent_std lavalamp_latent_skew lavalamp_latent_kurtosis lavalamp_latent_reference
lavalamp_latent_reference_distance lavalamp_renormalizations_total lavalamp_reseeds_total
lavalamp_motion lavalamp_display_on lavalamp_display_scheduled_on lavalamp_display_brightness_ratio
lavalamp_producer_errors_total lavalamp_producer_heartbeat_age_seconds lavalamp_model_swaps_total
lavalamp_config_reloads_total
lavalamp_model_info lavalamp_up process_cpu_seconds_total process_resident_memory_bytes""".split()


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_every_contract_metric_is_served_with_help_and_labels_at_zero():
    registry = CollectorRegistry()
    m = DaemonMetrics(registry)
    dream(m)
    m.frames_displayed.inc(3)
    server, thread = start_http_server("127.0.0.1", 0, registry)
    try:
        text = scrape(server.server_port)
    finally:
        stop_http_server(server, thread)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert set(CONTRACT) <= names, set(CONTRACT) - names
    assert 'lavalamp_frames_displayed_total{screen="0"} 3.0' in text
    for reason in RESEED_REASONS:
        assert f'lavalamp_reseeds_total{{reason="{reason}",screen="0"}} 0.0' in text
    assert 'lavalamp_model_swaps_total{result="refused",screen="0"} 0.0' in text
    helps = [line for line in text.splitlines() if line.startswith("# HELP lavalamp_")]
    assert all(len(line.split(" ", 3)[3]) > 10 for line in helps)
    assert not thread.is_alive()


def test_a_private_registry_keeps_daemons_apart():
    a, b = CollectorRegistry(), CollectorRegistry()
    dream(DaemonMetrics(a, process=False)).reseed("loop")
    dream(DaemonMetrics(b, process=False))
    assert a.get_sample_value("lavalamp_reseeds_total", {"reason": "loop", "screen": "0"}) == 1
    assert b.get_sample_value("lavalamp_reseeds_total", {"reason": "loop", "screen": "0"}) == 0


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError, match=f"cannot serve metrics on 127.0.0.1:{port}.*metrics.port"):
            start_http_server("127.0.0.1", port, CollectorRegistry())


def test_each_screen_counts_into_its_own_series_and_the_daemon_wide_ones_stay_unlabelled():
    registry = CollectorRegistry()
    m = DaemonMetrics(registry, process=False)
    left, right = m.for_screen("0"), m.for_screen("1")
    dream(m, "0")
    dream(m, "1").reseed("manual")
    left.frames_displayed.inc(2)
    right.frames_displayed.inc(5)
    right.underruns.inc()
    m.up.set(1)
    get = registry.get_sample_value
    assert get("lavalamp_frames_displayed_total", {"screen": "0"}) == 2
    assert get("lavalamp_frames_displayed_total", {"screen": "1"}) == 5
    assert get("lavalamp_reseeds_total", {"reason": "manual", "screen": "1"}) == 1
    assert get("lavalamp_reseeds_total", {"reason": "manual", "screen": "0"}) == 0
    assert get("lavalamp_ring_buffer_underruns_total", {"screen": "0"}) == 0
    assert get("lavalamp_up", {}) == 1 and right.up is m.up


def test_a_dreams_series_are_read_from_its_parts_at_scrape_time():
    registry = CollectorRegistry()
    source = dream(DaemonMetrics(registry, process=False))
    get = registry.get_sample_value
    assert get("lavalamp_frames_generated_total", {"screen": "0"}) == 0
    assert get("lavalamp_ring_buffer_capacity_frames", {"screen": "0"}) == 8
    source.next_batch(4)
    assert get("lavalamp_motion", {"screen": "0"}) == source.motion > 0
    assert get("lavalamp_latent_std", {"screen": "0"}) == source.latent_stats.std > 0
    assert get("lavalamp_model_info", {"screen": "0", "name": "test-lamp", "frame_size": "64",
                                       "latent_size": str(source.lamp.latent_size),
                                       "device": "cpu", "lamp_fps": "5"}) == 1


def test_the_frame_source_producer_and_render_need_no_metrics():
    """Offline tools (`lavalamp render`, the benchmarks) build a frame source without Prometheus."""
    for name in ("source.py", "producer.py", "guard.py", "ring.py", "offline_render.py"):
        tree = ast.parse((DAEMON / name).read_text())
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert not {m for m in imported if "metrics" in m or "prometheus" in m}, name
