"""`lavalamp train`: footage (or the built-in simulator) in, one lamp checkpoint out."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch

from lavalamp.models import EXIT_USAGE
from lavalamp.models.atomic import atomic_write_bytes, check_output_file, check_output_folder
from lavalamp.models.checkpoint import load_lamp
from lavalamp.models.device import DeviceError, resolve_device
from lavalamp.models.fields import field_doc, option

from .distributed import barrier, join_world, leave_world
from .footage import Footage, FootageConfig, FootageError, load_footage
from .simulator import SimulatorConfig, simulate
from .trainer import Run, TrainConfig, check_init_lamp, train_lamp

log = logging.getLogger(__name__)
SIM_FPS = 30.0


def add_train(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp train`."""
    p = subparsers.add_parser(
        "train", help="train a lamp from footage or the built-in simulator",
        description="Train a lamp: VAE, decoder refinement, sharpening (upsampler or decoder against "
                    "discriminators), encoding, latent RNN; writes one checkpoint. "
                    "Run under `torchrun --nproc_per_node=N` to train on N processes.")
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="video files (mp4, mov, webm, mkv, gif), image folders or .npz clips")
    p.add_argument("--sim-clips", type=int, default=0, metavar="N",
                   help="also train on N clips of the built-in simulator (seeds SIM_SEED..)")
    p.add_argument("--sim-frames", type=int, default=3000, help="frames per simulated clip")
    p.add_argument("--sim-fps", type=float, default=SIM_FPS,
                   help=f"frame rate of the simulated clips (default {SIM_FPS:g})")
    p.add_argument("--sim-seed", type=int, default=0, help="seed of the first simulated clip")
    p.add_argument("--sim-palette", help="colour scheme of the simulated lamp (default: by seed)")
    p.add_argument("--out", type=Path, help="checkpoint to write (default RUN_DIR/lamp.safetensors)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/lamp"),
                   help="folder for resumable state, loss curves, samples (default runs/lamp)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir with the settings it was started with")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="total wall-clock budget of the run")
    budget.add_argument("--steps", type=int, help="optimizer steps for each of the four stages "
                        "(or set them apart with --vae-steps, --refine-steps, --sharpen-steps and "
                        "--rnn-steps)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    footage, footage_defaults = p.add_argument_group("footage"), FootageConfig()
    footage.add_argument("--crop", help="crop box x0,y0,x1,y1 in source pixels")
    footage.add_argument("--auto-crop", action="store_true", help="find the lamp and crop to it")
    footage.add_argument("--dedupe", type=float, default=footage_defaults.dedupe_threshold, metavar="MAD",
                         help="drop frames differing from the previous by less than MAD (0..255)")
    footage.add_argument("--default-fps", type=float, default=footage_defaults.default_fps,
                         help="frame rate of image folders and .npz files without fps")
    footage.add_argument("--val-fraction", type=float, default=footage_defaults.val_fraction,
                         help="last share of each clip held out for validation")
    footage.add_argument("--mirror", action="store_true",
                         help="also train on each clip mirrored left-right (twice the data from a "
                              "short clip; for footage whose glare and background look right mirrored)")
    model = p.add_argument_group("model and training (see lavalamp.train.trainer.TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "minutes":  # in the budget group above
            continue
        help_text = f"{field_doc(f)} (default {f.default!r})".replace("%", "%%")
        model.add_argument(option(f.name), type=type(f.default), default=None, help=help_text)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """The `lavalamp train` command; returns the exit status."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = _settings(args)
        config = TrainConfig(**settings["train"])
        check_output_folder(args.run_dir, "--run-dir")
        if args.out is not None and args.out.resolve().parent != args.run_dir.resolve():
            check_output_file(args.out, "--out")  # the run folder (the default's) is made by the run
        device = resolve_device(args.device)
        world = join_world(device)
        clips = _footage(settings, config)
        if config.init_from:  # before the run folder is made: a refused lamp leaves nothing behind
            check_init_lamp(config, load_lamp(config.init_from), clips.fps)
    except (FootageError, DeviceError, ValueError, TypeError) as exc:
        print(f"lavalamp train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or args.run_dir / "lamp.safetensors"
    run = Run(folder=args.run_dir, config=config, world=world, device=world.device,
              progress=not args.no_progress)
    if not world.main:
        logging.getLogger("lavalamp").setLevel(logging.WARNING)
    try:
        barrier(world)  # every process has checked the run folder before rank 0 writes to it
        _remember(run, settings)
        train_lamp(run, clips, out)
    finally:
        leave_world(world)
    return 0


def _settings(args: argparse.Namespace) -> dict:
    """The run's settings: from the command line, or from the run folder when resuming."""
    saved = args.run_dir / "settings.json"
    if args.resume:
        if not saved.exists():
            raise ValueError(f"{args.run_dir}: nothing to resume (no settings.json); start the run "
                             "without --resume")
        settings = json.loads(saved.read_text())
        settings["train"].update(_budget(args))
        return settings
    if saved.exists():
        raise ValueError(f"{args.run_dir} already holds a run: pass --resume to continue it, or "
                         "choose another --run-dir")
    if not args.sources and args.sim_clips <= 0:
        raise ValueError("no footage: name video files, image folders or .npz clips, or use "
                         "--sim-clips N")
    try:
        SimulatorConfig(fps=args.sim_fps)
    except ValueError as exc:
        raise ValueError(f"--sim-fps: {exc}") from None
    train = {**config_fields(args), **_budget(args)}
    crop = _crop(args.crop) if args.crop else None
    footage = {"crop": crop, "auto_crop": args.auto_crop, "dedupe_threshold": args.dedupe,
               "default_fps": args.default_fps, "val_fraction": args.val_fraction, "mirror": args.mirror}
    return {"train": train, "footage": footage,
            "sources": [str(Path(s).resolve()) for s in args.sources],
            "simulator": {"clips": args.sim_clips, "frames": args.sim_frames, "seed": args.sim_seed,
                          "fps": args.sim_fps,
                          "palette": args.sim_palette}}


def config_fields(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (the budget options aside)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if getattr(args, f.name, None) is not None}


def _budget(args: argparse.Namespace) -> dict:
    """The budget given on the command line, as TrainConfig fields."""
    if args.minutes is not None:
        return {"minutes": args.minutes}
    stages = ("vae_steps", "refine_steps", "sharpen_steps", "rnn_steps")
    if args.steps is not None:
        return {"minutes": None, **{k: args.steps for k in stages}}
    return {k: getattr(args, k) for k in stages if getattr(args, k) is not None}


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--crop: expected x0,y0,x1,y1 (four integers), got {text!r}") from None
    return x0, y0, x1, y1


def _remember(run: Run, settings: dict) -> None:
    if run.world.main and not (run.folder / "settings.json").exists():
        run.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run.folder / "settings.json", json.dumps(settings, indent=2).encode())


def _footage(settings: dict, config: TrainConfig) -> Footage:
    """Training footage at the source frame rate (the trainer steps it itself, keeping every phase)."""
    options = dict(settings["footage"], crop=tuple(settings["footage"]["crop"] or ()) or None)
    footage_config = FootageConfig(frame_size=config.frame_size, **options)
    parts = []
    if settings["sources"]:
        parts.append(load_footage(settings["sources"], footage_config, min_frames=config.min_frames))
    sim = settings["simulator"]
    if sim["clips"] > 0:
        seeds = range(sim["seed"], sim["seed"] + sim["clips"])
        fps = sim.get("fps", SIM_FPS)  # a run folder of an earlier version has none
        parts.append(Footage(
            sequences=[simulate(sim["frames"], seed=s, size=config.frame_size, fps=fps,
                                palette=sim["palette"]) for s in seeds],
            names=[f"simulator seed {s}" for s in seeds], source_fps=[fps] * len(seeds),
            val_fraction=footage_config.val_fraction,
            description=f"{len(seeds)} clips x {sim['frames']} frames of the built-in simulator "
                        f"(seeds {seeds[0]}..{seeds[-1]}, palette {sim['palette'] or 'by seed'}, "
                        f"{fps:g} fps)"))
    return Footage(sequences=[s for p in parts for s in p.sequences],
                   names=[n for p in parts for n in p.names],
                   source_fps=[f for p in parts for f in p.source_fps],
                   val_fraction=footage_config.val_fraction,
                   description="; ".join(p.description for p in parts))
