"""Hostile input, class 5: unit-file injection. No value that reaches the unit `install-service`
writes (as root) can add a directive: control characters are refused in every one of them, the
rest is quoted as systemd reads it, and systemd-analyze verify agrees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lavalamp.daemon import cli
from lavalamp.daemon.install import UnitPaths, render_unit, venv_interpreter

from .deploy_support import require_tool

INJECTION = "\nUser=root\nExecStartPost=/bin/sh -c 'touch /tmp/pwned'\n"
# Every character that ends a line or hides in one: the newline family, C0, DEL, C1, separators.
CONTROLS = ["\n", "\r", "\t", "\x0b", "\x0c", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
# Legal in a file name, and each special to systemd in its own way.
AWKWARD = ["lava lamp", "100%", "a$b", "semi;colon", "#hash", "ünïcødé", "-dash",
           "@at", "a%%b$$c", "x=y", "${HOME}", "%n%i"]
# systemd refuses these in a program path whatever the quoting; fine in the config and model paths.
UNSAFE_FOR_PROGRAMS = ["it's", 'say "hi"', "back\\slash", "trailing\\"]


def fake_venv(root: Path) -> Path:
    """A folder with an executable bin/lavalamp, as install-service requires of --venv."""
    (root / "bin").mkdir(parents=True)
    script = root / "bin" / "lavalamp"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return root


def dry_run(*argv: str) -> int:
    return cli.main(["install-service", "--dry-run", *argv])


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text("display:\n  fps: 30\n")
    return path


@pytest.mark.parametrize("option", ["--venv", "--config", "--model"])
@pytest.mark.parametrize("char", CONTROLS + [INJECTION])
def test_a_control_character_in_any_option_is_refused_and_nothing_is_written(tmp_path, config, option,
                                                                            char, capsys):
    place = tmp_path / f"in{char}jected"
    if char != "\x00":  # the one character no file name can hold; refused all the same
        fake_venv(place)
        (place / "model.safetensors").write_bytes(b"")
        (place / "config.yaml").write_text("display:\n  fps: 30\n")
    values = {"--venv": str(place), "--config": str(place / "config.yaml"),
              "--model": str(place / "model.safetensors")}
    argv = ["--config", str(config), "--venv", str(fake_venv(tmp_path / "venv"))]
    argv += [option, values[option]]
    code = dry_run(*argv)
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert option in out.err and "control character" in out.err and out.err.count("\n") == 1


def test_a_control_character_in_the_configs_model_path_is_refused(tmp_path, config, capsys):
    config.write_text('model:\n  path: "/opt/x\\nUser=root"\n')
    assert dry_run("--config", str(config), "--venv", str(fake_venv(tmp_path / "venv"))) == 2
    out = capsys.readouterr()
    assert out.out == "" and "model.path" in out.err and "User=root" not in out.out


def test_a_path_that_is_not_utf8_is_refused(tmp_path, config, capsys):
    place = Path(os.fsdecode(bytes(tmp_path) + b"/\xff\xfe"))
    fake_venv(place)
    assert dry_run("--config", str(config), "--venv", str(place)) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("char", CONTROLS)
def test_render_unit_itself_refuses_control_characters_in_every_value(char):
    """The last guard: whatever reaches the template (an interpreter from pyvenv.cfg, a config's
    model folder, a future option) goes through the same check."""
    base = dict(venv=Path("/opt/v"), config=Path("/etc/l/c.yaml"))
    for field in ("venv", "config", "model", "config_model", "interpreter"):
        paths = UnitPaths(**dict(base, **{field: Path(f"/opt/bad{char}dir/x")}))
        with pytest.raises(ValueError, match="control character"):
            render_unit(paths)


def test_an_interpreter_from_pyvenv_cfg_with_a_control_character_is_refused(tmp_path, config, capsys):
    venv = fake_venv(tmp_path / "venv")
    (venv / "pyvenv.cfg").write_text("home = /opt/py\x1b[2Jthon/bin\n")
    assert dry_run("--config", str(config), "--venv", str(venv)) == 2
    assert "control character" in capsys.readouterr().err


def analyze_verify(unit: Path, user: bool) -> str:
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    command = [require_tool("systemd-analyze"), *(["--user"] if user else []), "verify", "--man=no",
               str(unit)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    return f"exit {result.returncode}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("user", [False, True])
def test_awkward_but_legal_names_are_quoted_so_systemd_reads_them_back(tmp_path, user):
    """Each awkward name is a real folder holding the venv (verify checks that ExecStart's
    program exists, so a mis-quoted path fails), the config and the model; verify must print
    nothing, and the unit has exactly the directives of a plain one."""
    plain = render_unit(UnitPaths(venv=Path("/opt/v"), config=Path("/etc/c.yaml"),
                                  model=Path("/srv/m.safetensors")), user=user)
    for i, name in enumerate(AWKWARD + UNSAFE_FOR_PROGRAMS):
        root = tmp_path / f"{i}" / name
        venv = fake_venv((root if name in AWKWARD else tmp_path / f"{i}") / "venv")
        model = root / "models" / "lamp.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"")
        paths = UnitPaths(venv=venv, config=root / "config.yaml", model=model,
                          interpreter=venv_interpreter(Path(sys.prefix)))
        text = render_unit(paths, user=user)
        keys = [line.split("=", 1)[0] for line in text.splitlines()]
        assert keys == [line.split("=", 1)[0] for line in plain.splitlines()], name
        unit = tmp_path / f"{i}" / "lavalamp.service"
        unit.write_text(text)
        assert analyze_verify(unit, user) == "exit 0: ", (name, text)


@pytest.mark.parametrize("name", UNSAFE_FOR_PROGRAMS)
def test_a_venv_path_systemd_would_refuse_to_run_is_refused_with_a_way_out(tmp_path, config, name,
                                                                         capsys):
    venv = fake_venv(tmp_path / name / "venv")
    assert dry_run("--config", str(config), "--venv", str(venv)) == 2
    err = capsys.readouterr().err
    assert "systemd refuses in a program path" in err and "move the virtual environment" in err


def test_verify_does_catch_a_mis_quoted_path(tmp_path):
    """The check above can fail: the same unit with the quotes taken off names a program that
    does not exist."""
    venv = fake_venv(tmp_path / "lava lamp" / "venv")
    text = render_unit(UnitPaths(venv=venv, config=tmp_path / "c.yaml"))
    unit = tmp_path / "lavalamp.service"
    unit.write_text(text.replace('"', ""))
    assert "exit 0: " != analyze_verify(unit, False)


def test_watchdog_seconds_are_bounded(tmp_path, config, capsys):
    venv = str(fake_venv(tmp_path / "venv"))
    assert dry_run("--config", str(config), "--venv", venv, "--watchdog-s", str(10**30)) == 2
    assert "--watchdog-s must be in 1..86400" in capsys.readouterr().err
