"""`lavalamp render`: what the daemon would show, written to .npz, .png (APNG), .gif or .mp4 (no
window, no metrics: the frame source alone)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import numpy as np
import torch

from lavalamp.models import EXIT_USAGE
from lavalamp.models.checkpoint import LampLoadError, default_lamp_path, load_lamp
from lavalamp.models.device import DeviceError, resolve_device
from lavalamp.models.limits import check_temperature
from lavalamp.models.video import SUPPORTED_SUFFIXES, check_output_path, write_video

from .config import ConfigError, load_config
from .source import FrameSource

log = logging.getLogger(__name__)



def add_render(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp render`."""
    p = subparsers.add_parser(
        "render", help="write what the daemon would show to a file",
        description="Dream the lamp with the daemon's own frame source (drift guard and cross-faded "
                    "reseeds included) and write the frames at the lamp's real-time frame rate. "
                    "The format follows the suffix of --out: .npz (arrays 'frames' (N,H,W,3) uint8 "
                    "and 'fps'), .png (animated PNG), .gif or .mp4 (H.264).")
    p.add_argument("--config", metavar="PATH", help="config file (guard, temperature, device)")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: model.path, else the shipped lamp)")
    p.add_argument("--frames", type=int, required=True, metavar="N", help="frames to write (>= 1)")
    p.add_argument("--skip", type=int, default=0, metavar="S",
                   help="first advance the dream S steps without decoding them")
    p.add_argument("--seed", type=int, metavar="K", help="seed of the dream (default: model.seed, "
                   "else random)")
    p.add_argument("--guard", choices=("on", "off"), help="drift guard (default: guard.enabled)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature relative to the lamp's calibrated one "
                        "(default: model.temperature)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help=f"output file, one of {', '.join(SUPPORTED_SUFFIXES)}")
    p.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    """Check everything, dream, write; exit 2 with one line on bad input."""
    try:
        config = _checked(args)
        lamp = load_lamp(args.model or config.model.path or default_lamp_path(),
                         resolve_device(config.model.device))
    except (ValueError, ConfigError, LampLoadError, DeviceError) as exc:
        print(f"lavalamp render: {exc}", file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(config.model.torch_threads)
    guard = config.guard if args.guard is None else \
        dataclasses.replace(config.guard, enabled=args.guard == "on")
    source = FrameSource(lamp=lamp, guard=guard,
                         temperature=args.temperature if args.temperature is not None
                         else config.model.temperature,
                         seed=args.seed if args.seed is not None else config.model.seed,
                         crossfade_frames=config.model.crossfade_frames)
    frames = render(source, frames=args.frames, skip=args.skip, batch=config.buffer.batch_frames)
    write_video(args.out, frames, lamp.data.lamp_fps)
    log.info("wrote %s: %d frames %dx%d at %g fps (lamp %r, seed %d, skipped %d)", args.out,
             len(frames), source.frame_size, source.frame_size, lamp.data.lamp_fps, lamp.name,
             source.dream.seed, args.skip)
    return 0


def render(source: FrameSource, *, frames: int, skip: int = 0, batch: int = 8) -> np.ndarray:
    """`frames` frames (N,S,S,3) uint8 from `source`, after skipping `skip` dream steps."""
    if skip:
        source.dream.skip(skip)
    out = np.empty((frames, *source.frame_shape), np.uint8)
    with torch.inference_mode():
        for start in range(0, frames, batch):
            n = min(batch, frames - start)
            out[start:start + n] = source.next_batch(n)
    return out


def _checked(args: argparse.Namespace):
    """The config, after checking every argument that could fail before any work is done."""
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.skip < 0:
        raise ValueError(f"--skip must be >= 0, got {args.skip}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in 0..{2**63 - 1}, got {args.seed}")
    if args.temperature is not None:
        check_temperature(args.temperature, "--temperature")
    check_output_path(args.out)
    return load_config(args.config)
