"""Hostile input, class 2: a lamp that would show black (or one frozen picture) forever. Every lamp
proves at load time that it decodes finite, non-flat frames from its real start contexts and
dreams finite latents; at run time non-finite frames are caught like non-finite latents (a fresh
dream, then LampBroken and a non-zero exit), and so is a lamp that freezes in every fresh dream."""

import dataclasses
import threading

import pytest
import torch
from prometheus_client import CollectorRegistry

from lavalamp.daemon import service
from lavalamp.daemon.config import GuardConfig, load_config
from lavalamp.daemon.metrics import DaemonMetrics
from lavalamp.daemon.service import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Daemon
from lavalamp.daemon.source import FrameSource, LampBroken
from lavalamp.models.checkpoint import LampLoadError, load_lamp, save_lamp

from .daemon_helpers import Running, write_config
from .fakes import make_lamp, metric, rewrite_lamp, save_fake_lamp, wait_until

NAN, INF = float("nan"), float("inf")


def poisoned(prefix: str, value: float, *, only: str = ""):
    """A tensors(dict) -> dict rewriter: every tensor under `prefix` (whose name holds `only`)
    filled with `value`."""
    def rewrite(tensors):
        return {k: torch.full_like(v, value) if k.startswith(prefix) and only in k and
                v.is_floating_point() else v for k, v in tensors.items()}
    return rewrite


def scaled(prefix: str, factor: float, *, only: str = ""):
    def rewrite(tensors):
        return {k: v * factor if k.startswith(prefix) and only in k else v for k, v in tensors.items()}
    return rewrite


# Each of these loaded (and hot-swapped in) before: a lamp showing black, grey or nothing at all.
BROKEN = {
    "decoder weights NaN": (poisoned("decoder.", NAN), "non-finite frames"),
    "decoder last layer inf": (poisoned("decoder.", INF, only="layers.12.weight"), "non-finite frames"),
    "decoder last bias inf": (poisoned("decoder.", INF, only="layers.12.bias"), "flat frames"),
    "decoder flat": (scaled("decoder.", 0.0, only="layers.12.weight"), "flat frames"),
    "latent std NaN": (poisoned("latent.std", NAN), "latent_std holds non-finite"),
    "start contexts inf": (poisoned("latent.start_contexts", INF), "start_contexts holds non-finite"),
    "rnn head NaN": (poisoned("rnn.", NAN, only="head"), "dreams non-finite latents"),
    "rnn core NaN": (poisoned("rnn.", NAN, only="core"), "non-finite"),
    "upsampler NaN": (poisoned("upsampler.", NAN), "non-finite frames"),
}


@pytest.fixture(scope="module")
def lamps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lamps")
    good = save_fake_lamp(folder / "good.safetensors", contrast=30)
    up = save_fake_lamp(folder / "up.safetensors", contrast=30, upsample_to=128)
    return folder, good, up


def broken_file(lamps, name):
    folder, good, up = lamps
    rewrite, _ = BROKEN[name]
    return rewrite_lamp(up if "upsampler" in name else good, tensors=rewrite,
                        out=folder / f"{name.replace(' ', '-')}.safetensors")


def test_the_poisons_reach_real_tensors(lamps):
    """Every rewrite above changes some tensor (a typo in a prefix would make a test vacuous)."""
    from safetensors.torch import load
    _, good, up = lamps
    for name, (rewrite, _) in BROKEN.items():
        tensors = load(open(up if "upsampler" in name else good, "rb").read())
        after = rewrite(dict(tensors))
        assert any(not torch.equal(after[k], tensors[k]) for k in tensors), name


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_lamp_that_cannot_be_shown_is_refused_at_load(lamps, name):
    path = broken_file(lamps, name)
    with pytest.raises(LampLoadError) as err:
        load_lamp(path)
    assert BROKEN[name][1] in str(err.value) and path in str(err.value)


@pytest.mark.slow
def test_good_lamps_pass_the_proof_including_the_shipped_one(lamps):
    _, good, up = lamps
    assert load_lamp(good).name == "test-lamp"
    assert load_lamp(up).frame_size == 128
    assert load_lamp(None).name == "default-lamp"


def test_a_hot_swap_to_a_black_lamp_is_refused_and_the_lamp_goes_on(tmp_path, lamps):
    _, good, _ = lamps
    model = tmp_path / "watched.safetensors"
    rewrite_lamp(good, out=model)
    config = write_config(tmp_path / "c.yaml", {"schedule": {"watch_model_s": 0.05}})
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config), config_path=config, model_path=str(model), headless=True,
               registry=registry)

    def swap():
        try:
            shown = lambda: metric(registry, "lavalamp_frames_displayed_total")  # noqa: E731
            swap.ok = wait_until(lambda: shown() > 2, 30)
            rewrite_lamp(good, tensors=poisoned("decoder.", NAN), out=model)
            swap.refused = wait_until(
                lambda: metric(registry, "lavalamp_model_swaps_total", {"result": "refused"}) == 1, 30)
            now = shown()
            swap.still_running = wait_until(lambda: shown() > now + 5, 30)
            swap.frame = d.renderer.last_frame.copy()
        finally:
            d.request_stop("test")

    swap.ok = swap.refused = swap.still_running = False

    thread = threading.Thread(target=swap)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(30)
    assert swap.ok and swap.refused and swap.still_running
    assert metric(registry, "lavalamp_model_swaps_total", {"result": "loaded"}) == 0
    assert swap.frame.std() > 1  # still the good lamp, not black


def nan_decoder_lamp():
    lamp = make_lamp(contrast=30)
    with torch.no_grad():
        for p in lamp.decoder.parameters():
            p.fill_(NAN)
    return lamp


def source_for(lamp, **guard):
    registry = CollectorRegistry()
    source = FrameSource(lamp=lamp, guard=dataclasses.replace(GuardConfig(), **guard), seed=1)
    DaemonMetrics(registry, process=False).watch("0", source=source)
    return source, registry


def test_non_finite_frames_at_run_time_reseed_then_break(tmp_path):
    """A lamp that got past loading (built in memory here) and decodes NaN: a fresh dream first,
    then LampBroken, never black frames."""
    source, registry = source_for(nan_decoder_lamp())
    with pytest.raises(LampBroken, match="non-finite frames right after a fresh start"):
        source.next_batch(4)
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "non_finite"}) == 1


def test_non_finite_frames_once_are_a_reseed_and_the_lamp_goes_on():
    lamp = make_lamp(contrast=30)
    real = lamp.decoder
    calls = []

    class OnceNaN(torch.nn.Module):
        def forward(self, z):
            calls.append(1)
            frames = real(z)
            return frames * NAN if len(calls) == 1 else frames

    lamp.decoder = OnceNaN()
    source, registry = source_for(lamp)
    frames = source.next_batch(4)
    assert frames.shape == (4, 64, 64, 3) and frames.std() > 1
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "non_finite"}) == 1


def test_a_lamp_that_freezes_in_every_fresh_dream_is_broken():
    """A dream that stands still (here a head that never moves the latent) is reseeded as frozen;
    when every fresh dream freezes again without moving, reseeding forever would hide it."""
    lamp = make_lamp(contrast=30, head="deterministic")
    with torch.no_grad():
        for name, p in lamp.rnn.named_parameters():
            if "head" in name:
                p.zero_()
    source, registry = source_for(lamp, freeze_s=1.0)
    with pytest.raises(LampBroken, match="froze in 3 fresh dreams in a row"):
        for _ in range(200):
            source.next_batch(4)
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "frozen"}) == 2


def test_a_moving_lamp_that_freezes_now_and_then_is_not_broken():
    source, registry = source_for(make_lamp(contrast=30), freeze_s=1.0, freeze_motion=0.0)
    for _ in range(60):
        source.next_batch(4)
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "frozen"}) == 0


def test_the_daemon_exits_non_zero_on_a_lamp_broken_at_run_time(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "load_lamp", lambda path, device: nan_decoder_lamp())
    config = write_config(tmp_path / "c.yaml")
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config), config_path=config, model_path="in-memory",
               headless=True, registry=registry, max_frames=300)
    assert d.run() == EXIT_FAILURE
    assert "the lamp is broken" in d.producer.failure
    assert metric(registry, "lavalamp_frames_displayed_total") == 0


@pytest.mark.slow
def test_start_up_with_a_black_lamp_is_one_line_and_exit_2(tmp_path, lamps):
    model = broken_file(lamps, "decoder weights NaN")
    run = Running(["--headless", "--model", model, "--config", write_config(tmp_path / "c.yaml")])
    assert run.proc.wait(60) == EXIT_USAGE
    out = run.output()
    assert "non-finite frames" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_save_then_load_keeps_a_good_lamp_loadable(tmp_path):
    """The proof is not so strict that an ordinary saved lamp fails it (three seeds)."""
    for seed in range(3):
        save_lamp(make_lamp(seed=seed), tmp_path / f"{seed}.safetensors")
        load_lamp(tmp_path / f"{seed}.safetensors")
