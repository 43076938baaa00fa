"""The deploy files checked by the real tools: promtool, systemd-analyze verify and security."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lavalamp.daemon.install import UnitPaths, render_unit, venv_interpreter

from .deploy_support import require_tool

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "deploy" / "prometheus"


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


def test_promtool_accepts_the_scrape_config_and_its_rule_file():
    result = run(require_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_rules():
    result = run(require_tool("promtool"), "check", "rules", str(PROMETHEUS / "lavalamp-rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass_and_cover_every_alert():
    result = run(require_tool("promtool"), "test", "rules", str(PROMETHEUS / "lavalamp-rules.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = (PROMETHEUS / "lavalamp-rules.yml").read_text()
    tests = (PROMETHEUS / "lavalamp-rules.test.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    assert len(alerts) >= 6
    assert alerts == set(re.findall(r"alertname: (\w+)", tests))


def test_promtool_test_rules_can_fail(tmp_path):
    """The rule tests are not vacuous: a rule that never fires fails them."""
    broken = (PROMETHEUS / "lavalamp-rules.yml").read_text().replace(
        "lavalamp_latent_reference_distance > 0.5", "lavalamp_latent_reference_distance > 50")
    (tmp_path / "lavalamp-rules.yml").write_text(broken)
    (tmp_path / "t.test.yml").write_text((PROMETHEUS / "lavalamp-rules.test.yml").read_text())
    result = run(require_tool("promtool"), "test", "rules", str(tmp_path / "t.test.yml"))
    assert result.returncode != 0 and "LavalampLatentDriftHigh" in result.stdout + result.stderr


@pytest.fixture
def this_machines_units(tmp_path):
    """Both units rendered with this checkout's real venv, config and a model file, as
    `install-service` would write them (verify checks that the commands exist)."""
    model = tmp_path / "models" / "lamp.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"")
    paths = UnitPaths(venv=Path(sys.prefix), config=REPO / "config.yaml", model=model,
                      interpreter=venv_interpreter(Path(sys.prefix)))
    units = {}
    for name, user in (("system", False), ("user", True)):
        folder = tmp_path / name
        folder.mkdir()
        units[name] = folder / "lavalamp.service"
        units[name].write_text(render_unit(paths, user=user))
    return units


def analyze(*args: str, user: bool = False) -> subprocess.CompletedProcess:
    # The user variant needs a runtime dir to stand up an offline user manager.
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    return run(require_tool("systemd-analyze"), *(["--user"] if user else []), *args, env=env)


@pytest.mark.parametrize("kind", ["system", "user"])
def test_systemd_analyze_verify_prints_nothing(this_machines_units, kind):
    # verify exits 0 on unknown keys and bad values, only warning: any output is a failure.
    result = analyze("verify", "--man=no", str(this_machines_units[kind]), user=kind == "user")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_catches_a_typo(this_machines_units, tmp_path):
    """The verify check can fail: a misspelt key is reported."""
    unit = this_machines_units["system"]
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = analyze("verify", "--man=no", str(unit))
    assert "ProtectSytem" in result.stdout + result.stderr


@pytest.mark.parametrize("kind, limit", [("system", 2.0), ("user", 4.0)])
def test_systemd_analyze_security_rates_the_units_ok(this_machines_units, kind, limit):
    result = analyze("security", "--offline=yes", f"--threshold={int(limit * 10)}",
                     str(this_machines_units[kind]), user=kind == "user")
    level = re.search(r"Overall exposure level for lavalamp.service: ([\d.]+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level.group(1)) <= limit and result.returncode == 0, result.stdout[-2000:]


def test_dashboard_is_importable_json_with_unique_panels():
    dashboard = json.loads((REPO / "deploy" / "grafana" / "lavalamp-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "neural-lavalamp"
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in ("Frames per second", "Frame time", "Ring fill", "Ring underruns and producer",
                   "Reseeds by reason", "CPU", "Memory"):
        assert needed in titles
    heatmap = next(p for p in dashboard["panels"] if p["type"] == "heatmap")
    assert heatmap["targets"][0]["format"] == "heatmap" and "_bucket" in heatmap["targets"][0]["expr"]
