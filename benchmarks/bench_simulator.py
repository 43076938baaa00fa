"""Simulator speed on one core: frames per second at 64 and 128 px, against the 300 frames/s target."""

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=3000, help="frames per timed run")
    args = parser.parse_args()
    results = {size: frames_per_second(size, args.frames, seed=1) for size in (64, 128, 256)}
    for size, fps in results.items():
        print(f"{size:4d} px: {fps:8.0f} frames/s  ({fps / TARGET_FPS_64:5.1f}x the 300 frames/s target "
              f"for 64 px; {fps / results[64]:.2f}x the 64 px speed)")


if __name__ == "__main__":
    main()
