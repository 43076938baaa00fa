"""Fuzzing the two readers of hostile files: the config loader and the checkpoint header. Either a
clean load or ConfigError/LampLoadError with one short line; never another exception, never more
than a set time or memory. A few seconds here; `make fuzz` runs many more examples."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lavalamp.daemon.config import Config, ConfigError, load_config
from lavalamp.models.checkpoint import Lamp, LampLoadError, load_lamp

from .fakes import lamp_header, rewrite_lamp, save_fake_lamp

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
LIMIT_S = 2.0  # CPU seconds of one load, however hostile
MEMORY_BYTES = 300 * 2**20  # growth of the peak resident memory over a whole fuzz test
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

SECTIONS = {f.name: dataclasses.asdict(getattr(Config(), f.name)) for f in dataclasses.fields(Config)}
KEYS = [(section, key) for section, values in SECTIONS.items() for key in values]
YAML_CHARS = "[]{}:,&*!|>-#'\"?%@`\\\n\t .0123456789eE+abcnulltrueyml~"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                      max_size=4),
    max_leaves=12)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one_line(exc: Exception) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) <= 400, text[:500]


@pytest.fixture(scope="module", autouse=True)
def within_memory():
    """The peak resident memory grows by less than MEMORY_BYTES over every fuzz test together."""
    before = peak_rss()
    yield
    assert peak_rss() - before < MEMORY_BYTES


@st.composite
def configs(draw) -> str:
    """YAML text: the real sections and keys with hostile values, or YAML-ish noise."""
    if draw(st.booleans()):
        data: dict = {}
        for section, key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
            data.setdefault(section, {})[key] = draw(json_values)
        if draw(st.booleans()):
            data[draw(st.text(max_size=8))] = draw(json_values)
        return yaml.safe_dump(data)
    return draw(st.text(alphabet=YAML_CHARS, max_size=300))


@FUZZ
@given(text=configs())
def test_the_config_loader_loads_or_refuses_in_one_line(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text)
        started = time.thread_time()  # the loader's own work, whatever else the machine does
        try:
            assert isinstance(load_config(path), Config)
        except ConfigError as exc:
            one_line(exc)
        assert time.thread_time() - started < LIMIT_S


LAMP_DIR = Path(tempfile.mkdtemp(prefix="lavalamp-fuzz-"))
GOOD = save_fake_lamp(LAMP_DIR / "good.safetensors", contrast=30)
HEADER = lamp_header(GOOD)
PATHS = [(top,) for top in HEADER] + [(top, key) for top, value in HEADER.items()
                                      if isinstance(value, dict) for key in value]


@st.composite
def headers(draw) -> str:
    """The good lamp's header with a few fields replaced (or removed, or added) by random JSON."""
    header = json.loads(json.dumps(HEADER))
    for path in draw(st.lists(st.sampled_from(PATHS + [("surprise",), ("data", "surprise")]),
                              min_size=1, max_size=3)):
        holder = header
        for key in path[:-1]:
            holder = holder.setdefault(key, {}) if isinstance(holder, dict) else {}
        if not isinstance(holder, dict):
            continue
        if draw(st.integers(0, 5)) == 0:
            holder.pop(path[-1], None)
        else:
            holder[path[-1]] = draw(json_values)
    return json.dumps(header)


def loads_or_refuses_in_one_line(path) -> None:
    """load_lamp(path) gives a Lamp or one LampLoadError line, within LIMIT_S of CPU (every thread
    torch uses, not what other processes take)."""
    started = time.process_time()
    try:
        assert isinstance(load_lamp(path), Lamp)
    except LampLoadError as exc:
        one_line(exc)
    assert time.process_time() - started < LIMIT_S


@FUZZ
@given(text=headers())
def test_the_checkpoint_header_loads_or_refuses_in_one_line(text):
    path = rewrite_lamp(GOOD, header=text, out=LAMP_DIR / "fuzzed.safetensors")
    loads_or_refuses_in_one_line(path)


@FUZZ
@given(data=st.data())
def test_a_checkpoint_with_damaged_bytes_loads_or_refuses_in_one_line(data):
    raw = bytearray(Path(GOOD).read_bytes())
    header_end = 8 + int.from_bytes(raw[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, header_end + 64))
        raw[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    path = LAMP_DIR / "damaged.safetensors"
    path.write_bytes(bytes(raw))
    loads_or_refuses_in_one_line(path)
