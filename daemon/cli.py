"""The `lavalamp` command: one console script whose subcommands are discovered by entry point."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Sequence

from lavalamp.models import EXIT_USAGE, __version__, os_error_exit

from .config import load_config

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lavalamp.commands"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every installed subcommand registered, or just `only` when it is one.

    Registering a subcommand imports its module, so `lavalamp run` loads only the daemon, never
    the trainer, the simulator or the evaluator; `--help` and unknown commands load them all.
    """
    parser = argparse.ArgumentParser(
        prog="lavalamp", description="An endless lava lamp dreamed by a neural network.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    if only in {ep.name for ep in commands}:
        commands = [ep for ep in commands if ep.name == only]
    for ep in commands:
        register: Callable[[argparse._SubParsersAction], None] = ep.load()
        register(subparsers)
    return parser


class StartUpStop(SystemExit):
    """SIGTERM or SIGINT while `lavalamp run` was still starting: exit 0, as it would later."""


class EarlySignals:
    """Signal handlers installed before the heavy imports (torch takes seconds), so that no signal
    in the first seconds of `lavalamp run` kills it with the default action: a stop ends it at
    once with exit 0, a reload (SIGHUP) is remembered for the daemon, SIGUSR1 is ignored."""

    def __init__(self) -> None:
        self.reload = False

    def install(self) -> None:
        """Install the handlers (main thread); the daemon replaces them with its own."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def _stop(self, signum: int, _frame) -> None:
        raise StartUpStop(signal.Signals(signum).name)

    def _hup(self, _signum: int, _frame) -> None:
        self.reload = True


EARLY = EarlySignals()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run one subcommand, return its exit status."""
    as_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        if as_process and command == "run":
            EARLY.install()
        return _main(argv, command, as_process=as_process)
    except StartUpStop as stop:
        print(f"lavalamp: {stop.code} received while starting: stopped", file=sys.stderr)
        return 0


@contextlib.contextmanager
def modules_frozen(enabled: bool):
    """No garbage collection while the subcommand's modules load, then freeze what they made.

    torch's import makes some 200,000 objects, and the collections it sets off took 0.4-0.6 s of
    `lavalamp run`'s start-up; frozen, they live as long as the process (as modules do) and no
    later collection scans them, so a full one never stalls every thread for 0.2-0.3 s again.
    Only in a process of its own: frozen garbage of an in-process caller would never be freed.
    """
    if not enabled:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _main(argv: list[str], command: str | None, *, as_process: bool = False) -> int:
    with modules_frozen(as_process):
        parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a full disk, a vanished folder: one line, never a traceback
        code, text = os_error_exit(exc)
        print(f"lavalamp {args.command}: {text}", file=sys.stderr)
        return code


def add_check_config(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp check-config`."""
    p = subparsers.add_parser(
        "check-config", help="validate a config file (and what run would check) and exit 0 or 2",
        description="Validate a config file exactly as the daemon does at start-up, then make every "
                    "check `lavalamp run` makes on this machine: the device exists, the lamp loads "
                    "and proves it can be shown, the ring buffer fits in memory, the metrics and "
                    "control addresses can be listened on. --offline checks the file alone (for "
                    "a config written for another machine).")
    p.add_argument("--config", metavar="PATH", help="config file (default: the built-in defaults)")
    p.add_argument("--model", metavar="PATH", help="checkpoint run would show (overrides model.path)")
    p.add_argument("--offline", action="store_true",
                   help="check only the file, not what needs the target machine (device, model "
                        "file, addresses)")
    p.set_defaults(func=check_config)


def check_config(args: argparse.Namespace) -> int:
    """Validate the config (and, unless --offline, what run checks); one line saying why it is
    refused, or what was checked."""
    try:
        config = load_config(args.config)
        done = [] if args.offline else _check_for_run(config, args.model)
    except ValueError as exc:  # ConfigError, PreflightError, LampLoadError
        print(f"lavalamp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.config or 'built-in defaults'}: OK")
    for line in done:
        print(f"  {line}")
    if not args.offline:
        from .preflight import NOT_CHECKED

        print(f"  not checked: {NOT_CHECKED}")
    return 0


def _check_for_run(config, model: str | None) -> list[str]:
    from lavalamp.models.checkpoint import default_lamp_path

    from .preflight import check_for_run

    chosen = model or config.model.path
    return check_for_run(config, Path(chosen) if chosen else default_lamp_path())
