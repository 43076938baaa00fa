"""`lavalamp simulate`: write a clip of the procedural lava lamp to .npz, .png, .gif or .mp4."""

from __future__ import annotations

import argparse
import logging
import sys

from lavalamp.models import EXIT_USAGE
from lavalamp.models.limits import FRAME_SIZES, check_frame_size
from lavalamp.models.video import SUPPORTED_SUFFIXES, check_output_path, write_video

from .simulator import PALETTES, LavaLampSimulator, SimulatorConfig

log = logging.getLogger(__name__)



def add_simulate(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp simulate`."""
    p = subparsers.add_parser(
        "simulate", help="write a clip of the procedural lava lamp",
        description="Simulate a procedural lava lamp and write the frames. The format follows the "
                    "suffix of --out: .npz (arrays 'frames' (T,H,W,3) uint8 and 'fps'), .png "
                    "(animated PNG, APNG), .gif (animated GIF) or .mp4 (H.264). The clip is built in "
                    "memory: frames x size x size x 3 bytes.")
    p.add_argument("--frames", type=int, required=True, metavar="N", help="number of frames (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed and options, same frames")
    p.add_argument("--size", type=int, default=64, help=f"frame width and height, one of {FRAME_SIZES}")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second of simulated time")
    p.add_argument("--palette", choices=sorted(PALETTES), default=None,
                   help="colour scheme (default: chosen by the seed)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help=f"output file, one of {', '.join(SUPPORTED_SUFFIXES)}")
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Validate the arguments, simulate, write the file; exit 2 with one line on bad input."""
    try:
        config = _config_from_args(args)
    except ValueError as exc:
        print(f"lavalamp simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sim = LavaLampSimulator(config=config, seed=args.seed)
    frames = sim.frames(args.frames)
    write_video(args.out, frames, config.fps)
    print(f"wrote {args.out}: {args.frames} frame{'s' * (args.frames != 1)} "
          f"{config.frame_size}x{config.frame_size} at "
          f"{config.fps:g} fps, palette {sim.palette_name}, seed {args.seed}")
    return 0


def _config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator config, after checking everything that could fail before any work is done."""
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    check_frame_size(args.size, "--size")
    check_output_path(args.out)
    return SimulatorConfig(frame_size=args.size, fps=args.fps, palette=args.palette)
