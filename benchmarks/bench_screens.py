"""Two monitors against one, and the frame gap of a lamp change, on the two-output Xorg (as root).

    python benchmarks/bench_screens.py [--seconds 20] [--fps 60]

Phases, all on one Xorg server with the dummy driver and two 1920x1080 outputs
(deploy/xorg-two-monitors.conf), the shipped default lamp, side by side in one run:
1. `lavalamp run` on one monitor (display.screens: [0]) and on both (screens: all, independent):
   CPU per displayed frame per monitor (daemon + Xorg, from /proc), underruns on every screen.
   Target: two monitors <= 1.2x the one-monitor figure, 0 underruns (run --seconds 300 for the
   issue's five minutes).
2. A playlist of two lamps on both monitors, changed every 2 s from a thread (as the playlist
   timer does): the longest gap between two displayed frames around each change, against one
   display period (target: no gap longer than one period beyond the loop's own jitter, measured
   on the same run away from any change).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from bench_daemon import cpu_seconds, scrape, wait_first_frame  # noqa: E402
from tests.daemon_helpers import free_port, start_xorg  # noqa: E402  (the tests' Xorg and port)


def daemon(env: dict, seconds: float, fps: float, screens: str, work: Path,
           xorg: subprocess.Popen) -> dict:
    port = free_port()
    config = work / f"bench-{screens.strip('[]')}.yaml"
    config.write_text(f"display:\n  fps: {fps}\n  screens: {screens}\nmetrics:\n  port: {port}\n"
                      "model:\n  seed: 1\n")
    log = open(work / f"daemon-{screens.strip('[]')}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lavalamp.daemon", "run", "--config",
                             str(config)], env=env, stderr=log, stdout=subprocess.DEVNULL)
    try:
        wait_first_frame(log, proc)
        time.sleep(2.0)  # let the buffers settle
        m0, c0, x0, t0 = scrape(port), cpu_seconds(proc.pid), cpu_seconds(xorg.pid), time.monotonic()
        time.sleep(seconds)
        m1, c1, x1, t1 = scrape(port), cpu_seconds(proc.pid), cpu_seconds(xorg.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # scrape() gives each per-screen series and, by its bare name, their sum
    frames = m1["lavalamp_frames_displayed_total"] - m0["lavalamp_frames_displayed_total"]
    underruns = {k: v - m0.get(k, 0.0) for k, v in m1.items()  # in the measured seconds only
                 if k.startswith("lavalamp_ring_buffer_underruns_total{")}
    return {"frames": frames, "wall": t1 - t0, "cpu": c1 - c0, "xorg_cpu": x1 - x0,
            "underruns": underruns, "exit": code}


def change_gaps(display: str, seconds: float, fps: float, work: Path) -> dict:
    """In this process: both monitors, a playlist of two lamps changed every 2 s; frame times."""
    os.environ.update({"DISPLAY": display, "SDL_VIDEODRIVER": "x11"})
    from lavalamp.daemon.cli import modules_frozen

    with modules_frozen(True):  # loaded as `lavalamp run` loads them: frozen, never scanned
        from prometheus_client import CollectorRegistry

        from lavalamp.daemon.config import parse_config
        from lavalamp.daemon.service import Daemon
        from lavalamp.models.checkpoint import default_lamp_path
    library = work / "lamps"
    library.mkdir()
    for name in ("one", "two"):
        shutil.copy(default_lamp_path(), library / f"{name}.safetensors")
    config = parse_config({"display": {"screens": "all", "fps": fps},
                           "metrics": {"enabled": False}, "model": {"library": str(library)},
                           "playlist": {"lamps": ["one", "two"], "every_s": 3600}})
    d = Daemon(config=config, config_path=None, model_path=None, registry=CollectorRegistry())
    shown: list[float] = []
    changes: list[float] = []

    def drive() -> None:
        while getattr(getattr(d, "renderer", None), "last_frame", None) is None:
            time.sleep(0.05)  # until the first frame is on screen
        draw = d.renderer.draw

        def timed(*args):
            draw(*args)
            if args[-1] == "0":
                shown.append(time.monotonic())
        d.renderer.draw = timed
        end = time.monotonic() + seconds
        time.sleep(2.0)
        while time.monotonic() < end - 2.0:
            changes.append(time.monotonic())
            d.next_lamp()
            time.sleep(2.0)
        d.request_stop("benchmark done")

    thread = threading.Thread(target=drive)
    thread.start()
    d.run()
    thread.join(10)
    times = [t for t in shown if t >= shown[0] + 2.0]  # after the start has settled
    gaps = [(b - a, b) for a, b in zip(times, times[1:])]
    if os.environ.get("BENCH_VERBOSE"):
        per_s = {}
        for t in times:
            per_s[int(t - times[0])] = per_s.get(int(t - times[0]), 0) + 1
        print("frames per second:", list(per_s.values()), "changes at",
              [round(c - times[0], 1) for c in changes])
        for g, t in sorted(gaps, reverse=True)[:8]:
            print(f"gap {g * 1000:.1f} ms at {min((t - c for c in changes), key=abs):+.2f} s "
                  "from the nearest change")
    near = [g for g, t in gaps if any(c - 0.1 <= t <= c + 1.5 for c in changes)]
    away = [g for g, t in gaps if all(not (c - 0.1 <= t <= c + 1.5) for c in changes)]
    return {"changes": len(changes), "near_max": max(near, default=0.0),
            "away_max": max(away, default=0.0), "frames": len(times),
            "underruns": d.metrics.registry.get_sample_value(
                "lavalamp_ring_buffer_underruns_total", {"screen": "0"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    parser.add_argument("--fps", type=float, default=60.0, help="display.fps of every phase")
    args = parser.parse_args()
    if not shutil.which("Xorg") or os.geteuid() != 0:
        sys.exit("needs root and Xorg with the dummy driver (see deploy/README.md)")
    work = Path(tempfile.mkdtemp(prefix="bench-screens-"))
    xorg, display = start_xorg(work / "Xorg.log")
    env = {**os.environ, "DISPLAY": display, "SDL_VIDEODRIVER": "x11", "SDL_AUDIODRIVER": "dummy"}
    try:
        one = daemon(env, args.seconds, args.fps, "[0]", work, xorg)
        two = daemon(env, args.seconds, args.fps, "all", work, xorg)
        gap = change_gaps(display, args.seconds, args.fps, work)
    finally:
        xorg.terminate()
        xorg.wait(10)
    print(f"Xorg dummy 2x1920x1080, {os.cpu_count()} CPUs, default lamp, {args.seconds:g} s per "
          f"phase, {args.fps:g} fps cap")
    per = {}
    for name, r, monitors in (("one monitor", one, 1), ("two monitors", two, 2)):
        per[monitors] = (r["cpu"] + r["xorg_cpu"]) / max(r["frames"], 1) * 1000
        print(f"{name:13s} {r['frames'] / r['wall'] / monitors:6.1f} fps per monitor, "
              f"{per[monitors]:.2f} ms CPU per displayed frame per monitor (daemon "
              f"{r['cpu'] / r['wall']:.2f} cores, Xorg {r['xorg_cpu'] / r['wall']:.2f}), "
              f"underruns {sorted(r['underruns'].items())}, exit {r['exit']}")
    print(f"ratio CPU per frame per monitor two/one: {per[2] / per[1]:.3f} (target <= 1.2)")
    period = 1 / args.fps
    print(f"lamp changes: {gap['changes']}, {gap['frames']} frames on screen 0, longest gap near "
          f"a change {gap['near_max'] * 1000:.1f} ms, elsewhere {gap['away_max'] * 1000:.1f} ms "
          f"(display period {period * 1000:.1f} ms), underruns {gap['underruns']:.0f}")


if __name__ == "__main__":
    main()
