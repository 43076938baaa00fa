"""The sharpening stage: its losses see blur, it learns edges, and its failure guards keep good weights."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lavalamp.models.upsample import Upsampler, UpsamplerConfig
from lavalamp.train.losses import edge_energy, gradient_difference
from lavalamp.train.sharpen import (WIN_PATIENCE, MultiScaleDiscriminator, Pairs, SharpenConfig,
                                    Sharpener)


def squares(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Hard-edged bright squares on a dark ground: footage whose edges are all sharp."""
    rng = np.random.default_rng(seed)
    frames = np.full((count, size, size, 3), (40, 10, 60), np.uint8)
    for frame in frames:
        for _ in range(3):
            x, y = rng.integers(0, size - size // 4, size=2)
            frame[y:y + size // 4, x:x + size // 4] = (250, 120, 40)
    return frames


def blurred_pairs(count=24, size=32, small=16) -> Pairs:
    """Targets of `size` px and, as inputs, the same frames shrunk to `small` px and blurred."""
    frames = squares(count, size)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    inputs = F.avg_pool2d(F.avg_pool2d(x, size // small), 3, stride=1, padding=1, count_include_pad=False)
    return Pairs(inputs=inputs.half(), targets=frames, val_inputs=inputs[:8].half(), val_targets=frames[:8])


def sharpener(pairs, **config) -> Sharpener:
    torch.manual_seed(0)
    up = Upsampler(UpsamplerConfig(in_size=64, out_size=128, channels=8, blocks=1))
    return Sharpener(up, pairs, SharpenConfig(batch=8, crop=16, lr=3e-3, **config), torch.device("cpu"))


def test_gradient_difference_and_edge_energy_see_blur():
    sharp = torch.from_numpy(squares(4, 32)).permute(0, 3, 1, 2).float() / 255
    blurred = F.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)
    assert gradient_difference(sharp, sharp) == 0
    assert gradient_difference(blurred, sharp) > 0.01
    # edge energy is total variation per pixel: blur keeps a lone edge's, and loses fine detail
    fine = torch.zeros(1, 3, 32, 32)
    fine[..., ::4, :] = fine[..., 1::4, :] = 1.0  # 2 px stripes
    soft = F.avg_pool2d(fine, 5, stride=1, padding=2, count_include_pad=False)
    assert edge_energy(soft) < 0.5 * edge_energy(fine)


def test_the_discriminators_judge_two_scales_and_their_condition():
    disc = MultiScaleDiscriminator(conditioned=True)
    logits = disc(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert [tuple(t.shape) for t in logits] == [(2, 1, 8, 8), (2, 1, 4, 4)]
    assert MultiScaleDiscriminator(conditioned=False)(torch.rand(1, 3, 32, 32), None)[0].shape == (1, 1, 8, 8)


@pytest.mark.parametrize("adversarial", [False, True])
@pytest.mark.slow
def test_sharpening_makes_edges_sharper_than_plain_enlargement(adversarial):
    s = sharpener(blurred_pairs())
    before = s.validate()
    rng = np.random.default_rng(0)
    for _ in range(80):
        s.step(rng, adversarial=adversarial, lr_scale=1.0)
    after = s.validate()
    assert after["l1"] < 0.8 * before["l1"]
    assert after["edge_ratio"] > before["edge_ratio"] + 0.1, (before, after)


def test_crops_line_up_with_their_targets():
    pairs = blurred_pairs()
    s = sharpener(pairs)
    x, target = s.batch(np.random.default_rng(1))
    m = s.margin
    assert x.shape == (8, 3, 8 + 2 * m, 8 + 2 * m) and target.shape == (8, 3, 16, 16)
    # the crop's core, plainly enlarged, is its target blurred: they must agree on where things are
    core = F.interpolate(x[..., m:-m, m:-m], size=(16, 16), mode="bilinear", align_corners=False)
    assert (core - target).abs().mean() < 0.12


def test_a_collapse_is_caught_and_the_last_good_weights_come_back():
    s = sharpener(blurred_pairs())
    assert s.failure(s.validate(), adversarial=True) is None
    good = {k: v.clone() for k, v in s.module.state_dict().items()}
    with torch.no_grad():  # every frame the same flat grey
        s.module.detail[-1].weight.zero_()
        s.module.detail[-1].bias.fill_(-5.0)
    reason = s.failure(s.validate(), adversarial=True)
    assert reason is not None and "collapse" in reason
    s.restore_last_good()
    assert all(torch.equal(v, good[k]) for k, v in s.module.state_dict().items())


def test_a_discriminator_that_wins_outright_is_caught():
    s = sharpener(blurred_pairs())
    val = s.validate()
    s.disc_accuracy = 1.0
    reasons = [s.failure(val, adversarial=True) for _ in range(WIN_PATIENCE)]
    assert reasons[:-1] == [None] * (WIN_PATIENCE - 1)
    assert "wins outright" in reasons[-1]


def test_drifting_away_from_the_footage_is_caught():
    s = sharpener(blurred_pairs())
    val = s.validate()
    assert s.failure(val, adversarial=True) is None
    reason = s.failure({**val, "l1": 3 * val["l1"]}, adversarial=True)
    assert "drifting from the footage" in reason


def test_non_finite_weights_are_caught():
    s = sharpener(blurred_pairs())
    with torch.no_grad():
        s.module.detail[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError):
        s.step(np.random.default_rng(0), adversarial=False, lr_scale=1.0)


def test_state_round_trip_restores_everything_a_step_needs():
    pairs = blurred_pairs()
    a = sharpener(pairs)
    rng = np.random.default_rng(3)
    for _ in range(5):
        a.step(rng, adversarial=True, lr_scale=1.0)
    b = sharpener(pairs)
    b.load_state_dict(a.state_dict())
    for name in ("module", "disc"):
        for (k, va), vb in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(va, vb), k
    assert b.opt.state_dict()["state"][0]["step"] == 5 and b.disc_accuracy == a.disc_accuracy
    state = rng.bit_generator.state
    parts_a = a.step(rng, adversarial=True, lr_scale=1.0)
    rng.bit_generator.state = state
    parts_b = b.step(rng, adversarial=True, lr_scale=1.0)
    before_updates = ("l1", "gdl", "d_loss", "d_accuracy")  # computed before either optimizer steps
    assert {k: parts_a[k] for k in before_updates} == pytest.approx({k: parts_b[k] for k in before_updates})
