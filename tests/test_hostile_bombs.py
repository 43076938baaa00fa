"""Hostile input, class 4: expansion and size bombs. What is read (file size, nesting depth, alias
expansion) and what an error message quotes are bounded, so that no file can make the loader run
for long, take much memory, or write a huge log line, at start-up or on SIGHUP."""

import time

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import ConfigError, load_config
from lavalamp.daemon.service import Daemon
from lavalamp.models.checkpoint import LampLoadError, load_lamp

from .daemon_helpers import refused_reload_keeps_running, write_config
from .fakes import lamp_header, metric, rewrite_lamp, save_fake_lamp, wait_until

LIMIT_S = 1.0  # every refusal here takes milliseconds; the bombs took seconds to minutes
# (CPU seconds of the loading thread: the work the file causes, not the time other processes on a
# busy machine take from it)


def alias_bomb(levels: int, key: str = "display", field: str = "scaling") -> str:
    """`levels` anchors each repeating the one before nine times, as the value of key.field:
    9**levels values from about 50 * levels bytes."""
    lines = ['- &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"- &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    body = "\n".join("    " + line for line in lines)
    return f"{key}:\n  {field}:\n{body}\n"


def refused_quickly(path) -> str:
    started = time.thread_time()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    elapsed = time.thread_time() - started
    text = str(err.value)
    assert elapsed < LIMIT_S, f"took {elapsed:.2f} s of CPU"
    assert "\n" not in text and len(text) <= 400, text[:1000]
    return text


@pytest.fixture(scope="module")
def lamp_path(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "lamp.safetensors", contrast=30)


@pytest.mark.parametrize("levels", [7, 9])
def test_an_alias_bomb_is_refused_in_milliseconds(tmp_path, levels):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels))
    assert path.stat().st_size < 1000
    assert "expands to more than" in refused_quickly(path)


def test_aliases_that_expand_a_little_are_still_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("schedule:\n  display_on: &morning '0 8 * * *'\n  undim: *morning\n"
                    "  dim: '0 20 * * *'\n")
    assert load_config(path).schedule.undim == "0 8 * * *"


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (8 * 2**20) + "\ndisplay:\n  fps: 30\n")
    assert "bytes; at most" in refused_quickly(path)


@pytest.mark.parametrize("text", [
    "display:\n  scaling: '" + "z" * 200_000 + "'\n",
    "display:\n  scaling: [" + ", ".join(["1"] * 5000) + "]\n",
    "display:\n  ? '" + "k" * 100_000 + "'\n  : 1\n",
    "schedule:\n  reseed: '" + "* " * 50_000 + "'\n",
    "schedule:\n  timezone: '" + "Europe/" * 20_000 + "'\n",
    "model:\n  path: " + "[" * 200 + "]" * 200 + "\n",
])
def test_error_messages_quote_a_bounded_excerpt(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert str(path) in refused_quickly(path)


def test_a_checkpoint_error_quotes_a_bounded_excerpt(tmp_path, lamp_path):
    header = lamp_header(lamp_path)
    header["decoder_config"] = dict(header["decoder_config"], bogus="b" * 1_000_000)
    path = rewrite_lamp(lamp_path, header=header, out=tmp_path / "long.safetensors")
    with pytest.raises(LampLoadError) as err:
        load_lamp(path)
    assert "\n" not in str(err.value) and len(str(err.value)) <= 400


SLOW_TO_PARSE = "display:\n  scaling: [" + ", ".join(["1"] * 80_000) + "]\n"  # 240 KB, under the bound


@pytest.mark.parametrize("text", [alias_bomb(7), pytest.param(SLOW_TO_PARSE, marks=pytest.mark.slow)],
                         ids=["alias bomb", "slow to parse"])
def test_a_bomb_on_sighup_does_not_stall_the_frame_loop(tmp_path, lamp_path, caplog, text):
    config = tmp_path / "c.yaml"
    write_config(config)
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config), config_path=str(config), model_path=lamp_path,
               headless=True, registry=registry)

    refused_reload_keeps_running(d, registry, lambda: config.write_text(text))
    slow = metric(registry, "lavalamp_frame_seconds_count") - \
        metric(registry, "lavalamp_frame_seconds_bucket", {"le": "0.5"})
    assert slow == 0  # no frame waited half a second for the reload
    assert max(len(r.getMessage()) for r in caplog.records) < 1000
