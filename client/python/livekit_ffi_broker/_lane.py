"""The worker's side of a session's shared-memory media lane (``Welcome.lane``).

The broker creates two sealed memfds for the session and names them by path
(``/proc/<broker pid>/fd/<n>``); this process maps both. Media then cross without gRPC:

- ``to_broker``: the bytes a request's pointers name are copied once, from the SDK's memory (or
  the capture window's copy of it) straight into a slot of the mapping, and the Request carries ``Buffer{ptr, lane}``; the slot is
  free again once the Response came (responses come in request order, so slots free oldest first);
- ``to_client``: the broker's ring of received frames. A frame's pointer fields point into the
  mapping itself (a ``LaneHold``), so the SDK's own copy (``AudioFrame._from_owned_info``) is the
  only one; once the SDK disposed of the frame, the hold is done, and the cursor moves past every
  slot before the oldest one still held (the SDK may dispose of frames of several streams in any
  order).

The regions are sealed against shrinking, so this mapping never faults either. A process that
cannot open the paths (another pid namespace) keeps sending media inline.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
from collections import deque
from typing import Any, Optional

CURSOR_OFFSET = 0
MAPPED_FLAG_OFFSET = 8
# Smaller buffers travel inline: a slot costs more than their bytes in the message.
MIN_BYTES = 512


class _Region:
    def __init__(self, region: Any) -> None:
        self.id = int(region.id)
        self.size = int(region.size)
        fd = os.open(region.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            actual = os.fstat(fd).st_size
            if actual != self.size:
                raise OSError(f"{region.path} has {actual} bytes, Welcome.lane says {self.size}")
            self.map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping keeps the memory
        self._anchor = ctypes.c_char.from_buffer(self.map)
        self.address = ctypes.addressof(self._anchor)

    def close(self) -> None:
        del self._anchor  # a live export keeps mmap.close() from working
        self.map.close()


class LanePlacement:
    """A request's bytes in to_broker: sent as Buffer.lane, free once its Response came."""

    __slots__ = ("region", "offset", "length", "slot")

    def __init__(self, region: int, offset: int, length: int, slot: list[Any]) -> None:
        self.region, self.offset, self.length, self.slot = region, offset, length, slot

    def __len__(self) -> int:
        return self.length


class LaneHold:
    """A received frame's slot of to_client, in use until ``done()``."""

    __slots__ = ("lane", "address", "release", "finished")

    def __init__(self, lane: "Lane", address: int, release: int) -> None:
        self.lane, self.address, self.release, self.finished = lane, address, release, False

    def done(self) -> None:
        self.lane._done(self)


class Lane:
    """Both regions of one session's lane, mapped. ``place`` is called from request threads,
    ``frame_address``/``release`` from the reader thread."""

    def __init__(self, granted: Any) -> None:
        self.to_broker = _Region(granted.to_broker)
        try:
            self.to_client = _Region(granted.to_client)
        except BaseException:
            self.to_broker.close()
            raise
        self._lock = threading.Lock()
        # to_broker as a ring of what requests in flight hold: [freed_up_to, placed_up_to).
        self._placed_up_to = 0
        self._freed_up_to = 0
        self._slots: list[list[Any]] = []  # [end, freed]
        self._cursor = 0
        self._held: "deque[LaneHold]" = deque()
        self._closing = False
        self._closed = False
        # buffers that crossed in the lane: placed for the broker, held from it
        self.placed = 0
        self.held = 0
        struct.pack_into("<Q", self.to_client.map, MAPPED_FLAG_OFFSET, 1)

    @property
    def region_ids(self) -> tuple[int, int]:
        return self.to_broker.id, self.to_client.id

    def place(self, data: Any) -> Optional[LanePlacement]:
        """Copies ``data`` (bytes-like: a view of the SDK's memory, or samples already copied)
        into to_broker; None when there is no room (the bytes then travel inline)."""
        size = self.to_broker.size
        length = len(data)
        with self._lock:
            if self._closing:
                return None
            while self._slots and self._slots[0][1]:
                self._freed_up_to = self._slots.pop(0)[0]
            if not self._slots:
                # Nothing in flight: start again at the region's beginning.
                self._placed_up_to = self._freed_up_to = 0
            at = self._placed_up_to % size
            skip = size - at if at + length > size else 0
            if self._placed_up_to + skip + length - self._freed_up_to > size:
                return None
            offset = 0 if skip else at
            self.to_broker.map[offset : offset + length] = data
            self._placed_up_to += skip + length
            slot = [self._placed_up_to, False]
            self._slots.append(slot)
            self.placed += 1
        return LanePlacement(self.to_broker.id, offset, length, slot)

    @staticmethod
    def free(placement: LanePlacement) -> None:
        """The request that placed it was answered or failed: the broker is done with it."""
        placement.slot[1] = True

    def hold(self, region: int, offset: int, length: int, release: int) -> LaneHold:
        """The slot of a to_client reference, checked against the region, held until done()."""
        if region != self.to_client.id or offset + length > self.to_client.size:
            raise ValueError(f"lane reference (region {region}, offset {offset}, length {length}) is not inside this session's to_client region {self.to_client.id}")
        hold = LaneHold(self, self.to_client.address + offset, release)
        with self._lock:
            self._held.append(hold)
            self.held += 1
        return hold

    @property
    def outstanding(self) -> int:
        """Received frames the SDK has not disposed of yet (their slots are still held)."""
        return len(self._held)

    def _done(self, hold: LaneHold) -> None:
        with self._lock:
            hold.finished = True
            release = self._cursor
            while self._held and self._held[0].finished:
                release = max(release, self._held.popleft().release)
            if release > self._cursor and not self._closed:
                self._cursor = release
                struct.pack_into("<Q", self.to_client.map, CURSOR_OFFSET, release)
            last = self._closing and not self._held
        if last:
            self._unmap()

    def close(self) -> None:
        """No more placements; the mappings go once no received frame points into them (the SDK
        may still be about to copy one)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            now = not self._held
        if now:
            self._unmap()

    def _unmap(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.to_broker.close()
        self.to_client.close()
