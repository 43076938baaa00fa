"""Soak: the daemon headless for a long time while good and bad lamps are hot-swapped and good and
bad configs arrive with SIGHUP every few seconds. Reports frames shown, refusals, crashes (target
0), memory (flat) and the longest frame gap (target: none over 100 ms).

    python benchmarks/soak.py [--minutes 30] [--swap-every-s 3] [--hup-every-s 5] [--lamp PATH]

The lamp file is replaced atomically (temporary file, then rename, as the deploy guide says) in
turn by a second good lamp and by broken ones (truncated, not a checkpoint, NaN decoder, header of
the wrong types, absurd architecture, deeply nested header); the config in turn by good variants
and by broken ones (invalid value, deep nesting, alias bomb, a crontab line that never fires, not
UTF-8). A daemon that exits is counted as a crash and started again, as systemd would. The frame
gap comes from the daemon's own histogram (lavalamp_frame_seconds): frames later than 100 ms are
counted, and the longest gap is known to the histogram's bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes import lamp_header, rewrite_lamp  # noqa: E402  (the hostile files of the tests)

GOOD_CONFIGS = [{"model": {"crossfade_frames": 12}}, {"display": {"speed": 1.5}},
                {"model": {"crossfade_frames": 24}, "display": {"speed": 1.0}}]
BAD_CONFIGS = [
    "display:\n  fps: fast\n",
    "model:\n  path: " + "[" * 2000 + "]" * 2000 + "\n",
    "display:\n  scaling:\n" + "".join(
        f"    - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9)),
    "schedule:\n  display_off: '0 22 * * *'\n  display_on: '0 0 30 2 *'\n",
    b"display:\n  fps: \xff\xfe\n",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def config_text(port: int, extra: dict) -> str:
    import yaml

    sections = {"metrics": {"enabled": True, "port": port}, "display": {"fps": 60},
                "schedule": {"watch_model_s": 1.0}}
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    return yaml.safe_dump(sections)


def lamp_files(folder: Path, good: Path) -> tuple[list[bytes], list[bytes]]:
    """(good lamps, bad lamps) as file contents."""
    header = lamp_header(good)
    second = Path(rewrite_lamp(good, header=dict(header, name="soak-second"), out=folder / "b.st"))
    nan = Path(rewrite_lamp(good, out=folder / "nan.st", tensors=lambda t: {
        k: v * float("nan") if k.startswith("decoder.") and v.is_floating_point() else v
        for k, v in t.items()}))
    wrong = Path(rewrite_lamp(good, out=folder / "wrong.st",
                              header=dict(header, data={"fps": "30", "frame_step": 0})))
    absurd = Path(rewrite_lamp(good, out=folder / "absurd.st", header=dict(
        header, rnn_config=dict(header["rnn_config"], hidden_size=10**9))))
    deep = Path(rewrite_lamp(good, out=folder / "deep.st", header="[" * 100000 + "]" * 100000))
    raw = good.read_bytes()
    goods = [raw, second.read_bytes()]
    bads = [raw[: len(raw) // 2], b"not a checkpoint at all", nan.read_bytes(), wrong.read_bytes(),
            absurd.read_bytes(), deep.read_bytes()]
    return goods, bads


Samples = list[tuple[str, dict[str, str], float]]
LES = ("0.1", "0.25", "0.5", "1.0", "+Inf")  # the upper buckets of lavalamp_frame_seconds


def scrape(port: int) -> Samples:
    """Every lavalamp_ sample of the daemon's /metrics: (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    out = []
    for match in re.finditer(r"^(lavalamp_\w+)(?:\{(.*)\})? (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        out.append((match.group(1), labels, float(match.group(3))))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of `name` with these labels (all screens together, as PromQL's sum)."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


class Soak:
    """The daemon, the files it reads, and what was measured."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.port = free_port()
        self.config = folder / "config.yaml"
        self.model = folder / "lamp.safetensors"
        self.goods, self.bads = lamp_files(folder, Path(args.lamp))
        self.model.write_bytes(self.goods[0])
        self.config.write_text(config_text(self.port, {}))
        self.log = open(folder / "daemon.log", "w")
        self.crashes, self.restarts, self.swaps, self.hups = 0, 0, 0, 0
        self.rss: list[tuple[float, int]] = []
        self.totals: dict[str, float] = {}
        self.current: dict[str, float] = {}
        self.longest = 0.1  # upper bound of the longest frame gap, from the histogram's buckets
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "lavalamp.daemon", "run", "--headless", "--config",
                   str(self.config), "--model", str(self.model)]
        return subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self, timeout: float = 120.0) -> Samples:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {self.proc.returncode} while starting; "
                                 f"see {self.folder / 'daemon.log'}")
            try:
                samples = scrape(self.port)
                if total(samples, "lavalamp_frames_displayed_total") > 0:
                    return samples
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the daemon showed no frame in time")

    def swap(self) -> None:
        lamps = self.goods if self.swaps % 2 == 0 else self.bads
        write_atomically(self.model, lamps[(self.swaps // 2) % len(lamps)])
        self.swaps += 1

    def hup(self) -> None:
        if self.hups % 2 == 0:
            self.config.write_text(config_text(self.port, GOOD_CONFIGS[(self.hups // 2) % len(GOOD_CONFIGS)]))
        else:
            bad = BAD_CONFIGS[(self.hups // 2) % len(BAD_CONFIGS)]
            write_atomically(self.config, bad if isinstance(bad, bytes) else bad.encode())
        self.proc.send_signal(signal.SIGHUP)
        self.hups += 1

    def sample(self, samples: Samples, base: Samples) -> None:
        """Keep one scrape's counts since this daemon's start (`base` is its first scrape)."""
        def delta(name: str, **labels: str) -> float:
            return total(samples, name, **labels) - total(base, name, **labels)

        self.current = {
            "frames": delta("lavalamp_frames_displayed_total"),
            "count": delta("lavalamp_frame_seconds_count"),
            "swap_loaded": delta("lavalamp_model_swaps_total", result="loaded"),
            "swap_refused": delta("lavalamp_model_swaps_total", result="refused"),
            "reload_loaded": delta("lavalamp_config_reloads_total", result="loaded"),
            "reload_refused": delta("lavalamp_config_reloads_total", result="refused"),
            "producer_errors": delta("lavalamp_producer_errors_total"),
            **{f"le_{le}": delta("lavalamp_frame_seconds_bucket", le=le) for le in LES},
        }
        self.rss.append((time.monotonic(), rss_bytes(self.proc.pid)))

    def run(self) -> dict:
        base = self.wait_ready()
        started = time.monotonic()
        end = started + self.args.minutes * 60
        next_swap, next_hup, next_sample = started + self.args.swap_every_s, \
            started + self.args.hup_every_s, started
        while time.monotonic() < end:
            now = time.monotonic()
            if self.proc.poll() is not None:  # a crash: count it, start again as systemd would
                self.crashes += 1
                self._fold()
                self.proc = self._start()
                base = self.wait_ready()
                continue
            if now >= next_swap:
                self.swap()
                next_swap += self.args.swap_every_s
            if now >= next_hup:
                self.hup()
                next_hup += self.args.hup_every_s
            if now >= next_sample:
                try:
                    self.sample(scrape(self.port), base)
                except OSError:
                    pass
                next_sample += 1.0
            time.sleep(0.05)
        self._fold()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        return self.report(time.monotonic() - started, code)

    def _fold(self) -> None:
        """Add this daemon's counts to the totals (a crash starts a fresh daemon from zero)."""
        for k, v in self.current.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        if self.current:
            late = [le for le in LES if self.current["count"] - self.current[f"le_{le}"] > 0]
            if late:
                after = LES[min(LES.index(late[-1]) + 1, len(LES) - 1)]
                self.longest = max(self.longest, float(after.replace("+Inf", "inf")))
        self.current = {}

    def report(self, seconds: float, code: int) -> dict:
        warm = [r for t, r in self.rss if t - self.rss[0][0] >= min(60.0, seconds / 4)] or \
            [r for _, r in self.rss]
        t = {k: self.totals.get(k, 0.0) for k in ("frames", "count", "le_0.1", "swap_loaded",
                                                   "swap_refused", "reload_loaded", "reload_refused",
                                                   "producer_errors")}
        return {"seconds": round(seconds, 1), "frames_shown": int(t["frames"]),
                "fps": round(t["frames"] / seconds, 1),
                "swaps_written": self.swaps, "swaps_loaded": int(t["swap_loaded"]),
                "swaps_refused": int(t["swap_refused"]), "sighups": self.hups,
                "reloads_loaded": int(t["reload_loaded"]), "reloads_refused": int(t["reload_refused"]),
                "producer_errors": int(t["producer_errors"]), "crashes": self.crashes,
                "frames_later_than_100ms": int(t["count"] - t["le_0.1"]),
                "longest_gap_at_most_s": self.longest,
                "rss_mib_after_warmup_first_last_max": [round(warm[0] / 2**20, 1),
                                                        round(warm[-1] / 2**20, 1),
                                                        round(max(warm) / 2**20, 1)],
                "exit_code_on_sigterm": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--swap-every-s", type=float, default=3.0)
    parser.add_argument("--hup-every-s", type=float, default=5.0)
    parser.add_argument("--lamp", default=str(REPO / "models" / "default_lamp.safetensors"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (daemon.log)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lavalamp-soak-"))
    try:
        soak = Soak(args, folder)
        try:
            result = soak.run()
        finally:
            if soak.proc.poll() is None:
                soak.proc.kill()
        print(json.dumps(result, indent=2))
        return 0 if result["crashes"] == 0 else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"work folder: {folder}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
