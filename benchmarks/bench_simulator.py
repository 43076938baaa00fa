"""Simulator speed on one core (frames/s at 64, 128 and 256 px) and, optionally, a long-run check."""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from lavalamp.train.simulator import LavaLampSimulator, SimulatorConfig  # noqa: E402

TARGET_FPS_64 = 300.0


def frames_per_second(size: int, frames: int, seed: int) -> float:
    """Rendered frames per second of wall time, warm-up excluded, best of three runs."""
    sim = LavaLampSimulator(config=SimulatorConfig(frame_size=size, palette="classic"), seed=seed)
    sim.frames(30)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for chunk in sim.iter_chunks(frames, chunk=256):
            assert chunk.dtype == np.uint8
        best = max(best, frames / (time.perf_counter() - start))
    return best


def long_run(frames: int, seed: int) -> str:
    """Render `frames` frames at 64 px and report freezes and repeats, sampling one frame a second."""
    sim = LavaLampSimulator(config=SimulatorConfig(frame_size=64), seed=seed)
    fps = int(sim.config.fps)
    samples = np.stack([chunk[-1] for chunk in sim.iter_chunks(frames, chunk=fps)]).astype(np.float32)
    flat = samples.reshape(len(samples), -1)
    change_5s = np.abs(flat[5:] - flat[:-5]).mean(axis=1)
    squares = (flat ** 2).sum(axis=1)
    rms = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0) / flat.shape[1])
    apart = np.abs(np.arange(len(flat))[:, None] - np.arange(len(flat))[None, :])
    return (f"seed {seed} ({sim.palette_name}), {frames} frames: smallest change over 5 s "
            f"{change_5s.min():.2f}/255 (median {np.median(change_5s):.2f}); closest two frames "
            f">= 10 s apart: RMS {rms[apart >= 10].min():.2f} (frames 1 s apart: median "
            f"{np.median(rms[apart == 1]):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=3000, help="frames per timed run")
    parser.add_argument("--long-run", type=int, default=0, metavar="FRAMES",
                        help="also render this many frames per seed (e.g. 24000) and check that the "
                             "lamp neither freezes nor repeats")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the long run")
    args = parser.parse_args()
    results = {size: frames_per_second(size, args.frames, seed=1) for size in (64, 128, 256)}
    for size, fps in results.items():
        print(f"{size:4d} px: {fps:8.0f} frames/s  ({fps / TARGET_FPS_64:5.1f}x the 300 frames/s target "
              f"for 64 px; {fps / results[64]:.2f}x the 64 px speed)")
    for seed in range(args.seeds if args.long_run else 0):
        print(long_run(args.long_run, seed))


if __name__ == "__main__":
    main()
