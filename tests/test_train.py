"""`lavalamp train` end to end on tiny data: artefacts, reproducibility, kill -9 and resume, DDP."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lavalamp.models.checkpoint import load_lamp
from lavalamp.models.latent import project_to_sphere
from lavalamp.train.trainer import lamp_texture

GRAIN_128 = 3.0
TINY_UPSAMPLER = ["--upsampler-channels", "8", "--upsampler-blocks", "1"]
TINY = ["--steps", "6", "--base-channels", "4", "--latent-size", "6", "--hidden-size", "8",
        "--mixtures", "2", "--window", "6", "--warmup", "2", "--rollout", "3", "--frame-step", "2",
        "--vae-batch", "4", "--rnn-batch", "4", "--calibration-dreams", "2", "--no-progress", "--device",
        "cpu", "--threads", "1"]


def moving_blob_clip(n: int, seed: int) -> np.ndarray:
    """A bright disc drifting over a dark background: tiny footage with real motion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    x, y = rng.uniform(20, 44, size=2)
    for t in range(n):
        x, y = x + np.sin(t / 7) * 0.8, y + np.cos(t / 9) * 0.8
        disc = ((xx - x) ** 2 + (yy - y) ** 2 < 64)
        frames[t, disc] = (250, 120, 40)
        frames[t, ~disc] = (40, 10, 60)
    return frames


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.npz"
    np.savez(path, frames=moving_blob_clip(60, 0), fps=30.0)
    return path


def train(*args, check=True, **kw):
    cmd = [sys.executable, "-m", "lavalamp.daemon", "train", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_train_writes_a_loadable_lamp_and_a_run_folder(tmp_path, clip):
    run = tmp_path / "run"
    train(str(clip), "--run-dir", str(run), "--out", str(tmp_path / "lamp.safetensors"), *TINY)
    lamp = load_lamp(tmp_path / "lamp.safetensors")
    assert lamp.frame_size == 64 and lamp.latent_size == 6 and lamp.data.fps == 30.0
    assert lamp.data.frame_step == 2 and lamp.data.lamp_fps == 15.0
    assert "clip.npz" in lamp.data.description
    assert lamp.training["stages"]["vae"]["step"] == 6 and lamp.training["stages"]["refine"]["step"] == 6
    for stage, sheet in (("vae", "samples.png"), ("refine", "samples.png"), ("rnn", "dream.png")):
        for name in ("losses.csv", "losses.png", sheet, "dream.gif", "state.pt"):
            assert (run / stage / name).stat().st_size > 0, f"{stage}/{name}"
    assert (run / "settings.json").exists() and (run / "latents.npz").exists()


@pytest.mark.slow
def test_refinement_sharpens_only_the_decoder(tmp_path, clip):
    """The refine stage lowers the decoder's error on the encoder's means; the encoder is untouched."""
    from lavalamp.models.vae import VAE
    from lavalamp.train.losses import RefineLoss
    from lavalamp.train.trainer import TrainConfig

    torch.manual_seed(0)
    vae = VAE(TrainConfig(base_channels=4, latent_size=6).vae_config()).eval()
    vae.encoder.requires_grad_(False)
    frames = torch.from_numpy(moving_blob_clip(16, 1)).permute(0, 3, 1, 2).float() / 255
    encoder = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    loss = RefineLoss(vae)
    optimizer = torch.optim.Adam(vae.decoder.parameters(), lr=3e-3)
    first = float(loss(frames)[1]["loss"])
    for _ in range(60):
        value, _ = loss(frames)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    _, parts = loss(frames)
    assert float(parts["loss"]) < 0.7 * first
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in encoder.items())

    run = tmp_path / "run"
    train(str(clip), "--run-dir", str(run), *TINY[2:], "--vae-steps", "6", "--refine-steps", "0",
          "--rnn-steps", "6")
    lamp = load_lamp(run / "lamp.safetensors")
    assert "skipped" in lamp.training["stages"]["refine"] and not (run / "refine").exists()


@pytest.mark.slow
def test_same_seed_same_lamp(tmp_path, clip):
    for name in ("a", "b"):
        train(str(clip), "--run-dir", str(tmp_path / name), "--seed", "3", *TINY)
    a, b = (load_lamp(tmp_path / n / "lamp.safetensors") for n in ("a", "b"))
    for x, y in zip(a.decoder.state_dict().values(), b.decoder.state_dict().values()):
        assert torch.equal(x, y)
    for x, y in zip(a.rnn.state_dict().values(), b.rnn.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_kill_9_then_resume_finishes_the_run(tmp_path, clip):
    run = tmp_path / "run"
    args = [str(clip), "--run-dir", str(run), *TINY[2:], "--steps", "400000",
            "--checkpoint-every-s", "0.2", "--decoder-loss", "l1"]  # sharpening: its own test
    proc = subprocess.Popen([sys.executable, "-m", "lavalamp.daemon", "train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "vae" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert state.exists(), "no resumable state was written"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(state, weights_only=True)
    assert 0 < saved["step"] < 400000 and not saved["done"]
    # finish with a small budget: resume keeps the run's settings but takes a new budget
    train("--run-dir", str(run), "--resume", "--steps", str(saved["step"] + 5), "--no-progress")
    lamp = load_lamp(run / "lamp.safetensors")
    assert lamp.training["stages"]["vae"]["step"] == saved["step"] + 5
    steps = [float(line.split(",")[0]) for line in (run / "vae" / "losses.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps), "resumed loss log went back in time"


@pytest.fixture
def clip_128(tmp_path):
    """The disc at 128 px with a camera's fixed grain (std 3 levels, the same in every frame)."""
    path = tmp_path / "clip128.npz"
    frames = moving_blob_clip(60, 0).repeat(2, axis=1).repeat(2, axis=2)
    grain = np.random.default_rng(9).normal(0, GRAIN_128, frames.shape[1:])
    np.savez(path, frames=np.clip(frames + grain + 0.5, 0, 255).astype(np.uint8), fps=30.0)
    return path


@pytest.mark.slow
def test_a_128_px_lamp_gets_an_upsampler_from_its_sharpening_stage(tmp_path, clip_128):
    run = tmp_path / "run"
    train(str(clip_128), "--run-dir", str(run), "--frame-size", "128", "--sharpen-crop", "32",
          "--sharpen-batch", "2", "--grain", "none", "--fixed-detail", "none", *TINY)
    lamp = load_lamp(run / "lamp.safetensors")
    assert lamp.frame_size == 128 and lamp.base_size == 64 and lamp.upsampler is not None
    assert lamp.grain == 0.0 and lamp.training["grain"] == {"setting": "none", "std": 0.0}
    assert lamp.fixed_detail is None and lamp.training["fixed_detail"] == {"setting": "none"}
    sharpen = lamp.training["stages"]["sharpen"]
    assert sharpen["step"] == 6 and sharpen["adversarial"] and sharpen["failure"] is None
    assert 0 < sharpen["edge_ratio"] and 0 < sharpen["diversity"]
    for name in ("losses.csv", "losses.png", "samples.png", "state.pt"):
        assert (run / "sharpen" / name).stat().st_size > 0, name
    with torch.inference_mode():
        assert lamp.decode(torch.randn(2, lamp.latent_size)).shape == (2, 3, 128, 128)


@pytest.mark.slow
def test_init_from_sharpens_the_decoder_then_adds_an_upsampler_keeping_encoder_and_rnn(
        tmp_path, clip, clip_128):
    small, sharp, big = (tmp_path / f"{n}.safetensors" for n in ("small", "sharp", "big"))
    train(str(clip), "--run-dir", str(tmp_path / "run64"), "--out", str(small), "--decoder-loss", "l1",
          *TINY)
    train(str(clip), "--run-dir", str(tmp_path / "sharp64"), "--out", str(sharp), "--init-from", str(small),
          "--decoder-loss", "adversarial", "--adversarial-start", "0.5", *TINY)
    train(str(clip_128), "--run-dir", str(tmp_path / "run128"), "--out", str(big),
          "--frame-size", "128", "--init-from", str(sharp), "--sharpen-crop", "32",
          "--decoder-loss", "l1", *TINY_UPSAMPLER, *TINY)
    before, middle, after = load_lamp(small), load_lamp(sharp), load_lamp(big)
    assert middle.frame_size == 64 and middle.upsampler is None
    # the grain is the footage's at the lamp's own size: none in the clean 64 px disc, the 128 px
    # clip's fixed grain once the upsampler makes 128 px frames
    assert before.grain < 0.2 and middle.grain < 0.2
    grain = after.training["grain"]
    assert grain["setting"] == "auto" and grain["footage"]["std"] == pytest.approx(GRAIN_128, rel=0.1)
    assert after.grain ** 2 + grain["lamp_texture"] ** 2 == pytest.approx(grain["footage"]["std"] ** 2,
                                                                          rel=0.01)
    assert lamp_texture(after, seed=1) == pytest.approx(grain["footage"]["std"], rel=0.15)
    assert after.frame_size == 128 and after.upsampler is not None and before.upsampler is None
    # the fixed detail is measured anew at each lamp's own size, through its own decoder
    assert middle.fixed_detail.shape == (3, 64, 64) and after.fixed_detail.shape == (3, 128, 128)
    detail = after.training["fixed_detail"]
    assert detail["setting"] == "auto" and detail["frames"] > 0
    assert detail["mean_abs"] == pytest.approx(float(after.fixed_detail.abs().mean()) * 255, abs=1e-3)
    old, new = before.decoder.state_dict(), middle.decoder.state_dict()
    assert not all(torch.equal(old[k], new[k]) for k in old), "the decoder was not sharpened"
    for name, lamps in (("decoder", (middle, after)), ("rnn", (before, middle, after)),
                        ("encoder", (before, middle, after))):
        first = getattr(lamps[0], name).state_dict()
        for lamp in lamps[1:]:
            assert all(torch.equal(first[k], getattr(lamp, name).state_dict()[k]) for k in first), name
    for lamp in (middle, after):
        assert torch.equal(before.start_contexts, lamp.start_contexts) and lamp.data == before.data
    upgrades = after.training["upgraded_by"]
    # sharper frames move differently: each upgrade measures again, at the lamp's own frame size
    first, second = (u["calibration"] for u in upgrades)
    assert first["previous_temperature"] == before.temperature
    assert middle.temperature == first["temperature"] == second["previous_temperature"]
    assert after.temperature == second["temperature"]
    assert [first["frame_size"], second["frame_size"]] == [64, 128]
    assert first["footage_frame_step"] == second["footage_frame_step"] == 2
    assert [u["config"]["frame_size"] for u in upgrades] == [64, 128]
    assert upgrades[0]["sharpen"]["adversarial"] and upgrades[0]["sharpen"]["step"] == 6
    assert not upgrades[1]["sharpen"]["adversarial"] and upgrades[1]["sharpen"]["step"] == 6
    for run in ("sharp64", "run128"):
        assert not (tmp_path / run / "rnn").exists(), f"{run} trained the RNN again"
        assert (tmp_path / run / "sharpen" / "dream.gif").stat().st_size > 0


@pytest.mark.slow
def test_init_trains_rnn_gives_a_lamp_a_new_rnn_and_keeps_how_it_makes_frames(tmp_path, clip_128):
    """A 128 px lamp's RNN replaced by one trained on other footage at the lamp's rate (15 fps
    footage, every frame): encoder, decoder, upsampler, fixed detail and grain stay bit for bit."""
    lamp_path, run = tmp_path / "lamp.safetensors", tmp_path / "new"
    new_path = run / "new.safetensors"  # in the run folder, which the run makes
    train(str(clip_128), "--run-dir", str(tmp_path / "run128"), "--out", str(lamp_path),
          "--frame-size", "128", "--sharpen-crop", "32", "--decoder-loss", "l1", *TINY_UPSAMPLER, *TINY)
    slow = tmp_path / "slow.npz"
    np.savez(slow, frames=moving_blob_clip(60, 3)[::2], fps=15.0)
    refused = train(str(slow), "--run-dir", str(tmp_path / "wrong"), "--init-from", str(lamp_path),
                    "--init-trains", "rnn", *TINY, check=False)  # TINY steps every 2nd frame: 7.5 fps
    assert refused.returncode == 2 and "choose --frame-step 1" in refused.stderr, refused.stderr
    assert not (tmp_path / "wrong").exists()
    train(str(slow), "--run-dir", str(run), "--out", str(new_path), "--init-from", str(lamp_path),
          "--init-trains", "rnn", *TINY, "--frame-step", "1")
    before, after = load_lamp(lamp_path), load_lamp(new_path)
    assert after.frame_size == 128 and after.data == before.data and after.data.lamp_fps == 15.0
    for name in ("encoder", "decoder", "upsampler"):
        old, new = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), name
    assert torch.equal(before.fixed_detail, after.fixed_detail) and after.grain == before.grain
    old, new = before.rnn.state_dict(), after.rnn.state_dict()
    assert not any(torch.equal(old[k], new[k]) for k in old), "the RNN was not trained anew"
    assert not torch.equal(before.start_contexts, after.start_contexts)
    with torch.inference_mode():  # the start contexts are the new footage's latents
        frames = torch.from_numpy(moving_blob_clip(60, 3)[::2]).permute(0, 3, 1, 2).float() / 255
        mu = project_to_sphere(after.encoder(frames).chunk(2, 1)[0])
        gaps = torch.cdist(after.start_contexts[:, -1], mu).min(1).values
    assert float(gaps.max()) < 1e-2  # cdist rounds at about 1e-3
    record = after.training["upgraded_by"][-1]
    assert record["rnn"]["step"] == 6 and "slow.npz" in record["rnn_footage"]
    calibration = record["calibration"]
    assert calibration["frame_size"] == 64 and calibration["previous_temperature"] == before.temperature
    assert after.temperature == calibration["temperature"]
    assert (run / "rnn" / "losses.csv").exists() and (run / "rnn" / "dream.gif").exists()
    assert not (run / "sharpen").exists() and not (run / "vae").exists()


@pytest.mark.parametrize("args, message", [
    ([], "no footage"),
    (["--window", "400"], "too short"),
    (["--decoder-loss", "blurry"], "decoder_loss must be one of"),
    (["--init-from", "x.safetensors", "--decoder-loss", "l1"], "init_from needs something to train"),
    (["--frame-size", "100"], "sizes must be in"),
    (["--init-trains", "rnn"], "init_trains 'rnn' needs init_from"),
    (["--init-from", "x.safetensors", "--init-trains", "rnn", "--frame-size", "128"],
     "trains on footage at base_size (64)"),
    (["--init-from", "missing.safetensors", "--init-trains", "rnn"], "missing.safetensors"),
    (["--sim-clips", "1", "--sim-fps", "0.5"], "--sim-fps: fps must be in 1..240, got 0.5"),
    (["--grain", "0.5"], "grain must be one of"),
])
@pytest.mark.slow
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, clip, args, message):
    run = tmp_path / "run"
    result = train(*([str(clip)] if args else []), "--run-dir", str(run), *TINY, *args, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not run.exists()


@pytest.mark.parametrize("args, message", [
    (["--mixtures", "0"], "mixtures must be at least 1, got 0 (--mixtures)"),
    (["--hidden-size", "0"], "hidden_size must be at least 1, got 0 (--hidden-size)"),
    (["--warmup", "6"], "warmup must be below window (6), got 6 (--warmup)"),
    (["--upsampler-channels", "4"], "(--upsampler-channels)"),
    (["--cell", "rnn"], "cell must be one of gru, lstm, got 'rnn' (--cell)"),
    (["--sharpen-lr", "0"], "sharpen_lr must be above 0, got 0.0 (--sharpen-lr)"),
])
def test_every_stage_setting_is_checked_before_any_training(tmp_path, clip, capsys, args, message):
    """A setting of a later stage (RNN, upsampler, sharpening) is refused at once, in one line
    naming its flag, not after the VAE has trained."""
    from lavalamp.daemon.cli import main

    run = tmp_path / "run"
    code = main(["train", str(clip), "--run-dir", str(run), *TINY, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists()


def test_train_help_shows_what_each_setting_does(capsys):
    from lavalamp.daemon.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--mixtures MIXTURES Gaussians of the mixture-density head. (default 5)" in text
    assert "Units of the RNN core" in text and "(default 128)" in text


@pytest.mark.slow
def test_an_existing_run_needs_resume(tmp_path, clip):
    run = tmp_path / "run"
    train(str(clip), "--run-dir", str(run), *TINY)
    result = train(str(clip), "--run-dir", str(run), *TINY, check=False)
    assert result.returncode == 2 and "--resume" in result.stderr


@pytest.mark.slow
def test_torchrun_trains_on_two_cpu_processes(tmp_path, clip):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--no-python", "lavalamp", "train", str(clip), "--run-dir", str(run), *TINY]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lamp = load_lamp(run / "lamp.safetensors")
    assert lamp.training["processes"] == 2


@pytest.mark.slow
def test_calibration_takes_the_hottest_temperature_that_moves_like_the_footage():
    import math

    from lavalamp.train.trainer import CALIBRATION_TOLERANCE, calibrate_temperature

    from .fakes import make_lamp
    lamp = make_lamp()
    report = calibrate_temperature(lamp, [moving_blob_clip(200, 1)], frame_step=2, seed=0, dreams=4)
    ratios = {float(t): r for t, r in report["motion_ratio_by_temperature"].items()}
    calm = [t for t, r in ratios.items() if r <= CALIBRATION_TOLERANCE]
    closest = min(ratios, key=lambda t: abs(math.log(ratios[t])))
    assert lamp.temperature == report["temperature"] == (max(calm) if calm else closest)
    assert len(ratios) > 3 and all(r > 0 for r in ratios.values())
    assert report["footage_motion_per_step"] > 0


def test_a_clean_share_gives_the_upsampler_that_share_of_footage_frames_reduced_not_reconstructed(tmp_path):
    from types import SimpleNamespace

    from lavalamp.models.dream import frames_to_float
    from lavalamp.models.vae import VAE
    from lavalamp.train.distributed import World
    from lavalamp.train.footage import area_resize
    from lavalamp.train.trainer import Run, TrainConfig, sharpen_pairs

    config = TrainConfig(frame_size=128, base_size=64, sharpen_clean_share=0.25, sharpen_frames=8,
                         latent_size=4, base_channels=8)
    run = Run(folder=tmp_path, config=config, world=World(device=torch.device("cpu")),
              device=torch.device("cpu"))
    frames = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    vae = VAE(config.vae_config()).eval()
    pairs = sharpen_pairs(run, vae, SimpleNamespace(train=[frames], val=[]))
    reduced = frames_to_float(area_resize(frames, 64)).half()
    same = [bool(torch.equal(pairs.inputs[i], reduced[i])) for i in range(8)]
    assert sum(same) == 2, same  # a quarter of the frames, the rest the VAE's reconstructions
    assert not any(torch.equal(pairs.val_inputs[i], reduced[i]) for i in range(8))  # judged as shown
