"""Latent maths: moments, normality penalty, renormalization and slerp."""

import math

import pytest
import torch

from lavalamp.models.latent import (STANDARD_NORMAL, LatentStats, latent_stats, normality_penalty,
                                    project_to_sphere, renormalize, slerp)


def test_stats_of_a_large_gaussian_sample_are_standard():
    stats = latent_stats(torch.randn(4000, 32, generator=torch.Generator().manual_seed(0)))
    assert abs(stats.mean) < 0.02 and abs(stats.std - 1) < 0.02
    assert abs(stats.skew) < 0.05 and abs(stats.kurtosis - 3) < 0.1
    assert stats.distance(STANDARD_NORMAL) < 0.1


def test_stats_see_skew_and_heavy_tails():
    x = torch.distributions.Exponential(1.0).sample((20000,))
    stats = latent_stats(x.view(-1, 10))
    assert stats.skew == pytest.approx(2.0, abs=0.2) and stats.kurtosis == pytest.approx(9, abs=1.5)


def test_stats_are_the_moments_of_the_penalty_for_tensors_and_arrays():
    from lavalamp.models.latent import moments

    x = torch.randn(256, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64) ** 3
    expected = [float(m) for m in moments(x)]
    assert list(latent_stats(x)) == pytest.approx(expected, rel=1e-9)
    assert list(latent_stats(x.numpy())) == pytest.approx(expected, rel=1e-9)


def test_stats_of_non_finite_latents_are_nan():
    x = torch.randn(10, 4)
    x[3, 2] = float("inf")
    assert all(math.isnan(v) for v in latent_stats(x))


def test_normality_penalty_is_small_for_normal_and_large_otherwise():
    g = torch.Generator().manual_seed(0)
    assert normality_penalty(torch.randn(5000, 8, generator=g)) < 0.05
    assert normality_penalty(torch.rand(5000, 8, generator=g) * 5) > 1.0


def test_renormalize_maps_window_onto_reference():
    x = torch.randn(500, 16) * 3 + 2
    ref = LatentStats(0.0, 1.0, 0.0, 3.0)
    y = renormalize(x, latent_stats(x), ref)
    after = latent_stats(y)
    assert abs(after.mean) < 1e-6 and abs(after.std - 1) < 1e-6
    half = renormalize(x, latent_stats(x), ref, strength=0.5)
    assert latent_stats(x).std > latent_stats(half).std > after.std
    with pytest.raises(ValueError):
        renormalize(x, latent_stats(x), ref, strength=2)


def test_project_to_sphere_rows():
    y = project_to_sphere(torch.randn(3, 7) * 100 + 5)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(3), atol=1e-5, rtol=0)


def test_slerp_endpoints_norm_and_parallel_case():
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b, atol=1e-5, rtol=1e-5)
    u, v = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    torch.testing.assert_close(slerp(u, v, 0.3).norm(dim=-1), torch.ones(2), atol=1e-5, rtol=0)
    mid = slerp(a[0], a[0] * 2, 0.5)
    torch.testing.assert_close(mid, a[0] * 1.5)
    assert torch.isfinite(slerp(u, u, torch.tensor([0.2, 0.8]))).all()
