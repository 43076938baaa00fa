"""The installed `lavalamp` command: help, version and check-config exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

from lavalamp.models import __version__

ROOT = Path(__file__).resolve().parents[1]


def lavalamp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lavalamp.daemon", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.slow
def test_version_and_help():
    assert lavalamp("--version").stdout.strip() == f"lavalamp {__version__}"
    help_text = lavalamp("--help").stdout
    for command in ("run", "render", "train", "simulate", "eval", "check-config", "install-service"):
        assert command in help_text


@pytest.mark.slow
def test_a_command_loads_only_its_own_module():
    """`lavalamp run` never imports the trainer, the simulator or the evaluator."""
    check = ("import sys, contextlib, io\n"
             "from lavalamp.daemon.cli import main\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "    main(['run', '--help'])\n"
             "print(sorted(m for m in sys.modules if m.startswith('lavalamp.train')))")
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_command_s_modules_load_with_no_collection_and_are_frozen_after():
    """In a process of its own the modules load with the collector off, then stay out of its way;
    an in-process caller (main(argv)) keeps its collector as it was and frees its own garbage."""
    check = ("import gc, sys, contextlib, io\n"
             "from lavalamp.daemon.cli import main, modules_frozen\n"
             "seen = []\n"
             "with modules_frozen(True):\n"
             "    seen.append(gc.isenabled())\n"
             "    import lavalamp.daemon.service\n"
             "print(seen[0], gc.isenabled(), gc.get_freeze_count() > 100000)\n"
             "gc.unfreeze()\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "    main(['check-config', '--help'])\n"
             "print(gc.isenabled(), gc.get_freeze_count())\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "0"]


@pytest.mark.slow
def test_no_subcommand_prints_help_and_exits_2():
    result = lavalamp()
    assert result.returncode == 2 and "COMMAND" in result.stdout


@pytest.mark.slow
def test_check_config_accepts_the_shipped_file():
    result = lavalamp("check-config", "--offline", "--config", str(ROOT / "config.yaml"))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_check_config_refuses_a_broken_file_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("display:\n  fps: fast\n")
    result = lavalamp("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "display.fps: expected a number in 1..240, got 'fast'" in result.stderr
    assert "Traceback" not in result.stderr
