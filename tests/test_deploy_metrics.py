"""Every metric the dashboard and the alert rules read is one the daemon really exports: a headless
daemon is started, its endpoint scraped, and each name checked against the scrape."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lavalamp.daemon.metrics import DaemonMetrics
from lavalamp.models.checkpoint import save_lamp

from .deploy_support import exposition_names, promql_metric_names
from .fakes import make_lamp, watched_dream

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "lavalamp-dashboard.json"
RULES = REPO / "deploy" / "prometheus" / "lavalamp-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "lavalamp-rules.test.yml"
# Series Prometheus itself adds to every target.
PROMETHEUS_OWN = {"up"}


def dashboard_queries() -> list[str]:
    """Every PromQL the dashboard runs: panel targets, template variables, annotations."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    queries += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return queries


def rule_queries() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def names_used() -> dict[str, set[str]]:
    """Metric name -> the files that read it."""
    used: dict[str, set[str]] = {}
    for where, queries in (("dashboard", dashboard_queries()), ("rules", rule_queries())):
        for query in queries:
            for name in promql_metric_names(query):
                used.setdefault(name, set()).add(where)
    return used


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.99, sum by (instance, le) (rate(lavalamp_frame_seconds_bucket'
     '{job="$job", instance=~"$instance"}[$__rate_interval])))', {"lavalamp_frame_seconds_bucket"}),
    ("a_total < 0.8 * b and on (instance, job) c == 1 offset 5m", {"a_total", "b", "c"}),
    ('label_values(lavalamp_up{job="$job"}, instance)', {"lavalamp_up"}),
    ('sum(increase(x{reason!~"schedule|by(y)"}[1h:5m])) > 1e3', {"x"}),
    ('up{job="lavalamp"} == 0 or vector(0)', {"up"}),
])
def test_promql_names_are_found_and_nothing_else(expr, names):
    assert promql_metric_names(expr) == names


def test_dashboard_and_rules_read_the_metrics_the_panels_promise():
    used = names_used()
    for name in ("lavalamp_display_frames_per_second", "lavalamp_frame_seconds_bucket",
                 "lavalamp_ring_buffer_frames", "lavalamp_ring_buffer_underruns_total",
                 "lavalamp_latent_mean", "lavalamp_latent_reference", "lavalamp_reseeds_total",
                 "process_cpu_seconds_total", "process_resident_memory_bytes", "lavalamp_display_on",
                 "lavalamp_display_speed_ratio", "lavalamp_model_temperature_ratio",
                 "lavalamp_display_hue_degrees", "lavalamp_display_saturation_ratio",
                 "lavalamp_display_paused", "lavalamp_live_changes_total",
                 "lavalamp_control_requests_total", "lavalamp_mqtt_connected",
                 "lavalamp_mqtt_disconnects_total"):
        assert "dashboard" in used.get(name, set()), name
    for name in ("up", "lavalamp_display_scheduled_on", "lavalamp_latent_reference_distance",
                 "lavalamp_ring_buffer_underruns_total", "lavalamp_reseeds_total",
                 "lavalamp_mqtt_connected", "lavalamp_mqtt_enabled",
                 "lavalamp_control_requests_total"):
        assert "rules" in used.get(name, set()), name


def scraped_series() -> dict[str, set[frozenset]]:
    """Sample name -> the label sets it is exported with, from a scrape of a daemon's metrics (one
    dream watched, as `lavalamp run` has), without the job and instance Prometheus adds."""
    metrics = DaemonMetrics(CollectorRegistry())
    watched_dream(metrics)
    series: dict[str, set[frozenset]] = {"up": {frozenset()}}  # Prometheus's own
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).add(frozenset(sample.labels.items()))
    return series


def rule_test_series() -> list[str]:
    return [s["series"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
            for s in test["input_series"]]


def test_the_rule_tests_feed_only_series_the_daemon_exports():
    """promtool's rule tests prove little with series the daemon cannot emit (a missing screen
    label once hid that LavalampFpsBelowTarget could never fire)."""
    exported, series = scraped_series(), rule_test_series()
    assert len(series) > 20
    for text in series:
        name, labels = re.fullmatch(r"(\w+)\{(.*)\}", text).groups()
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        assert pairs.pop("job") == "lavalamp" and pairs.pop("instance"), text
        assert name in exported, f"{text}: the daemon exports no {name}"
        assert frozenset(pairs.items()) in exported[name], \
            f"{text}: the daemon exports {name} only with labels {sorted(map(dict, exported[name]), key=str)[:4]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, process: subprocess.Popen, timeout: float = 120.0) -> str:
    """The daemon's exposition once its frame loop runs (lavalamp_up 1); fail if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"lavalamp run exited {process.returncode}: {process.stderr.read()[-3000:]}")
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            if "\nlavalamp_up 1.0" in text:
                return text
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never showed lavalamp_up 1 within {timeout:.0f} s")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Sample names scraped from a real headless daemon running a random-weight lamp."""
    folder = tmp_path_factory.mktemp("daemon")
    save_lamp(make_lamp(), folder / "lamp.safetensors")
    port = free_port()
    (folder / "config.yaml").write_text(f"metrics:\n  port: {port}\ndisplay:\n  fps: 30\n")
    process = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "lavalamp"), "run", "--headless", "--max-frames", "100000",
         "--config", str(folder / "config.yaml"), "--model", str(folder / "lamp.safetensors")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        text = scrape(f"http://127.0.0.1:{port}/metrics", process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return exposition_names(text)


@pytest.mark.slow
def test_every_metric_in_the_dashboard_and_rules_is_exported(exported):
    missing = {name: sorted(where) for name, where in names_used().items()
               if name not in exported | PROMETHEUS_OWN}
    assert not missing, f"not exported by the daemon: {missing}"


@pytest.mark.slow
def test_the_scrape_holds_the_contracts_families(exported):
    """The check above is only as good as the scrape: it must hold the daemon's own metrics."""
    for name in ("lavalamp_up", "lavalamp_frame_seconds_bucket", "lavalamp_reseeds_total",
                 "lavalamp_model_info", "process_cpu_seconds_total"):
        assert name in exported
