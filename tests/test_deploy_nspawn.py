"""The real unit under a real systemd: a Debian container booted with systemd-nspawn runs the lamp
as installed by `lavalamp install-service`, with this checkout's venv bind-mounted read-only.

The container root is built once by deploy/nspawn-root.sh (debootstrap, about a minute) and cached
outside the repository under $LAVALAMP_NSPAWN_CACHE (default /var/cache/lavalamp-nspawn), keyed by
a hash of that script; every boot is a throwaway overlay on it (--volatile=overlay).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lavalamp.daemon.install import venv_interpreter
from lavalamp.models.checkpoint import save_lamp

from .deploy_support import require_tool, unavailable
from .fakes import make_lamp

REPO = Path(__file__).resolve().parents[1]
ROOT_SCRIPT = REPO / "deploy" / "nspawn-root.sh"
CACHE = Path(os.environ.get("LAVALAMP_NSPAWN_CACHE", "/var/cache/lavalamp-nspawn"))
VENV = Path(sys.prefix)
LAMP = f"{VENV}/bin/lavalamp"
WATCHDOG_S = 4
CONFIG = """\
display:
  fps: {fps}
buffer:
  depth_frames: 16
  batch_frames: 4
schedule:
  watch_model_s: 1
logging:
  level: INFO
"""
# The test's only change to the unit as installed: the container has no screen, so SDL draws nowhere.
HEADLESS_DROPIN = "[Service]\nEnvironment=SDL_VIDEODRIVER=dummy\n"
FAULT_DROPIN = "[Service]\nEnvironment=LAVALAMP_FAULT=hang-producer:3\n"
# DynamicUser= implies PrivateTmp=, which hides a checkout under /tmp from the service (CI may clone
# there): the container also gets the checkout at STAGED, and the service binds it back in place.
STAGED = "/srv/lavalamp-checkout"
TMP_PREFIXES = ("/tmp/", "/var/tmp/")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb822 .sources or one-line sources.list)."""
    texts = [p.read_text() for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for text in texts:
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
    lists = Path("/etc/apt/sources.list")
    for line in (lists.read_text().splitlines() if lists.exists() else []):
        m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", line)
        if m:
            return m.group(1)
    pytest.fail("no Debian bookworm mirror in /etc/apt/sources.list*: debootstrap needs one")


def cached_root() -> Path:
    """The container root for this version of deploy/nspawn-root.sh, built on first use."""
    key = hashlib.sha256(ROOT_SCRIPT.read_bytes()).hexdigest()[:12]
    root = CACHE / f"root-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, even across test runs
        if not root.is_dir():
            subprocess.run(["sh", str(ROOT_SCRIPT), str(root), debian_mirror()], check=True,
                           capture_output=True, timeout=900)
            for stale in CACHE.glob("root-*"):  # roots of older versions of the script
                if stale != root:
                    shutil.rmtree(stale, ignore_errors=True)
    return root


class Container:
    """A booted systemd-nspawn container; `sh()` runs a command inside it."""

    def __init__(self, root: Path, binds: list[str], log: Path) -> None:
        self.log = log
        command = [require_tool("systemd-nspawn"), "-D", str(root), "--volatile=overlay", "--boot",
                   "--register=no", "--keep-unit", "--private-network", "--console=passive",
                   "--machine=lavalamp-test", *(f"--bind-ro={b}" for b in binds)]
        with open(log, "wb") as out:
            self.nspawn = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
        self.leader = self._find_leader()

    def _find_leader(self, timeout: float = 30.0) -> int:
        """The container's PID 1 as seen from here: the systemd below our nspawn process."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.log.read_text()[-2000:]}")
            for pid in descendants(self.nspawn.pid):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
            time.sleep(0.1)
        raise RuntimeError("the container's systemd did not start")

    def sh(self, script: str, *, check: bool = True, timeout: float = 120) -> str:
        """Run a shell script inside the container; its stdout."""
        result = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", "/bin/sh", "-c", script],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{script!r} failed ({result.returncode}): {result.stdout}{result.stderr}"
                                 f"\njournal:\n{self.journal()}")
        return result.stdout

    def journal(self) -> str:
        return self.sh("journalctl -u lavalamp.service --no-pager -o short-monotonic | tail -40",
                       check=False)

    def show(self, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show lavalamp.service -p {','.join(props)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, what: str, predicate, timeout: float = 90.0):
        """Poll `predicate()` until it returns something true; fail naming `what` at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; journal:\n{self.journal()}")

    def metrics(self) -> str:
        return self.sh(f"{VENV}/bin/python -c \"import urllib.request as u; "
                       "print(u.urlopen('http://127.0.0.1:9977/metrics', timeout=5).read().decode())\"")

    def stop(self) -> None:
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn turns it into a clean container shutdown
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()


def let_others_search(*folders: Path) -> dict[Path, int]:
    """Give `folders` the search bit for others (a `mktemp -d` checkout is 0700) so the service's
    dynamic user can reach the venv through the bind mounts; returns the modes to put back."""
    changed = {}
    for folder in folders:
        mode = folder.stat().st_mode & 0o7777
        if not mode & 0o001:
            changed[folder] = mode
            folder.chmod(mode | 0o001)
    return changed


def hidden_from_service() -> list[Path]:
    """The checkout and venv folders that the service's private /tmp would hide."""
    paths = [REPO] + ([] if VENV.is_relative_to(REPO) else [VENV])
    return [p for p in paths if str(p).startswith(TMP_PREFIXES)]


def service_binds() -> str:
    """systemd's BindReadOnlyPaths= value putting hidden folders back where the venv expects them."""
    return " ".join(f"{STAGED}{i}:{path}" for i, path in enumerate(hidden_from_service()))


def headless_dropin() -> str:
    """The test's drop-in: no screen in the container, and the checkout visible under /tmp."""
    binds = service_binds()
    return HEADLESS_DROPIN + (f"BindReadOnlyPaths={binds}\n" if binds else "")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = Path(f"/proc/{parent}/task/{parent}/children")
        kids = [int(c) for c in children.read_text().split()] if children.exists() else []
        found += kids
        todo += kids
    return found


def metric(text: str, name: str, label: str = "") -> float:
    """The value of the first sample of `name` (whose labels include `label`, e.g. 'result="loaded"')."""
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if not line.startswith("#") and series.split("{")[0] == name and label in series:
            return float(value)
    raise AssertionError(f"{name} {label} not in the scrape")


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    if os.geteuid() != 0:
        unavailable("systemd-nspawn needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        require_tool(tool)
    started = time.monotonic()
    root = cached_root()
    built = time.monotonic()
    etc = tmp_path_factory.mktemp("etc-lavalamp")
    (etc / "config.yaml").write_text(CONFIG.format(fps=20))
    save_lamp(make_lamp(), etc / "lamp.safetensors")
    # The service's dynamic user reads them, as on a kiosk (/etc/lavalamp 0755, files 0644).
    for path in (etc, etc / "config.yaml", etc / "lamp.safetensors"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    binds = [str(REPO), f"{etc}:/etc/lavalamp"]
    if not VENV.is_relative_to(REPO):
        binds.append(str(VENV))
    binds += [f"{path}:{STAGED}{i}" for i, path in enumerate(hidden_from_service())]
    python = venv_interpreter(VENV)
    if python:
        binds.append(str(python))
    searchable = let_others_search(REPO, *([] if VENV.is_relative_to(REPO) else [VENV]))
    box = Container(root, binds, tmp_path_factory.mktemp("nspawn") / "console.log")
    try:
        box.wait_for("the container's boot", lambda: box.sh(
            "systemctl is-system-running --wait", check=False).strip() in ("running", "degraded"))
        booted = time.monotonic()
        print(f"\nnspawn root ready in {built - started:.1f} s, boot in {booted - built:.1f} s")
        box.etc = etc
        if python and str(python).startswith("/root/"):
            # The service's dynamic user must reach the venv's Python: pyenv keeps it under /root.
            box.sh("chmod 0711 /root")
        yield box
    finally:
        box.stop()
        for path, mode in searchable.items():
            path.chmod(mode)


def test_installed_unit_reaches_ready_as_an_unprivileged_user(container):
    t0 = time.monotonic()
    container.sh(f"{LAMP} install-service --config /etc/lavalamp/config.yaml "
                 f"--model /etc/lavalamp/lamp.safetensors --watchdog-s {WATCHDOG_S}")
    container.sh("mkdir -p /etc/systemd/system/lavalamp.service.d && "
                 f"printf '{headless_dropin()}' > /etc/systemd/system/lavalamp.service.d/headless.conf && "
                 "systemctl daemon-reload")
    assert container.sh("systemctl is-enabled lavalamp.service").strip() == "enabled"
    # Type=notify: `start` returns once the daemon has sent READY=1 (first frame shown).
    container.sh("systemctl start lavalamp.service", timeout=180)
    print(f"\nstart to READY: {time.monotonic() - t0:.1f} s")
    state = container.show("ActiveState", "SubState", "MainPID", "StatusText")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    status = container.sh(f"cat /proc/{state['MainPID']}/status")
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    groups = container.sh(f"ps -o supgrp= -p {state['MainPID']}")
    assert uid != 0 and {"video", "render", "input"} <= set(groups.strip().split(",")), (uid, groups)
    process = container.sh(f"grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/{state['MainPID']}/status")
    fields = dict(line.split(":", 1) for line in process.splitlines())
    assert {k: v.strip() for k, v in fields.items()} == {
        "NoNewPrivs": "1", "CapEff": "0000000000000000", "Seccomp": "2"}
    # systemd understood every line: no warnings of its own about the unit.
    assert container.sh("journalctl -b -u lavalamp.service _PID=1 -p warning -o cat") == ""
    assert metric(container.metrics(), "lavalamp_up") == 1.0


@pytest.mark.parametrize("deny, works", [("no", True), ("yes", False)])
def test_memory_deny_write_execute_would_break_the_lamp(container, deny, works):
    """Why the unit leaves MemoryDenyWriteExecute= off: torch's CPU kernels JIT-compile."""
    (container.etc / "no-metrics.yaml").write_text("metrics:\n  enabled: false\n")
    (container.etc / "no-metrics.yaml").chmod(0o644)
    result = container.sh(
        f"systemd-run --quiet --wait --pipe -p DynamicUser=yes -p MemoryDenyWriteExecute={deny} "
        + (f"-p 'BindReadOnlyPaths={service_binds()}' " if service_binds() else "")
        + f"-E SDL_VIDEODRIVER=dummy {LAMP} run --headless --max-frames 3 "
        "--config /etc/lavalamp/no-metrics.yaml --model /etc/lavalamp/lamp.safetensors 2>&1; "
        "echo exit=$?", timeout=180)
    assert result.strip().endswith("exit=0") == works, result[-3000:]
    assert ("could not create a primitive" in result) != works  # oneDNN refused its JIT kernels


def test_reload_applies_the_new_config_in_the_same_process(container):
    pid = container.show("MainPID")["MainPID"]
    assert metric(container.metrics(), "lavalamp_display_target_frames_per_second") == 20.0
    new = container.etc / "config.yaml.new"
    new.write_text(CONFIG.format(fps=12))
    new.replace(container.etc / "config.yaml")
    container.sh("systemctl reload lavalamp.service")
    container.wait_for("the reloaded display.fps in the metrics", lambda: metric(
        container.metrics(), "lavalamp_display_target_frames_per_second") == 12.0)
    assert container.show("MainPID", "ActiveState") == {"MainPID": pid, "ActiveState": "active"}


def test_a_checkpoint_copied_in_atomically_is_swapped_in(container):
    """The model folder is a read-only bind mount in the service: a rename by the admin shows."""
    pid = container.show("MainPID")["MainPID"]
    new = container.etc / ".lamp.safetensors.new"
    save_lamp(make_lamp(seed=1, name="second-lamp"), new)
    new.chmod(0o644)
    new.replace(container.etc / "lamp.safetensors")
    container.wait_for("the new lamp in lavalamp_model_info", lambda: re.search(
        r'^lavalamp_model_info\{[^}]*name="second-lamp"', container.metrics(), re.M))
    assert metric(container.metrics(), "lavalamp_model_swaps_total", 'result="loaded"') >= 1
    assert container.show("MainPID")["MainPID"] == pid


def test_hung_producer_is_killed_by_the_watchdog_and_restarted(container):
    container.sh(f"printf '{FAULT_DROPIN}' > /etc/systemd/system/lavalamp.service.d/fault.conf && "
                 "systemctl daemon-reload && systemctl restart lavalamp.service", timeout=180)
    t0 = time.monotonic()
    first = container.show("MainPID")["MainPID"]
    container.wait_for("a watchdog restart", lambda: int(container.show("NRestarts")["NRestarts"]) >= 1,
                       timeout=120)
    print(f"\nhang to restart: {time.monotonic() - t0:.1f} s")
    journal = container.sh("journalctl -u lavalamp.service --no-pager -o cat")
    assert f"Watchdog timeout (limit {WATCHDOG_S}s)!" in journal
    assert container.show("MainPID")["MainPID"] != first
    # Without the fault the restarted lamp is healthy again.
    container.sh("rm /etc/systemd/system/lavalamp.service.d/fault.conf && systemctl daemon-reload && "
                 "systemctl reset-failed lavalamp.service; systemctl restart lavalamp.service", timeout=180)
    assert container.show("ActiveState")["ActiveState"] == "active"
    assert metric(container.metrics(), "lavalamp_up") == 1.0


def test_stop_is_clean(container):
    container.wait_for("the lamp running", lambda: container.show("ActiveState")["ActiveState"] == "active")
    t0 = time.monotonic()
    container.sh("systemctl stop lavalamp.service", timeout=60)
    print(f"\nstop took {time.monotonic() - t0:.1f} s")
    # SIGTERM -> exit 0 within TimeoutStopSec; a SIGKILL after the timeout would read Result=timeout.
    state = container.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
                     "ExecMainCode": "1"}, state
