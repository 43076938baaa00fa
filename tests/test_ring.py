"""The ring buffer: bounded, nothing lost or reordered, producer and consumer on two threads."""

import threading

import numpy as np
import pytest

from lavalamp.daemon.ring import RingBuffer


def frames(start, n, shape=(2, 2, 3)):
    return np.stack([np.full(shape, (start + i) % 256, np.uint8) for i in range(n)])


def test_memory_is_preallocated_and_bounded():
    ring = RingBuffer(capacity=4, frame_shape=(2, 2, 3))
    ring.put(frames(0, 4))
    assert ring.free() == 0 and len(ring) == 4
    with pytest.raises(OverflowError):
        ring.put(frames(4, 1))
    assert not ring.wait_for_space(1, timeout=0.01)
    ring.release_before(2)
    assert ring.wait_for_space(2, timeout=0.01) and ring.put(frames(4, 2)) == 4
    assert ring._slots.nbytes == 4 * 12


def test_frames_come_back_by_sequence_number_until_released():
    ring = RingBuffer(capacity=3, frame_shape=(2, 2, 3))
    ring.put(frames(0, 3))
    assert [int(ring.get(s)[0, 0, 0]) for s in range(3)] == [0, 1, 2]
    ring.release_before(1)
    with pytest.raises(IndexError, match="frame 0 is not held"):
        ring.get(0)
    with pytest.raises(IndexError):
        ring.get(3)


def test_wrong_shape_is_refused():
    ring = RingBuffer(capacity=3, frame_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="do not fit"):
        ring.put(np.zeros((1, 4, 4, 3), np.uint8))


def test_no_loss_or_reorder_across_threads():
    ring = RingBuffer(capacity=5, frame_shape=(2, 2, 3))
    total, seen = 600, []

    def produce():
        for start in range(0, total, 3):
            assert ring.wait_for_space(3, timeout=10)
            ring.put(frames(start, 3))

    thread = threading.Thread(target=produce)
    thread.start()
    seq = 0
    while seq < total:
        assert ring.wait_for_frames(1, timeout=10)
        while seq < ring.end_seq:
            seen.append(int(ring.get(seq)[1, 1, 2]))
            seq += 1
            ring.release_before(seq)
    thread.join(10)
    assert seen == [i % 256 for i in range(total)]
