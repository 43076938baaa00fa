"""The lamp shipped in the package: present, small, self-describing, and it dreams a lit, moving lamp."""

import numpy as np
import pytest
import torch

from lavalamp.models.checkpoint import default_lamp_path, load_lamp
from lavalamp.models.dream import Dream
from lavalamp.models.motion import step_motion
from lavalamp.train.simulator import SimulatorConfig
from lavalamp.train.trainer import CALIBRATION_TEMPERATURES, CALIBRATION_TOLERANCE

MAX_BYTES = 10 * 1024 * 1024


def test_the_default_lamp_ships_and_is_small():
    path = default_lamp_path()
    assert path.is_file(), f"{path} is missing: run `make default-lamp`"
    assert path.stat().st_size <= MAX_BYTES


def test_the_default_lamp_describes_itself():
    lamp = load_lamp(None)
    assert lamp.frame_size == 256 and lamp.base_size == 64 and lamp.decoder_kind == "vae"
    assert lamp.upsampler is not None and lamp.upsampler.config.out_size == 256
    assert lamp.data.lamp_fps > 0 and "simulator" in lamp.data.description
    # make default-lamp: the decoder sharpened, then the upsampler, then a new RNN on longer footage
    upgrades = lamp.training["upgraded_by"]
    assert [(u["config"]["frame_size"], u["config"].get("init_trains", "sharpening")) for u in upgrades] == \
        [(64, "sharpening"), (256, "sharpening"), (64, "rnn")]
    assert [u["config"]["decoder_loss"] for u in upgrades[:2]] == ["adversarial", "adversarial"]
    calibrations = [lamp.training["calibration"], *(u["calibration"] for u in upgrades if "calibration" in u)]
    assert 0 < lamp.temperature <= 1 and calibrations[-1]["temperature"] == lamp.temperature
    # by today's rule: the hottest temperature tried whose settled motion is within the tolerance
    ratios = {float(t): r for t, r in calibrations[-1]["motion_ratio_by_temperature"].items()}
    assert set(ratios) == set(CALIBRATION_TEMPERATURES)
    assert lamp.temperature == max(t for t, r in ratios.items() if r <= CALIBRATION_TOLERANCE)
    assert lamp.rnn.config.sphere and lamp.decoder_config.sphere
    # the glass's outline and highlights as the footage shows them, measured at 256 px
    assert lamp.fixed_detail.shape == (3, 256, 256) and lamp.training["fixed_detail"]["setting"] == "auto"
    assert 0.1 < float(lamp.fixed_detail.abs().mean()) * 255 < 5
    # the simulator's grain (SimulatorConfig.grain), less what the lamp's own frames already carry
    # (with the fixed detail, which makes up for the upsampler's own fixed texture, next to nothing)
    grain = lamp.training["grain"]
    assert grain["setting"] == "auto" and grain["footage"]["std"] == pytest.approx(SimulatorConfig().grain,
                                                                                  rel=0.05)
    assert 0 < lamp.grain <= grain["footage"]["std"]
    assert lamp.grain ** 2 + grain["lamp_texture"] ** 2 == pytest.approx(grain["footage"]["std"] ** 2,
                                                                         rel=0.01)


@pytest.mark.slow
def test_the_default_lamp_dreams_a_lit_moving_lamp():
    torch.set_num_threads(1)
    dream = Dream(load_lamp(None), seed=0)
    frames = dream.decode(dream.advance(120)).astype(np.float32)
    assert frames.mean() > 30 and frames.std() > 20, "a dark or flat picture"
    centre = frames[:, 64:192, 96:160]
    assert centre[..., 0].mean() > centre[..., 2].mean(), "the classic palette's red wax is gone"
    steps = step_motion(frames)
    assert steps.min() > 0.05 and steps.mean() < 8, f"motion per step {steps.mean():.2f}"
    assert np.abs(frames[-1] - frames[0]).mean() > 2, "the dream froze"
    edges = np.abs(np.diff(frames, axis=2)).mean() + np.abs(np.diff(frames, axis=1)).mean()
    plain = torch.nn.functional.interpolate(torch.from_numpy(frames[:, ::4, ::4]).permute(0, 3, 1, 2),
                                            scale_factor=4, mode="bilinear").permute(0, 2, 3, 1).numpy()
    plain_edges = np.abs(np.diff(plain, axis=2)).mean() + np.abs(np.diff(plain, axis=1)).mean()
    assert edges > 1.2 * plain_edges, "no sharper than its own frames shrunk and plainly enlarged"
