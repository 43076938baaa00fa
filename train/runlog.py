"""What a training run shows and leaves behind: a progress line, loss CSV and plot, image sheets, GIFs."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

PLOT_SIZE = (720, 360)
PLOT_MARGIN = 48
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
SHEET_BACKGROUND, SHEET_TEXT = (24, 24, 24), (230, 230, 230)
SHEET_LABEL_WIDTH = 150  # pixels left of a contact sheet's frames for the row labels


def format_seconds(seconds: float) -> str:
    """12:34 or 1:02:03."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """One status line per stage on stderr: step, losses, elapsed and ETA (a new line when not a tty)."""

    def __init__(self, stage: str, *, enabled: bool = True, stream=sys.stderr) -> None:
        self.stage, self.enabled, self.stream = stage, enabled, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = 0.0

    def update(self, done_fraction: float, elapsed_s: float, text: str, *, force: bool = False) -> None:
        """Show progress if enough time passed since the last line (or `force`)."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < (0.5 if self.tty else 15.0)):
            return
        self.last = now
        eta = elapsed_s * (1 - done_fraction) / done_fraction if done_fraction > 0 else math.inf
        eta_text = format_seconds(eta) if math.isfinite(eta) else "?"
        line = (f"[{self.stage}] {100 * done_fraction:5.1f}% {text} | "
                f"{format_seconds(elapsed_s)} elapsed, ETA {eta_text}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the status line."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


class LossLog:
    """Appends rows of named values to a CSV file and plots them to a PNG next to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        if path.exists():
            with path.open() as f:
                self.rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def add(self, row: dict[str, float]) -> None:
        """Record one row (must contain 'step')."""
        self.rows.append({k: float(v) for k, v in row.items()})

    def truncate(self, step: int) -> None:
        """Forget rows after `step` (used on resume, so replayed steps are not doubled)."""
        self.rows = [r for r in self.rows if r["step"] <= step]

    def save(self) -> None:
        """Write the CSV and the plot."""
        keys = sorted({k for r in self.rows for k in r} - {"step"})
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *keys])
            writer.writeheader()
            writer.writerows(self.rows)
        plot_curves(self.rows, keys, self.path.with_suffix(".png"))


def plot_curves(rows: Sequence[dict[str, float]], keys: Sequence[str], path: Path) -> None:
    """Each key's curve against step, each scaled to its own range, with its range in the legend."""
    img = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(img)
    w, h, m = *PLOT_SIZE, PLOT_MARGIN
    draw.rectangle([m, m // 2, w - m // 2, h - m], outline=(0, 0, 0))
    steps = [r["step"] for r in rows]
    if len(rows) >= 2 and steps[-1] > steps[0]:
        for i, key in enumerate(keys):
            pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
            if len(pts) < 2:
                continue
            lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
            span = (hi - lo) or 1.0
            xy = [(m + (s - steps[0]) / (steps[-1] - steps[0]) * (w - 1.5 * m),
                   h - m - (v - lo) / span * (h - 1.5 * m)) for s, v in pts]
            colour = COLOURS[i % len(COLOURS)]
            draw.line(xy, fill=colour, width=2)
            draw.text((m + 6, m // 2 + 4 + 12 * i), f"{key}: {lo:.4g} .. {hi:.4g}", fill=colour)
        draw.text((m, h - m + 8), f"step {int(steps[0])}", fill=(0, 0, 0))
        draw.text((w - m * 2, h - m + 8), f"step {int(steps[-1])}", fill=(0, 0, 0))
    img.save(path)


def contact_sheet(rows: Sequence[np.ndarray], *, labels: Sequence[str] = (), scale: int = 1,
                  gap: int = 2) -> Image.Image:
    """Rows of uint8 frames (N,S,S,3) as one grid image, each frame enlarged `scale` times (nearest
    neighbour); with `labels`, each row after its label."""
    side = rows[0].shape[1] * scale
    left = SHEET_LABEL_WIDTH if labels else 0
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (left + cols * (side + gap), len(rows) * (side + gap)), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, frames in enumerate(rows):
        top = r * (side + gap)
        if labels:
            draw.text((6, top + side // 2 - 6), labels[r], fill=SHEET_TEXT)
        for c, frame in enumerate(frames):
            tile = Image.fromarray(frame)
            sheet.paste(tile if scale == 1 else tile.resize((side, side), Image.NEAREST),
                        (left + c * (side + gap), top))
    return sheet
