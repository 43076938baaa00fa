"""Evaluation: the `lavalamp eval` report, and that each metric tells apart what it should."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lavalamp.daemon.cli import main
from lavalamp.models.checkpoint import save_lamp
from lavalamp.train.critic import CLIP_FRAMES, Examples, critic_frames, critic_test
from lavalamp.train.evaluate import EvalConfig, evaluate_frames

from .fakes import make_lamp

FPS = 30.0
STEP = 6  # the fake lamp runs at 30 fps / 6 = 5 lamp fps


def moving_clip(count=240, size=64):
    """A bright blob wandering over a background that slowly brightens: never the same twice."""
    t = np.arange(count)[:, None, None]
    y, x = (g[None] for g in np.mgrid[:size, :size])
    cx = size / 2 + size / 4 * np.sin(t / 40)
    cy = size / 2 + size / 4 * np.sin(t / 23 + 1)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (size / 8) ** 2))
    base = 20 + 60 * t / count
    frames = np.stack([base + 200 * blob, base + 90 * blob, 40 + 0 * blob], axis=-1)
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference():
    return moving_clip()


def compare(generated, reference, **config):
    config = EvalConfig(**{"frames": 40, "critic_steps": 0, **config})
    return evaluate_frames(generated, reference, lamp_fps=FPS / STEP, reference_fps=FPS, config=config)


@pytest.mark.slow
def test_eval_writes_a_complete_report_and_contact_sheet(tmp_path, reference, capsys):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    np.savez(tmp_path / "ref.npz", frames=reference, fps=FPS)
    code = main(["eval", "--model", str(tmp_path / "lamp.safetensors"), "--reference",
                 str(tmp_path / "ref.npz"), "--frames", "40", "--skip", "5", "--critic-steps", "5",
                 "--critic-seeds", "2", "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "critic accuracy" in printed and "+-" in printed  # mean +- spread of the two critics
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["generation"]["frames"] == 40 and report["generation"]["skip"] == 5
    assert report["reference"]["lamp_rate_step"] == STEP and report["reference"]["lamp_rate_frames"] == 40
    drift = report["latent_drift"]
    assert len(drift["windows"]) == 10 and set(drift["first_window"]) == {"mean", "std", "skew", "kurtosis"}
    assert drift["max_distance_from_reference"] >= drift["last_distance_from_reference"] >= 0
    assert 0 <= report["motion"]["generated_mean_abs_diff"] <= 255 and report["motion"]["ratio"] >= 0
    assert 0 <= report["frozen"]["generated_share"] <= 1 and report["frozen"]["window_steps"] == 10
    assert report["repetition"]["generated"] is None  # 40 frames: nothing is 300 steps apart
    assert 0 <= report["colour"]["histogram_distance"] <= 1
    assert len(report["colour"]["generated_mean_rgb"]) == 3
    for name in ("frames", "clips", "reference_baseline_frames", "reference_baseline_clips"):
        assert 0 <= report["critic"][name]["accuracy"] <= 1
        assert len(report["critic"][name]["accuracy_runs"]) == 2
        assert min(report["critic"][name]["test_examples"]) > 0
        assert 0 < report["critic"][name]["chance_standard_error"] < 0.5
    with Image.open(tmp_path / "out" / "contact_sheet.png") as sheet:
        assert sheet.height == 4 * (64 + 2)  # reference/generated, spread/consecutive


@pytest.mark.slow
def test_several_critic_seeds_give_a_mean_and_a_spread(reference):
    shifted = np.roll(reference, STEP, axis=0)
    one = compare(shifted, reference, critic_steps=30)["critic"]["frames"]
    three = compare(shifted, reference, critic_steps=30, critic_seeds=3)["critic"]["frames"]
    assert one["accuracy_runs"] == [one["accuracy"]] and one["accuracy_spread"] == 0
    assert len(three["accuracy_runs"]) == 3 and three["accuracy_runs"][0] == one["accuracy"]
    assert three["accuracy"] == pytest.approx(np.mean(three["accuracy_runs"]))
    assert three["accuracy_spread"] == pytest.approx(np.std(three["accuracy_runs"]))
    assert len(set(three["accuracy_runs"])) > 1  # each critic starts from its own seed


def test_critic_seeds_out_of_range_exit_2(tmp_path, reference, capsys):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    np.savez(tmp_path / "ref.npz", frames=reference, fps=FPS)
    code = main(["eval", "--model", str(tmp_path / "lamp.safetensors"), "--reference",
                 str(tmp_path / "ref.npz"), "--critic-seeds", "0", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--critic-seeds" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("temperature", ["10", "0.01", "nan"])
def test_a_temperature_outside_the_dream_range_exits_2(tmp_path, reference, capsys, temperature):
    """The range `lavalamp run` and `render` accept: a lamp at 10x its calibrated temperature
    is not the lamp a user will see, so its report would judge nothing."""
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    np.savez(tmp_path / "ref.npz", frames=reference, fps=FPS)
    code = main(["eval", "--model", str(tmp_path / "lamp.safetensors"), "--reference",
                 str(tmp_path / "ref.npz"), "--temperature", temperature, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--temperature" in err and "must be in 0.05..3" in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_critic_cannot_tell_the_reference_from_itself_shifted(reference):
    frames = critic_frames(reference)
    shifted = critic_frames(np.roll(reference, STEP, axis=0))  # one lamp step later
    real, fake = (Examples(f, np.arange(len(f)), np.zeros(1, int)) for f in (frames, shifted))
    result = critic_test(real, fake, steps=60, batch=32, seed=0)
    assert abs(result["accuracy"] - 0.5) < 0.2


@pytest.mark.slow
def test_critic_tells_a_constant_colour_clip_from_the_reference(reference):
    constant = np.full_like(reference, 90)
    frames, flat = critic_frames(reference), critic_frames(constant)
    clip = np.arange(CLIP_FRAMES)
    real, fake = (Examples(f, np.arange(len(f) - CLIP_FRAMES + 1), clip) for f in (frames, flat))
    assert critic_test(real, fake, steps=60, batch=32, seed=0)["accuracy"] > 0.95


@pytest.mark.slow
def test_reference_against_itself_moves_alike_and_is_not_frozen(reference):
    report = compare(reference[::STEP], reference)
    assert report["motion"]["ratio"] == pytest.approx(1.0)
    assert report["frozen"]["generated_share"] == report["frozen"]["reference_share"] == 0.0
    assert report["colour"]["mean_rgb_distance"] < 5


def test_a_static_clip_is_all_frozen(reference):
    report = compare(np.repeat(reference[:1], 40, axis=0), reference)
    assert report["frozen"]["generated_share"] == 1.0
    assert report["motion"]["ratio"] == 0.0


def test_repetition_detects_a_looped_clip(reference):
    lamp_rate = reference[::STEP]
    looped = np.concatenate([lamp_rate[:8]] * 5)
    report = compare(looped, reference, min_gap_steps=10)["repetition"]
    assert report["generated"]["near_duplicate_share"] == 1.0
    assert report["reference"]["near_duplicate_share"] == 0.0
    assert report["generated"]["min_nearest_rms"] == 0.0 < report["reference"]["min_nearest_rms"]


def test_missing_model_exits_2_with_a_clear_message(tmp_path, reference, capsys):
    np.savez(tmp_path / "ref.npz", frames=reference, fps=FPS)
    code = main(["eval", "--model", str(tmp_path / "none.safetensors"), "--reference",
                 str(tmp_path / "ref.npz"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "none.safetensors: checkpoint not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "ref.npz: not a readable .npz archive"),
    (None, "ref.npz: .npz has no 'frames' array"),
    ("short", "ref.npz: reference of 100 frames is too short: at least 150 at 30 fps"),
])
def test_bad_reference_exits_2_with_a_clear_message(tmp_path, capsys, content, message):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    if content is None:
        np.savez(tmp_path / "ref.npz", pictures=np.zeros((3, 8, 8, 3), np.uint8))
    elif content == "short":
        np.savez(tmp_path / "ref.npz", frames=moving_clip(100), fps=FPS)
    else:
        (tmp_path / "ref.npz").write_bytes(content)
    code = main(["eval", "--model", str(tmp_path / "lamp.safetensors"), "--reference",
                 str(tmp_path / "ref.npz"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_sharpness_is_one_against_itself_and_below_for_a_blurred_dream(reference):
    detailed = reference.copy()
    detailed[:, ::4] //= 2  # fine stripes: detail that blur takes away
    blurred = np.asarray(torch.nn.functional.avg_pool2d(
        torch.from_numpy(detailed).permute(0, 3, 1, 2).float(), 5, stride=1, padding=2,
        count_include_pad=False).permute(0, 2, 3, 1).round(), np.uint8)
    same = compare(detailed[::STEP], detailed)["sharpness"]
    soft = compare(blurred[::STEP], detailed)["sharpness"]
    assert same["ratio"] == pytest.approx(1.0, abs=0.02) and 0.9 < same["reference_baseline_ratio"] < 1.1
    assert soft["ratio"] < 0.6 and soft["generated_edge_energy"] < soft["reference_edge_energy"]


def test_the_report_gives_the_fixed_grain_of_each_side(reference):
    def grainy(frames, seed):
        grain = np.random.default_rng(seed).normal(0, 2.0, frames.shape[1:])
        return np.clip(frames + grain + 0.5, 0, 255).astype(np.uint8)

    clips = [grainy(reference, 1), grainy(reference, 2)]  # two cameras, each its own pattern
    clean = compare(reference[::STEP], clips)["sharpness"]
    assert clean["reference_grain"] == pytest.approx(2.0, rel=0.12) and clean["generated_grain"] < 0.3
    assert clean["ratio"] < 0.9  # the grain is edge energy the clean dream lacks
    matched = compare(grainy(reference, 3)[::STEP], clips)["sharpness"]
    assert matched["generated_grain"] == pytest.approx(2.0, rel=0.12)
    assert matched["ratio"] == pytest.approx(1.0, abs=0.1)


def test_several_reference_clips_are_one_reference_and_no_step_spans_two(reference):
    other = 255 - reference  # a different lamp: the jump between the clips is huge
    report = compare(reference[::STEP], [reference, other])
    assert report["reference"]["clips"] == 2 and report["reference"]["frames"] == 2 * len(reference)
    joined = compare(reference[::STEP], np.concatenate([reference, other]))
    assert report["motion"]["reference_mean_abs_diff"] < joined["motion"]["reference_mean_abs_diff"]
    assert report["motion"]["ratio"] == pytest.approx(1.0, abs=0.05)
    assert report["critic"]["clips"]["test_examples"][0] > 0


@pytest.mark.slow
def test_lamps_of_128_px_get_a_128_px_frame_critic():
    big = moving_clip(240, size=128)
    report = compare(big[::STEP], big)
    assert {"frames_128", "reference_baseline_frames_128"} <= set(report["critic"])
    assert "frames_128" not in compare(moving_clip()[::STEP], moving_clip())["critic"]


def test_reference_clips_of_different_frame_rates_exit_2(tmp_path, reference, capsys):
    save_lamp(make_lamp(), tmp_path / "lamp.safetensors")
    np.savez(tmp_path / "a.npz", frames=reference, fps=FPS)
    np.savez(tmp_path / "b.npz", frames=reference, fps=25.0)
    code = main(["eval", "--model", str(tmp_path / "lamp.safetensors"), "--reference",
                 str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "must share one frame rate" in err and "b.npz 25 fps" in err
    assert not (tmp_path / "out").exists()
