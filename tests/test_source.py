"""The frame source: guarded frames in order, cross-faded reseeds and swaps, never a cut."""

import dataclasses

import numpy as np
import torch
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import GuardConfig
from lavalamp.daemon.metrics import DaemonMetrics
from lavalamp.daemon.source import FrameSource

from .fakes import make_lamp, mean_abs_diff, metric


def source(lamp=None, crossfade_frames=24, **guard):
    registry = CollectorRegistry()
    src = FrameSource(lamp=lamp or make_lamp(contrast=30), seed=3, crossfade_frames=crossfade_frames,
                      guard=dataclasses.replace(GuardConfig(), **guard))
    DaemonMetrics(registry, process=False).watch("0", source=src)
    return src, registry


def test_batches_are_uint8_frames_of_the_lamp_size():
    src, registry = source()
    frames = src.next_batch(5)
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == np.uint8
    assert metric(registry, "lavalamp_latent_std") > 0.5
    assert metric(registry, "lavalamp_motion") > 0


def test_the_same_seed_dreams_the_same_frames():
    a, _ = source()
    b, _ = source()
    assert np.array_equal(a.next_batch(6), b.next_batch(6))


def test_a_seeded_source_dreams_the_same_frames_across_reseeds():
    runs = []
    for _ in range(2):
        src, _ = source()
        frames = [src.next_batch(4)]
        src.request_reseed("manual")
        frames += [src.next_batch(4), src.next_batch(4)]
        runs.append((np.concatenate(frames), src.dream.seed))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] != 3  # a new dream, drawn from the source's seed


def test_a_reseed_cross_fades_from_the_last_frame(monkeypatch):
    src, registry = source(make_lamp(contrast=100), crossfade_frames=10)
    last = src.next_batch(8)[-1]
    decoded = []
    real_decode = src._decode
    monkeypatch.setattr(src, "_decode", lambda z: decoded.append(real_decode(z)) or decoded[-1])
    src.request_reseed("manual")
    faded = src.next_batch(12)
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "manual"}) == 1
    cut = mean_abs_diff(decoded[0][0], last)  # the jump a viewer would see without the fade
    assert cut > 2, cut
    assert mean_abs_diff(faded[0], last) < 0.2 * cut  # starts at the old picture
    steps = [mean_abs_diff(a, b) for a, b in zip([last, *faded], faded)]
    natural = max(mean_abs_diff(a, b) for a, b in zip(decoded[0], decoded[0][1:]))
    assert max(steps) < natural + 0.2 * cut  # no cut anywhere in the fade, only the lamp's motion
    assert np.array_equal(faded[-1], decoded[0][-1])  # and ends on the new dream


def test_non_finite_latents_reseed_and_never_reach_the_screen(monkeypatch):
    src, registry = source()
    src.next_batch(4)
    real_advance, calls = src.dream.advance, []

    def poisoned(n):
        calls.append(n)
        out = real_advance(n)
        return out * float("nan") if len(calls) == 1 else out

    monkeypatch.setattr(src.dream, "advance", poisoned)
    frames = src.next_batch(4)
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "non_finite"}) == 1
    assert frames.std() > 1  # a real picture, not a NaN-black one


def test_a_swapped_lamp_of_another_size_is_resized_and_faded_in():
    src, registry = source(crossfade_frames=4)
    src.next_batch(4)
    src.request_swap(make_lamp(frame_size=128, name="bigger", seed=5, contrast=30))
    frames = src.next_batch(6)
    assert frames.shape == (6, 64, 64, 3)
    assert src.lamp.name == "bigger"
    info = registry.get_sample_value("lavalamp_model_info", {
        "name": "bigger", "frame_size": "128", "latent_size": "8", "device": "cpu", "lamp_fps": "5",
        "screen": "0"})
    assert info == 1


def test_soft_drift_is_renormalized_for_a_lamp_without_the_sphere():
    lamp = make_lamp(contrast=30)
    object.__setattr__(lamp.rnn.config, "sphere", False)
    with torch.no_grad():
        lamp.rnn.head.bias.zero_()
    src, registry = source(lamp, window_frames=16, soft_mean=0.0, soft_std=0.0, hard_mean=100,
                           hard_std=100, hard_skew=100, hard_kurtosis=1000)
    for _ in range(8):
        src.next_batch(4)
    assert metric(registry, "lavalamp_renormalizations_total") >= 1
