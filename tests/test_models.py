"""Networks: shapes at every frame size, and the RNN's step equal to its forward."""

import pytest
import torch

from lavalamp.models.rnn import LatentRNN, LatentRNNConfig, mdn_nll
from lavalamp.models.upsample import Upsampler, UpsamplerConfig
from lavalamp.models.vae import VAE, VAEConfig, kl_divergence


@pytest.mark.parametrize("size", [64, 128, 256])
def test_vae_shapes_and_range(size):
    vae = VAE(VAEConfig(frame_size=size, latent_size=12, base_channels=4, max_channels=16))
    x = torch.rand(2, 3, size, size)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == (2, 12) and logvar.shape == (2, 12)
    assert 0 <= recon.min() and recon.max() <= 1
    assert kl_divergence(mu, logvar).shape == (2,)


@pytest.mark.parametrize("sizes", [(64, 128), (64, 256), (128, 256)])
def test_upsampler_shapes_and_range(sizes):
    up = Upsampler(UpsamplerConfig(in_size=sizes[0], out_size=sizes[1], channels=8, blocks=1))
    with torch.no_grad():
        for p in up.parameters():
            p.normal_(0, 0.5)
        out = up(torch.rand(2, 3, sizes[0], sizes[0]))
    assert out.shape == (2, 3, sizes[1], sizes[1])
    assert 0 <= out.min() and out.max() <= 1


def test_an_untrained_upsampler_is_bilinear_enlargement():
    small = torch.rand(1, 3, 64, 64)
    out = Upsampler(UpsamplerConfig(in_size=64, out_size=256, channels=8, blocks=1))(small)
    expected = torch.nn.functional.interpolate(small, size=(256, 256), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected.clamp(0, 1))


@pytest.mark.parametrize("values, message", [
    ({"in_size": 64, "out_size": 64}, "out_size > in_size"),
    ({"in_size": 64, "out_size": 100}, "sizes must be in"),
    ({"channels": 4}, "channels must be in"),
    ({"channels": 100000}, "channels must be in"),
    ({"blocks": 0}, "blocks must be in"),
    ({"blocks": 2.5}, "blocks must be an integer"),
])
def test_bad_upsampler_configs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        UpsamplerConfig(**values)


def test_unsupported_frame_size_is_refused():
    with pytest.raises(ValueError, match="frame_size must be one of"):
        VAEConfig(frame_size=100)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("head", ["mdn", "deterministic"])
def test_t_steps_equal_forward(cell, head):
    torch.manual_seed(0)
    rnn = LatentRNN(LatentRNNConfig(latent_size=6, hidden_size=10, num_layers=2, cell=cell,
                                    head=head, mixtures=3)).eval()
    z = torch.randn(2, 7, 6)
    full, full_state = rnn(z)
    state = None
    for t in range(7):
        out, state = rnn.step(z[:, t], state)
        for a, b in zip(out, full):
            torch.testing.assert_close(a, b[:, t], rtol=1e-5, atol=1e-6)
    states = state if cell == "lstm" else (state,)
    full_states = full_state if cell == "lstm" else (full_state,)
    for a, b in zip(states, full_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mdn_head_shapes_and_sampling():
    rnn = LatentRNN(LatentRNNConfig(latent_size=5, hidden_size=8, mixtures=4))
    out, _ = rnn(torch.randn(3, 9, 5))
    assert out.logit_pi.shape == (3, 9, 4) and out.mu.shape == (3, 9, 4, 5)
    assert out.log_sigma.shape == (3, 9, 4, 5)
    g = torch.Generator().manual_seed(1)
    sample = rnn.sample(out, temperature=0.7, generator=g)
    assert sample.shape == (3, 9, 5)
    nll = mdn_nll(out, rnn.target(torch.randn(3, 10, 5)))
    assert nll.dim() == 0 and torch.isfinite(nll)
    nll.backward()


def test_sampling_is_reproducible_by_generator_and_temperature_narrows_it():
    rnn = LatentRNN(LatentRNNConfig(latent_size=5, hidden_size=8, mixtures=4))
    out, _ = rnn(torch.randn(1, 1, 5))
    draw = lambda t, s: rnn.sample(out, t, torch.Generator().manual_seed(s))  # noqa: E731
    torch.testing.assert_close(draw(1.0, 3), draw(1.0, 3))
    spread = lambda t: torch.stack([draw(t, s) for s in range(200)]).std(0).mean()  # noqa: E731
    assert spread(0.1) < spread(1.0)


def test_sphere_projection_bounds_the_next_latent():
    rnn = LatentRNN(LatentRNNConfig(latent_size=16, hidden_size=8))
    nxt = rnn.next_latent(torch.randn(4, 16), torch.randn(4, 16) * 1e6)
    torch.testing.assert_close(nxt.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(nxt.pow(2).mean(-1).sqrt(), torch.ones(4), atol=1e-5, rtol=0)


def test_deterministic_head_returns_its_mean():
    rnn = LatentRNN(LatentRNNConfig(latent_size=5, hidden_size=8, head="deterministic"))
    out, _ = rnn(torch.randn(2, 3, 5))
    torch.testing.assert_close(rnn.sample(out), out.mu[..., 0, :])


def test_bad_rnn_config_is_refused():
    with pytest.raises(ValueError, match="cell must be"):
        LatentRNNConfig(cell="rnn")
    with pytest.raises(ValueError, match="head must be"):
        LatentRNNConfig(head="flow")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("head", ["mdn", "deterministic"])
def test_numpy_stepper_follows_the_torch_step(cell, head):
    """The fast dreaming step is the same maths as rnn.step + sampling + next_latent."""
    import numpy as np

    from lavalamp.models.stepper import LatentStepper
    torch.manual_seed(0)
    rnn = LatentRNN(LatentRNNConfig(latent_size=6, hidden_size=10, num_layers=2, cell=cell,
                                    head=head, mixtures=3)).eval()
    stepper = LatentStepper(rnn, temperature=0.8)
    rng = np.random.default_rng(0)
    x = np.asarray(torch.nn.functional.normalize(torch.randn(6), dim=0) * 6 ** 0.5, np.float32)
    z, state, np_state = torch.from_numpy(x)[None], None, stepper.state_from_torch(None)
    for _ in range(5):
        gumbel = rng.gumbel(size=3).astype(np.float32)
        normal = rng.standard_normal(6).astype(np.float32)
        hidden, np_state = stepper.core(x, np_state)
        x = stepper.next_latent(x, stepper.head_value(hidden, gumbel, normal))
        with torch.no_grad():
            out, state = rnn.step(z, state)
            if head == "mdn":
                k = int(torch.argmax(out.logit_pi[0] / 0.8 + torch.from_numpy(gumbel)))
                value = out.mu[0, k] + out.log_sigma[0, k].exp() * 0.8 ** 0.5 * torch.from_numpy(normal)
            else:
                value = out.mu[0, 0]
            z = rnn.next_latent(z, value[None])
        np.testing.assert_allclose(x, z[0].numpy(), rtol=1e-4, atol=1e-4)
    back = stepper.state_to_torch(np_state)
    for a, b in zip(back if cell == "lstm" else (back,), state if cell == "lstm" else (state,)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
