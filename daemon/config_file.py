"""config.yaml written from the config dataclasses: every key at its default, its doc as comment."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

from lavalamp.models.atomic import atomic_write_bytes

from .config import Config

WIDTH = 100  # columns: long docs go on as comment lines under the first

HEADER = """\
# neural-lavalamp runtime configuration: the daemon's documented defaults.
# Every key is optional; a file may set any subset and the rest keep these values.
# Architecture is not configured here: it comes from the checkpoint.
# Check a file with: lavalamp check-config --config PATH
# SIGHUP applies what changed in the file in place, except the keys a section marks (restart):
# they wait for the next start (the log says so). Remote control (HTTP, MQTT) changes live keys too.
# Written from daemon/config.py by `make config-yaml`: change the docs there, not here.
"""


def config_yaml() -> str:
    """The text of the shipped config.yaml: each section with its doc and restart-only keys on its
    first line, each key with its default and its doc."""
    sections = [_section(f.name, getattr(Config(), f.name)) for f in dataclasses.fields(Config)]
    return HEADER + "".join(f"\n{s}" for s in sections)


def _section(name: str, defaults: Any) -> str:
    fields = dataclasses.fields(defaults)
    restart = [f.name for f in fields if not f.metadata["live"]]
    note = "" if not restart else " (restart: all keys)" if len(restart) == len(fields) else \
        f" (restart: {', '.join(restart)})"
    lines = [f"{name}:  # {type(defaults).__doc__.rstrip('.')}{note}"]
    for f in fields:
        lines += _commented(f"  {f.name}: {_value(getattr(defaults, f.name))}", f.metadata["doc"])
    return "\n".join(lines) + "\n"


def _commented(line: str, doc: str) -> list[str]:
    """`line  # doc`, the doc wrapped at WIDTH onto comment lines aligned under its first."""
    lead = len(line) + 2
    chunks = textwrap.wrap(doc, width=max(WIDTH - lead - 2, 40), break_on_hyphens=False)
    return [f"{line}  # {chunks[0]}"] + [f"{' ' * lead}# {chunk}" for chunk in chunks[1:]]


def _value(value: Any) -> str:
    """A default as YAML: JSON's spelling (null, true, "text", [0, 1]) is YAML too."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def write_config_yaml(path: str | Path) -> None:
    """Write `config_yaml()` to `path` (atomically)."""
    atomic_write_bytes(path, config_yaml().encode())
