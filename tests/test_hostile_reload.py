"""Hostile input, class 1: no reload (config, model, schedule) and no start-up can be crashed by a
file; every failure is one "refused: <reason>" line and the lamp goes on unchanged."""

import signal

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon import renderer as renderer_module
from lavalamp.daemon.config import ConfigError, load_config
from lavalamp.daemon.service import EXIT_OK, EXIT_USAGE, Daemon
from lavalamp.models.checkpoint import LampLoadError, load_lamp

from .daemon_helpers import refused_reload_keeps_running, Running, write_config
from .fakes import lamp_header, metric, rewrite_lamp, save_fake_lamp, wait_until

# Each of these raised something other than ConfigError from the loader (RecursionError,
# ValueError, KeyError, OverflowError): a traceback at start-up, a dead daemon on SIGHUP.
CRASHING_CONFIGS = {
    "nested sequences": "model:\n  path: " + "[" * 1000 + "]" * 1000 + "\n",
    "nested mappings": "model:\n  path: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
    "impossible date": "model:\n  path: 2026-02-30\n",
    "impossible month": "model:\n  path: 2026-13-01\n",
    "tagged int": "model:\n  seed: !!int twelve\n",
    "tagged float": "display:\n  fps: !!float fast\n",
    "tagged bool": "display:\n  smooth: !!bool maybe\n",
    "integer too big for a float": "display:\n  fps: " + "9" * 400 + "\n",
}


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


def assert_one_line(exc, path):
    text = str(exc)
    assert "\n" not in text and len(text) <= 400, text
    assert str(path) in text


@pytest.mark.parametrize("name", sorted(CRASHING_CONFIGS))
def test_any_failure_of_the_config_loader_is_one_config_error(tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_text(CRASHING_CONFIGS[name])
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert_one_line(err.value, path)


@pytest.mark.parametrize("header", [
    "[]",  # a list, not an object
    "[" * 100000 + "]" * 100000,  # RecursionError in the JSON decoder
    '{"decoder_kind": ["vae"]}',  # unhashable where a name belongs
    "null",
])
def test_any_failure_of_the_lamp_loader_is_one_lamp_load_error(tmp_path, lamp_path, header):
    path = rewrite_lamp(lamp_path, header=header, out=tmp_path / "hostile.safetensors")
    with pytest.raises(LampLoadError) as err:
        load_lamp(path)
    assert_one_line(err.value, path)


def test_a_reload_that_fails_while_applying_keeps_the_running_config(tmp_path, lamp_path,
                                                                   monkeypatch, caplog):
    """A config that validates but cannot be applied (here the display refuses it) is refused
    too, and the frame loop goes on with the config it had."""
    config = tmp_path / "c.yaml"
    write_config(config)
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config), config_path=str(config), model_path=lamp_path,
               headless=True, registry=registry)
    before = d.config

    def refuse(self, display):
        if display.scaling == "fill":
            raise RuntimeError("the display cannot do that")

    monkeypatch.setattr(renderer_module.HeadlessRenderer, "apply", refuse)

    refused_reload_keeps_running(d, registry, lambda: write_config(config, {"display": {"scaling": "fill", "speed": 2.0}}))
    assert d.config == before  # display.speed, which would have applied, was put back too
    assert "config reload refused: RuntimeError: the display cannot do that" in caplog.text


@pytest.mark.slow
def test_sighup_with_hostile_configs_and_hostile_checkpoints_leaves_the_lamp_running(tmp_path,
                                                                                    lamp_path):
    config = tmp_path / "c.yaml"
    model = tmp_path / "watched.safetensors"
    save_fake_lamp(model, contrast=30)
    write_config(config)
    run = Running(["--headless", "--model", str(model), "--config", str(config)])
    try:
        run.wait_for_line("first frame on screen", 60)
        for text in (CRASHING_CONFIGS["nested sequences"], CRASHING_CONFIGS["impossible date"]):
            config.write_text(text)
            run.proc.send_signal(signal.SIGHUP)
            line = run.wait_for_line("config reload refused: ")
            assert str(config) in line
        write_config(config)
        for header in ("[]", "[" * 100000 + "]" * 100000):
            rewrite_lamp(lamp_path, header=header, out=model)
            run.proc.send_signal(signal.SIGHUP)  # a good config: reloads it and the model
            run.wait_for_line("config reloaded")
            assert str(model) in run.wait_for_line("new checkpoint refused: ")
            run.lines.clear()
        header = lamp_header(lamp_path)
        rewrite_lamp(lamp_path, header=dict(header, name="third-lamp"), out=model)
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_line("'third-lamp') accepted")
        assert run.proc.poll() is None
        code, _ = run.stop(signal.SIGTERM)
    finally:
        run.kill()
    assert code == EXIT_OK
    out = run.output()
    assert "Traceback" not in out and "producer crashed" not in out


@pytest.mark.slow
def test_start_up_with_a_hostile_config_or_checkpoint_is_one_line_and_exit_2(tmp_path, lamp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CRASHING_CONFIGS["nested mappings"])
    run = Running(["--headless", "--model", lamp_path, "--config", str(config)])
    assert run.proc.wait(60) == EXIT_USAGE
    lines = run.output().strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0], lines
    write_config(config)
    model = rewrite_lamp(lamp_path, header="[]", out=tmp_path / "list.safetensors")
    run = Running(["--headless", "--model", model, "--config", str(config)])
    assert run.proc.wait(60) == EXIT_USAGE
    out = run.output()
    assert "Traceback" not in out and f"{model}: " in out


@pytest.mark.parametrize("body", [b"[" * 30000 + b"]" * 30000,
                                  b'{"brightness": ' + b"[" * 30000 + b"]" * 30000 + b"}",
                                  b'{"brightness": ' + b"9" * 5000 + b"}",
                                  b'{"brightness": 0.5, "brightness": "\\ud800"}',
                                  b"\xff\xfe{}"])
def test_the_control_apis_hostile_bodies_are_refused_400_and_the_lamp_goes_on(tmp_path, lamp_path,
                                                                            body, caplog):
    """The control API is a reload path too: a body its JSON reader chokes on is a 400, never a
    500 with a traceback."""
    from .daemon_helpers import drive
    from .test_control import call, daemon, serving

    d, port = daemon(tmp_path, lamp_path)

    def check(d):
        assert serving(d, port)
        return call(port, "PATCH", "/api/settings", body)

    status, _, answer = drive(d, check)
    assert status == 400, answer[:300]
    assert "Traceback" not in caplog.text and d.config.display.brightness == 1.0
