"""`lavalamp install-service` / `uninstall-service`: the systemd unit, rendered with this machine's paths."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from lavalamp.models import EXIT_USAGE
from lavalamp.models.atomic import atomic_write_bytes

from .config import ConfigError, load_config

log = logging.getLogger(__name__)

UNIT_NAME = "lavalamp.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
HOME_PREFIXES = ("/home", "/root", "/run/user")

# What both units run and how systemd supervises it.
SERVICE = """\
Type=notify
NotifyAccess=main
# The daemon pings WATCHDOG=1 only while both the producer and the frame loop make progress.
WatchdogSec={watchdog_s}
TimeoutStartSec=120
TimeoutStopSec=10
Restart=on-failure
RestartSec=2
ExecStartPre={exec_check}
ExecStart={exec_run}
ExecReload=/bin/kill -HUP $MAINPID
"""

# The one template both units come from. deploy/lavalamp.service and deploy/lavalamp-user.service
# are its renderings for the canonical paths (tests/test_deploy_install.py keeps them equal).
SYSTEM_TEMPLATE = """\
# lavalamp system unit for a kiosk on a bare console (no desktop): draws straight to the screen
# through KMS/DRM. Written by `lavalamp install-service` (see deploy/README.md in the project);
# change paths by re-running it, and settings with a drop-in (`systemctl edit lavalamp`).
[Unit]
Description=Neural lava lamp display
After=systemd-user-sessions.service
# The lamp owns the first console: no login prompt fighting it for the screen.
Conflicts=getty@tty1.service
After=getty@tty1.service
# Five failed starts within five minutes and systemd gives up (see `systemctl reset-failed`).
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
{service}
# A dedicated unprivileged user, in the groups a bare console needs: the screen (video, render)
# and the keyboard (input).
DynamicUser=yes
User=lavalamp
Group=lavalamp
SupplementaryGroups=video render input
StateDirectory=lavalamp
CacheDirectory=lavalamp
RuntimeDirectory=lavalamp
WorkingDirectory=%S/lavalamp
Environment=HOME=%S/lavalamp XDG_CACHE_HOME=%C/lavalamp XDG_RUNTIME_DIR=%t/lavalamp
Environment=SDL_VIDEODRIVER=kmsdrm PYTHONUNBUFFERED=1

# Hardening that still lets it draw: GPU, framebuffer and input devices stay reachable.
# MemoryDenyWriteExecute= is deliberately absent: torch's CPU kernels (oneDNN) generate code at
# run time and fail with "could not create a primitive" under it.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
ReadOnlyPaths={read_only_paths}
DevicePolicy=closed
DeviceAllow=char-drm rw
DeviceAllow=char-fb rw
DeviceAllow=char-input r
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=multi-user.target
"""

USER_TEMPLATE = """\
# lavalamp user unit for a desktop session (X11 or Wayland): a fullscreen window on the
# session's display. Written by `lavalamp install-service --user` (see deploy/README.md in the
# project); change paths by re-running it, and settings with `systemctl --user edit lavalamp`.
[Unit]
Description=Neural lava lamp display (desktop session)
PartOf=graphical-session.target
After=graphical-session.target
Requisite=graphical-session.target
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
{service}Environment=PYTHONUNBUFFERED=1
# DISPLAY / WAYLAND_DISPLAY come from the session (`systemctl --user import-environment`).
# Hardening a user manager can apply without privileges (seccomp-based); the kiosk system unit
# goes much further. No MemoryDenyWriteExecute=: torch's CPU kernels need it off.
NoNewPrivileges=yes
PrivateTmp=yes
CapabilityBoundingSet=
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
ProtectClock=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=graphical-session.target
"""


@dataclass(frozen=True, kw_only=True)
class UnitPaths:
    """The machine-specific parts of a unit."""

    venv: Path
    """Virtual environment holding the `lavalamp` console script."""
    config: Path
    """Config file passed to `lavalamp run --config`."""
    model: Path | None = None
    """Checkpoint passed with `--model`; None = the config's model.path (or the shipped lamp)."""
    config_model: Path | None = None
    """The config's model.path: kept readable but not put on the command line, so that a reload
    after editing the config can point the lamp at another file."""
    interpreter: Path | None = None
    """Installation prefix of the venv's base Python when it lies outside /usr (e.g. pyenv)."""
    watchdog_s: int = 10
    """WatchdogSec: seconds without a WATCHDOG=1 ping before systemd kills and restarts the lamp."""


CANONICAL = UnitPaths(venv=Path("/opt/lavalamp/.venv"), config=Path("/etc/lavalamp/config.yaml"),
                      model=Path("/opt/lavalamp/models/lamp.safetensors"))


MAX_WATCHDOG_S = 86400
UNSAFE_IN_EXECUTABLE = "'\"\\"  # systemd's string_is_safe() refuses these in an Exec*= program path


class UnitValueError(ValueError):
    """A value that cannot be written into a unit file without changing what the unit says."""


def check_unit_value(value: str, what: str = "value") -> str:
    """`value` if it can go into a unit file: no control characters (a newline would start a
    directive of its own: `User=root`, `ExecStartPost=`), valid UTF-8; UnitValueError if not."""
    for i, char in enumerate(value):
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp"):
            kind = "is not valid UTF-8" if category == "Cs" else "has a control character"
            raise UnitValueError(f"{what} {_printable(value)} {kind} (at character {i + 1}): it "
                                 "cannot go into a systemd unit; rename it")
    return value


def _printable(value: str) -> str:
    return ascii(value) if len(value) <= 120 else ascii(value[:117]) + "..."


def quote_arg(arg: str, *, exec_line: bool = True) -> str:
    """One word of a unit setting: refused if it has control characters (check_unit_value);
    specifiers (and on Exec*= lines, variables) escaped; quoted, with backslashes and quotes
    escaped, if it has spaces, quotes, backslashes or semicolons."""
    arg = check_unit_value(arg).replace("%", "%%")
    arg = arg.replace("$", "$$") if exec_line else arg
    if any(c in arg for c in " \t\"'\\;"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def command_line(words: list[str]) -> str:
    """An Exec*= value from its words. systemd expands $VARIABLES in the arguments but not in
    the program's path, so only the arguments have their dollars doubled; and it refuses a
    program path holding a quote or a backslash ("Executable name contains special characters")."""
    unsafe = sorted(set(words[0]) & set(UNSAFE_IN_EXECUTABLE))
    if unsafe:
        raise UnitValueError(f"the program path {_printable(words[0])} holds {' and '.join(unsafe)}, "
                             "which systemd refuses in a program path: move the virtual "
                             "environment to a path without them")
    return " ".join([quote_arg(words[0], exec_line=False)] + [quote_arg(w) for w in words[1:]])


def render_unit(paths: UnitPaths, *, user: bool = False) -> str:
    """The unit file text for these paths: the system unit, or the desktop user unit."""
    lavalamp = str(paths.venv / "bin" / "lavalamp")
    run = [lavalamp, "run", "--config", str(paths.config)]
    if paths.model is not None:
        run += ["--model", str(paths.model)]
    watched = [paths.venv, paths.config.parent, paths.model and paths.model.parent,
               paths.config_model and paths.config_model.parent, paths.interpreter]
    read_only = list(dict.fromkeys(str(p) for p in watched if p))
    under_home = any(p == h or p.startswith(h + "/") for p in read_only for h in HOME_PREFIXES)
    template = USER_TEMPLATE if user else SYSTEM_TEMPLATE
    service = SERVICE.format(
        watchdog_s=paths.watchdog_s,
        exec_check=command_line([lavalamp, "check-config", "--offline", "--config", str(paths.config)]),
        exec_run=command_line(run))
    return template.format(
        service=service,
        read_only_paths=" ".join(quote_arg(p, exec_line=False) for p in read_only),
        protect_home="read-only" if under_home else "yes")


def add_install_service(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp install-service`."""
    p = subparsers.add_parser(
        "install-service", help="write the systemd unit for this machine, reload systemd, enable it",
        description="Write lavalamp.service with this machine's paths (virtual environment, config, "
                    "model), run `systemctl daemon-reload` and enable it. --dry-run only prints it.")
    _common_arguments(p)
    p.add_argument("--config", metavar="PATH",
                   help="config file the service runs with (default: /etc/lavalamp/config.yaml, "
                        "or ~/.config/lavalamp/config.yaml with --user)")
    p.add_argument("--model", metavar="PATH", help="checkpoint to show (default: the config's model.path)")
    p.add_argument("--venv", metavar="DIR", default=sys.prefix,
                   help="virtual environment with the lavalamp command (default: the running one)")
    p.add_argument("--watchdog-s", type=int, default=UnitPaths.watchdog_s, metavar="SECONDS",
                   help="WatchdogSec= of the unit (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the unit and change nothing")
    p.add_argument("--now", action="store_true", help="also start (or restart) the service")
    p.set_defaults(func=install_service)


def add_uninstall_service(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp uninstall-service`."""
    p = subparsers.add_parser(
        "uninstall-service", help="stop, disable and remove the systemd unit",
        description="Undo `lavalamp install-service`: stop and disable the service, remove the unit "
                    "file and reload systemd.")
    _common_arguments(p)
    p.set_defaults(func=uninstall_service)


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", action="store_true",
                   help="the desktop-session user unit (~/.config/systemd/user) instead of the system unit")
    p.add_argument("--unit-dir", metavar="DIR",
                   help="directory for the unit file (default: /etc/systemd/system, "
                        "or ~/.config/systemd/user with --user)")


class InstallError(Exception):
    """Why the service cannot be installed or removed: one line for the user."""


def install_service(args: argparse.Namespace) -> int:
    """Render the unit; print it (--dry-run) or install, reload and enable it."""
    try:
        paths = _unit_paths(args)
        try:
            text = render_unit(paths, user=args.user)
        except UnitValueError as exc:
            raise InstallError(str(exc)) from None
        if args.dry_run:
            sys.stdout.write(text)
            return 0
        systemctl = _systemctl(args)
        _require_config(paths.config)
        target = _unit_dir(args) / UNIT_NAME
        previous = target.read_bytes() if target.is_file() else None
        _write_unit(target, text)
        try:
            _run(systemctl + ["daemon-reload"])
            _run(systemctl + ["enable", UNIT_NAME])
        except InstallError:
            _restore(target, previous)
            raise
        if args.now:
            _run(systemctl + ["restart", UNIT_NAME])
    except InstallError as exc:
        print(f"lavalamp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"installed {target} and enabled it"
          + ("" if args.now else f"; start it with: {' '.join(systemctl)} start {UNIT_NAME}"))
    return 0


def uninstall_service(args: argparse.Namespace) -> int:
    """Stop and disable the unit, remove its file, reload systemd."""
    try:
        systemctl = _systemctl(args)
        target = _unit_dir(args) / UNIT_NAME
        if not target.exists():
            print(f"{target} is not installed; nothing to do")
            return 0
        _run(systemctl + ["disable", "--now", UNIT_NAME])
        try:
            target.unlink()
        except OSError as exc:
            raise InstallError(f"cannot remove {target}: {exc.strerror}") from None
        _run(systemctl + ["daemon-reload"])
    except InstallError as exc:
        print(f"lavalamp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"removed {target}")
    return 0


def _write_unit(target: Path, text: str) -> None:
    """Write the unit atomically, world-readable as systemd expects."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, text.encode())
        target.chmod(0o644)
    except OSError as exc:
        raise InstallError(f"cannot write {target}: {exc.strerror}") from None


def _restore(target: Path, previous: bytes | None) -> None:
    """Put back the unit file as it was before a failed install (or remove the new one)."""
    if previous is None:
        target.unlink(missing_ok=True)
    else:
        atomic_write_bytes(target, previous)
    log.info("%s put back as it was before", target)


def _unit_paths(args: argparse.Namespace) -> UnitPaths:
    """The paths from the command line, made absolute and checked."""
    try:
        for option in ("venv", "config", "model"):
            if getattr(args, option, None) is not None:
                check_unit_value(getattr(args, option), f"--{option}")
    except UnitValueError as exc:
        raise InstallError(str(exc)) from None
    venv = Path(args.venv).absolute()
    if not (venv / "bin" / "lavalamp").is_file():
        raise InstallError(f"{venv}/bin/lavalamp not found: --venv must be the virtual environment "
                           "lavalamp is installed in")
    config = Path(args.config or _default_config(args.user)).expanduser().absolute()
    model = Path(args.model).expanduser().absolute() if args.model else None
    if model is not None and not model.is_file():
        raise InstallError(f"model {model} not found")
    if not 1 <= args.watchdog_s <= MAX_WATCHDOG_S:
        raise InstallError(f"--watchdog-s must be in 1..{MAX_WATCHDOG_S}, got {args.watchdog_s}")
    config_model = _config_model(config) if model is None and config.is_file() else None
    return UnitPaths(venv=venv, config=config, model=model, config_model=config_model,
                     interpreter=venv_interpreter(venv), watchdog_s=args.watchdog_s)


def venv_interpreter(venv: Path) -> Path | None:
    """The prefix of the Python a venv was made from (pyvenv.cfg `home`), unless it is a system one.
    The service must be able to read it: a pyenv build under a home directory needs ProtectHome
    relaxed and the home directory traversable by the service user."""
    try:
        lines = (venv / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return None
    home = next((v.strip() for k, _, v in (line.partition("=") for line in lines)
                 if k.strip() == "home"), None)
    if not home:
        return None
    prefix = Path(home).parent if Path(home).name == "bin" else Path(home)
    if not prefix.is_absolute():
        return None  # not a path systemd could make readable (and not one a venv writes)
    return None if str(prefix) in ("/", "/usr", "/usr/local") else prefix


def _default_config(user: bool) -> str:
    return "~/.config/lavalamp/config.yaml" if user else "/etc/lavalamp/config.yaml"


def _config_model(config: Path) -> Path | None:
    """The config's model.path (absolute), refusing a config the daemon would refuse."""
    try:
        path = load_config(config).model.path
    except ConfigError as exc:
        raise InstallError(str(exc)) from None
    return Path(path).expanduser().absolute() if path else None


def _require_config(config: Path) -> None:
    if not config.is_file():
        raise InstallError(f"config {config} not found: create it first (the project's config.yaml "
                           "lists every key with its default)")


def _unit_dir(args: argparse.Namespace) -> Path:
    if args.unit_dir:
        return Path(args.unit_dir).absolute()
    return Path("~/.config/systemd/user").expanduser() if args.user else SYSTEM_UNIT_DIR


def _systemctl(args: argparse.Namespace) -> list[str]:
    """The systemctl command for this unit kind, refusing what cannot work before changing anything."""
    found = shutil.which("systemctl")
    if found is None:
        raise InstallError("systemctl not found: this machine does not run systemd "
                           "(on macOS use the launchd agent in deploy/, see deploy/README.md)")
    if not args.user and not args.unit_dir and os.geteuid() != 0:
        raise InstallError("installing the system unit needs root: run it with sudo, "
                           "or use --user for a desktop session")
    return [found, "--user"] if args.user else [found]


def _run(command: list[str]) -> None:
    log.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InstallError(f"{' '.join(command)} failed (exit {result.returncode})"
                           + (f": {detail[-1]}" if detail else ""))
