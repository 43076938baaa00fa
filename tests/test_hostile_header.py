"""Hostile input, class 3: checkpoint headers of the wrong types or absurd sizes. The whole header
(the lamp's JSON and the safetensors tensor index) is validated into typed objects before any
module is built or any weight read, sizes bounded before anything is allocated; a hot-swap
installs all or nothing."""

from __future__ import annotations

import json
import resource
import struct
import threading
import time

import pytest
import torch
from prometheus_client import CollectorRegistry

from lavalamp.daemon.config import load_config
from lavalamp.daemon.service import EXIT_OK, Daemon
from lavalamp.models.checkpoint import LampLoadError, load_lamp

from .daemon_helpers import write_config
from .fakes import lamp_header, make_lamp, metric, rewrite_lamp, save_fake_lamp, wait_until


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "good.safetensors", contrast=30)


@pytest.fixture(scope="module")
def upsampled(tmp_path_factory):
    return save_fake_lamp(tmp_path_factory.mktemp("lamp") / "up.safetensors", contrast=30,
                          upsample_to=128)


def edited(header: dict, dotted: str, value) -> dict:
    """`header` with the field at dotted path set to `value` (the key removed if value is ...)."""
    header = json.loads(json.dumps(header))
    *path, last = dotted.split(".")
    holder = header
    for key in path:
        holder = holder[key]
    if value is ...:
        del holder[last]
    else:
        holder[last] = value
    return header


# Each was accepted (and crashed later), raised something other than LampLoadError, or
# allocated far more than it should before failing.
WRONG = [
    ("decoder_config.latent_size", "8", "decoder_config.latent_size"),
    ("decoder_config.latent_size", 8.0, "decoder_config.latent_size"),
    ("decoder_config.latent_size", True, "decoder_config.latent_size"),
    ("decoder_config.sphere", "yes", "decoder_config.sphere"),
    ("decoder_config.bogus", 1, "unknown field 'bogus'"),
    ("rnn_config.hidden_size", None, "rnn_config.hidden_size"),
    ("rnn_config.cell", 5, "rnn_config.cell"),
    ("rnn_config", [16], "rnn_config: expected a JSON object"),
    ("data.fps", "30", "data.fps"),
    ("data.fps", 0, "data.fps"),
    ("data.fps", 1e308 * 10, "data.fps"),
    ("data.frame_step", 0, "data.frame_step"),
    ("data.frame_step", 2.5, "data.frame_step"),
    ("data.description", ["x"], "data.description"),
    ("data", ..., "data: expected a JSON object"),
    ("reference.std", 0, "reference.std"),
    ("reference.std", "1", "reference.std"),
    ("reference.mean", ..., "reference: expected exactly"),
    ("temperature", "hot", "temperature"),
    ("temperature", -1, "temperature"),
    ("temperature", float("nan"), "temperature"),
    ("grain", -0.5, "grain"),
    ("grain", 1000, "grain"),
    ("grain", "fine", "grain"),
    ("grain", float("inf"), "grain"),
    ("has_encoder", "yes", "has_encoder"),
    ("name", 5, "name"),
    ("name", "evil\nINFO forged log line", "name"),
    ("name", "n" * 10_000, "name"),
    ("decoder_kind", 5, "unknown decoder kind"),
    ("training", [1, 2], "training: expected a JSON object"),
    ("surprise", 1, "unknown field 'surprise'"),
]


@pytest.mark.parametrize("dotted, value, message", WRONG, ids=[f"{d}={v!r}"[:40] for d, v, _ in WRONG])
def test_a_header_field_of_the_wrong_type_or_range_is_refused_by_name(tmp_path, good, dotted, value,
                                                                     message):
    path = rewrite_lamp(good, header=edited(lamp_header(good), dotted, value),
                        out=tmp_path / "bad.safetensors")
    with pytest.raises(LampLoadError) as err:
        load_lamp(path)
    assert message in str(err.value) and path in str(err.value)


@pytest.mark.parametrize("dotted, value", [("upsampler_config.channels", "32"),
                                           ("upsampler_config.out_size", 100_000),
                                           ("upsampler_config.blocks", 10**6),
                                           ("upsampler_config", "big")])
def test_the_upsampler_config_is_validated_too(tmp_path, upsampled, dotted, value):
    path = rewrite_lamp(upsampled, header=edited(lamp_header(upsampled), dotted, value),
                        out=tmp_path / "bad.safetensors")
    with pytest.raises(LampLoadError, match="upsampler_config"):
        load_lamp(path)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("dotted, value", [
    ("rnn_config.hidden_size", 20_000), ("rnn_config.hidden_size", 10**9),
    ("decoder_config.base_channels", 5000), ("decoder_config.max_channels", 10**6),
    ("decoder_config.latent_size", 10**6), ("rnn_config.num_layers", 1000),
    ("rnn_config.mixtures", 10**5), ("rnn_config.hidden_size", 10**400),
])
def test_an_absurd_architecture_is_refused_before_anything_is_allocated(tmp_path, good, dotted, value):
    header = edited(lamp_header(good), dotted, value)
    if dotted == "decoder_config.latent_size":
        header["rnn_config"]["latent_size"] = value
    text = json.dumps(header)
    path = rewrite_lamp(good, header=text, out=tmp_path / "huge.safetensors")
    before, started = peak_rss_bytes(), time.process_time()  # CPU: the work, not the machine's load
    with pytest.raises(LampLoadError):
        load_lamp(path)
    assert time.process_time() - started < 2.0
    assert peak_rss_bytes() - before < 200 * 2**20


def test_a_bounded_but_large_architecture_is_refused_from_its_weight_bytes(tmp_path, good):
    header = edited(lamp_header(good), "rnn_config.hidden_size", 8192)
    header = edited(header, "rnn_config.num_layers", 16)
    path = rewrite_lamp(good, header=header, out=tmp_path / "big.safetensors")
    with pytest.raises(LampLoadError, match="GiB of weights"):
        load_lamp(path)


def tensors_edit(fn):
    return lambda tensors: fn(dict(tensors)) or tensors


@pytest.mark.parametrize("name, edit, message", [
    ("mean as float64", lambda t: t.update({"latent.mean": t["latent.mean"].double()}), "latent.mean"),
    ("mean one too long", lambda t: t.update({"latent.mean": torch.zeros(9)}), "latent.mean"),
    ("no start contexts", lambda t: t.update({"latent.start_contexts": torch.zeros(0, 6, 8)}),
     "latent.start_contexts"),
    ("flat start contexts", lambda t: t.update({"latent.start_contexts": torch.zeros(4, 8)}),
     "latent.start_contexts"),
    ("decoder weight half precision",
     lambda t: t.update({"decoder.project.0.weight": t["decoder.project.0.weight"].half()}),
     "decoder.project.0.weight"),
    ("an extra tensor", lambda t: t.update({"evil.payload": torch.zeros(10)}), "evil.payload"),
    ("a missing tensor", lambda t: t.pop("rnn.head.bias"), "rnn.head.bias"),
])
def test_tensor_dtypes_and_shapes_are_checked_against_the_configs(tmp_path, good, name, edit, message):
    def rewrite(tensors):
        tensors = dict(tensors)
        edit(tensors)
        return tensors

    path = rewrite_lamp(good, tensors=rewrite, out=tmp_path / "bad.safetensors")
    with pytest.raises(LampLoadError, match=message.replace(".", r"\.")):
        load_lamp(path)


def raw_file(header_json: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header_json)) + header_json + body


@pytest.mark.parametrize("data", [
    struct.pack("<Q", 2**40) + b"{}",  # a header length far beyond the file
    struct.pack("<Q", 64 * 2**20) + b"{" + b" " * 100,  # beyond the header bound
    raw_file(json.dumps({"x": {"dtype": "F32", "shape": [10], "data_offsets": [0, 40]}}).encode(),
             b"\0" * 8),  # offsets beyond the file
    raw_file(json.dumps({"x": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 40]}}).encode(),
             b"\0" * 40),  # a shape the bytes do not hold
    raw_file(json.dumps({"x": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}}).encode(),
             b"\0"),
    raw_file(b"[" * 100_000 + b"]" * 100_000),
])
def test_a_damaged_tensor_index_is_refused_before_reading_weights(tmp_path, data):
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(data)
    with pytest.raises(LampLoadError, match="not a readable neural-lavalamp checkpoint"):
        load_lamp(path)


def test_a_file_too_big_to_be_a_lamp_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.truncate(2 * 2**30 + 1)  # sparse: no disk used
    before, started = peak_rss_bytes(), time.process_time()
    with pytest.raises(LampLoadError, match="not a lamp"):
        load_lamp(path)
    assert time.process_time() - started < 1.0 and peak_rss_bytes() - before < 200 * 2**20


def test_a_swap_whose_install_fails_leaves_the_lamp_whole_and_the_next_swap_works(monkeypatch):
    from lavalamp.daemon import source as source_module
    from lavalamp.daemon.config import GuardConfig
    from lavalamp.daemon.metrics import DaemonMetrics

    registry = CollectorRegistry()
    src = source_module.FrameSource(lamp=make_lamp(contrast=30), guard=GuardConfig(), seed=1)
    DaemonMetrics(registry, process=False).watch("0", source=src)
    src.next_batch(4)
    real_guard = source_module.DriftGuard

    def failing(**kwargs):
        raise RuntimeError("guard cannot be built")

    monkeypatch.setattr(source_module, "DriftGuard", failing)
    src.request_swap(make_lamp(contrast=30, name="half", seed=3))
    frames = src.next_batch(4)
    assert src.lamp.name == "test-lamp" and src.dream.lamp is src.lamp and frames.std() > 1
    assert metric(registry, "lavalamp_model_swaps_total", {"result": "refused"}) == 1
    monkeypatch.setattr(source_module, "DriftGuard", real_guard)
    src.request_swap(make_lamp(contrast=30, name="whole", seed=4))
    src.next_batch(4)
    assert src.lamp.name == "whole" and src.dream.lamp is src.lamp


@pytest.mark.slow
def test_hostile_headers_hot_swapped_in_a_row_are_refused_and_a_good_one_then_loads(tmp_path, good):
    model = tmp_path / "watched.safetensors"
    rewrite_lamp(good, out=model)
    config = write_config(tmp_path / "c.yaml", {"schedule": {"watch_model_s": 0.05}})
    registry = CollectorRegistry()
    d = Daemon(config=load_config(config), config_path=config, model_path=str(model), headless=True,
               registry=registry)
    header = lamp_header(good)
    hostile = [edited(header, "data.fps", "30"), edited(header, "rnn_config.hidden_size", 10**9),
               edited(header, "temperature", "hot"), edited(header, "reference", [0, 1, 0, 3])]

    def swap():
        refused = lambda: metric(registry, "lavalamp_model_swaps_total", {"result": "refused"})  # noqa: E731
        try:
            swap.ok = wait_until(lambda: metric(registry, "lavalamp_frames_displayed_total") > 2, 30)
            for i, bad in enumerate(hostile):
                rewrite_lamp(good, header=bad, out=model)
                swap.ok &= wait_until(lambda: refused() == i + 1, 30)
            rewrite_lamp(good, header=dict(header, name="after-all"), out=model)
            swap.ok &= wait_until(lambda: d.source.lamp.name == "after-all", 30)
        finally:
            d.request_stop("test")

    swap.ok = False
    thread = threading.Thread(target=swap)
    thread.start()
    assert d.run() == EXIT_OK
    thread.join(30)
    assert swap.ok
    assert metric(registry, "lavalamp_producer_errors_total") == 0
