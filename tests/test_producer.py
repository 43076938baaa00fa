"""The producer thread: fills the buffer ahead, survives a crash, gives up on repeated ones."""

import dataclasses
import logging

import pytest
from prometheus_client import CollectorRegistry

from lavalamp.daemon.clock import START_FRAMES
from lavalamp.daemon.config import GuardConfig, ProducerConfig
from lavalamp.daemon.metrics import DaemonMetrics
from lavalamp.daemon.producer import Fault, Producer, parse_fault
from lavalamp.daemon.ring import RingBuffer
from lavalamp.daemon.source import FrameSource

from .fakes import make_lamp, metric, save_fake_lamp, wait_until


@pytest.fixture
def parts():
    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry, process=False)
    src = FrameSource(lamp=make_lamp(contrast=30), guard=GuardConfig(), seed=1)
    ring = RingBuffer(capacity=16, frame_shape=src.frame_shape)
    made = []

    def producer(fault=None, **config):
        p = Producer(source=src, ring=ring, fault=fault, batch_frames=4,
                     config=dataclasses.replace(ProducerConfig(), **config))
        metrics.watch("0", source=src, producer=p, ring=ring)
        made.append(p)
        p.start()
        return p

    yield producer, src, ring, registry
    for p in made:
        p.stop()


def test_it_fills_the_buffer_and_then_waits(parts):
    producer, _, ring, registry = parts
    p = producer()
    assert ring.wait_for_frames(16, timeout=20)
    assert wait_until(lambda: p.heartbeat_age() < 0.5)
    assert metric(registry, "lavalamp_frames_generated_total") == 16
    ring.release_before(8)
    assert wait_until(lambda: len(ring) == 16)
    assert metric(registry, "lavalamp_frames_generated_total") == 24


def test_the_first_batch_is_what_the_display_clock_needs_and_then_whole_batches_fill_the_ring(parts, monkeypatch):
    producer, src, ring, _ = parts
    real, sizes = src.next_batch, []
    monkeypatch.setattr(src, "next_batch", lambda n: sizes.append(n) or real(n))
    producer()
    assert ring.wait_for_frames(16, timeout=20)
    assert wait_until(lambda: sum(sizes) == 16)
    assert START_FRAMES == 2
    assert sizes == [2, 2, 4, 4, 4]  # the display clock starts after the first batch, not the second


def test_a_ring_of_a_batch_plus_two_keeps_flowing_while_the_display_holds_two_frames():
    src = FrameSource(lamp=make_lamp(contrast=30), guard=GuardConfig(), seed=1)
    ring = RingBuffer(capacity=4 + 2, frame_shape=src.frame_shape)  # the least the config allows
    p = Producer(source=src, ring=ring, batch_frames=4, config=ProducerConfig())
    p.start()
    try:
        def display_holds_the_two_newest():
            ring.release_before(ring.end_seq - 2)  # the frame shown and the one it fades to
            return p.frames_generated >= 40
        assert wait_until(display_holds_the_two_newest, timeout=30)
    finally:
        p.stop()


def test_a_crash_is_logged_counted_and_the_dream_restarts(parts, monkeypatch, caplog):
    producer, src, ring, registry = parts
    real, calls = src.next_batch, []

    def crash_once(n):
        calls.append(n)
        if len(calls) == 2:
            raise RuntimeError("boom in the decoder")
        return real(n)

    monkeypatch.setattr(src, "next_batch", crash_once)
    with caplog.at_level(logging.ERROR):
        p = producer()
        assert ring.wait_for_frames(16, timeout=20)
    assert metric(registry, "lavalamp_producer_errors_total") == 1
    assert metric(registry, "lavalamp_reseeds_total", {"reason": "producer_restart"}) == 1
    record = next(r for r in caplog.records if "producer crashed" in r.getMessage())
    assert record.exc_info and "boom in the decoder" in str(record.exc_info[1])
    assert not p.failed.is_set()


def test_repeated_crashes_stop_with_a_failure(parts):
    producer, _, _, registry = parts
    p = producer(fault=Fault("crash-producer", 0.0), max_failures=3)
    assert p.failed.wait(timeout=20)
    assert "crashed 3 times" in p.failure
    assert metric(registry, "lavalamp_producer_errors_total") == 3


def test_a_hung_producer_stops_its_heartbeat(parts):
    producer, _, _, _ = parts
    p = producer(fault=Fault("hang-producer", 0.0))
    assert wait_until(lambda: p.heartbeat_age() > 0.5, timeout=10)
    assert not p.stop(timeout=0.2)  # it lingers: only a restart helps


def test_a_new_checkpoint_is_loaded_on_the_side_and_a_broken_one_refused(parts, tmp_path):
    producer, src, ring, registry = parts
    p = producer()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    p.request_load(broken, "cpu")
    assert wait_until(lambda: metric(registry, "lavalamp_model_swaps_total", {"result": "refused"}) == 1)
    assert src.lamp.name == "test-lamp"
    p.request_load(save_fake_lamp(tmp_path / "new.safetensors", name="new-lamp", seed=4), "cpu")
    assert wait_until(lambda: metric(registry, "lavalamp_model_swaps_total", {"result": "loaded"}) == 1)
    ring.release_before(ring.end_seq)
    assert wait_until(lambda: src.lamp.name == "new-lamp")


@pytest.mark.parametrize("text", ["hang-producer", "crash-producer:soon", "explode:3", "hang-producer:-1"])
def test_bad_fault_specs_are_refused(text):
    with pytest.raises(ValueError, match="LAVALAMP_FAULT"):
        parse_fault(text)
    assert parse_fault("hang-producer:2.5") == Fault("hang-producer", 2.5)


def test_a_checkpoint_overwritten_in_place_does_not_crash_the_running_lamp(tmp_path):
    """`cp new.safetensors lamp.safetensors` truncates the file the running lamp came from."""
    from lavalamp.models.checkpoint import load_lamp

    path = save_fake_lamp(tmp_path / "lamp.safetensors")
    lamp = load_lamp(path)
    with open(path, "wb") as f:
        f.write(b"x")
    assert float(lamp.start_contexts.abs().sum()) > 0  # a memory-mapped tensor would SIGBUS here
