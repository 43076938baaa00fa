"""Hostile input, class 8: check-config and run disagree no more. check-config makes every check
`lavalamp run` makes before it shows anything (device, lamp, buffer memory, addresses, schedule),
or, with --offline, says it checks the file alone; whatever one refuses, so does the other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from prometheus_client import CollectorRegistry

from lavalamp.daemon import cli
from lavalamp.daemon.config import ConfigError, load_config
from lavalamp.daemon.service import EXIT_USAGE, Daemon

from .fakes import rewrite_lamp, save_fake_lamp

QUIET = {"metrics": {"enabled": False}}


@pytest.fixture(scope="module")
def lamps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lamps")
    good = save_fake_lamp(folder / "good.safetensors", contrast=30)
    big = save_fake_lamp(folder / "big.safetensors", contrast=30, upsample_to=256)
    black = rewrite_lamp(good, out=folder / "black.safetensors", tensors=lambda t: {
        k: v * float("nan") if k.startswith("decoder.") and v.is_floating_point() else v
        for k, v in t.items()})
    return {"good": good, "big": big, "black": black, "missing": str(folder / "gone.safetensors")}


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def config_file(tmp_path, sections: dict) -> str:
    merged = {k: dict(v) for k, v in QUIET.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(merged))
    return str(path)


def check(*argv: str) -> int:
    return cli.main(["check-config", *argv])


def cases(lamps, port, tmp_path):
    """(name, config sections, model, what the message names): each one run refuses at start."""
    token = tmp_path / "token"
    out = [
        ("missing model", {}, lamps["missing"], "checkpoint not found"),
        ("black lamp", {}, lamps["black"], "non-finite frames"),
        ("metrics port taken", {"metrics": {"enabled": True, "port": port}}, lamps["good"],
         f"cannot listen on 127.0.0.1:{port}"),
        ("metrics address of no interface here", {"metrics": {"enabled": True, "address": "192.0.2.1",
                                                              "port": 9}}, lamps["good"],
         "metrics.address"),
        ("control port taken", {"control": {"enabled": True, "port": port}}, lamps["good"],
         f"cannot listen on 127.0.0.1:{port}"),
        ("control off loopback without token", {"control": {"enabled": True, "address": "0.0.0.0"}},
         lamps["good"], "control.token_file: required"),
        ("control token file missing", {"control": {"enabled": True, "token_file": str(token)}},
         lamps["good"], "control.token_file: cannot read"),
    ]
    if not torch.cuda.is_available():
        out.append(("absent cuda", {"model": {"device": "cuda"}}, lamps["good"], "model.device"))
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        out.append(("absent mps", {"model": {"device": "mps"}}, lamps["good"], "model.device"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 100_000 * 256 * 256 * 3 > memory / 2:
        out.append(("buffer bigger than memory", {"buffer": {"depth_frames": 100_000}}, lamps["big"],
                    "buffer.depth_frames"))
    return out


CASE_NAMES = ["missing model", "black lamp", "metrics port taken", "metrics address of no interface here",
              "control port taken", "control off loopback without token", "control token file missing",
              "absent cuda", "absent mps", "buffer bigger than memory"]


def find_case(lamps, port, tmp_path, name):
    found = {c[0]: c for c in cases(lamps, port, tmp_path)}
    if name not in found:
        pytest.skip(f"{name}: this machine has what the case lacks")
    return found[name]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_check_config_refuses_what_run_refuses_and_run_does(tmp_path, lamps, taken_port, name, capsys):
    _, sections, model, message = find_case(lamps, taken_port, tmp_path, name)
    config = config_file(tmp_path, sections)
    assert check("--config", config, "--model", model) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert run_refuses(config, model)


def run_refuses(config: str, model: str) -> bool:
    """Whether `lavalamp run` refuses to start (exit 2) with this config and model."""
    try:
        loaded = load_config(config)
    except ConfigError:
        return True  # run_command's first step: one line, exit 2
    d = Daemon(config=loaded, config_path=config, model_path=model, headless=True,
               registry=CollectorRegistry(), max_frames=1)
    return d.run() == EXIT_USAGE


@pytest.mark.parametrize("line", ["0 0 30 2 *", "0 12 31 4 *", "0 12 31 6,9,11 *"])
def test_a_schedule_line_that_never_fires_is_refused_by_the_loader_itself(tmp_path, line, capsys):
    config = config_file(tmp_path, {"schedule": {"display_off": "0 22 * * *", "display_on": line}})
    with pytest.raises(ConfigError, match="never fires"):
        load_config(config)
    assert check("--offline", "--config", config) == EXIT_USAGE
    assert "schedule.display_on" in capsys.readouterr().err


def test_a_good_config_passes_and_says_what_was_checked_and_what_not(tmp_path, lamps, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = config_file(tmp_path, {"metrics": {"enabled": True, "port": port},
                                    "schedule": {"display_off": "0 22 * * *",
                                                 "display_on": "0 12 29 2 *"}})  # leap days only
    assert check("--config", config, "--model", lamps["good"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "'test-lamp'" in out and f"127.0.0.1:{port}" in out
    assert "not checked: the display" in out


@pytest.mark.slow
def test_offline_checks_the_file_alone_without_torch(tmp_path):
    """A config written for another machine (a GPU kiosk) is checked here with --offline."""
    config = config_file(tmp_path, {"model": {"device": "cuda", "path": "/opt/elsewhere/lamp.safetensors"}})
    code = ("import sys; from lavalamp.daemon.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, "check-config", "--offline", "--config", config],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{config}: OK", "False"]
