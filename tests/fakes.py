"""Small random-weight lamps and other fakes shared by the tests."""

from __future__ import annotations

import torch

from lavalamp.models.checkpoint import DataInfo, Lamp
from lavalamp.models.latent import LatentStats
from lavalamp.models.motion import mean_abs_diff  # noqa: F401 - the tests' one measure of change
from lavalamp.models.rnn import LatentRNN, LatentRNNConfig
from lavalamp.models.upsample import Upsampler, UpsamplerConfig
from lavalamp.models.vae import VAE, VAEConfig


def make_lamp(*, frame_size: int = 64, latent_size: int = 8, hidden_size: int = 16,
              head: str = "mdn", cell: str = "gru", base_channels: int = 4,
              with_encoder: bool = True, seed: int = 0, name: str = "test-lamp",
              contrast: float = 1.0, upsample_to: int | None = None) -> Lamp:
    """A tiny random-weight lamp that behaves like a trained one in every way but looks.

    `contrast` scales the decoder's last layer: at 1 the frames barely change with the latent
    (a guard rightly calls that frozen); 30 gives visible motion, like a real lamp's.
    `upsample_to` adds a random-weight upsampler making frames of that size.
    """
    torch.manual_seed(seed)
    vae = VAEConfig(frame_size=frame_size, latent_size=latent_size, base_channels=base_channels,
                    max_channels=8 * base_channels)
    model = VAE(vae)
    decoder, encoder = model.decoder, model.encoder
    rnn = LatentRNN(LatentRNNConfig(latent_size=latent_size, hidden_size=hidden_size, head=head,
                                    cell=cell, mixtures=3))
    with torch.no_grad():
        decoder.layers[-2].weight.mul_(contrast)
    upsampler = None
    if upsample_to is not None:
        upsampler = Upsampler(UpsamplerConfig(in_size=frame_size, out_size=upsample_to, channels=8,
                                              blocks=1))
        with torch.no_grad():
            upsampler.detail[-1].weight.normal_(0, 0.05)
    for module in (decoder, encoder, rnn, upsampler):
        if module is not None:
            module.eval()
    return Lamp(name=name, decoder_kind="vae", decoder_config=vae, decoder=decoder, rnn=rnn,
                latent_mean=torch.randn(latent_size) * 0.1, latent_std=torch.rand(latent_size) + 0.5,
                reference=LatentStats(0.0, 1.0, 0.0, 3.0),
                start_contexts=torch.randn(4, 6, latent_size),
                data=DataInfo(fps=30.0, frame_step=6, description="random weights for tests"),
                encoder=encoder if with_encoder else None, upsampler=upsampler,
                training={"note": "test"})


def save_fake_lamp(path, **kwargs) -> str:
    """make_lamp(**kwargs) written to `path` with save_lamp; returns the path as a string."""
    from lavalamp.models.checkpoint import save_lamp

    save_lamp(make_lamp(**kwargs), path)
    return str(path)


def metric(registry, name: str, labels: dict | None = None) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none), as
    PromQL's sum() would give it: a daemon's total over its screens unless a screen is named."""
    wanted = (labels or {}).items()
    return float(sum(sample.value for family in registry.collect() for sample in family.samples
                     if sample.name == name and wanted <= sample.labels.items()))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; whether it became true."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def lamp_header(path) -> dict:
    """The JSON header (the 'lamp' metadata) of a saved lamp, as a dict."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["lamp"])


def rewrite_lamp(path, *, header=None, tensors=None, out=None) -> str:
    """The lamp at `path` written to `out` (default: in place) with its header replaced by `header`
    (a dict, or raw JSON text) and/or its tensors by `tensors(dict) -> dict`: hostile checkpoints."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load, save

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    weights = load(open(path, "rb").read())
    if header is not None:
        metadata["lamp"] = header if isinstance(header, str) else json.dumps(header)
    if tensors is not None:
        weights = tensors(weights)
    out = out or path
    with open(out, "wb") as f:
        f.write(save(weights, metadata=metadata))
    return str(out)


def watched_dream(metrics, screen: str = "0"):
    """A frame source of a tiny lamp, with its producer (not started) and ring buffer, whose series
    `metrics` (a DaemonMetrics) exports under `screen`, as the daemon's are."""
    from lavalamp.daemon.config import GuardConfig, ProducerConfig
    from lavalamp.daemon.producer import Producer
    from lavalamp.daemon.ring import RingBuffer
    from lavalamp.daemon.source import FrameSource

    source = FrameSource(lamp=make_lamp(contrast=30), guard=GuardConfig(), seed=1)
    ring = RingBuffer(capacity=8, frame_shape=source.frame_shape)
    metrics.watch(screen, source=source, ring=ring,
                  producer=Producer(source=source, ring=ring, config=ProducerConfig()))
    return source
