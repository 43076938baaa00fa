"""The drift guard: each trigger fires, and a healthy dream never trips it."""

import dataclasses

import pytest
import torch

from lavalamp.daemon.config import GuardConfig
from lavalamp.daemon.guard import DriftGuard
from lavalamp.models.dream import Dream
from lavalamp.models.latent import STANDARD_NORMAL, project_to_sphere

from .fakes import make_lamp


def guard(lamp_fps=5.0, latent_size=8, **overrides):
    config = dataclasses.replace(GuardConfig(), **overrides)
    return DriftGuard(config=config, reference=STANDARD_NORMAL, lamp_fps=lamp_fps,
                      latent_size=latent_size)


def feed(g, latents, batch=8):
    return [a for i in range(0, len(latents), batch)
            if (a := g.check_latents(latents[i:i + batch])).kind != "none"]


def healthy_walk(steps, d, seed=0, step=0.3):
    gen = torch.Generator().manual_seed(seed)
    z, out = project_to_sphere(torch.randn(1, d, generator=gen)), []
    for _ in range(steps):
        z = project_to_sphere(z + step * torch.randn(1, d, generator=gen))
        out.append(z[0])
    return torch.stack(out)


@pytest.mark.parametrize("d", [8, 32])
def test_healthy_statistics_never_trigger(d):
    g = guard(latent_size=d)
    assert feed(g, healthy_walk(3000, d)) == []
    assert g.distance < 1.0


@pytest.mark.slow
def test_a_healthy_fake_lamp_dream_never_triggers():
    lamp = make_lamp(contrast=30)
    dream, g = Dream(lamp, seed=1), guard(lamp_fps=lamp.data.lamp_fps)
    actions = []
    for _ in range(100):
        latents = dream.advance(8)
        actions.append(g.check_latents(latents).kind)
        motion = (dream.decode(latents[1:]).astype(int) - dream.decode(latents[:-1])).__abs__()
        actions.append(g.check_motion(motion.mean(axis=(1, 2, 3))).kind)
    assert set(actions) == {"none"}


def test_non_finite_latents_reseed_even_with_the_guard_off():
    bad = healthy_walk(8, 8)
    bad[3, 2] = float("nan")
    assert guard().check_latents(bad).reason == "non_finite"
    inf = healthy_walk(8, 8)
    inf[0, 0] = float("inf")
    assert guard(enabled=False).check_latents(inf).reason == "non_finite"


def test_hard_drift_reseeds_once_the_window_is_steady():
    g = guard(window_frames=64)
    wide = torch.randn(200, 8, generator=torch.Generator().manual_seed(0)) * 3
    assert g.check_latents(wide[:8]).kind == "none"  # too few for steady statistics
    assert [a.reason for a in feed(g, wide[8:])][0] == "hard_drift"


def test_heavy_tails_reseed_through_kurtosis():
    g = guard(window_frames=64, latent_size=32)
    spiky = torch.zeros(64, 32)
    spiky[:, 0] = 30.0  # one huge element per latent: std and kurtosis far off
    spiky = project_to_sphere(spiky + 0.01 * torch.randn(64, 32))
    assert g.check_latents(spiky).reason == "hard_drift"
    assert g.stats.kurtosis > 20


def test_soft_drift_renormalizes_back_onto_the_reference():
    g = guard(window_frames=64)
    shifted = healthy_walk(64, 8) + 0.5
    assert g.check_latents(shifted).kind == "renormalize"
    fixed = g.renormalize(shifted[-1:])
    assert g.stats.mean == pytest.approx(0.0, abs=1e-9) and g.stats.std == pytest.approx(1.0)
    assert float(fixed.mean()) < 0.3


def test_disabled_guard_only_watches():
    g = guard(window_frames=64, enabled=False)
    assert feed(g, torch.randn(200, 8) * 3) == []
    assert g.stats.std > 2


def test_a_frozen_dream_reseeds_after_freeze_s_of_lamp_time():
    g = guard(lamp_fps=5.0, freeze_s=10.0)
    assert g.check_motion([0.0] * 49).kind == "none"
    assert g.check_motion([0.0]).reason == "frozen"
    g.reset()
    assert g.check_motion([0.0] * 40 + [1.0] + [0.0] * 40).kind == "none"


def test_a_loop_is_detected_and_a_long_healthy_dream_is_not():
    cycle = healthy_walk(37, 8, seed=3)
    looping = cycle.repeat(8, 1)
    g = guard(lamp_fps=5.0, loop_min_age_s=4.0)
    found = feed(g, looping)
    assert found and found[0].reason == "loop"
    assert feed(guard(lamp_fps=5.0, loop_min_age_s=4.0), healthy_walk(2000, 8, seed=4)) == []
