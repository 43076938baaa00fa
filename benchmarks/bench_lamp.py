"""Lamp speed, side by side in one run: render vs a bare decode loop, --skip rate, training memory.

    python benchmarks/bench_lamp.py [--model PATH] [--threads 2] [--frames 2000] [--rounds 3]

Render and the bare decode loop of the same decoder run in alternating rounds, so a busy machine
slows both alike; the ratio is what the target is about (render >= 0.9 x bare loop). Rates are
per wall-clock second and per CPU second of this process (the latter is steadier on a shared host).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

from lavalamp.daemon.config import GuardConfig
from lavalamp.daemon.offline_render import render
from lavalamp.daemon.source import FrameSource
from lavalamp.models.checkpoint import load_lamp
from lavalamp.models.dream import Dream

BATCH = 8


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_decode(lamp, frames: int) -> None:
    """The floor: decode random latents in batches, no dream, no guard, no copies."""
    z = torch.randn(BATCH, lamp.latent_size)
    with torch.inference_mode():
        for _ in range(frames // BATCH):
            lamp.decode(z).mul(255).byte()


def render_frames(lamp, frames: int, guard: bool) -> None:
    source = FrameSource(lamp=lamp, guard=GuardConfig(enabled=guard), seed=1)
    render(source, frames=frames, batch=BATCH)


def skip_rate(lamp, steps: int) -> dict[str, float]:
    dream = Dream(lamp, seed=1)
    wall, cpu = timed(lambda: dream.skip(steps))
    return {"steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu}


def training_peak_rss_mb(minutes: float) -> float:
    """Peak resident memory of a short real training run at 64x64 (children's ru_maxrss)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "lavalamp.daemon", "train", "--sim-clips", "48",
                        "--sim-frames", "800", "--run-dir", f"{tmp}/run", "--minutes", str(minutes),
                        "--no-progress"], check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint (default: the shipped lamp)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-steps", type=int, default=200_000)
    p.add_argument("--train-minutes", type=float, default=0.0,
                   help="also measure training peak memory with a run this long (0 = no)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lamp = load_lamp(args.model)
    totals = {"bare": [0.0, 0.0], "render": [0.0, 0.0], "render_guard_off": [0.0, 0.0]}
    runs = {"bare": lambda: bare_decode(lamp, args.frames),
            "render": lambda: render_frames(lamp, args.frames, True),
            "render_guard_off": lambda: render_frames(lamp, args.frames, False)}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in runs.items():
            wall, cpu = timed(fn)
            totals[name][0] += wall
            totals[name][1] += cpu
    frames = args.frames * args.rounds
    report = {name: {"fps": frames / w, "frames_per_cpu_s": frames / c} for name, (w, c) in totals.items()}
    report["render_over_bare"] = report["render"]["fps"] / report["bare"]["fps"]
    report["skip"] = skip_rate(lamp, args.skip_steps)
    report["threads"] = args.threads
    report["lamp"] = {"name": lamp.name, "frame_size": lamp.frame_size, "hidden": lamp.rnn.config.hidden_size}
    if args.train_minutes > 0:
        report["training_peak_rss_mb"] = training_peak_rss_mb(args.train_minutes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
