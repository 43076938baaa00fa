"""Config loading: defaults, subsets, and one readable refusal per kind of mistake."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from lavalamp.daemon.config import Config, ConfigError, load_config, parse_config
from lavalamp.daemon.config_file import config_yaml

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_config_equals_the_defaults():
    assert load_config(ROOT / "config.yaml") == Config()


def test_shipped_config_documents_every_key_with_a_comment():
    lines = (ROOT / "config.yaml").read_text().splitlines()
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    for section in dataclasses.fields(Config):
        assert section.name in data, section.name
        for f in dataclasses.fields(getattr(Config(), section.name)):
            assert f.name in data[section.name], f"{section.name}.{f.name} missing from config.yaml"
            line = next(ln for ln in lines if ln.strip().startswith(f"{f.name}:"))
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 5, line


def test_shipped_config_is_written_from_the_dataclasses():
    assert (ROOT / "config.yaml").read_text() == config_yaml(), \
        "config.yaml is stale: run `make config-yaml` (its comments come from daemon/config.py)"


def test_every_comment_of_the_shipped_config_is_its_fields_doc():
    comments, key = {}, None
    for line in (ROOT / "config.yaml").read_text().splitlines():
        section = re.match(r"^(\w+):  # (.*)$", line)
        item = re.match(r"^  (\w+): .*?  # (.*)$", line)
        more = re.match(r"^ {3,}# (.*)$", line)
        if section or item:
            key = (section or item).group(1) if section else f"{key.partition('.')[0]}.{item.group(1)}"
            comments[key] = (section or item).group(2)
        elif more:
            comments[key] += " " + more.group(1)
    docs = {}
    for section in dataclasses.fields(Config):
        defaults = getattr(Config(), section.name)
        docs[section.name] = type(defaults).__doc__.rstrip(".")
        docs.update({f"{section.name}.{f.name}": f.metadata["doc"] for f in dataclasses.fields(defaults)})
    assert {k: re.sub(r" \(restart: [^)]*\)$", "", v) for k, v in comments.items()} == docs


def test_a_subset_keeps_the_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "display:\n  fps: 30\n  fullscreen: false\n"))
    assert cfg.display.fps == 30.0 and cfg.display.fullscreen is False
    assert cfg.display.scaling == "fit" and cfg.buffer == Config().buffer


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().display.fps = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, message", [
    ("display:\n  fps: fast\n", "display.fps: expected a number in 1..240, got 'fast'"),
    ("display:\n  fps: 1000\n", "display.fps: expected a number in 1..240, got 1000"),
    ("display:\n  fullscreen: 1\n", "display.fullscreen: expected true or false, got 1"),
    ("display:\n  scaling: zoom\n", "display.scaling: expected one of 'fit', 'fill', 'stretch', got 'zoom'"),
    ("display:\n  fpz: 30\n", "display.fpz: unknown key"),
    ("dispaly:\n  fps: 30\n", "dispaly: unknown key"),
    ("buffer:\n  depth_frames: 2.5\n", "buffer.depth_frames: expected an integer in 2..100000, got 2.5"),
    ("metrics:\n  port: true\n", "metrics.port: expected an integer in 1..65535, got True"),
    ("model:\n  seed: -1\n", "model.seed: expected an integer in 0..9223372036854775807 or null, got -1"),
    ("display: 5\n", "display: expected a mapping of keys, got 5"),
    ("- a\n- b\n", "expected a mapping of sections at the top level"),
])
def test_bad_values_are_refused_with_the_dotted_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "c.yaml") in str(err.value)


def test_missing_empty_and_invalid_files_have_their_own_messages(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="config file is empty"):
        load_config(write(tmp_path, "  \n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "display: [unclosed\n"))


def test_nullable_keys_accept_null():
    cfg = parse_config({"model": {"path": None, "seed": 7}, "schedule": {"reseed": "0 * * * *"}})
    assert cfg.model.path is None and cfg.model.seed == 7 and cfg.schedule.reseed == "0 * * * *"


@pytest.mark.parametrize("text, message", [
    ("display:\n  screens: both\n", "display.screens: expected 'primary', 'all' or a list of "
     "distinct monitor indexes in 0..16 (e.g. [0, 1]), got 'both'"),
    ("display:\n  screens: [0, 0]\n", "display.screens: expected 'primary', 'all' or a list"),
    ("display:\n  screens: []\n", "display.screens: expected 'primary', 'all' or a list"),
    ("display:\n  screens: [true]\n", "display.screens: expected"),
    ("display:\n  multi: mirror\n", "display.multi: expected one of 'independent', 'clone'"),
    ("display:\n  pixel_shift_px: 100\n", "display.pixel_shift_px: expected an integer in 0..64"),
    ("display:\n  pixel_shift_period_s: 1\n", "display.pixel_shift_period_s: expected a number"),
    ("playlist:\n  lamps: [a]\n  every_s: 60\n", "playlist.lamps is set but model.library is not"),
    ("model:\n  library: /l\nplaylist:\n  lamps: [a]\n", "set exactly one of every_s"),
    ("model:\n  library: /l\nplaylist:\n  lamps: [a]\n  every_s: 60\n  change: '* * * * *'\n",
     "got both"),
    ("model:\n  library: /l\nplaylist:\n  lamps: ['../x']\n  every_s: 60\n",
     "playlist.lamps: '../x' is not a lamp name"),
    ("model:\n  library: /l\nplaylist:\n  lamps: a\n  every_s: 60\n",
     "playlist.lamps: expected a list of at most 1000 lamp names, got 'a'"),
    ("model:\n  library: /l\nplaylist:\n  lamps: [a]\n  change: 'at noon'\n",
     "playlist.change: invalid crontab line 'at noon'"),
    ("playlist:\n  every_s: 60\n", "are set but playlist.lamps is empty"),
    ("buffer:\n  depth_frames: 9\n", "buffer.depth_frames (9) must be at least buffer.batch_frames + 2 (10)"),
    ("buffer:\n  depth_frames: 16\n  batch_frames: 16\n", "must be at least buffer.batch_frames + 2 (18)"),
])
def test_screens_and_playlist_mistakes_are_refused_by_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)


def test_screens_and_a_playlist_parse():
    cfg = parse_config({"display": {"screens": [1, 0], "multi": "clone", "pixel_shift_px": 8},
                        "model": {"library": "/lamps"},
                        "playlist": {"lamps": ["a", "b.v2"], "order": "shuffle", "every_s": 600}})
    assert cfg.display.screens == (1, 0) and cfg.display.multi == "clone"
    assert cfg.playlist.lamps == ("a", "b.v2") and cfg.playlist.every_s == 600.0
    assert parse_config({"display": {"screens": "all"}}).display.screens == "all"


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps"])
def test_model_device_accepts_every_name_the_device_code_accepts(name):
    assert parse_config({"model": {"device": name}}).model.device == name


@pytest.mark.parametrize("name", ["tpu", "cuda:", "cuda:x", "cpu:0", "CUDA", 1, True])
def test_model_device_refuses_nonsense_naming_the_key_and_the_choices(name):
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"device": name}})
    assert str(err.value) == (f"model.device: unknown device {name!r}: expected auto (cuda, then "
                              "mps, then cpu), cpu, cuda, cuda:N (the Nth GPU) or mps")


@pytest.mark.parametrize("old, new", [("buffer.stall_s", "producer.stall_s"),
                                      ("buffer.max_failures", "producer.max_failures"),
                                      ("buffer.failure_window_s", "producer.failure_window_s"),
                                      ("guard.crossfade_frames", "model.crossfade_frames")])
def test_a_renamed_key_still_works_under_its_old_name_and_the_log_says_so(tmp_path, caplog, old, new):
    (section, name), (new_section, new_name) = old.split("."), new.split(".")
    cfg = load_config(write(tmp_path, f"{section}:\n  {name}: 7\n"))
    assert getattr(getattr(cfg, new_section), new_name) == 7
    assert f"{old} is renamed to {new}" in caplog.text
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"{section}:\n  {name}: 7\n{new_section}:\n  {new_name}: 8\n"))
    assert f"{old} and {new} are both set: {old} is the old name of {new}" in str(err.value)


def test_a_renamed_key_with_a_bad_value_is_refused_under_its_new_name(tmp_path):
    with pytest.raises(ConfigError, match=r"producer\.stall_s: expected a number in 0\.5\.\.3600"):
        load_config(write(tmp_path, "buffer:\n  stall_s: 0\n"))
