"""The ring buffer between the producer thread and the display: preallocated, bounded, in order."""

from __future__ import annotations

import os
import threading

import numpy as np

MAX_MEMORY_SHARE = 0.5  # the ring buffer may take at most this share of the machine's memory


class RingBufferError(ValueError):
    """A ring buffer this machine cannot hold (buffer.depth_frames too large for its memory)."""


def check_capacity(capacity: int, frame_shape: tuple[int, ...]) -> int:
    """The bytes a ring buffer of `capacity` frames takes; RingBufferError if that is more than
    MAX_MEMORY_SHARE of this machine's memory (it would be swapped or killed, not refused)."""
    size = capacity * int(np.prod(frame_shape))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): nothing to compare with
        return size
    if size > MAX_MEMORY_SHARE * memory:
        raise RingBufferError(f"buffer.depth_frames: {capacity} frames of {'x'.join(map(str, frame_shape))} "
                              f"take {size / 2**30:.1f} GiB, more than {MAX_MEMORY_SHARE:.0%} of "
                              f"this machine's {memory / 2**30:.1f} GiB")
    return size


class RingBuffer:
    """A fixed number of preallocated uint8 frame slots, addressed by a running sequence number.

    One producer `put`s frames at the end; one consumer reads any held frame by its sequence
    number with `get` and frees the oldest with `release_before`. Nothing is ever overwritten
    before the consumer releases it, so a frame returned by `get` stays valid until released.
    """

    def __init__(self, *, capacity: int, frame_shape: tuple[int, ...]) -> None:
        if capacity < 2:
            raise ValueError(f"ring buffer capacity must be at least 2, got {capacity}")
        check_capacity(capacity, tuple(frame_shape))
        self.capacity = capacity
        self.frame_shape = tuple(frame_shape)
        self._slots = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self._first = 0  # sequence number of the oldest held frame
        self._end = 0  # sequence number the next frame put will get
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._data = threading.Condition(self._lock)

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest held frame (== end_seq when empty)."""
        return self._first

    @property
    def end_seq(self) -> int:
        """One past the sequence number of the newest held frame."""
        return self._end

    def __len__(self) -> int:
        return self._end - self._first

    def free(self) -> int:
        """Slots the producer may fill now."""
        return self.capacity - len(self)

    def wait_for_space(self, count: int, timeout: float) -> bool:
        """Block until `count` slots are free or `timeout` seconds pass; True if they are free."""
        count = min(count, self.capacity)
        with self._space:
            return self._space.wait_for(lambda: self.free() >= count, timeout)

    def wait_for_frames(self, count: int, timeout: float) -> bool:
        """Block until at least `count` frames are held or `timeout` seconds pass."""
        with self._data:
            return self._data.wait_for(lambda: len(self) >= count, timeout)

    def put(self, frames: np.ndarray) -> int:
        """Append frames (n,*frame_shape); returns the sequence number of the first one.

        The caller must have made room (wait_for_space): overfilling is a programming error.
        """
        n = len(frames)
        if tuple(frames.shape[1:]) != self.frame_shape:
            raise ValueError(f"frames of shape {frames.shape[1:]} do not fit slots {self.frame_shape}")
        with self._lock:
            if n > self.free():
                raise OverflowError(f"{n} frames do not fit in {self.free()} free slots")
            start = self._end
        for i in range(n):  # slots past _end belong to the producer alone: copy outside the lock
            self._slots[(start + i) % self.capacity] = frames[i]
        with self._data:
            self._end = start + n
            self._data.notify_all()
        return start

    def get(self, seq: int) -> np.ndarray:
        """The held frame with sequence number `seq` (a view, valid until released)."""
        if not self._first <= seq < self._end:
            raise IndexError(f"frame {seq} is not held (held: {self._first}..{self._end - 1})")
        return self._slots[seq % self.capacity]

    def release_before(self, seq: int) -> None:
        """Free every frame older than `seq`."""
        with self._space:
            self._first = max(self._first, min(seq, self._end))
            self._space.notify_all()
