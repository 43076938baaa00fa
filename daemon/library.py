"""The lamp library: a folder of NAME.safetensors checkpoints, chosen by name, and `lavalamp lamps`."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lavalamp.models import EXIT_USAGE
from lavalamp.models.checkpoint import LampLoadError, load_lamp

from .config import ConfigError, lamp_name_problem, load_config

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
EXIT_REFUSED = 1
COLUMNS = ("name", "frame", "footage", "lamp fps", "trained", "size")


@dataclass(frozen=True)
class LampEntry:
    """One readable lamp of the library, as the listing shows it."""

    name: str
    frame_size: int
    footage: str
    lamp_fps: float
    trained: str
    size_bytes: int


def lamp_path(library: str | Path, name: str) -> Path:
    """The file of lamp `name` in `library`; LampLoadError for anything but a plain lamp name."""
    problem = lamp_name_problem(name)
    if problem:
        raise LampLoadError(f"lamp {problem}")
    return Path(library) / f"{name}{SUFFIX}"


def lamp_names(library: str | Path) -> list[str]:
    """Names of the checkpoint files in `library`, sorted (an unreadable folder: OSError)."""
    return sorted(p.name[:-len(SUFFIX)] for p in Path(library).iterdir()
                  if p.name.endswith(SUFFIX) and lamp_name_problem(p.name[:-len(SUFFIX)]) is None)


def describe(path: Path) -> LampEntry:
    """Load the lamp at `path` whole (validated as the daemon would) and describe it."""
    lamp = load_lamp(path, "cpu")
    stat = path.stat()
    trained = lamp.training.get("trained_at") or \
        datetime.fromtimestamp(stat.st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return LampEntry(name=path.name[:-len(SUFFIX)], frame_size=lamp.frame_size,
                     footage=lamp.data.description or "-", lamp_fps=lamp.data.lamp_fps,
                     trained=str(trained), size_bytes=stat.st_size)


def scan(library: str | Path) -> list[LampEntry | tuple[str, str]]:
    """Every lamp of the library in name order: its entry, or (name, why it is refused)."""
    rows: list[LampEntry | tuple[str, str]] = []
    for name in lamp_names(library):
        try:
            rows.append(describe(lamp_path(library, name)))
        except (LampLoadError, OSError, ValueError, RuntimeError) as exc:
            rows.append((name, str(exc)))
    return rows


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def table(entries: list[LampEntry]) -> str:
    """The entries as an aligned text table with a header line."""
    cells = [COLUMNS] + [(e.name, f"{e.frame_size}x{e.frame_size}", e.footage, f"{e.lamp_fps:g}",
                          e.trained, _size(e.size_bytes)) for e in entries]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def add_lamps(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp lamps`."""
    p = subparsers.add_parser("lamps", help="list the lamps of the library",
                              description="List the lamp checkpoints of a library folder; "
                              "unreadable ones are named with the reason.")
    p.add_argument("--library", metavar="DIR", help="the folder (default: model.library of --config)")
    p.add_argument("--config", metavar="PATH", help="config file whose model.library to list")
    p.set_defaults(func=lamps_command)


def lamps_command(args: argparse.Namespace) -> int:
    """Print the table; 0 if every lamp is readable, 1 if some were refused, 2 on bad arguments."""
    library = args.library
    if library is None:
        try:
            library = load_config(args.config).model.library
        except ConfigError as exc:
            print(f"lavalamp: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if library is None:
        print("lavalamp: no library: pass --library DIR or set model.library in --config",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        rows = scan(library)
    except OSError as exc:
        print(f"lavalamp: cannot list the library {library}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    entries = [r for r in rows if isinstance(r, LampEntry)]
    refused = [r for r in rows if not isinstance(r, LampEntry)]
    print(table(entries))
    for name, reason in refused:
        print(f"lavalamp: {name}: refused: {reason}", file=sys.stderr)
    print(f"{len(entries)} lamp(s) in {library}" + (f", {len(refused)} refused" if refused else ""))
    return EXIT_REFUSED if refused else 0
