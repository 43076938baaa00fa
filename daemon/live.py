"""One path for every live change: the settings a running lamp takes, validated as the config file
is, queued by any thread and applied by the frame loop."""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any

from .config import Config, ConfigError, _build, opt, parse_config

log = logging.getLogger(__name__)

APPLY_TIMEOUT_S = 2.0  # how long a remote caller waits for the frame loop to apply its change


@dataclass(frozen=True, kw_only=True)
class LampState:
    """What the lamp is doing beside its config: set by the schedule, the keyboard and remote control."""

    display_on: bool = opt(True, "the lamp is shown (false: a blank screen, generation paused)")
    dimmed: bool = opt(False, "the schedule's dimmed period is on (brightness times "
                       "schedule.dim_level)")
    paused: bool = opt(False, "the lamp holds its current frame")


# The settings remote control offers by short name, each the dotted key it stands for: a config
# field ("section.field", validated as in the config file) or a state field ("state.field").
SETTINGS: dict[str, str] = {
    "brightness": "display.brightness",
    "display_on": "state.display_on",
    "paused": "state.paused",
    "speed": "display.speed",
    "temperature": "model.temperature",
    "hue_degrees": "display.hue_degrees",
    "saturation": "display.saturation",
    "fps": "display.fps",
}


# Live keys remote control may not set: they name files, and no client may make the lamp read a path.
NOT_REMOTE = ("model.path",)


def field_meta(dotted: str) -> dict | None:
    """The metadata of a config or state field by its dotted key, or None if there is none."""
    section, _, name = dotted.partition(".")
    holder = LampState() if section == "state" else getattr(Config(), section, None)
    if not dataclasses.is_dataclass(holder):
        return None
    found = [f for f in dataclasses.fields(holder) if f.name == name]
    return dict(found[0].metadata) if found else None


def is_live(dotted: str) -> bool:
    """Whether a running daemon applies a change of this key in place."""
    meta = field_meta(dotted)
    return bool(meta and (dotted.startswith("state.") or meta["live"]))


def flatten(config: Config) -> dict[str, Any]:
    """Every field of a config by its dotted key."""
    return {f"{s}.{k}": v for s, section in dataclasses.asdict(config).items()
            for k, v in section.items()}


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys whose values differ between two configs, in config order."""
    a, b = flatten(old), flatten(new)
    return [k for k in a if a[k] != b[k]]


def merge(config: Config, state: LampState, changes: dict[str, Any]) -> tuple[Config, LampState]:
    """Config and state with dotted-key `changes` applied, validated exactly as the config file is
    (the same messages); ConfigError on an unknown key or a bad value."""
    flat, state_values = flatten(config), dataclasses.asdict(state)
    for key, value in changes.items():
        if key.startswith("state.") and key[6:] in state_values:
            state_values[key[6:]] = value
        elif key in flat:
            flat[key] = value
        else:
            raise ConfigError(f"{key}: unknown setting")
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return parse_config(nested), _build(LampState, state_values, "")


def resolve(settings: dict[str, Any]) -> dict[str, Any]:
    """Remote settings by short name (SETTINGS) or dotted key of a live field, as dotted keys;
    ConfigError for an unknown or restart-only one."""
    out = {}
    for name, value in settings.items():
        key = SETTINGS.get(name, name)
        if field_meta(key) is None or key.startswith("state.dimmed"):
            raise ConfigError(f"{name}: unknown setting (expected one of: {', '.join(SETTINGS)}, "
                              "or the dotted key of a live config field)")
        if not is_live(key):
            raise ConfigError(f"{name}: takes effect only at the next start; change it in the "
                              "config file")
        if key in NOT_REMOTE:
            raise ConfigError(f"{name}: names a file, which remote control may not; change it "
                              "in the config file")
        out[key] = value
    return out


class Ticket(threading.Event):
    """Set once the frame loop has dealt with a change; `error` says why it was refused, if it was."""

    error: str | None = None


@dataclass
class Pending:
    """Changes waiting for the frame loop: the config and state they lead to, who asked."""

    config: Config
    state: LampState
    sources: list[str]
    done: list[Ticket]


class LiveSettings:
    """The running config and state, and the queue of changes to them. Any thread may `request`;
    only the frame loop calls `take` and `applied`."""

    def __init__(self, config: Config, state: LampState | None = None) -> None:
        self.config = config
        self.state = state or LampState()
        self._lock = threading.Lock()
        self._pending: Pending | None = None
        self._in_flight: Pending | None = None  # taken by the frame loop, not yet applied

    def request(self, changes: dict[str, Any], source: str) -> Ticket:
        """Queue dotted-key changes (ConfigError if invalid); the event is set once applied."""
        with self._lock:
            base = self._pending or self._in_flight or self
            config, state = merge(base.config, base.state, changes)
            return self._queue(config, state, source)

    def request_config(self, config: Config, source: str) -> Ticket:
        """Queue a whole new (validated) config; the state stays as it is."""
        with self._lock:
            base = self._pending or self._in_flight or self
            return self._queue(config, base.state, source)

    def _queue(self, config: Config, state: LampState, source: str) -> Ticket:
        done = Ticket()
        if self._pending is None:
            self._pending = Pending(config, state, [source], [done])
        else:
            self._pending.config, self._pending.state = config, state
            self._pending.sources.append(source)
            self._pending.done.append(done)
        return done

    def take(self) -> Pending | None:
        """The queued changes, if any, leaving the queue empty (frame loop)."""
        with self._lock:
            pending, self._pending = self._pending, None
            self._in_flight = pending or self._in_flight
        return pending

    def applied(self, config: Config, state: LampState, pending: Pending,
                error: str | None = None) -> None:
        """Record what now runs and wake whoever asked for it, telling them if it was refused
        (frame loop)."""
        with self._lock:
            self.config, self.state = config, state
            if self._in_flight is pending:
                self._in_flight = None
        for done in pending.done:
            done.error = error
            done.set()

    def settings(self) -> dict[str, Any]:
        """The current value of every remote setting, by short name."""
        flat = {**flatten(self.config),
                **{f"state.{k}": v for k, v in dataclasses.asdict(self.state).items()}}
        return {name: flat[key] for name, key in SETTINGS.items()}
