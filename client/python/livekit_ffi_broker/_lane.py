"""The worker's side of a session's shared-memory media lane (``Welcome.lane``).

The broker creates two sealed memfds for the session and names them by path
(``/proc/<broker pid>/fd/<n>``); this process maps both. Media then cross without gRPC:

- ``to_broker``: the bytes a request's pointers name are copied once, from the SDK's memory
  straight into a slot of the mapping, and the Request carries ``Buffer{ptr, lane}``; the slot is
  free again once the Response came (responses come in request order, so slots free oldest first);
- ``to_client``: the broker's ring of received frames; the SDK's frame memory is filled with one
  copy out of the mapping, then the reference's ``release`` is stored in the ring's cursor.

The regions are sealed against shrinking, so this mapping never faults either. A process that
cannot open the paths (another pid namespace) keeps sending media inline.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
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
        self._closed = False
        struct.pack_into("<Q", self.to_client.map, MAPPED_FLAG_OFFSET, 1)

    @property
    def region_ids(self) -> tuple[int, int]:
        return self.to_broker.id, self.to_client.id

    def place(self, address: int, length: int) -> Optional[tuple[int, int, list[Any]]]:
        """Copies ``length`` bytes at ``address`` (the SDK's memory) into to_broker; returns
        (region, offset, slot) to send as Buffer.lane, or None when there is no room."""
        size = self.to_broker.size
        with self._lock:
            if self._closed:
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
            ctypes.memmove(self.to_broker.address + offset, address, length)
            self._placed_up_to += skip + length
            slot = [self._placed_up_to, False]
            self._slots.append(slot)
        return self.to_broker.id, offset, slot

    def free(self, slot: list[Any]) -> None:
        """The request that placed ``slot`` was answered or failed: the broker is done with it."""
        slot[1] = True

    def frame_address(self, ref: Any) -> int:
        """This process's address of the bytes of a to_client reference (checked against the region)."""
        offset, length = int(ref.offset), int(ref.length)
        if int(ref.region) != self.to_client.id or offset + length > self.to_client.size:
            raise ValueError(f"lane reference (region {ref.region}, offset {offset}, length {length}) is not inside this session's to_client region {self.to_client.id}")
        return self.to_client.address + offset

    def release(self, release: int) -> None:
        """Everything up to ``release`` was read; one store per batch of events."""
        if self._closed or release <= self._cursor:
            return
        self._cursor = release
        struct.pack_into("<Q", self.to_client.map, CURSOR_OFFSET, release)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.to_broker.close()
        self.to_client.close()
