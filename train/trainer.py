"""The training pipeline of a lamp: VAE, decoder refinement, sharpening, encoding, latent RNN, one checkpoint."""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lavalamp.models import __version__
from lavalamp.models.atomic import atomic_write_bytes
from lavalamp.models.checkpoint import DataInfo, Lamp, load_lamp, save_lamp
from lavalamp.models.conv import MAX_CHANNELS as MAX_CONV_CHANNELS
from lavalamp.models.dream import Dream, decode_frames, frames_to_float, frames_to_uint8
from lavalamp.models.grain import GRAIN_FRAMES, estimate_grain, sequence_grain
from lavalamp.models.fields import documented, field_problem, option
from lavalamp.models.latent import LatentStats, latent_stats, project_to_sphere, slerp
from lavalamp.models.limits import FRAME_SIZES
from lavalamp.models.motion import step_motion
from lavalamp.models.rnn import CELLS, HEADS, LatentRNN, LatentRNNConfig
from lavalamp.models.upsample import (MAX_UPSAMPLER_BLOCKS, MAX_UPSAMPLER_CHANNELS, MIN_CHANNELS, Upsampler,
                                      UpsamplerConfig)
from lavalamp.models.vae import VAE, VAEConfig
from lavalamp.models.video import write_video

from .footage import Footage, area_resize
from .distributed import World, barrier, mean_across, rank0_decides
from .losses import RefineLoss, RNNLoss, VAELoss
from .runlog import LossLog, Progress, contact_sheet
from .sharpen import Pairs, SharpenConfig, Sharpener

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
START_CONTEXTS = 64
START_CONTEXT_STEPS = 8
SEED_STREAMS = ("vae weights", "vae steps", "refine steps", "sharpen weights", "sharpen steps",
                "rnn weights", "rnn steps", "rnn validation", "start contexts", "calibration", "samples",
                "grain")
"""The run's random streams, one child each of SeedSequence(--seed), spawned in this order: a stage's
initial weights (torch), its steps (batches in NumPy and noise in torch, each process its own), the
RNN's validation windows, the lamp's start contexts, the calibration dreams, the sample dreams and
the dream whose fixed texture the grain makes up for."""
DECODER_LOSSES = ("l1", "adversarial")
MEASURED_CHOICES = ("auto", "none")
INIT_TRAINS = ("sharpening", "rnn")
FIXED_DETAIL_FRAMES = 2048
MAX_SEED = 2**63 - 1
SHARPEN_VALIDATION_FRAMES = 48
VALIDATE_EVERY_STEPS = 100
CALIBRATION_TEMPERATURES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08,
                            0.05)
CALIBRATION_TOLERANCE = 1.2
"""Most one-step motion a calibrated dream may have, as a multiple of its footage's: inside the
0.8-1.25 band eval accepts, with room for the calibration's own noise (a cooler temperature than
needed costs the long run its spread: see calibrate_temperature)."""
CALIBRATION_DREAMS = 16
CALIBRATION_SETTLE_STEPS = 2000
"""Undecoded steps each calibration dream runs first: the motion it settles into, not its start's."""
CALIBRATION_STEPS = 80
TEXTURE_STRIDE = 4


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every knob of a training run (saved in the run folder's settings.json by `lavalamp train`)."""

    frame_size: int = documented(64, "Side of the lamp's square frames in pixels: 64, 128 or 256 (above "
                                     "base_size, an upsampler trained in the sharpening stage makes them "
                                     "from the decoder's frames).")
    base_size: int = documented(64, "Side of the VAE's frames in pixels (64 keeps the decoder cheap; the "
                                    "upsampler adds the rest).")
    frame_step: int = documented(6, "The RNN steps every frame_step-th source frame (duralava: every 6th "
                                    "of 30 fps).", least=1)
    latent_size: int = documented(32, "Dimensions of the VAE latent.", least=1)
    base_channels: int = documented(32, "VAE channels at full resolution (doubling at each halving, up to "
                                        "256).", least=1, most=MAX_CONV_CHANNELS)
    kl_weight: float = documented(1.0, "Weight of the KL term against the summed squared pixel error of a "
                                       "frame.", least=0)
    vae_batch: int = documented(64, "Frames per VAE step.", least=1)
    vae_lr: float = documented(2e-3, "Peak learning rate of the VAE (cosine decay over the stage's "
                                     "budget).", above=0)
    hidden_size: int = documented(128, "Units of the RNN core (128 keeps --skip above 20,000 steps/s on "
                                       "one CPU core).", least=1)
    cell: str = documented("gru", "RNN core: 'gru' or 'lstm'.", choices=CELLS)
    head: str = documented("mdn", "RNN head: 'mdn' (mixture density, sampled) or 'deterministic' "
                                  "(normality penalties).", choices=HEADS)
    mixtures: int = documented(5, "Gaussians of the mixture-density head.", least=1)
    rnn_batch: int = documented(32, "Windows per RNN step.", least=1)
    window: int = documented(32, "Latent steps per RNN training window.", least=2)
    warmup: int = documented(8, "Real latents fed before a free-running rollout starts.", least=1)
    rollout: int = documented(16, "Steps the RNN runs on its own samples inside each window (0 = teacher "
                                  "forcing only).", least=0)
    rollout_weight: float = documented(1.0, "Weight of the rollout loss against the teacher-forced loss.",
                                       least=0)
    context_noise: float = documented(0.05, "Std of noise added to the input latents (the model learns to "
                                            "ignore small errors).", least=0)
    normality_weight: float = documented(1.0, "Weight of duralava's normality penalties (deterministic "
                                              "head only).", least=0)
    rnn_lr: float = documented(1e-3, "Peak learning rate of the RNN (cosine decay over the stage's "
                                     "budget).", above=0)
    refine_steps: int = documented(500, "Steps sharpening the decoder on the encoder's means after the VAE "
                                        "(0 = none).", least=0)
    refine_lr: float = documented(1e-4, "Peak learning rate of the decoder refinement.", above=0)
    decoder_loss: str = documented("adversarial", "How the sharpening stage trains the upsampler (or, "
                                                  "without one, the decoder): 'l1' (L1 and gradient "
                                                  "difference) or 'adversarial' (also multi-scale patch "
                                                  "discriminators). With 'l1' and no upsampler there is no "
                                                  "sharpening stage.", choices=DECODER_LOSSES)
    upsampler_channels: int = documented(32, "Upsampler channels at base_size (halving at each doubling).",
                                         least=MIN_CHANNELS, most=MAX_UPSAMPLER_CHANNELS)
    upsampler_blocks: int = documented(3, "Upsampler 3x3 convolutions at base_size.", least=1,
                                       most=MAX_UPSAMPLER_BLOCKS)
    sharpen_steps: int = documented(2000, "Steps of the sharpening stage when no minutes budget is given.",
                                    least=0)
    sharpen_share: float = documented(0.3, "Share of a --minutes budget given to the sharpening stage "
                                           "(when there is one).", least=0, below=1)
    sharpen_lr: float = documented(5e-4, "Peak learning rate of the sharpened module.", above=0)
    sharpen_batch: int = documented(16, "Crops per sharpening step.", least=1)
    sharpen_crop: int = documented(96, "Side of a sharpening crop in pixels of frame_size (the frame's "
                                       "side or more: whole frames).", least=8)
    sharpen_frames: int = documented(4096, "Footage frames at frame_size kept for the sharpening stage, "
                                           "spread over the clips.", least=1)
    gdl_weight: float = documented(1.0, "Weight of the gradient difference loss (blurred edges) against "
                                        "L1.", least=0)
    adversarial_weight: float = documented(0.1, "Weight of the adversarial loss, on top of its adaptive "
                                                "balance against the reconstruction.", least=0)
    adversarial_start: float = documented(0.25, "Share of the sharpening stage trained on reconstruction "
                                                "only before the discriminators join.", least=0, below=1)
    disc_lr: float = documented(2e-4, "Learning rate of the discriminators.", above=0)
    sharpen_clean_share: float = documented(0.0, "Share of the upsampler's training frames that it "
                                                 "gets as the footage itself reduced to base_size, "
                                                 "not as the VAE's reconstruction (the edges are then "
                                                 "exactly where the footage's are).", least=0, most=1)
    grain: str = documented("auto", "The lamp's fixed grain: 'auto' (the footage's own, estimated at "
                                    "frame_size and added to every frame as one fixed pattern) or "
                                    "'none' (clean frames).", choices=MEASURED_CHOICES)
    fixed_detail: str = documented("auto", "The lamp's fixed detail: 'auto' (what the footage shows at "
                                           "each pixel and the lamp's reconstructions of it miss, on "
                                           "average, such as the glass's outline at frame_size, added "
                                           "to every frame) or 'none'.", choices=MEASURED_CHOICES)
    init_from: str = documented("", "A finished lamp of base_size whose encoder and RNN this run keeps: "
                                    "only the sharpening stage trains (an upsampler when frame_size "
                                    "is above base_size, else the lamp's own decoder).")
    init_trains: str = documented("sharpening", "What a run with init_from trains: 'sharpening' (above) "
                                                "or 'rnn' (a new latent RNN on this run's footage at "
                                                "base_size, encoded by the lamp's own encoder, with new "
                                                "start contexts, latent reference and temperature; its "
                                                "decoder, upsampler, fixed detail and grain stay). For "
                                                "'rnn' the footage's frame rate over frame_step must be "
                                                "the lamp's rate.", choices=INIT_TRAINS)
    vae_share: float = documented(0.6, "Share of a --minutes budget given to the VAE and the refinement; "
                                       "the RNN gets the rest.", above=0, below=1)
    refine_share: float = documented(0.06, "Share of a --minutes budget given to the refinement, out of "
                                           "vae_share (0 = none).", least=0)
    minutes: float | None = documented(None, "Total wall-clock budget of the run in minutes (None = use "
                                             "step budgets).", above=0)
    vae_steps: int = documented(2000, "VAE optimizer steps when no minutes budget is given.", least=0)
    rnn_steps: int = documented(2000, "RNN optimizer steps when no minutes budget is given.", least=0)
    calibration_dreams: int = documented(CALIBRATION_DREAMS, "Dreams the temperature is calibrated on (more: "
                                                             "a steadier choice, and slower).", least=1)
    seed: int = documented(0, "Seed of every random choice; the same seed and data reproduce the run.",
                           least=0, most=MAX_SEED)
    name: str = documented("lamp", "Name stored in the checkpoint and shown in metrics.")
    checkpoint_every_s: float = documented(60.0, "Seconds between resumable state saves (a crash loses at "
                                                 "most this much training).", least=0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = field_problem(self, f)
            if problem:
                raise ValueError(f"{problem} ({option(f.name)})")
        self._check_together()
        for stage, build in (("VAE", self.vae_config), ("RNN", self.rnn_config),
                             ("sharpening", self.sharpen_config), ("upsampler", self.upsampler_config)):
            try:
                if stage != "upsampler" or self.upsampled:
                    build()
            except ValueError as exc:
                raise ValueError(f"{stage} settings: {exc}") from None

    def _check_together(self) -> None:
        """The rules that tie fields together (each field's own bounds are in its metadata)."""
        if {self.base_size, self.frame_size} - set(FRAME_SIZES) or self.frame_size < self.base_size:
            raise ValueError(f"frame sizes must be in {FRAME_SIZES} with frame_size >= base_size, got "
                             f"frame_size {self.frame_size} (--frame-size) and base_size "
                             f"{self.base_size} (--base-size)")
        if self.init_trains == "rnn" and not self.init_from:
            raise ValueError("init_trains 'rnn' needs init_from: the lamp whose RNN is replaced")
        if self.new_rnn and self.frame_size != self.base_size:
            raise ValueError(f"init_trains 'rnn' trains on footage at base_size ({self.base_size}), and "
                             f"the lamp keeps its own frame size: leave out frame_size, got "
                             f"{self.frame_size} (--frame-size)")
        if self.init_from and not (self.sharpens or self.new_rnn):
            raise ValueError("init_from needs something to train: a frame_size above base_size (adds "
                             "an upsampler) or --decoder-loss adversarial (sharpens the decoder)")
        if self.warmup >= self.window:
            raise ValueError(f"warmup must be below window ({self.window}), got {self.warmup} (--warmup)")
        if self.refine_share >= self.vae_share:
            raise ValueError(f"refine_share must be below vae_share ({self.vae_share}), got "
                             f"{self.refine_share} (--refine-share)")

    def vae_config(self) -> VAEConfig:
        """Architecture of the decoder stage."""
        return VAEConfig(frame_size=self.base_size, latent_size=self.latent_size,
                         base_channels=self.base_channels)

    def upsampler_config(self) -> UpsamplerConfig:
        """Architecture of the upsampler (frame_size above base_size only)."""
        return UpsamplerConfig(in_size=self.base_size, out_size=self.frame_size,
                               channels=self.upsampler_channels, blocks=self.upsampler_blocks)

    def sharpen_config(self) -> SharpenConfig:
        """How the sharpening stage trains."""
        return SharpenConfig(adversarial=self.decoder_loss == "adversarial", batch=self.sharpen_batch,
                             crop=self.sharpen_crop, lr=self.sharpen_lr, disc_lr=self.disc_lr,
                             gdl_weight=self.gdl_weight, adversarial_weight=self.adversarial_weight,
                             adversarial_start=self.adversarial_start)

    @property
    def upsampled(self) -> bool:
        """Whether the lamp gets an upsampler."""
        return self.frame_size != self.base_size

    @property
    def sharpens(self) -> bool:
        """Whether the run has a sharpening stage."""
        return not self.new_rnn and (self.upsampled or self.decoder_loss == "adversarial")

    @property
    def new_rnn(self) -> bool:
        """Whether the run gives the lamp named by init_from a new RNN (and trains nothing else)."""
        return bool(self.init_from) and self.init_trains == "rnn"

    def rnn_config(self) -> LatentRNNConfig:
        """Architecture of the latent RNN stage."""
        return LatentRNNConfig(latent_size=self.latent_size, hidden_size=self.hidden_size,
                               cell=self.cell, head=self.head, mixtures=self.mixtures)

    @property
    def min_frames(self) -> int:
        """Frames a clip needs to hold one RNN training window."""
        return self.window * self.frame_step + 1


@dataclass
class Run:
    """One training run: its folder, settings, process world and device."""

    folder: Path
    config: TrainConfig
    world: World
    device: torch.device
    progress: bool = True

    def seeds(self, stream: str, *, per_process: bool = False) -> np.random.SeedSequence:
        """The run's random stream `stream` (one of SEED_STREAMS); with `per_process`, this
        process's own child of it."""
        return seed_stream(self.config.seed, stream, self.world.rank if per_process else 0)

    def stage_folder(self, stage: str) -> Path:
        """The folder of one stage's files (created on the main process)."""
        path = self.folder / stage
        if self.world.main:
            path.mkdir(parents=True, exist_ok=True)
        return path


def seed_stream(seed: int, stream: str, rank: int = 0) -> np.random.SeedSequence:
    """Stream `stream` (one of SEED_STREAMS) of a run seeded `seed`, for process `rank`."""
    child = np.random.SeedSequence(seed).spawn(len(SEED_STREAMS))[SEED_STREAMS.index(stream)]
    return child.spawn(rank + 1)[rank]


def int_seed(stream: np.random.SeedSequence) -> int:
    """One integer seed (0 .. 2**63 - 1) drawn from a stream, for torch or a Dream."""
    return int(stream.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Budget:
    """When a stage is done: a step count, or a share of the run's minutes."""

    def __init__(self, *, steps: int, seconds: float | None) -> None:
        self.steps, self.seconds = steps, seconds

    def fraction(self, step: int, elapsed_s: float) -> float:
        """How much of the budget is spent, 0..1."""
        if self.seconds is not None:
            return min(1.0, elapsed_s / self.seconds)
        return min(1.0, step / max(1, self.steps))

    def lr_scale(self, step: int, elapsed_s: float) -> float:
        """Cosine decay from 1 to 0.05 over the budget, after a short warm-up."""
        f = self.fraction(step, elapsed_s)
        warm = min(1.0, (step + 1) / 50)
        return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f)))


def stage_budget(run: Run, stage: str) -> Budget:
    """The budget of 'vae', 'refine', 'sharpen' or 'rnn' from the run's config."""
    c = run.config
    if c.minutes is None:
        steps = {"vae": c.vae_steps, "refine": c.refine_steps, "rnn": c.rnn_steps,
                 "sharpen": c.sharpen_steps}
        return Budget(steps=steps[stage], seconds=None)
    if c.new_rnn:
        return Budget(steps=0, seconds=c.minutes * 60 * (stage == "rnn"))
    sharpen = (1.0 if c.init_from else c.sharpen_share) if c.sharpens else 0.0
    share = {"vae": c.vae_share - c.refine_share, "refine": c.refine_share,
             "rnn": 1 - c.vae_share}.get(stage, 0.0) * (1 - sharpen)
    return Budget(steps=0, seconds=c.minutes * 60 * (sharpen if stage == "sharpen" else share))


# ----------------------------------------------------------------------------------------- state
def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically write a stage's resumable state (tensors and plain values only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any] | None:
    """A stage's saved state, or None; never unpickles arbitrary objects."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------- the loop
def optimize(run: Run, stage: str, model: nn.Module, loss_module: nn.Module,
             batch: Callable[[np.random.Generator], torch.Tensor], lr: float,
             validate: Callable[[], dict[str, float]]) -> dict[str, Any]:
    """Train `model` by minimizing `loss_module(batch(rng))` within the stage budget; resumable."""
    folder = run.stage_folder(stage)
    budget = stage_budget(run, stage)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    batches, noise = run.seeds(f"{stage} steps", per_process=True).spawn(2)
    rng = np.random.default_rng(batches)
    torch.manual_seed(int_seed(noise))
    state = load_state(folder / STATE_FILE)
    step, elapsed, summary = 0, 0.0, {}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, elapsed, summary = state["step"], state["elapsed_s"], state["summary"]
        if state["done"]:
            return summary
        log.info("%s: resuming at step %d (%.0f s trained)", stage, step, elapsed)
    trainer = _wrap(run, loss_module)
    losses = LossLog(folder / "losses.csv")
    losses.truncate(step)
    progress = Progress(stage, enabled=run.progress and run.world.main)
    started, last_save, running = time.monotonic() - elapsed, time.monotonic(), {}
    model.train()
    while True:
        stop, save = rank0_decides(run.world, budget.fraction(step, elapsed) >= 1.0,
                                   time.monotonic() - last_save > run.config.checkpoint_every_s)
        if stop:
            break
        if save:
            summary = _checkpoint_stage(run, folder, model, optimizer, rng, step, elapsed, losses,
                                        validate, done=False)
            last_save = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = lr * budget.lr_scale(step, elapsed)
        loss, parts = trainer(batch(rng).to(run.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        elapsed = time.monotonic() - started
        running = {k: 0.9 * running.get(k, float(v)) + 0.1 * float(v) for k, v in parts.items()}
        progress.update(budget.fraction(step, elapsed), elapsed,
                        f"step {step} " + " ".join(f"{k} {v:.4g}" for k, v in running.items()))
        if step % 100 == 0:
            losses.add({"step": step, **{f"train_{k}": v for k, v in running.items()}})
    progress.close()
    model.eval()
    summary = _checkpoint_stage(run, folder, model, optimizer, rng, step, elapsed, losses,
                                validate, done=True)
    log.info("%s: done after %d steps in %.0f s: %s", stage, step, elapsed, summary)
    return summary


def _wrap(run: Run, loss_module: nn.Module) -> nn.Module:
    if not run.world.distributed:
        return loss_module
    ids = [run.device.index] if run.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(loss_module, device_ids=ids)


def _checkpoint_stage(run: Run, folder: Path, model: nn.Module, optimizer, rng, step: int,
                      elapsed: float, losses: LossLog, validate, *, done: bool) -> dict[str, Any]:
    """Validate, log and save the stage's state (main process writes; all processes agree)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        summary = {k: mean_across(run.world, v) for k, v in validate().items()}
    model.train(was_training)
    summary.update(step=step, seconds=round(elapsed, 1))
    if run.world.main:
        losses.add({"step": step, **{f"val_{k}": v for k, v in summary.items()
                                     if k not in ("step", "seconds")}})
        losses.save()
        save_state(folder / STATE_FILE, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "step": step,
            "elapsed_s": elapsed, "summary": summary, "done": done})
    barrier(run.world)
    return summary


# ------------------------------------------------------------------------------------- stages
def train_vae(run: Run, pool: np.ndarray, val: np.ndarray) -> tuple[VAE, dict[str, Any]]:
    """Stage 1: the VAE that maps frames to latents and back (frames from `image_frames`)."""
    torch.manual_seed(int_seed(run.seeds("vae weights")))
    vae = VAE(run.config.vae_config()).to(run.device)
    loss = VAELoss(vae, kl_weight=run.config.kl_weight)
    summary = _optimize_on_frames(run, "vae", vae, loss, run.config.vae_lr, pool, val, ("psnr", "kl"))
    vae.eval()
    if run.world.main:
        _vae_pictures(run, vae, val)
    return vae, summary


class _KeptStatistics(nn.Module):
    """A decoder trained with its batch-norm statistics kept as the VAE learned them."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def train(self, mode: bool = True) -> "_KeptStatistics":
        return super().train(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,D) -> (B,3,S,S): the decoder's frames."""
        return self.decoder(z)


def refine_decoder(run: Run, vae: VAE, pool: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    """Stage 1b: the decoder sharpened on the encoder's means (RefineLoss); the encoder stays as is."""
    budget = stage_budget(run, "refine")
    if not (budget.steps or budget.seconds):
        return {"skipped": "no refinement budget"}
    vae.encoder.requires_grad_(False)
    summary = _optimize_on_frames(run, "refine", _KeptStatistics(vae.decoder), RefineLoss(vae),
                                  run.config.refine_lr, pool, val, ("psnr", "l1"))
    vae.eval()
    if run.world.main:
        _vae_pictures(run, vae, val, "refine")
    return summary


def image_frames(clips: Footage) -> tuple[np.ndarray, np.ndarray]:
    """Training frames of every clip in one pool, and up to 256 validation frames spread in time."""
    pool = np.concatenate(clips.train)
    val = np.concatenate(clips.val) if clips.val else pool[-256:]
    return pool, val[np.linspace(0, len(val) - 1, min(256, len(val))).astype(int)]


def _optimize_on_frames(run: Run, stage: str, model: nn.Module, loss: nn.Module, lr: float,
                        pool: np.ndarray, val: np.ndarray, reported: tuple[str, ...]) -> dict[str, Any]:
    """`optimize` an image stage on random frames of the pool, validated on `val`."""

    def batch(rng: np.random.Generator) -> torch.Tensor:
        return frames_to_float(pool[rng.integers(len(pool), size=run.config.vae_batch)])

    def validate() -> dict[str, float]:
        _, parts = loss(frames_to_float(val).to(run.device))
        return {k: float(parts[k]) for k in reported}

    return optimize(run, stage, model, loss, batch, lr, validate)


@torch.no_grad()
def _vae_pictures(run: Run, vae: VAE, val: np.ndarray, stage: str = "vae") -> None:
    folder = run.stage_folder(stage)
    pick = val[np.linspace(0, len(val) - 1, 8).astype(int)]
    recon = frames_to_uint8(vae(frames_to_float(pick).to(run.device))[0])
    contact_sheet([pick, recon], scale=2).save(folder / "samples.png")
    mu, _ = vae.encode(frames_to_float(pick).to(run.device))
    walk = [slerp(mu[i], mu[(i + 1) % len(mu)], t) for i in range(len(mu)) for t in np.linspace(0, 1, 12)]
    write_video(folder / "dream.gif", frames_to_uint8(vae.decode(torch.stack(walk))), fps=12.0)


@torch.no_grad()
def encode_footage(run: Run, vae: VAE, clips: Footage) -> dict[str, list[np.ndarray]]:
    """Stage 2: every frame of every clip to its latent u (T,D), saved as latents.npz (resumable)."""
    path = run.folder / "latents.npz"
    if run.world.main and not path.exists():
        out = {f"{part}_{i}": _encode_clip(run, vae, clip)
               for part in ("train", "val") for i, clip in enumerate(getattr(clips, part))}
        buffer = io.BytesIO()
        np.savez(buffer, **out)
        atomic_write_bytes(path, buffer.getvalue())
    barrier(run.world)
    with np.load(path) as data:
        return {part: [data[k] for k in sorted((k for k in data.files if k.startswith(part)),
                                               key=lambda k: int(k.split("_")[1]))]
                for part in ("train", "val")}


def _encode_clip(run: Run, vae: VAE, clip: np.ndarray) -> np.ndarray:
    chunks = [vae.encode(frames_to_float(clip[i:i + 256]).to(run.device))[0] for i in range(0, len(clip), 256)]
    mu = torch.cat(chunks)
    return (project_to_sphere(mu) if vae.config.sphere else mu).cpu().numpy().astype(np.float32)


def sample_windows(sequences: list[np.ndarray], rng: np.random.Generator, count: int, length: int,
                   step: int) -> np.ndarray:
    """`count` windows of `length` latents, `step` source frames apart, never across clips."""
    span = (length - 1) * step + 1
    usable = [s for s in sequences if len(s) >= span]
    weights = np.array([len(s) - span + 1 for s in usable], dtype=float)
    picks = rng.choice(len(usable), size=count, p=weights / weights.sum())
    out = np.empty((count, length, usable[0].shape[1]), dtype=np.float32)
    for i, k in enumerate(picks):
        start = rng.integers(len(usable[k]) - span + 1)
        out[i] = usable[k][start:start + span:step]
    return out


def train_rnn(run: Run, latents: dict[str, list[np.ndarray]]) -> tuple[LatentRNN, dict[str, Any]]:
    """Stage 3: the latent RNN on windows of the encoded footage, with free-running rollouts."""
    c = run.config
    torch.manual_seed(int_seed(run.seeds("rnn weights")))
    rnn = LatentRNN(c.rnn_config()).to(run.device)
    loss = RNNLoss(rnn, warmup=c.warmup, rollout=c.rollout, rollout_weight=c.rollout_weight,
                   context_noise=c.context_noise, normality_weight=c.normality_weight)
    fits = any(len(s) >= c.min_frames for s in latents["val"])  # one window, frame_step apart
    val_source = latents["val"] if fits else latents["train"]
    val = torch.from_numpy(sample_windows(val_source, np.random.default_rng(run.seeds("rnn validation")),
                                          64, c.window + 1, c.frame_step))

    def batch(rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(sample_windows(latents["train"], rng, c.rnn_batch, c.window + 1,
                                               c.frame_step))

    def validate() -> dict[str, float]:
        _, parts = loss(val.to(run.device))
        return {k: float(v) for k, v in parts.items()}

    summary = optimize(run, "rnn", rnn, loss, batch, c.rnn_lr, validate)
    rnn.eval()
    return rnn, summary


def build_lamp(run: Run, vae: VAE, rnn: LatentRNN, latents: dict[str, list[np.ndarray]],
               clips: Footage, summaries: dict[str, Any]) -> Lamp:
    """Everything the daemon needs, in one Lamp."""
    c = run.config
    reference, contexts = dream_starts(run, latents)
    d = c.latent_size
    training = {"config": dataclasses.asdict(c), "stages": summaries, "package_version": __version__,
                "processes": run.world.size, "device": run.device.type}
    return Lamp(name=c.name, decoder_kind="vae", decoder_config=vae.config, decoder=vae.decoder,
                rnn=rnn, latent_mean=torch.zeros(d), latent_std=torch.ones(d), reference=reference,
                start_contexts=contexts,
                data=DataInfo(fps=clips.fps, frame_step=c.frame_step, description=clips.description),
                encoder=vae.encoder, training=training).to(run.device)


def dream_starts(run: Run, latents: dict[str, list[np.ndarray]]) -> tuple[LatentStats, torch.Tensor]:
    """The latent reference statistics (the footage's latents at the lamp's rate) and the start
    contexts (START_CONTEXTS real windows of START_CONTEXT_STEPS latents) of a lamp's RNN."""
    c = run.config
    stepped = np.concatenate([s[::c.frame_step] for s in latents["train"]])
    contexts = sample_windows(latents["train"], np.random.default_rng(run.seeds("start contexts")),
                              START_CONTEXTS, START_CONTEXT_STEPS, c.frame_step)
    return latent_stats(torch.from_numpy(stepped)), torch.from_numpy(contexts)


@torch.no_grad()
def calibrate_temperature(lamp: Lamp, clips: list[np.ndarray], frame_step: int, seed: int, *,
                          base: bool = False, dreams: int = CALIBRATION_DREAMS) -> dict[str, Any]:
    """Set lamp.temperature so the dream moves per step like the training footage (`dreams` dreams
    seeded from `seed`).

    Too hot a mixture-density head adds step-to-step jitter that the footage does not have; too
    cold a head shrinks the dream's spread over the long run, into averaged, softer states than the
    footage shows. This takes the hottest temperature whose one-step motion is at most
    CALIBRATION_TOLERANCE times the footage's at the lamp's frame rate (or, when none is, the one
    closest to it). The motion is the one each dream settles into after CALIBRATION_SETTLE_STEPS
    (a dream moves more in its first steps from a start context than in the days after), over
    many short dreams (lamp states differ in how much they move), on every other pair of
    consecutive steps (half the decoding: a 256 px lamp's frames are costly). With `base`, the
    frames are the decoder's, before any upsampler (for footage at base_size).
    """
    if lamp.rnn.config.head != "mdn":
        return {"temperature": 1.0, "note": "deterministic head: nothing to calibrate"}
    # the lamp's frames (a new lamp's upsampler is added afterwards): the footage clips' size
    target = float(np.mean([step_motion(c[::frame_step]).mean() for c in clips if len(c) > frame_step]))
    ratios = {}
    for t in CALIBRATION_TEMPERATURES:
        lamp.temperature = t
        latents = []
        for stream in np.random.SeedSequence(seed).spawn(dreams):
            dream = Dream(lamp, seed=int_seed(stream))
            dream.skip(CALIBRATION_SETTLE_STEPS)
            pairs = dream.advance(CALIBRATION_STEPS).reshape(-1, 2, lamp.latent_size)[::2]
            latents.append(pairs.flatten(0, 1))
        frames = decode_frames(lamp, torch.cat(latents), base=base)
        frames = frames.reshape(dreams, -1, *frames.shape[1:])
        ratios[t] = float(np.mean([step_motion(f)[::2].mean() for f in frames]) / max(target, 1e-6))
    calm = [t for t, r in ratios.items() if r <= CALIBRATION_TOLERANCE]
    lamp.temperature = max(calm) if calm else \
        min(ratios, key=lambda t: abs(math.log(max(ratios[t], 1e-6))))
    log.info("temperature %.3g: dream/footage motion per step %s", lamp.temperature,
             {f"{t:g}": round(r, 2) for t, r in ratios.items()})
    return {"temperature": lamp.temperature, "footage_motion_per_step": float(target),
            "motion_ratio_by_temperature": {f"{t:g}": r for t, r in ratios.items()}}


@torch.no_grad()
def _dream_pictures(run: Run, lamp: Lamp, stage: str) -> None:
    folder = run.stage_folder(stage)
    dream = Dream(lamp, seed=int_seed(run.seeds("samples")))
    frames = dream.decode(dream.advance(160))
    contact_sheet([frames[:8], frames[::20][:8]], scale=2).save(folder / "dream.png")
    write_video(folder / "dream.gif", frames, fps=max(lamp.data.lamp_fps * 2, 5.0))


def sharpen_pairs(run: Run, vae: VAE, clips: Footage) -> Pairs:
    """Footage frames at the lamp's size and what the sharpened module gets for each (see sharpen)."""
    c = run.config
    val_clips = clips.val or [clips.train[-1]]
    frames = spread_frames(clips.train, c.sharpen_frames)
    val = spread_frames(val_clips, SHARPEN_VALIDATION_FRAMES)
    share = c.sharpen_clean_share if c.upsampled else 0.0
    clean = np.diff(np.floor(np.arange(len(frames) + 1) * share)) > 0  # `share` of them, evenly spread
    return Pairs(inputs=_sharpen_inputs(run, vae, frames, clean), targets=frames,
                 val_inputs=_sharpen_inputs(run, vae, val), val_targets=val)


def spread_frames(clips: list[np.ndarray], count: int) -> np.ndarray:
    """Up to `count` frames spread evenly over the clips taken end to end."""
    lengths = np.array([len(clip) for clip in clips])
    picks = np.unique(np.linspace(0, lengths.sum() - 1, min(count, lengths.sum())).round().astype(int))
    which = np.searchsorted(np.cumsum(lengths), picks, side="right")
    offsets = picks - np.concatenate([[0], np.cumsum(lengths)])[which]
    return np.stack([clips[k][i] for k, i in zip(which, offsets)])


@torch.no_grad()
def _sharpen_inputs(run: Run, vae: VAE, frames: np.ndarray,
                    clean: np.ndarray | None = None) -> torch.Tensor:
    """The encoder's means of the frames (at the VAE's size), decoded when an upsampler follows;
    where `clean` is true, the frame reduced to the VAE's size itself."""
    small = area_resize(frames, run.config.base_size)
    out = []
    for i in range(0, len(small), 256):
        x = frames_to_float(small[i:i + 256]).to(run.device)
        mu = vae.encode(x)[0]
        if not run.config.upsampled:
            out.append(mu.cpu())
            continue
        decoded = vae.decode(mu)
        if clean is not None:
            keep = torch.from_numpy(clean[i:i + 256]).to(run.device)
            decoded[keep] = x[keep]
        out.append(decoded.half().cpu())
    return torch.cat(out)


def sharpen_stage(run: Run, vae: VAE, clips: Footage) -> tuple[Upsampler | None, dict[str, Any]]:
    """Stage 1c: the upsampler (or the decoder) sharpened against discriminators; resumable."""
    c = run.config
    torch.manual_seed(int_seed(run.seeds("sharpen weights")))
    upsampler = Upsampler(c.upsampler_config()).to(run.device) if c.upsampled else None
    if not c.sharpens:
        return None, {"skipped": "no upsampler and decoder_loss l1"}
    if not run.world.main:  # one process trains it; the others only wait (it is the smallest stage)
        barrier(run.world)
        return upsampler, {"skipped": "trained on the main process"}
    module = upsampler if upsampler is not None else _KeptStatistics(vae.decoder)
    folder = run.stage_folder("sharpen")
    state = load_state(folder / STATE_FILE)
    if state is not None and state["done"]:
        module.load_state_dict(state["sharpener"]["module"])
        module.eval()
        barrier(run.world)
        return upsampler, state["summary"]
    pairs = sharpen_pairs(run, vae, clips)
    sharpener = Sharpener(module, pairs, c.sharpen_config(), run.device)
    summary = _sharpen_loop(run, folder, sharpener, state)
    _sharpen_pictures(folder, sharpener)
    barrier(run.world)
    return upsampler, summary


def _sharpen_loop(run: Run, folder: Path, sharpener: Sharpener, state: dict | None) -> dict[str, Any]:
    """Steps until the budget is spent or a failure is seen (then the last good weights stay)."""
    c, config = run.config, sharpener.config
    budget = stage_budget(run, "sharpen")
    batches, noise = run.seeds("sharpen steps").spawn(2)
    rng = np.random.default_rng(batches)
    torch.manual_seed(int_seed(noise))
    step, elapsed, failure = 0, 0.0, None
    if state is not None:
        sharpener.load_state_dict(state["sharpener"])
        rng.bit_generator.state, step, elapsed = state["rng"], state["step"], state["elapsed_s"]
        torch.set_rng_state(state["torch_rng"])
        log.info("sharpen: resuming at step %d (%.0f s trained)", step, elapsed)
    losses = LossLog(folder / "losses.csv")
    losses.truncate(step)
    progress = Progress("sharpen", enabled=run.progress)
    started, last_save, running = time.monotonic() - elapsed, time.monotonic(), {}

    def save(done: bool, summary: dict[str, Any]) -> None:
        losses.save()
        save_state(folder / STATE_FILE, {
            "sharpener": sharpener.state_dict(), "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "step": step, "elapsed_s": elapsed, "done": done,
            "summary": summary})

    sharpener.module.train()
    while budget.fraction(step, elapsed) < 1.0 and failure is None:
        adversarial = config.adversarial and budget.fraction(step, elapsed) >= config.adversarial_start
        try:
            parts = sharpener.step(rng, adversarial=adversarial, lr_scale=budget.lr_scale(step, elapsed))
        except FloatingPointError as exc:
            failure = str(exc)
            break
        step += 1
        elapsed = time.monotonic() - started
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
        progress.update(budget.fraction(step, elapsed), elapsed,
                        f"step {step} " + " ".join(f"{k} {v:.4g}" for k, v in running.items()))
        if step % VALIDATE_EVERY_STEPS == 0:
            val = sharpener.validate()
            failure = sharpener.failure(val, adversarial=adversarial)
            losses.add({"step": step, **{f"train_{k}": v for k, v in running.items()},
                        **{f"val_{k}": v for k, v in val.items()}})
            _sharpen_pictures(folder, sharpener)
        if time.monotonic() - last_save > c.checkpoint_every_s:
            save(False, {})
            last_save = time.monotonic()
    progress.close()
    if failure is not None:
        log.warning("sharpen: %s at step %d; keeping the weights of the last good validation",
                    failure, step)
        sharpener.restore_last_good()
    sharpener.module.eval()
    summary = {**sharpener.validate(), "step": step, "seconds": round(elapsed, 1),
               "adversarial": config.adversarial, "failure": failure}
    losses.add({"step": step, **{f"val_{k}": summary[k] for k in ("l1", "edge_ratio", "diversity")}})
    save(True, summary)
    log.info("sharpen: done after %d steps in %.0f s: %s", step, elapsed, summary)
    return summary


@torch.no_grad()
def _sharpen_pictures(folder: Path, sharpener: Sharpener) -> None:
    """samples.png: footage, its decoded frame plainly enlarged, and the sharpened frame."""
    pairs = sharpener.pairs
    pick = np.linspace(0, len(pairs.val_targets) - 1, 6).round().astype(int)
    inputs = pairs.val_inputs[pick].float().to(sharpener.device)
    was_training = sharpener.module.training
    sharpener.module.eval()
    rows = [pairs.val_targets[pick], frames_to_uint8(sharpener.module(inputs))]
    sharpener.module.train(was_training)
    if pairs.upsampling:
        size = pairs.val_targets.shape[1]
        rows.insert(1, frames_to_uint8(torch.nn.functional.interpolate(
            inputs, size=(size, size), mode="bilinear", align_corners=False)))
    contact_sheet(rows, scale=1 if pairs.val_targets.shape[1] > 64 else 2).save(folder / "samples.png")


def check_init_lamp(c: TrainConfig, lamp: Lamp, footage_fps: float | None = None) -> None:
    """Refuse (ValueError) an init_from lamp the run cannot build on: sharpening needs a lamp of
    base_size with an encoder and no upsampler yet; a new RNN needs an encoder, decoder frames of
    base_size and footage (at `footage_fps`, when given) that steps at the lamp's own rate."""
    if c.new_rnn:
        if lamp.encoder is None or lamp.base_size != c.base_size:
            raise ValueError(f"{c.init_from}: a new RNN needs a lamp with an encoder and decoder size "
                             f"{c.base_size} (it has decoder size {lamp.base_size}, encoder "
                             f"{'yes' if lamp.encoder else 'no'})")
        if footage_fps is not None and not math.isclose(footage_fps / c.frame_step,
                                                        lamp.data.lamp_fps, rel_tol=1e-6):
            raise ValueError(f"footage at {footage_fps:g} fps, every {c.frame_step} frames, steps at "
                             f"{footage_fps / c.frame_step:g} lamp frames per second, but {c.init_from} dreams at "
                             f"{lamp.data.lamp_fps:g}: choose --frame-step "
                             f"{footage_fps / lamp.data.lamp_fps:g} or footage at another rate")
    elif lamp.encoder is None or lamp.upsampler is not None or lamp.base_size != c.base_size:
        raise ValueError(f"{c.init_from}: init_from needs a lamp of base_size {c.base_size} with an "
                         f"encoder and no upsampler (it has frame size {lamp.frame_size}, decoder "
                         f"size {lamp.base_size}, encoder {'yes' if lamp.encoder else 'no'})")


def lamp_vae(lamp: Lamp, device: torch.device) -> VAE:
    """A finished lamp's encoder and decoder as one VAE (in eval mode), sharing their weights."""
    vae = VAE(lamp.decoder_config).to(device)
    vae.encoder, vae.decoder = lamp.encoder, lamp.decoder
    return vae.eval()


def upgrade_lamp(run: Run) -> tuple[Lamp, VAE]:
    """The finished lamp named by init_from, and its VAE (decoder and encoder), to sharpen further."""
    c = run.config
    lamp = load_lamp(c.init_from, run.device)
    check_init_lamp(c, lamp)
    lamp.fixed_detail = None  # measured again for the new decoder or upsampler (set_fixed_detail)
    return lamp, lamp_vae(lamp, run.device)


def train_lamp(run: Run, clips: Footage, out: Path) -> Lamp:
    """Run every stage (skipping finished ones) and write the lamp to `out` (main process)."""
    if run.world.main:
        run.folder.mkdir(parents=True, exist_ok=True)
    if run.config.new_rnn:
        lamp = new_rnn_lamp(run, clips)
    elif run.config.init_from:
        lamp, vae = upgrade_lamp(run)
        lamp.upsampler, sharpen_summary = sharpen_stage(run, vae, clips)
        record = {"sharpen": sharpen_summary}
        if run.world.main:  # sharper frames change more pixels per step: measured again
            record["calibration"] = recalibrate(run, lamp, clips)
        add_upgrade(run, lamp, record)
    else:
        lamp = _train_new_lamp(run, clips)
    if run.world.main:
        if not run.config.new_rnn:  # else the frames are the lamp's own, and so is their detail
            set_fixed_detail(run, lamp, clips)
            set_grain(run, lamp, clips)
        _dream_pictures(run, lamp, "sharpen" if run.config.init_from and run.config.sharpens else "rnn")
        save_lamp(lamp, run.folder / "lamp.safetensors")
        save_lamp(lamp, out)
        log.info("wrote %s", out)
    barrier(run.world)
    return lamp


def new_rnn_lamp(run: Run, clips: Footage) -> Lamp:
    """The lamp named by init_from with a new RNN trained on this run's footage (at base_size),
    encoded by the lamp's own encoder; new start contexts, latent reference and temperature (its
    frames are made as before, so the temperature is calibrated on the decoder's frames)."""
    c = run.config
    lamp = load_lamp(c.init_from, run.device)
    check_init_lamp(c, lamp, clips.fps)
    latents = encode_footage(run, lamp_vae(lamp, run.device), clips)
    lamp.rnn, summary = train_rnn(run, latents)
    lamp.reference, contexts = dream_starts(run, latents)
    lamp.start_contexts = contexts.to(run.device)
    record = {"rnn": summary, "rnn_footage": clips.description}
    if run.world.main:
        before = lamp.temperature
        record["calibration"] = {**calibrate_temperature(lamp, clips.train, c.frame_step,
                                                         int_seed(run.seeds("calibration")), base=True,
                                                         dreams=c.calibration_dreams),
                                 "previous_temperature": before, "frame_size": lamp.base_size}
    add_upgrade(run, lamp, record)
    return lamp


def set_fixed_detail(run: Run, lamp: Lamp, clips: Footage) -> None:
    """Give the lamp the fixed detail of its footage (with 'auto'), or none: the mean, over up to
    FIXED_DETAIL_FRAMES training frames at the lamp's frame size, of each frame less the lamp's
    reconstruction of it. What the camera always sees at one place and the lamp renders wrong (the
    glass's outline and highlights at full size) stays; the moving wax's errors average away."""
    lamp.fixed_detail = None
    if run.config.fixed_detail == "none":
        lamp.training = {**lamp.training, "fixed_detail": {"setting": "none"}}
        return
    frames = spread_frames(clips.at_size(lamp.frame_size).train, FIXED_DETAIL_FRAMES)
    detail = mean_residual(lamp, frames, run.device)
    lamp.fixed_detail = detail
    size = {"frames": len(frames), "mean_abs": round(float(detail.abs().mean()) * 255, 4),
            "max_abs": round(float(detail.abs().max()) * 255, 2)}
    lamp.training = {**lamp.training, "fixed_detail": {"setting": "auto", **size}}
    log.info("fixed detail from %d frames: mean |detail| %.2f, largest %.1f levels of 255",
             size["frames"], size["mean_abs"], size["max_abs"])


@torch.no_grad()
def mean_residual(lamp: Lamp, frames: np.ndarray, device: torch.device,
                  batch: int = 64) -> torch.Tensor:
    """The mean (3,S,S) of uint8 frames (N,S,S,3) less the lamp's reconstructions of them: the
    encoder's means of the frames at the decoder's size, decoded (and upsampled), before any fixed
    detail or grain."""
    total = torch.zeros((3, frames.shape[1], frames.shape[2]), device=device)  # no float64 on mps
    for i in range(0, len(frames), batch):
        chunk = frames[i:i + batch]
        mu = lamp.encoder(frames_to_float(area_resize(chunk, lamp.base_size)).to(device)).chunk(2, 1)[0]
        made = lamp.decoder(mu)
        made = lamp.upsampler(made) if lamp.upsampler is not None else made
        total += (frames_to_float(chunk).to(device) - made).sum(0)
    return total / len(frames)


def set_grain(run: Run, lamp: Lamp, clips: Footage) -> None:
    """Give the lamp the fixed grain its frames lack (with 'auto'), or none: the footage's grain
    (estimated at the lamp's frame size) less the fixed texture the lamp's frames already carry
    (an upsampler leaves some), as stds of independent patterns add: in quadrature."""
    lamp.grain = 0.0
    if run.config.grain == "none":
        lamp.training = {**lamp.training, "grain": {"setting": "none", "std": 0.0}}
        return
    footage = estimate_grain(clips.at_size(lamp.frame_size).train)
    own = lamp_texture(lamp, int_seed(run.seeds("grain")))
    lamp.grain = round(math.sqrt(max(0.0, footage["std"] ** 2 - own ** 2)), 4)
    lamp.training = {**lamp.training, "grain": {"setting": "auto", "std": lamp.grain,
                                                "footage": footage, "lamp_texture": own}}
    log.info("grain %.3f levels of 255: the footage's %.3f less the lamp's own fixed texture %.3f",
             lamp.grain, footage["std"], own)


@torch.no_grad()
def lamp_texture(lamp: Lamp, seed: int) -> float:
    """The fixed grain (grain.py) of the lamp's own frames: GRAIN_FRAMES frames of one dream, taken
    every TEXTURE_STRIDE steps so that the wax moves between them as it does in the footage."""
    dream = Dream(lamp, seed=seed)
    latents = dream.advance(GRAIN_FRAMES * TEXTURE_STRIDE)[TEXTURE_STRIDE - 1::TEXTURE_STRIDE]
    return round(sequence_grain(dream.decode(latents)), 4)


def recalibrate(run: Run, lamp: Lamp, clips: Footage) -> dict[str, Any]:
    """The lamp's temperature calibrated again for its sharpened frames, at its own frame size (where
    it is shown and judged: a crisper rim moves more pixels per step than the decoder's soft one),
    on this run's footage taken at the lamp's own rate (whatever --frame-step says: the RNN's step
    is fixed)."""
    step = max(1, round(clips.fps / lamp.data.lamp_fps))
    before = lamp.temperature
    summary = calibrate_temperature(lamp, clips.at_size(lamp.frame_size).train, step,
                                    int_seed(run.seeds("calibration")), dreams=run.config.calibration_dreams)
    return {**summary, "previous_temperature": before, "footage_frame_step": step,
            "frame_size": lamp.frame_size}


def add_upgrade(run: Run, lamp: Lamp, record: dict[str, Any]) -> None:
    """Name the lamp after this run and add the run (its config, what it trained, `record`) to the
    lamp's training.upgraded_by."""
    lamp.name = run.config.name
    record = {"config": dataclasses.asdict(run.config), **record, "package_version": __version__,
              "device": run.device.type}
    lamp.training = {**lamp.training, "upgraded_by": [*_upgrades(lamp.training), record]}


def _upgrades(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs that upgraded a lamp so far, oldest first (a lamp upgraded once by an earlier
    version holds a single record, not a list)."""
    upgrades = training.get("upgraded_by", [])
    return [upgrades] if isinstance(upgrades, dict) else list(upgrades)


def _train_new_lamp(run: Run, clips: Footage) -> Lamp:
    """VAE, refinement, sharpening, encoding and RNN from scratch, then the calibrated lamp."""
    base = clips.at_size(run.config.base_size)  # the VAE's and the RNN's footage
    pool, val = image_frames(base)
    vae, vae_summary = train_vae(run, pool, val)
    refine_summary = refine_decoder(run, vae, pool, val)
    del pool, val  # the RNN stage works on latents
    upsampler, sharpen_summary = sharpen_stage(run, vae, clips)
    latents = encode_footage(run, vae, base)
    rnn, rnn_summary = train_rnn(run, latents)
    lamp = build_lamp(run, vae, rnn, latents, base, {"vae": vae_summary, "refine": refine_summary,
                                                     "sharpen": sharpen_summary, "rnn": rnn_summary})
    if run.world.main:
        lamp.training["calibration"] = calibrate_temperature(lamp, base.train, run.config.frame_step,
                                                             int_seed(run.seeds("calibration")),
                                                             dreams=run.config.calibration_dreams)
    lamp.upsampler = upsampler.to(run.device) if upsampler is not None else None
    return lamp
