"""The lamp's fixed detail: measured from footage, stored in the lamp, validated, added to every frame."""

import numpy as np
import pytest
import torch

from lavalamp.models.checkpoint import LampLoadError, load_lamp, save_lamp
from lavalamp.models.dream import frames_to_float
from lavalamp.train.footage import area_resize
from lavalamp.train.trainer import mean_residual

from .fakes import lamp_header, make_lamp, rewrite_lamp
from .test_grain import footage


def detailed_lamp(upsample_to=128, seed=0):
    """A tiny lamp with a fixed detail: a bright vertical line and a faint dark square."""
    lamp = make_lamp(contrast=30, upsample_to=upsample_to, seed=seed)
    detail = torch.zeros(3, lamp.frame_size, lamp.frame_size)
    detail[:, :, 40:42] = 0.3
    detail[:, 10:20, 10:20] = -0.05
    lamp.fixed_detail = detail
    return lamp


def test_a_lamp_adds_its_fixed_detail_to_every_frame_and_keeps_it_through_a_save(tmp_path):
    lamp = detailed_lamp()
    save_lamp(lamp, tmp_path / "lamp.safetensors")
    back = load_lamp(tmp_path / "lamp.safetensors")
    assert lamp_header(tmp_path / "lamp.safetensors")["has_fixed_detail"] is True
    assert torch.equal(back.fixed_detail, lamp.fixed_detail)
    plain = make_lamp(contrast=30, upsample_to=128)
    z = torch.randn(5, lamp.latent_size)
    with torch.inference_mode():
        with_detail, without = back.decode(z), plain.decode(z)
    assert torch.allclose(with_detail, (without + lamp.fixed_detail).clamp(0, 1), atol=1e-6)
    assert float(with_detail.min()) >= 0.0 and float(with_detail.max()) <= 1.0
    back.grain = 2.0  # the grain goes on top of the detail
    with torch.inference_mode():
        grainy = back.decode(z)
    assert torch.allclose(grainy - with_detail, back.grain_pattern(grainy).expand_as(grainy), atol=1e-6)


def test_a_lamp_without_fixed_detail_says_so_and_decodes_as_before(tmp_path):
    lamp = make_lamp(contrast=30)
    save_lamp(lamp, tmp_path / "plain.safetensors")
    assert lamp_header(tmp_path / "plain.safetensors")["has_fixed_detail"] is False
    assert load_lamp(tmp_path / "plain.safetensors").fixed_detail is None


def test_a_lamp_written_before_the_fixed_detail_existed_still_loads(tmp_path):
    path = tmp_path / "old.safetensors"
    save_lamp(make_lamp(contrast=30), path)
    header = lamp_header(path)
    del header["has_fixed_detail"]
    assert load_lamp(rewrite_lamp(path, header=header)).fixed_detail is None


@pytest.mark.parametrize("name, edit, message", [
    ("missing", lambda h, t: t.pop("fixed_detail"), "tensor 'fixed_detail' is missing"),
    ("undeclared", lambda h, t: h.update(has_fixed_detail=False), "'fixed_detail' belongs to no module"),
    ("the decoder's size", lambda h, t: t.update(fixed_detail=torch.zeros(3, 64, 64)),
     "'fixed_detail' is F32 [3, 64, 64]; the architecture config needs F32 [3, 128, 128]"),
    ("half precision", lambda h, t: t.update(fixed_detail=t["fixed_detail"].half()), "fixed_detail"),
    ("not a bool", lambda h, t: h.update(has_fixed_detail="yes"), "has_fixed_detail"),
    ("not finite", lambda h, t: t["fixed_detail"].__setitem__((0, 5, 5), float("nan")),
     "fixed_detail holds values that are not finite or outside -1..1"),
    ("too large", lambda h, t: t["fixed_detail"].__setitem__((1, 5, 5), 1.5),
     "fixed_detail holds values that are not finite or outside -1..1"),
])
def test_a_damaged_fixed_detail_is_refused_by_name(tmp_path, name, edit, message):
    good = tmp_path / "good.safetensors"
    save_lamp(detailed_lamp(), good)
    header = lamp_header(good)

    def tensors(t):
        t = {k: v.clone() for k, v in t.items()}
        edit(header, t)
        return t

    weights = rewrite_lamp(good, tensors=tensors, out=tmp_path / "bad.safetensors")
    path = rewrite_lamp(weights, header=header)
    with pytest.raises(LampLoadError) as err:
        load_lamp(path)
    assert message in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("upsample_to", [None, 128])
def test_the_mean_residual_finds_what_stays_put_in_the_footage(upsample_to):
    """Moving wax over a fixed scene with a thin bright line (a glass's rim) that the lamp cannot
    render: the measured detail holds the line, and the lamp's reconstructions with the detail
    added are nearer the footage, also on frames it was not measured on."""
    size = upsample_to or 64
    lamp = make_lamp(contrast=30, upsample_to=upsample_to)
    frames = footage(frames=160, size=size, grain=1.0).astype(np.float32)
    frames[:, :, size // 3:size // 3 + 1] += 70.0
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    measured, held_out = frames[::2], frames[1::2]
    with torch.inference_mode():
        detail = mean_residual(lamp, measured, torch.device("cpu"), batch=16)
        assert detail.shape == (3, size, size) and detail.dtype == torch.float32
        line = detail[:, :, size // 3] - (detail[:, :, size // 3 - 2] + detail[:, :, size // 3 + 2]) / 2
        assert float(line.mean()) * 255 == pytest.approx(70.0, rel=0.25)
        made = lamp.decoder(lamp.encoder(frames_to_float(area_resize(held_out, 64))).chunk(2, 1)[0])
        made = lamp.upsampler(made) if lamp.upsampler is not None else made
        target = frames_to_float(held_out)
        before = float((made - target).abs().mean())
        after = float(((made + detail).clamp(0, 1) - target).abs().mean())
    assert after < 0.6 * before
