"""Daemon speed and footprint under Xvfb, measured side by side in one run, printed as ratios.

    python benchmarks/bench_daemon.py [--seconds 20] [--size 1920x1080] [--frame-size 64]

Phases, all on one Xvfb server at --size: a bare pygame loop that only scales and flips a static
frame (the display's own limit), capped at 60 fps, at the daemon's highest cap (240) and uncapped;
`lavalamp run` fullscreen at 60, at its highest cap ("uncapped") and at 30 fps; xscreensaver's
procedural `lavalite` (if installed, frames counted with an LD_PRELOAD shim on glXSwapBuffers,
built with cc). CPU time is the drawing process plus Xvfb, from /proc. The lamp has random weights of realistic size (VAE
base_channels 32, latent 32, GRU 256) unless --lamp names a checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lavalamp.daemon.config import DisplayConfig  # noqa: E402
from tests.daemon_helpers import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MAX_FPS = next(f for f in dataclasses.fields(DisplayConfig) if f.name == "fps").metadata["range"][1]
LAVALITE = ("/usr/libexec/xscreensaver/lavalite", "/usr/lib/xscreensaver/lavalite")

BARE_LOOP = textwrap.dedent("""
    import os, sys, time
    os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
    import numpy as np, pygame
    seconds, fps, side = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    pygame.display.init()
    screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
    w, h = screen.get_size()
    frame = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    source = pygame.image.frombuffer(frame.tobytes(), (side, side), "RGB").convert()
    dest = min(w, h)
    frames, start = 0, time.monotonic()
    next_tick = start
    while time.monotonic() - start < seconds:
        pygame.event.pump()
        screen.blit(pygame.transform.smoothscale(source, (dest, dest)), ((w - dest) // 2, (h - dest) // 2))
        pygame.display.flip()
        frames += 1
        if fps > 0:
            next_tick = max(next_tick + 1 / fps, time.monotonic() - 1 / fps)
            time.sleep(max(0.0, next_tick - time.monotonic()))
    print(frames, time.monotonic() - start)
""")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def start_xvfb(size: str) -> tuple[subprocess.Popen, str]:
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size}x24",
                               "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        return server, ":" + f.readline().strip()


def make_lamp_file(path: Path, frame_size: int) -> None:
    import torch

    from lavalamp.models.checkpoint import DataInfo, Lamp, save_lamp
    from lavalamp.models.latent import STANDARD_NORMAL
    from lavalamp.models.rnn import LatentRNN, LatentRNNConfig
    from lavalamp.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    vae = VAE(VAEConfig(frame_size=frame_size, latent_size=32, base_channels=32))
    with torch.no_grad():
        vae.decoder.layers[-2].weight.mul_(30)  # visible motion, like a trained lamp
    rnn = LatentRNN(LatentRNNConfig(latent_size=32, hidden_size=256))
    for m in (vae, rnn):
        m.eval()
    save_lamp(Lamp(name="bench-random", decoder_kind="vae", decoder_config=vae.config,
                   decoder=vae.decoder, rnn=rnn, latent_mean=torch.zeros(32), latent_std=torch.ones(32),
                   reference=STANDARD_NORMAL, start_contexts=torch.randn(8, 16, 32),
                   data=DataInfo(fps=30.0, frame_step=3, description="random weights")), path)


def bare_loop(env: dict, seconds: float, fps: float, side: int, software: bool) -> dict:
    """A pygame loop that only scales a static frame and flips; software: SDL's shared-memory
    framebuffer (what the daemon uses on X11), else SDL's default (OpenGL, llvmpipe here)."""
    env = {**env, "SDL_FRAMEBUFFER_ACCELERATION": "0" if software else "1"}
    proc = subprocess.Popen([sys.executable, "-c", BARE_LOOP, str(seconds), str(fps), str(side)],
                            env=env, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=seconds + 60)
    frames, wall = out.split()
    return {"fps": int(frames) / float(wall), "frames": int(frames)}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values: dict[str, float] = {}
    for m in re.finditer(r"^(lavalamp_[a-z_]+)(\{[^}]*\})? (\S+)$", text, re.M):
        labelled = m.group(1) + (m.group(2) or "")
        values[labelled] = float(m.group(3))
        if m.group(2) and 'screen="' in m.group(2):  # per-screen series: also their sum, by name
            values[m.group(1)] = values.get(m.group(1), 0.0) + float(m.group(3))
    return values


def daemon(env: dict, seconds: float, fps: float, lamp: Path, work: Path, xvfb: subprocess.Popen,
           rss_every: float = 1.0, progress: bool = False) -> dict:
    port = free_port()
    config = work / f"bench-{fps:g}.yaml"
    config.write_text(f"display:\n  fps: {fps}\n  vsync: false\nmetrics:\n  port: {port}\n"
                      "model:\n  torch_threads: 1\n  seed: 1\n")
    log = open(work / f"daemon-{fps:g}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lavalamp.daemon", "run", "--config", str(config),
                             "--model", str(lamp)], env=env, stderr=log, stdout=subprocess.DEVNULL)
    try:
        first = wait_first_frame(log, proc)
        time.sleep(2.0)  # let the buffer settle
        m0, c0, x0, t0 = scrape(port), cpu_seconds(proc.pid), cpu_seconds(xvfb.pid), time.monotonic()
        rss = []
        while (left := seconds - (time.monotonic() - t0)) > 0:
            rss.append(rss_mb(proc.pid))
            if progress:
                print(f"  {seconds - left:5.0f} s: {rss[-1]:.0f} MB resident", file=sys.stderr, flush=True)
            time.sleep(min(rss_every, left))
        m1, c1, x1, t1 = scrape(port), cpu_seconds(proc.pid), cpu_seconds(xvfb.pid), time.monotonic()
        rss.append(rss_mb(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    frames = m1["lavalamp_frames_displayed_total"] - m0["lavalamp_frames_displayed_total"]
    return {"fps": frames / (t1 - t0), "frames": frames, "cpu": c1 - c0, "xvfb_cpu": x1 - x0,
            "wall": t1 - t0, "first_frame_s": first, "rss": rss, "exit": code,
            "underruns": m1["lavalamp_ring_buffer_underruns_total"],
            "generation_fps": m1["lavalamp_generation_frames_per_second"]}


def wait_first_frame(log, proc, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        found = re.search(r"first frame on screen ([\d.]+) s", log.read())
        if found:
            return float(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError("no first frame within 60 s")


def first_frames(env: dict, lamp: Path, work: Path, runs: int = 5) -> list[tuple[float, float]]:
    """(wall, CPU) seconds from process start to the first frame on screen, for `runs` starts."""
    config = work / "first.yaml"
    config.write_text("metrics:\n  enabled: false\n")
    out = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-m", "lavalamp.daemon", "run", "--config", str(config),
                               "--model", str(lamp), "--max-frames", "1"], env=env, text=True,
                              capture_output=True, timeout=120)
        found = re.search(r"first frame on screen ([\d.]+) s .*\(([\d.]+) s of CPU\)", done.stderr)
        out.append((float(found.group(1)), float(found.group(2))))
    return out


def lavalite(env: dict, seconds: float, work: Path, xvfb: subprocess.Popen) -> dict | None:
    binary = next((p for p in LAVALITE if Path(p).exists()), None)
    if binary is None or not shutil.which("cc"):
        print("lavalite comparison skipped: install xscreensaver-gl-extra and a C compiler")
        return None
    shim = work / "swapcount.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim),
                    str(Path(__file__).with_name("swapcount.c")), "-ldl"], check=True)
    count = work / "swaps"
    proc = subprocess.Popen([binary, "-root"], env={**env, "LD_PRELOAD": str(shim),
                                                     "SWAPCOUNT_FILE": str(count)})
    try:
        time.sleep(3.0)  # warm up
        f0, c0, x0, t0 = read_count(count), cpu_seconds(proc.pid), cpu_seconds(xvfb.pid), time.monotonic()
        time.sleep(seconds)
        f1, c1, x1, t1 = read_count(count), cpu_seconds(proc.pid), cpu_seconds(xvfb.pid), time.monotonic()
    finally:
        proc.terminate()
        proc.wait(10)
    frames = f1 - f0
    return {"fps": frames / (t1 - t0), "frames": frames, "cpu": c1 - c0, "xvfb_cpu": x1 - x0}


def read_count(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    parser.add_argument("--size", default="1920x1080", help="Xvfb screen size")
    parser.add_argument("--frame-size", type=int, default=64, help="frame size of the random lamp")
    parser.add_argument("--lamp", type=Path, help="a checkpoint instead of the random lamp")
    parser.add_argument("--long", type=float, metavar="SECONDS",
                        help="only the daemon at 60 fps for this long (underruns, memory flatness)")
    args = parser.parse_args()
    if not shutil.which("Xvfb"):
        sys.exit("Xvfb is not installed (apt-get install xvfb)")
    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    lamp = args.lamp or work / "lamp.safetensors"
    if args.lamp is None:
        make_lamp_file(lamp, args.frame_size)
    xvfb, display = start_xvfb(args.size)
    env = {**os.environ, "DISPLAY": display, "SDL_VIDEODRIVER": "x11", "SDL_AUDIODRIVER": "dummy"}
    try:
        if args.long:
            report_long(args.long, env, lamp, work, xvfb)
        else:
            report(args, env, lamp, work, xvfb)
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def report(args, env, lamp, work, xvfb) -> None:
    s = args.seconds
    print(f"Xvfb {args.size}, {os.cpu_count()} CPUs, lamp {lamp}, {s:g} s per phase")
    bare60 = bare_loop(env, s, 60, args.frame_size, software=True)
    bare = bare_loop(env, s, 0, args.frame_size, software=True)
    bare_max = bare_loop(env, s, MAX_FPS, args.frame_size, software=True)
    bare_gl = bare_loop(env, s, 0, args.frame_size, software=False)
    d60 = daemon(env, s, 60, lamp, work, xvfb)
    dmax = daemon(env, s, MAX_FPS, lamp, work, xvfb)
    d30 = daemon(env, s, 30, lamp, work, xvfb)
    lite = lavalite(env, s, work, xvfb)
    starts = first_frames(env, lamp, work)
    print(f"bare scale+flip loop, 60 fps cap:  {bare60['fps']:6.1f} fps")
    print(f"bare scale+flip loop, uncapped:    {bare['fps']:6.1f} fps "
          f"(SDL's default OpenGL framebuffer: {bare_gl['fps']:.1f} fps)")
    for name, d in (("60 fps cap", d60), (f"uncapped ({MAX_FPS:g})", dmax), ("30 fps cap", d30)):
        per_frame = (d["cpu"] + d["xvfb_cpu"]) / max(d["frames"], 1) * 1000
        print(f"daemon {name:15s} {d['fps']:6.1f} fps, {d['underruns']:.0f} underruns, "
              f"{d['cpu'] / d['wall']:.2f} cores (daemon), {per_frame:.2f} ms CPU/frame with Xvfb, "
              f"generation capacity {d['generation_fps']:.0f} fps, exit {d['exit']}")
    print(f"ratio displayed fps daemon/bare at 60 cap: {d60['fps'] / bare60['fps']:.3f} (target >= 0.90)")
    print(f"ratio displayed fps daemon/bare, both held to {MAX_FPS:g} fps: "
          f"{dmax['fps'] / bare_max['fps']:.3f} (target >= 0.90; the bare loop reaches "
          f"{bare_max['fps']:.1f} fps)")
    print(f"daemon CPU at 30 fps: {d30['cpu'] / d30['wall']:.2f} cores (target <= 1)")
    if lite:
        lite_ms = (lite["cpu"] + lite["xvfb_cpu"]) / max(lite["frames"], 1) * 1000
        d_ms = (d60["cpu"] + d60["xvfb_cpu"]) / max(d60["frames"], 1) * 1000
        print(f"lavalite: {lite['fps']:.1f} fps, {lite_ms:.2f} ms CPU/frame with Xvfb")
        print(f"ratio CPU per frame daemon/lavalite: {d_ms / lite_ms:.3f} (target <= 0.25)")
    walls = sorted(w for w, _ in starts)
    print(f"first frame on screen: median {walls[len(walls) // 2]:.2f} s ({walls[0]:.2f}..{walls[-1]:.2f}) "
          f"after process start, {sorted(c for _, c in starts)[len(starts) // 2]:.2f} s of CPU, "
          f"{len(starts)} starts (target <= 3)")
    rss = d60["rss"]
    print(f"resident memory: {max(rss):.0f} MB max, {rss[0]:.0f} -> {rss[-1]:.0f} MB over {d60['wall']:.0f} s "
          f"({(rss[-1] / rss[0] - 1) * 100:+.1f}%) (targets <= 600 MB, flat within 5%)")


def report_long(seconds: float, env, lamp, work, xvfb) -> None:
    every = 30.0
    print(f"the daemon alone at 60 fps for {seconds:g} s, memory every {every:g} s:",
          file=sys.stderr, flush=True)
    d = daemon(env, seconds, 60, lamp, work, xvfb, rss_every=every, progress=True)
    rss = d["rss"]
    print(f"{seconds:g} s at 60 fps cap: {d['fps']:.2f} fps, {d['frames']:.0f} frames, "
          f"{d['underruns']:.0f} underruns, daemon {d['cpu'] / d['wall']:.3f} cores, "
          f"{(d['cpu'] + d['xvfb_cpu']) / d['frames'] * 1000:.2f} ms CPU/frame with Xvfb, "
          f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f}, {(rss[-1] / rss[0] - 1) * 100:+.1f}%), "
          f"exit {d['exit']} (targets: 0 underruns, <= 600 MB, flat within 5%)")


if __name__ == "__main__":
    main()
