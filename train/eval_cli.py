"""`lavalamp eval`: dream with a lamp, compare with reference clips, write the report and print its gist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lavalamp.models import EXIT_USAGE
from lavalamp.models.atomic import check_output_folder
from lavalamp.models.checkpoint import LampLoadError
from lavalamp.models.limits import TEMPERATURE_RANGE

from .critic import MAX_CRITIC_SEEDS, SHARP_CRITIC_SIZE
from .evaluate import EvalConfig, evaluate, write_outputs
from .footage import FootageError


def add_eval(subparsers: argparse._SubParsersAction) -> None:
    """Register `lavalamp eval`."""
    p = subparsers.add_parser("eval", help="compare a lamp's dream with reference footage",
                              description="Dream frames with a lamp and compare them with reference "
                                          "clips; writes DIR/report.json and DIR/contact_sheet.png.")
    defaults = EvalConfig()
    p.add_argument("--model", required=True, metavar="PATH", help="lamp checkpoint (.safetensors)")
    p.add_argument("--reference", required=True, nargs="+", metavar="CLIP",
                   help="reference footage: .npz with frames and fps (or a video / image folder); "
                        "several clips of one frame rate are one reference of many lamp states")
    p.add_argument("--frames", type=int, default=defaults.frames, metavar="N", help="frames to generate")
    p.add_argument("--skip", type=int, default=defaults.skip, metavar="S",
                   help="dream steps skipped (not decoded) before the compared frames")
    p.add_argument("--seed", type=int, default=defaults.seed, metavar="K", help="dream and critic seed")
    p.add_argument("--temperature", type=float, default=defaults.temperature, metavar="T",
                   help="sampling temperature relative to the lamp's calibrated one, "
                        f"{TEMPERATURE_RANGE[0]:g}..{TEMPERATURE_RANGE[1]:g} (default 1)")
    p.add_argument("--critic-steps", type=int, default=defaults.critic_steps, metavar="N",
                   help="training steps of each critic")
    p.add_argument("--critic-seeds", type=int, default=defaults.critic_seeds, metavar="N",
                   help="critics per test, each from its own seed: mean accuracy and spread "
                        f"(1..{MAX_CRITIC_SEEDS}; the critics take N times as long)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.json and contact_sheet.png")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """The `lavalamp eval` command: exit 0, or 2 with one line on stderr for bad input."""
    out = Path(args.out)
    try:
        config = EvalConfig(frames=args.frames, skip=args.skip, seed=args.seed,
                            temperature=args.temperature, critic_steps=args.critic_steps,
                            critic_seeds=args.critic_seeds)
        check_output_folder(out, "--out")
    except ValueError as exc:
        print(f"lavalamp eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report, sheet = evaluate(args.model, args.reference, config)
    except (LampLoadError, FootageError) as exc:
        print(f"lavalamp eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    write_outputs(out, report, sheet)
    print(summary(report))
    print(f"wrote {out / 'report.json'} and {out / 'contact_sheet.png'} in {report['seconds']:.0f} s")
    return 0


def summary(report: dict[str, Any]) -> str:
    """A few readable lines of the report."""
    m, fz, rep, col, cr, sh = (report[k] for k in ("motion", "frozen", "repetition", "colour",
                                                   "critic", "sharpness"))
    sharp = f"frames_{SHARP_CRITIC_SIZE}"
    sharp_line = (f", frames at {SHARP_CRITIC_SIZE} px {_acc(cr[sharp])} (reference A/B "
                  f"{_acc(cr['reference_baseline_' + sharp])})") if sharp in cr else ""
    gen_rep, ref_rep = rep["generated"], rep["reference"]
    return "\n".join([
        f"lamp {report['model']['name']}: {report['generation']['frames']} frames "
        f"({report['generation']['lamp_seconds']:.0f} lamp-seconds at {report['model']['lamp_fps']:.3g} fps) "
        f"vs {report['reference']['lamp_rate_frames']} lamp-rate reference frames",
        f"motion per step: generated {m['generated_mean_abs_diff']:.2f}, reference "
        f"{m['reference_mean_abs_diff']:.2f}, ratio {_fmt(m['ratio'])}",
        f"frozen {fz['window_seconds']:g} s windows: generated {_pct(fz['generated_share'])}, "
        f"reference {_pct(fz['reference_share'])}",
        f"near-duplicates >= {rep['min_gap_steps']} steps apart: generated "
        f"{_pct(gen_rep and gen_rep['near_duplicate_share'])}, reference "
        f"{_pct(ref_rep and ref_rep['near_duplicate_share'])}",
        f"colour: mean RGB distance {col['mean_rgb_distance']:.1f}, histogram distance "
        f"{col['histogram_distance']:.2f} (reference A/B {col['reference_baseline_histogram_distance']:.2f})",
        f"sharpness (edge energy, generated / reference): {_fmt(sh['ratio'])} (reference A/B "
        f"{_fmt(sh['reference_baseline_ratio'])})",
        f"critic accuracy (0.5 = indistinguishable): frames {_acc(cr['frames'])} (reference A/B "
        f"{_acc(cr['reference_baseline_frames'])}){sharp_line}, clips {_acc(cr['clips'])} "
        f"(reference A/B {_acc(cr['reference_baseline_clips'])})",
        f"latent drift: max distance from reference {_fmt(report['latent_drift']['max_distance_from_reference'])}, "
        f"last window {_fmt(report['latent_drift']['last_distance_from_reference'])}",
    ])


def _acc(test: dict[str, Any]) -> str:
    """A critic's accuracy, with the spread across seeds when there were several."""
    spread = f" +- {test['accuracy_spread']:.2f}" if len(test["accuracy_runs"]) > 1 else ""
    return f"{test['accuracy']:.2f}{spread}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
