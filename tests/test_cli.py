"""The installed `lavalamp` command: help, version and check-config exit codes."""

import subprocess
import sys
import textwrap
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


def fresh_python(code: str) -> str:
    """What `code` prints when run in an interpreter of its own (which must succeed)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_a_command_loads_only_its_own_module():
    """`lavalamp run` never imports the trainer, the simulator or the evaluator."""
    assert fresh_python("""
        import sys, contextlib, io
        from lavalamp.daemon.cli import main
        with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
            main(['run', '--help'])
        print(sorted(m for m in sys.modules if m.startswith('lavalamp.train')))
        """).strip() == "[]"


@pytest.mark.slow
def test_a_command_s_modules_load_with_no_collection_and_are_frozen_after():
    """In a process of its own the modules load with the collector off, then stay out of its way;
    an in-process caller (main(argv)) keeps its collector as it was and frees its own garbage."""
    assert fresh_python("""
        import gc, contextlib, io
        from lavalamp.daemon.cli import main, modules_frozen
        with modules_frozen(True):
            during = gc.isenabled()
            import lavalamp.daemon.service
        print(during, gc.isenabled(), gc.get_freeze_count() > 100000)
        gc.unfreeze()
        with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
            main(['check-config', '--help'])
        print(gc.isenabled(), gc.get_freeze_count())
        """).split() == ["False", "True", "True", "True", "0"]


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
