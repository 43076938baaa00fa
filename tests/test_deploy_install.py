"""`lavalamp install-service` / `uninstall-service` and the unit files they write."""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from pathlib import Path

import pytest

from lavalamp.daemon import cli
from lavalamp.daemon.install import CANONICAL, UnitPaths, render_unit, venv_interpreter

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
BASE = venv_interpreter(VENV)

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$SYSTEMCTL_LOG"
if [ -n "$SYSTEMCTL_FAIL" ]; then echo "Failed to $1: $SYSTEMCTL_FAIL" >&2; exit 1; fi
"""


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """A `systemctl` on PATH that records each call's arguments; returns the list of calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL)
    script.chmod(0o755)
    log = tmp_path / "systemctl.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SYSTEMCTL_LOG", str(log))
    monkeypatch.delenv("SYSTEMCTL_FAIL", raising=False)
    return lambda: log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text("display:\n  fps: 30\n")
    return path


def run(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.mark.parametrize("name, user", [("lavalamp.service", False), ("lavalamp-user.service", True)])
def test_shipped_units_are_the_template_rendered_for_canonical_paths(name, user):
    assert (REPO / "deploy" / name).read_text() == render_unit(CANONICAL, user=user)


def test_system_unit_runs_the_venv_lamp_as_a_watched_notify_service():
    text = render_unit(CANONICAL)
    lines = text.splitlines()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=10", "Restart=on-failure",
                 "StartLimitBurst=5", "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
                 "SupplementaryGroups=video render input", "Environment=SDL_VIDEODRIVER=kmsdrm PYTHONUNBUFFERED=1",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "StateDirectory=lavalamp",
                 "ReadOnlyPaths=/opt/lavalamp/.venv /etc/lavalamp /opt/lavalamp/models",
                 "ExecStartPre=/opt/lavalamp/.venv/bin/lavalamp check-config --offline --config /etc/lavalamp/config.yaml",
                 "ExecStart=/opt/lavalamp/.venv/bin/lavalamp run --config /etc/lavalamp/config.yaml "
                 "--model /opt/lavalamp/models/lamp.safetensors"):
        assert line in lines, line
    # torch's oneDNN CPU kernels JIT-compile: MemoryDenyWriteExecute= would make them fail.
    assert "MemoryDenyWriteExecute" not in text.replace("MemoryDenyWriteExecute= is deliberately absent", "")


def test_user_unit_belongs_to_the_graphical_session_and_leaves_the_video_driver_alone():
    lines = render_unit(CANONICAL, user=True).splitlines()
    assert "WantedBy=graphical-session.target" in lines and "PartOf=graphical-session.target" in lines
    assert "Type=notify" in lines and "DynamicUser=yes" not in lines
    assert not any("SDL_VIDEODRIVER" in line for line in lines)


def test_paths_in_a_home_folder_keep_it_readable_and_awkward_names_are_quoted():
    paths = UnitPaths(venv=Path("/home/pi/lava lamp/.venv"), config=Path("/home/pi/100%/config.yaml"))
    lines = render_unit(paths).splitlines()
    assert "ProtectHome=read-only" in lines
    assert ('ExecStart="/home/pi/lava lamp/.venv/bin/lavalamp" run --config /home/pi/100%%/config.yaml'
            in lines)
    assert 'ReadOnlyPaths="/home/pi/lava lamp/.venv" /home/pi/100%%' in lines
    dollar = render_unit(UnitPaths(venv=Path("/opt/a$b"), config=Path("/etc/c.yaml"))).splitlines()
    # systemd expands $VARIABLES in arguments only: a doubled $ in the program path stays doubled
    # and names a program that does not exist (measured with systemd-analyze verify).
    assert "ExecStart=/opt/a$b/bin/lavalamp run --config /etc/c.yaml" in dollar
    assert "ReadOnlyPaths=/opt/a$b /etc" in dollar


@pytest.mark.parametrize("home, expected", [("/root/.pyenv/versions/3.11.7/bin", "/root/.pyenv/versions/3.11.7"),
                                            ("/usr/bin", None), ("/usr/local/bin", None)])
def test_a_venv_made_from_python_outside_usr_keeps_that_python_readable(tmp_path, home, expected):
    (tmp_path / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    assert venv_interpreter(tmp_path) == (Path(expected) if expected else None)
    lines = render_unit(UnitPaths(venv=Path("/opt/lavalamp/.venv"), config=Path("/etc/lavalamp/c.yaml"),
                                  interpreter=venv_interpreter(tmp_path))).splitlines()
    assert f"ReadOnlyPaths=/opt/lavalamp/.venv /etc/lavalamp{' ' + expected if expected else ''}" in lines
    assert f"ProtectHome={'read-only' if expected else 'yes'}" in lines


def test_dry_run_prints_this_machines_unit_without_root_or_systemd(tmp_path, config, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no systemctl anywhere
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    model = tmp_path / "lamps" / "mine.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"x")
    assert run("install-service", "--dry-run", "--config", str(config), "--model", str(model)) == 0
    out = capsys.readouterr().out
    assert out == render_unit(UnitPaths(venv=VENV, config=config, model=model, interpreter=BASE))
    assert f"ExecStart={VENV}/bin/lavalamp run --config {config} --model {model}" in out.splitlines()
    assert not (tmp_path / "lavalamp.service").exists()


def test_dry_run_takes_the_model_from_the_config(tmp_path, config, capsys):
    config.write_text(f"model:\n  path: {tmp_path}/lamps/from-config.safetensors\n")
    assert run("install-service", "--dry-run", "--config", str(config)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"ReadOnlyPaths={VENV} {config.parent} {tmp_path}/lamps") for line in lines)
    # Not on the command line: after editing model.path, a reload follows the config.
    assert f"ExecStart={VENV}/bin/lavalamp run --config {config}" in lines


def test_install_writes_the_unit_then_reloads_and_enables(tmp_path, config, fake_systemctl, capsys):
    unit_dir = tmp_path / "units"
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 0
    assert (unit_dir / "lavalamp.service").read_text() == render_unit(UnitPaths(venv=VENV, config=config, interpreter=BASE))
    assert (unit_dir / "lavalamp.service").stat().st_mode & 0o777 == 0o644
    assert fake_systemctl() == ["daemon-reload", "enable lavalamp.service"]
    assert "enabled" in capsys.readouterr().out


def test_user_install_goes_through_the_user_manager_and_now_starts_it(tmp_path, config, fake_systemctl,
                                                                       monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert run("install-service", "--user", "--now", "--config", str(config)) == 0
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / "lavalamp.service"
    assert unit.read_text() == render_unit(UnitPaths(venv=VENV, config=config, interpreter=BASE), user=True)
    assert fake_systemctl() == ["--user daemon-reload", "--user enable lavalamp.service",
                                "--user restart lavalamp.service"]


def test_uninstall_stops_disables_removes_and_reloads(tmp_path, config, fake_systemctl, capsys):
    unit_dir = tmp_path / "units"
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 0
    assert run("uninstall-service", "--unit-dir", str(unit_dir)) == 0
    assert not (unit_dir / "lavalamp.service").exists()
    assert fake_systemctl()[2:] == ["disable --now lavalamp.service", "daemon-reload"]
    assert run("uninstall-service", "--unit-dir", str(unit_dir)) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(fake_systemctl()) == 4


def test_missing_systemctl_is_a_clear_error_that_changes_nothing(tmp_path, config, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    unit_dir = tmp_path / "units"
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lavalamp: systemctl not found") and err.count("\n") == 1
    assert not unit_dir.exists()


def test_system_install_without_root_says_to_use_sudo(config, fake_systemctl, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run("install-service", "--config", str(config)) == 2
    assert "needs root" in capsys.readouterr().err
    assert fake_systemctl() == []


def test_bad_config_missing_config_and_failing_systemctl_are_refused(tmp_path, config, fake_systemctl,
                                                                       monkeypatch, capsys):
    unit_dir = tmp_path / "units"
    config.write_text("display:\n  fps: fast\n")
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 2
    assert "display.fps" in capsys.readouterr().err
    assert run("install-service", "--config", str(tmp_path / "nope.yaml"), "--unit-dir", str(unit_dir)) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
    assert not unit_dir.exists() and fake_systemctl() == []
    config.write_text("{}\n")
    monkeypatch.setenv("SYSTEMCTL_FAIL", "Access denied")
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 2
    assert "daemon-reload failed (exit 1): Failed to daemon-reload: Access denied" in capsys.readouterr().err
    assert not (unit_dir / "lavalamp.service").exists()  # nothing half-installed is left behind


def test_a_failed_reinstall_keeps_the_working_unit(tmp_path, config, fake_systemctl, monkeypatch):
    unit_dir = tmp_path / "units"
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir)) == 0
    before = (unit_dir / "lavalamp.service").read_text()
    monkeypatch.setenv("SYSTEMCTL_FAIL", "Transport endpoint is not connected")
    assert run("install-service", "--config", str(config), "--unit-dir", str(unit_dir),
               "--watchdog-s", "30") == 2
    assert (unit_dir / "lavalamp.service").read_text() == before


def test_venv_without_lavalamp_is_refused(tmp_path, config, capsys):
    assert run("install-service", "--dry-run", "--config", str(config), "--venv", str(tmp_path)) == 2
    assert f"{tmp_path}/bin/lavalamp not found" in capsys.readouterr().err



@pytest.mark.parametrize("user", [False, True])
def test_the_units_commands_are_ones_the_real_cli_accepts(user):
    parser = cli.build_parser()
    for line in render_unit(CANONICAL, user=user).splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecStartPre"):
            words = shlex.split(value)
            assert words[0] == "/opt/lavalamp/.venv/bin/lavalamp"
            args = parser.parse_args(words[1:])  # exits (fails the test) on an unknown option
            assert args.config == "/etc/lavalamp/config.yaml"


def test_launchd_agent_runs_the_lamp_and_restarts_it_only_after_a_crash():
    agent = plistlib.loads((REPO / "deploy" / "com.neural-lavalamp.lavalamp.plist").read_bytes())
    assert agent["Label"] == "com.neural-lavalamp.lavalamp"
    words = agent["ProgramArguments"]
    assert words[0] == "/opt/lavalamp/.venv/bin/lavalamp"
    assert cli.build_parser().parse_args(words[1:]).command == "run"
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == "/opt/lavalamp/log/lavalamp.log"
    assert agent["EnvironmentVariables"]["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
