"""Typed, frozen runtime configuration: YAML in, one validated object out, one readable error."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import reprlib
import stat
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lavalamp.models import one_line
from lavalamp.models.device import device_name_problem
from lavalamp.models.fields import documented
from lavalamp.models.limits import TEMPERATURE_RANGE

MAX_CONFIG_BYTES = 256 * 1024  # a config file is a few kilobytes; anything bigger is a mistake
MAX_DEPTH = 16  # nesting of YAML collections (a config needs 2)
MAX_VALUES = 10_000  # YAML values after alias expansion (a config has about 60)
# PyYAML's pure-Python parser, not libyaml's: a reload parses on a thread beside the frame loop, and
# libyaml holds the GIL through a whole document (a config near its size bound stalls the frames for
# half a second), where Python code hands it over every switch interval
YAML_LOADER = yaml.SafeLoader
MAX_QUOTE = 60  # characters of a value quoted in an error message

# Keys that moved, old dotted name -> new: an old config file keeps working (the log says so).
RENAMED = {"buffer.stall_s": "producer.stall_s", "buffer.max_failures": "producer.max_failures",
           "buffer.failure_window_s": "producer.failure_window_s",
           "guard.crossfade_frames": "model.crossfade_frames"}

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file or the dotted key.

    The message is always one short line (models.one_line), whatever it quotes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def opt(default: Any, doc: str, *, range: tuple[float, float] | None = None,
        choices: tuple[str, ...] | None = None, live: bool = False,
        parse: typing.Callable[[str, Any], Any] | None = None) -> Any:
    """A config field with its documentation, its allowed values (or its own `parse(key, value)`)
    and whether a running daemon applies a change of it in place (live) or only at its next start."""
    return documented(default, doc, range=range, choices=choices, live=live, parse=parse)


SCREEN_CHOICES = ("primary", "all")
MAX_LAMPS = 1000
LAMP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def _screens(key: str, value: Any) -> str | tuple[int, ...]:
    """display.screens: 'primary', 'all' or a non-empty list of distinct monitor indexes."""
    if value in SCREEN_CHOICES:
        return value
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 16 for i in value)
    if not ok or len(set(value)) != len(value):
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{key}: expected 'primary', 'all' or a list of distinct monitor "
                          f"indexes in 0..16 (e.g. [0, 1]), got {_show(shown)}")
    return tuple(value)


def _device(key: str, value: Any) -> str:
    """model.device: a device name models.device accepts (whether it exists is checked at start)."""
    problem = device_name_problem(value)
    if problem:
        raise ConfigError(f"{key}: {problem}")
    return value


def lamp_name_problem(name: Any) -> str | None:
    """Why `name` is not a lamp name of the library (a file name without its folder), or None."""
    if not isinstance(name, str) or not LAMP_NAME.fullmatch(name):
        return (f"{_show(name)} is not a lamp name (letters, digits and _.+- only, the file "
                "name in model.library without .safetensors)")
    return None


def _lamp_names(key: str, value: Any) -> tuple[str, ...]:
    """playlist.lamps: a list of lamp names from the library."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LAMPS:  # tuple: changed live
        raise ConfigError(f"{key}: expected a list of at most {MAX_LAMPS} lamp names, got "
                          f"{_show(value)}")
    for name in value:
        problem = lamp_name_problem(name)
        if problem:
            raise ConfigError(f"{key}: {problem}")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which lamp to show and where to run it."""

    path: str | None = opt(None, "checkpoint file (.safetensors); null = the lamp shipped in the package",
                           live=True)
    device: str = opt("auto", "torch device: auto = cuda, then mps, then cpu; or cpu, cuda, "
                      "cuda:N (the Nth GPU), mps", parse=_device)
    torch_threads: int = opt(1, "torch threads of the producer (1 is fastest on small machines)",
                             range=(1, 256))
    temperature: float = opt(1.0, "sampling temperature of the dream, relative to the lamp's calibrated one "
                             "(1 = moves like the footage it was trained on; lower is calmer)",
                             range=TEMPERATURE_RANGE, live=True)
    seed: int | None = opt(None, "seed of the first dream; null = a fresh random seed each start",
                           range=(0, 2**63 - 1), live=True)
    library: str | None = opt(None, "folder of lamp checkpoints (NAME.safetensors) that the "
                              "playlist and the control surfaces choose lamps from by NAME; "
                              "null = no library", live=True)
    crossfade_frames: int = opt(24, "generated frames a fresh dream or a new lamp cross-fades "
                                "over from the last frame shown", range=(1, 10000), live=True)


@dataclass(frozen=True, kw_only=True)
class DisplayConfig:
    """The window and how the lamp is drawn into it."""

    fullscreen: bool = opt(True, "fullscreen (true) or a window (false)", live=True)
    display: int = opt(0, "index of the monitor to use when screens is primary (0 = primary)",
                       range=(0, 16), live=True)
    screens: str | tuple[int, ...] = opt("primary", "monitors to show the lamp on: primary = "
                                         "the one monitor named by display, all = every "
                                         "monitor, or a list of monitor indexes like [0, 1]",
                                         parse=_screens)
    multi: str = opt("independent", "with several monitors: independent = each monitor its own "
                     "dream of the lamp (own seed), clone = one dream shown on every monitor",
                     choices=("independent", "clone"))
    width: int = opt(0, "window or fullscreen width in pixels; 0 = the desktop size",
                     range=(0, 16384), live=True)
    height: int = opt(0, "window or fullscreen height in pixels; 0 = the desktop size",
                      range=(0, 16384), live=True)
    scaling: str = opt("fit", "fit = letterbox keeping the lamp's aspect, fill = crop to fill, "
                       "stretch = ignore aspect", choices=("fit", "fill", "stretch"), live=True)
    smooth: bool = opt(True, "smooth (bilinear) scaling instead of nearest-neighbour", live=True)
    vsync: bool = opt(True, "wait for the monitor's vertical sync when flipping (accelerated "
                      "framebuffer only)", live=True)
    framebuffer: str = opt("auto", "how the window reaches the screen: software = shared-memory "
                           "copy (cheapest on X11 and Wayland, above all without a GPU), "
                           "accelerated = through SDL's OpenGL renderer (kmsdrm needs it), "
                           "auto = software on x11/wayland, accelerated elsewhere",
                           choices=("auto", "software", "accelerated"), live=True)
    fps: float = opt(60.0, "display refresh cap in frames per second", range=(1, 240), live=True)
    speed: float = opt(1.0, "lamp speed relative to the real lamp (1 = real time)",
                       range=(0.05, 20.0), live=True)
    brightness: float = opt(1.0, "brightness of the lamp (0 = black, 1 = full); the schedule's "
                            "dimming multiplies it", range=(0, 1), live=True)
    hue_degrees: float = opt(0.0, "colour rotation of the lamp in degrees (0 = its own colours)",
                             range=(-180, 180), live=True)
    saturation: float = opt(1.0, "colour saturation of the lamp (0 = grey, 1 = its own colours, "
                            "2 = twice as vivid)", range=(0, 2), live=True)
    hide_cursor: bool = opt(True, "hide the mouse cursor over the lamp", live=True)
    quit_keys: bool = opt(True, "Esc and q quit; set false on kiosks", live=True)
    pixel_shift_px: int = opt(0, "burn-in care for OLED and plasma screens: the picture orbits "
                              "this many pixels around its place; 0 = off", range=(0, 64),
                              live=True)
    pixel_shift_period_s: float = opt(600.0, "seconds the picture takes for one orbit of "
                                      "pixel_shift_px", range=(10, 86400), live=True)


@dataclass(frozen=True, kw_only=True)
class BufferConfig:
    """The ring buffer between the producer thread and the display."""

    depth_frames: int = opt(64, "generated frames held ahead of the display", range=(2, 100000))
    batch_frames: int = opt(8, "frames decoded per batch on the producer thread", range=(1, 1024))


@dataclass(frozen=True, kw_only=True)
class ProducerConfig:
    """Supervision of the producer thread: when it counts as hung, how many crashes end the daemon."""

    stall_s: float = opt(5.0, "producer heartbeat older than this counts as hung: the systemd "
                         "watchdog is withheld so the service gets restarted", range=(0.5, 3600),
                         live=True)
    max_failures: int = opt(5, "producer crashes within failure_window_s that stop the daemon "
                            "with a non-zero exit", range=(1, 1000), live=True)
    failure_window_s: float = opt(60.0, "seconds over which producer crashes are counted",
                                  range=(1, 86400), live=True)


@dataclass(frozen=True, kw_only=True)
class GuardConfig:
    """The drift guard: renormalize on soft drift, reseed on hard drift, freezes and loops."""

    enabled: bool = opt(True, "watch the latent and correct it", live=True)
    window_frames: int = opt(256, "sliding window of latents the statistics are taken over",
                             range=(8, 100000), live=True)
    soft_mean: float = opt(0.25, "|mean - reference| above this renormalizes", range=(0, 100),
                           live=True)
    soft_std: float = opt(0.25, "|std - reference| above this renormalizes", range=(0, 100),
                          live=True)
    hard_mean: float = opt(1.0, "|mean - reference| above this reseeds", range=(0, 1000), live=True)
    hard_std: float = opt(1.0, "|std - reference| above this reseeds", range=(0, 1000), live=True)
    hard_skew: float = opt(3.0, "|skew - reference| above this reseeds", range=(0, 1e6), live=True)
    hard_kurtosis: float = opt(20.0, "|kurtosis - reference| above this reseeds", range=(0, 1e6),
                               live=True)
    renormalize_strength: float = opt(1.0, "how far a renormalization moves the latent onto the "
                                      "reference mean/std (0 = not at all, 1 = exactly)", range=(0, 1),
                                      live=True)
    freeze_motion: float = opt(0.05, "mean absolute frame change (0..255 scale) below which the "
                               "dream counts as frozen", range=(0, 255), live=True)
    freeze_s: float = opt(60.0, "seconds of lamp time frozen before a reseed", range=(1, 86400),
                          live=True)
    loop_distance: float = opt(0.02, "latent distance (relative to its norm) to an old latent "
                               "below which the dream counts as looping", range=(0, 10), live=True)
    loop_min_age_s: float = opt(60.0, "only latents at least this old (lamp seconds) count "
                                "for loop detection", range=(1, 86400), live=True)
    loop_memory_s: float = opt(900.0, "lamp seconds of old latents remembered for loop detection "
                               "(one per lamp second, at most 4096)", range=(1, 1e6), live=True)


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    enabled: bool = opt(True, "serve Prometheus metrics over HTTP")
    address: str = opt("127.0.0.1", "address to bind; 0.0.0.0 exposes it on every interface")
    port: int = opt(9977, "TCP port of the /metrics endpoint", range=(1, 65535))


@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    """The HTTP control API and its web page: remote control from a phone, a script or a hub."""

    enabled: bool = opt(False, "serve the control API and its web page over HTTP")
    address: str = opt("127.0.0.1", "address to bind; any address but loopback needs token_file")
    port: int = opt(9978, "TCP port of the control API and the web page", range=(1, 65535))
    token_file: str | None = opt(None, "file holding the token every request must carry as "
                                 "'Authorization: Bearer TOKEN'; null = no token (loopback only)")


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """MQTT remote control with Home Assistant discovery; needs paho-mqtt (the mqtt extra)."""

    enabled: bool = opt(False, "connect to an MQTT broker and announce the lamp to Home Assistant")
    host: str = opt("127.0.0.1", "broker host name or address; any host but loopback needs "
                    "username and password_file")
    port: int = opt(1883, "broker TCP port (usually 8883 with tls)", range=(1, 65535))
    username: str | None = opt(None, "user name to log in with; null = anonymous")
    password_file: str | None = opt(None, "file holding the password; null = no password")
    tls: bool = opt(False, "connect over TLS, checking the broker's certificate against the "
                    "system's certificate authorities")
    topic_prefix: str = opt("lavalamp", "prefix of this lamp's topics, also its id in Home "
                            "Assistant: give each lamp its own (e.g. lavalamp/bar)")
    discovery_prefix: str = opt("homeassistant", "Home Assistant's MQTT discovery prefix")
    sensors_every_s: float = opt(10.0, "seconds between publications of the sensors (fps, "
                                 "drift, reseeds)", range=(1, 3600))


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Cron-style jobs (crontab syntax: minute hour day month day-of-week)."""

    display_on: str | None = opt(None, "crontab line turning the display on; null = always on",
                                 live=True)
    display_off: str | None = opt(None, "crontab line turning the display off (blank screen, "
                                  "generation paused); null = never", live=True)
    dim: str | None = opt(None, "crontab line starting the dimmed period; null = never dim",
                          live=True)
    undim: str | None = opt(None, "crontab line ending the dimmed period", live=True)
    dim_level: float = opt(0.4, "brightness while dimmed (0 = black, 1 = full)", range=(0, 1),
                           live=True)
    reseed: str | None = opt(None, "crontab line for a periodic fresh dream; null = never",
                             live=True)
    watch_model_s: float = opt(10.0, "seconds between checks of the model file for a new "
                               "checkpoint to hot-swap; 0 = never", range=(0, 86400), live=True)
    timezone: str | None = opt(None, "IANA time zone of the crontab lines; null = local time",
                               live=True)


@dataclass(frozen=True, kw_only=True)
class PlaylistConfig:
    """Lamps from model.library shown in turn, each change a cross-fade."""

    lamps: tuple[str, ...] = opt((), "lamp names from model.library to show in turn; empty = "
                                 "no playlist (model.path is shown)", parse=_lamp_names,
                                 live=True)
    order: str = opt("sequential", "sequential = in the order listed, shuffle = a fresh random "
                     "order each round", choices=("sequential", "shuffle"), live=True)
    every_s: float | None = opt(None, "seconds each lamp is shown; null = use change",
                                range=(10, 31_536_000), live=True)
    change: str | None = opt(None, "crontab line moving on to the next lamp (as in schedule:, "
                             "in schedule.timezone); null = use every_s", live=True)


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """Where the log goes and how much of it."""

    level: str = opt("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), live=True)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole runtime configuration of the daemon."""

    model: ModelConfig = field(default_factory=ModelConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    producer: ProducerConfig = field(default_factory=ProducerConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    playlist: PlaylistConfig = field(default_factory=PlaylistConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config file; None gives the defaults.

    Every failure, whatever its cause, is a ConfigError with one line: a reload can never take
    the daemon down, and start-up never shows a traceback.
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        return parse_config(read_yaml(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a config file must never crash its reader
        raise ConfigError(f"{path}: cannot use this config file ({type(exc).__name__}: {exc})") from None


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file, read within MAX_CONFIG_BYTES, MAX_DEPTH and MAX_VALUES."""
    text = _read_text(path)
    if not text.strip():
        raise ConfigError("config file is empty (write at least one section, or leave --config "
                          "out to use the defaults)")
    try:
        _check_depth(text)
        return _compose_and_construct(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from None


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("not a regular file (a config is a YAML file)")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file is {info.st_size} bytes; at most {MAX_CONFIG_BYTES} "
                              "are read (a config is a few kilobytes)")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("config file not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file is over {MAX_CONFIG_BYTES} bytes (a config is a few kilobytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8 text (byte {exc.start})") from None


def _compose_and_construct(text: str) -> Any:
    """The document of `text`, composed once, checked for alias bombs, then built."""
    loader = YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        _check_expansion(node)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _check_depth(text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH before anything recursive parses them."""
    depth = 0
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ConfigError(f"YAML nested more than {MAX_DEPTH} levels deep (line {line})")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node | None) -> None:
    """Refuse documents whose aliases expand to more than MAX_VALUES values (alias bombs)."""
    count, stack = 0, [root] if root is not None else []
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"YAML expands to more than {MAX_VALUES} values (aliases repeating "
                              "aliases?)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)


def parse_config(data: Any) -> Config:
    """Validate a mapping (parsed YAML) into a Config; unknown keys and bad values are refused."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of sections at the top level, got {_show(data)}")
    config = _build(Config, _renamed(data), "")
    _check_schedule(config.schedule)
    _check_playlist(config)
    _check_buffer(config.buffer)
    _check_remote(config.control, config.mqtt)
    return config


def _renamed(data: dict) -> dict:
    """`data` with each key of RENAMED moved to its new name (a warning in the log each time);
    ConfigError if a file sets both names."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for old, new in RENAMED.items():
        (section, name), (new_section, new_name) = old.split("."), new.split(".")
        if not isinstance(data.get(section), dict) or name not in data[section]:
            continue
        if data.get(new_section) is None:
            data[new_section] = {}
        if not isinstance(data[new_section], dict):
            continue  # refused below with its own message
        if new_name in data[new_section]:
            raise ConfigError(f"{old} and {new} are both set: {old} is the old name of {new} "
                              f"(keep only {new})")
        data[new_section][new_name] = data[section].pop(name)
        log.warning("config: %s is renamed to %s; the old name still works, but write %s",
                    old, new, new)
    return data


def _check_playlist(config: Config) -> None:
    """A playlist needs a library and exactly one of every_s and change."""
    p = config.playlist
    if not p.lamps:
        if p.every_s is not None or p.change is not None:
            raise ConfigError("playlist.every_s / playlist.change are set but playlist.lamps is "
                              "empty: name the lamps to show")
        return
    if config.model.library is None:
        raise ConfigError("playlist.lamps is set but model.library is not: the names need the "
                          "folder they are in")
    if (p.every_s is None) == (p.change is None):
        raise ConfigError("playlist: set exactly one of every_s (seconds per lamp) and change "
                          f"(a crontab line), got {'both' if p.every_s is not None else 'neither'}")
    if p.change is not None:
        cron(p.change, config.schedule.timezone, "playlist.change")


def _check_buffer(buffer: BufferConfig) -> None:
    """The ring must hold a whole batch besides the two frames the display is showing, or the
    producer would wait for room that never comes."""
    if buffer.depth_frames < buffer.batch_frames + 2:
        raise ConfigError(f"buffer.depth_frames ({buffer.depth_frames}) must be at least "
                          f"buffer.batch_frames + 2 ({buffer.batch_frames + 2}): the display holds "
                          "two frames while the producer waits for room for a whole batch")


def is_loopback(host: str) -> bool:
    """Whether a host name or address stays on this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_remote(control: ControlConfig, mqtt: MqttConfig) -> None:
    """Control surfaces off loopback need a secret; MQTT topics hold no wildcards."""
    if control.enabled and not is_loopback(control.address) and control.token_file is None:
        raise ConfigError(f"control.token_file: required when control.address is not loopback "
                          f"(got {control.address!r}): anyone who can reach it could steer the lamp")
    if mqtt.enabled and not is_loopback(mqtt.host) and (mqtt.username is None
                                                        or mqtt.password_file is None):
        raise ConfigError(f"mqtt.username and mqtt.password_file: required when mqtt.host is not "
                          f"loopback (got {mqtt.host!r})")
    for key in ("topic_prefix", "discovery_prefix"):
        topic = getattr(mqtt, key)
        if any(c in topic for c in "+#\0") or topic.startswith("/") or topic.endswith("/") \
                or "//" in topic:
            raise ConfigError(f"mqtt.{key}: expected a topic without wildcards (+, #) or empty "
                              f"levels, got {topic!r}")


def _check_schedule(schedule: ScheduleConfig) -> None:
    """Crontab lines parse, the time zone exists, and every 'off' has its 'on'."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if schedule.timezone is not None:
        try:
            ZoneInfo(schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ConfigError(f"schedule.timezone: unknown IANA time zone {_show(schedule.timezone)} "
                              "(e.g. 'Europe/Berlin')") from None
    for name in ("display_on", "display_off", "dim", "undim", "reseed"):
        line = getattr(schedule, name)
        if line is not None:
            cron(line, schedule.timezone, f"schedule.{name}")
    for start, end in (("display_off", "display_on"), ("dim", "undim")):
        if getattr(schedule, start) is not None and getattr(schedule, end) is None:
            raise ConfigError(f"schedule.{start} is set but schedule.{end} is not: the "
                              f"{'display' if start == 'display_off' else 'brightness'} would "
                              "never come back")


def cron(line: str, timezone: str | None, key: str = "crontab") -> Any:
    """A crontab line (minute hour day month day-of-week) in `timezone` (an IANA name; None =
    local time) as an apscheduler CronTrigger; ConfigError naming `key` if it is invalid or never
    fires. The one parser of crontab lines: the config checks them, the schedule runs them."""
    from datetime import datetime
    from datetime import timezone as utc_zone
    from zoneinfo import ZoneInfo

    from apscheduler.triggers.cron import CronTrigger

    tz = ZoneInfo(timezone) if timezone else None
    try:
        trigger = CronTrigger.from_crontab(line, timezone=tz)
    except ValueError as exc:
        raise ConfigError(f"{key}: invalid crontab line {_show(line)} (expected "
                          f"'minute hour day month day-of-week'): {exc}") from None
    if trigger.get_next_fire_time(None, datetime.now(tz or utc_zone.utc)) is None:
        raise ConfigError(f"{key}: crontab line {_show(line)} never fires (a date that does not "
                          "exist, such as 30 February)")
    return trigger


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{prefix}{_show_key(key)}: unknown key (expected one of: "
                              f"{', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key, value, kind = f"{prefix}{name}", data[name], hints[name]
        if dataclasses.is_dataclass(kind):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of keys, got {_show(value)}")
            values[name] = _build(kind, value, f"{key}.")
        elif f.metadata.get("parse"):
            values[name] = f.metadata["parse"](key, value)
        else:
            values[name] = _check(key, value, kind, f.metadata)
    return cls(**values)


def _check(key: str, value: Any, kind: Any, meta: Any) -> Any:
    optional = type(None) in typing.get_args(kind) and typing.get_origin(kind) in (typing.Union,
                                                                                  types.UnionType)
    if optional:
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    expected = _describe(kind, meta, optional)
    converted = _convert(value, kind)
    if converted is None:
        raise ConfigError(f"{key}: expected {expected}, got {_show(value)}")
    value = converted
    lo_hi, choices = meta.get("range"), meta.get("choices")
    if lo_hi is not None and not (lo_hi[0] <= value <= lo_hi[1]):
        raise ConfigError(f"{key}: expected {expected}, got {_show(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: expected {expected}, got {_show(value)}")
    return value


def _convert(value: Any, kind: Any) -> Any:
    """The value as `kind`, or None when it is not one (bools are never numbers)."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    if kind is float:
        try:
            ok = isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            return None
        return float(value) if ok else None
    if kind is str:
        ok = isinstance(value, str) and value.strip() and not any(map(_is_control, value.replace("\t", "")))
        return value if ok else None
    raise TypeError(f"unsupported config type {kind!r}")


def _describe(kind: Any, meta: Any, optional: bool) -> str:
    lo_hi, choices = meta.get("range"), meta.get("choices")
    if choices:
        text = "one of " + ", ".join(repr(c) for c in choices)
    elif kind is bool:
        text = "true or false"
    else:
        noun = {int: "an integer", float: "a number",
                str: "a non-empty string without control characters"}[kind]
        text = noun if lo_hi is None else f"{noun} in {_num(lo_hi[0])}..{_num(lo_hi[1])}"
    return text + (" or null" if optional else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_QUOTE = reprlib.Repr()  # keyword arguments only from Python 3.12
_QUOTE.maxlevel = 2
_QUOTE.maxtuple = _QUOTE.maxlist = _QUOTE.maxdict = _QUOTE.maxset = _QUOTE.maxfrozenset = 4
_QUOTE.maxdeque = _QUOTE.maxarray = 4
_QUOTE.maxstring = _QUOTE.maxlong = _QUOTE.maxother = MAX_QUOTE


def _show(value: Any) -> str:
    """A value as an error message quotes it: repr, at most about MAX_QUOTE characters, at bounded
    cost however large the value (an alias bomb, a megabyte string)."""
    if value is None:
        return "null"
    text = _QUOTE.repr(value)
    return text if len(text) <= 2 * MAX_QUOTE else text[:2 * MAX_QUOTE - 3] + "..."


def _show_key(key: Any) -> str:
    return key if isinstance(key, str) and len(key) <= MAX_QUOTE and key.isprintable() else _show(key)


def _is_control(char: str) -> bool:
    """Control characters (C0, DEL, C1), lone surrogates and line/paragraph separators."""
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")

