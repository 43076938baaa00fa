"""The Makefile's set-up: a system that cannot make the venv gets one line saying what it needs."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
# a python3 that is VERSION and, like Debian's without python3-venv, cannot make a venv
if [ "$1" = "-c" ]; then exec {python} -c "import sys; sys.version_info = {version}; exec(sys.argv[1])" "$2"; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3"
    echo "The virtual environment was not created successfully because ensurepip is not" >&2
    echo "available." >&2
    exit 1
fi
exit 3
"""


def make(tmp_path: Path, version: tuple[int, int, int]) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON.format(python=shutil.which("python3"), version=version))
    fake.chmod(0o755)
    return subprocess.run(["make", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", f"PYTHON={fake}",
                           f"{tmp_path / 'venv'}/.installed"],
                          capture_output=True, text=True, timeout=60)


def needs_line(tmp_path: Path) -> str:
    return (f"make: cannot make {tmp_path / 'venv'}: needs {tmp_path / 'python3'} >= 3.10 with its "
            "venv module (Debian/Ubuntu: sudo apt install python3 python3-venv)")


def test_a_python_without_venv_gets_one_line_naming_python3_venv_and_leaves_no_venv(tmp_path):
    result = make(tmp_path, (3, 12, 0))
    assert result.returncode != 0
    assert needs_line(tmp_path) in result.stderr.splitlines(), result.stderr
    assert not (tmp_path / "venv").exists()  # half a venv would fool the next run


def test_a_python_too_old_gets_the_same_line_before_anything_is_made(tmp_path):
    result = make(tmp_path, (3, 9, 18))
    assert result.returncode != 0
    assert needs_line(tmp_path) in result.stderr.splitlines(), result.stderr
    assert "ensurepip" not in result.stderr and not (tmp_path / "venv").exists()


def test_the_makefiles_minimum_python_is_pyprojects():
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r"^PYTHON_MIN := (\S+)$", makefile, re.M).group(1)
    assert f'requires-python = ">={minimum}"' in pyproject


def default_lamp_commands() -> list[list[str]]:
    """The `lavalamp train` commands of `make default-lamp`, as argument lists after `train`."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-C", str(ROOT), "-n", "-W", "pyproject.toml", "-o",
                          ".venv/.installed", "default-lamp"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.replace("\\\n", " ").splitlines()  # one line per command
    return [shlex.split(line)[2:] for line in lines if "lavalamp train" in line]


def test_make_default_lamps_commands_pass_the_trainers_checks_and_chain_into_the_shipped_lamp():
    from lavalamp.daemon.cli import build_parser
    from lavalamp.train.train_cli import config_fields
    from lavalamp.train.trainer import TrainConfig

    commands = default_lamp_commands()
    assert len(commands) == 4
    parser = build_parser("train")
    configs, outs = [], []
    for argv in commands:
        args = parser.parse_args(["train", *argv])
        configs.append(TrainConfig(**config_fields(args)))  # every field and rule checked, as the run would
        outs.append(str(args.out))
    assert [c.init_from for c in configs] == ["", outs[0], outs[1], outs[2]]
    assert [c.frame_size for c in configs] == [64, 64, 256, 64]
    assert configs[1].decoder_loss == "adversarial" and outs[3] == "models/default_lamp.safetensors"
    assert [c.new_rnn for c in configs] == [False, False, False, True]
    first, rnn = (parser.parse_args(["train", *commands[i]]) for i in (0, 3))
    assert rnn.sim_fps / configs[3].frame_step == first.sim_fps / configs[0].frame_step  # the lamp's rate
