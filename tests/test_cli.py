"""The installed `lavalamp` command: help, version and check-config exit codes."""

import subprocess
import sys
from pathlib import Path

from lavalamp.models import __version__

ROOT = Path(__file__).resolve().parents[1]


def lavalamp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lavalamp.daemon", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_version_and_help():
    assert lavalamp("--version").stdout.strip() == f"lavalamp {__version__}"
    help_text = lavalamp("--help").stdout
    assert "check-config" in help_text


def test_no_subcommand_prints_help_and_exits_2():
    result = lavalamp()
    assert result.returncode == 2 and "COMMAND" in result.stdout


def test_check_config_accepts_the_shipped_file():
    result = lavalamp("check-config", "--config", str(ROOT / "config.yaml"))
    assert result.returncode == 0, result.stderr


def test_check_config_refuses_a_broken_file_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("display:\n  fps: fast\n")
    result = lavalamp("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "display.fps: expected a number in 1..240, got 'fast'" in result.stderr
    assert "Traceback" not in result.stderr
