"""Hostile input, class 7: late and unfriendly failures. Every output is checked before the work;
an OS error (a full disk above all) is one line and exit 2, or 1 where a retry could succeed, and
the atomic writes keep the old file; a signal in the first seconds of `lavalamp run` gets the
same answer as later (handlers are in before the heavy imports)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lavalamp.daemon import cli
from lavalamp.models import EXIT_USAGE

EXIT_FAILURE = 1  # a retry could succeed

from .daemon_helpers import Running, write_config
from .fakes import save_fake_lamp


def run(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.mark.parametrize("command", [
    ["render", "--frames", "2"],
    ["simulate", "--frames", "2"],
])
@pytest.mark.slow
def test_an_out_that_is_a_folder_is_refused_before_the_work(tmp_path, command, capsys):
    folder = tmp_path / "clip.npz"
    folder.mkdir()
    assert run(*command, "--out", str(folder)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    assert list(folder.iterdir()) == []


def test_train_out_into_a_missing_folder_is_refused_before_training(tmp_path, capsys):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    code = run("train", "--sim-clips", "1", "--sim-frames", "40", "--steps", "2", "--run-dir",
               str(run_dir), "--out", str(tmp_path / "missing" / "lamp.safetensors"), "--no-progress")
    assert code == EXIT_USAGE and time.monotonic() - started < 5
    assert "does not exist" in capsys.readouterr().err
    assert not run_dir.exists()  # nothing was started


@pytest.mark.parametrize("option", ["--out", "--run-dir"])
def test_train_outputs_under_a_file_or_being_folders_are_refused(tmp_path, option, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    (tmp_path / "dir.safetensors").mkdir()
    bad = {"--out": str(tmp_path / "dir.safetensors"), "--run-dir": str(blocker / "run")}[option]
    argv = {"--out": str(tmp_path / "ok.safetensors"), "--run-dir": str(tmp_path / "run")}
    argv[option] = bad
    code = run("train", "--sim-clips", "1", "--sim-frames", "40", "--steps", "2", "--no-progress",
               *[x for kv in argv.items() for x in kv])
    assert code == EXIT_USAGE and option in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_out_that_cannot_be_made_is_refused_before_the_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    reference = tmp_path / "ref.npz"
    np.savez(reference, frames=np.zeros((10, 64, 64, 3), np.uint8), fps=30.0)
    code = run("eval", "--model", save_fake_lamp(tmp_path / "l.safetensors"), "--reference",
               str(reference), "--out", str(blocker / "report"))
    assert code == EXIT_USAGE and "cannot be created" in capsys.readouterr().err


@pytest.mark.parametrize("number, expected", [(errno.ENOSPC, EXIT_FAILURE), (errno.EIO, EXIT_FAILURE),
                                              (errno.EACCES, EXIT_USAGE), (errno.EROFS, EXIT_USAGE),
                                              (errno.ENOENT, EXIT_USAGE)])
def test_os_errors_exit_1_when_a_retry_could_succeed_else_2(number, expected):
    from lavalamp.models import os_error_exit

    code, text = os_error_exit(OSError(number, os.strerror(number), "/x/y"))
    assert code == expected and text == f"/x/y: {os.strerror(number)}"


def tiny_filesystem_command(mount: Path, command: list[str]) -> list[str] | None:
    """`command` run in a private mount namespace with a 64 KiB tmpfs at `mount` (a full disk),
    or None where this machine does not allow it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run([unshare, "-rm", "true"], capture_output=True)
        if probe.returncode != 0:
            return None
        unshare_args = ["-rm"]
    else:
        unshare_args = ["-m"]
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" && cp "$2" "$1/clip.npz" && shift 2 && exec "$@"'
    return [unshare, *unshare_args, "sh", "-c", script, "sh", str(mount)]


@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_1_and_the_old_file_stays(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    old = tmp_path / "old.npz"
    np.savez(old, frames=np.zeros((1, 8, 8, 3), np.uint8), fps=30.0)
    base = tiny_filesystem_command(mount, [])
    if base is None:
        pytest.skip("this machine allows no private mount namespace (unshare -m)")
    command = base + [str(old), sys.executable, "-c",
                      "import os, sys; from lavalamp.daemon.cli import main; code = main(sys.argv[1:]); "
                      "print('left:', sorted(os.listdir(sys.argv[-1].rsplit('/', 1)[0])), "
                      "os.path.getsize(sys.argv[-1])); sys.exit(code)",
                      "simulate", "--frames", "400", "--seed", "3", "--out", str(mount / "clip.npz")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_FAILURE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert f"left: ['clip.npz'] {old.stat().st_size}" in result.stdout  # no temp file, old file whole


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def wait_for_torch_import(pid: int, timeout: float = 30.0) -> None:
    """Until the process has begun loading torch's libraries (the heavy import is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as f:
            if "libtorch" in f.read():
                return
        time.sleep(0.005)
    raise AssertionError("torch never started loading")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_sigterm_while_importing_exits_0_with_one_line(tmp_path, lamp_path):
    run_ = Running(["--headless", "--model", lamp_path, "--config", write_config(tmp_path / "c.yaml")])
    try:
        wait_for_torch_import(run_.proc.pid)
        code, seconds = run_.stop(signal.SIGTERM)
    finally:
        run_.kill()
    assert code == 0 and seconds < 2.0
    out = run_.output()
    assert "SIGTERM received" in out and "Traceback" not in out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_sighup_and_sigusr1_while_importing_do_not_kill_and_the_reload_happens(tmp_path, lamp_path):
    run_ = Running(["--headless", "--model", lamp_path, "--config", write_config(tmp_path / "c.yaml")])
    try:
        wait_for_torch_import(run_.proc.pid)
        run_.proc.send_signal(signal.SIGUSR1)
        run_.proc.send_signal(signal.SIGHUP)
        run_.wait_for_line("first frame on screen", 60)
        run_.wait_for_line("config reloaded")
        code, _ = run_.stop(signal.SIGTERM)
    finally:
        run_.kill()
    assert code == 0
