"""Pointer fields across the process boundary, driven by the shared table (pointer_fields.json).

Requests: every pointer field the SDK set names memory of this process. Its bytes are read here
(ctypes.string_at) and sent as Buffer{ptr, data}, keyed by the pointer's value; touching or
overlapping ranges (a video frame and its planes) travel as one Buffer, since the broker accepts
pointers inside a Buffer. In-out memory (APM) is written back from the Response's Buffers.

Responses and events: each pointer field is rewritten to the same offset in its Buffer's bytes,
where gRPC delivered them (_wire.WireBuffer: no copy); only Buffers that must keep their distances
in one block (a video frame sent as separate planes) are copied into one allocation. That memory
lives as long as what owns it on the SDK side:

- under an Owned* message of ``memory_handles`` (audio/video frame buffers, data packets): until
  the SDK disposes that handle (FfiHandle.dispose -> livekit_ffi_drop_handle). The broker already
  dropped the native handle, so the drop only frees the copy and never reaches the broker;
- in a response, outside such a message (the sox resampler's output_ptr): until the next response
  to a request naming the same ``*_handle`` (the next push/flush on that resampler) or until that
  handle is dropped, which is the library's own lifetime for that memory;
- in an event, outside such a message (none in the 0.12.75 schema): until the next event of the
  same kind.
"""
from __future__ import annotations

import ctypes
import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterable, Optional

from ._errors import INVALID_REQUEST, RESOURCE_EXHAUSTED, BrokerError
from ._lane import LaneHold
from ._wire import WireBuffer

logger = logging.getLogger("livekit_ffi_broker")

OWNED_HANDLE_TYPE = "livekit.proto.FfiOwnedHandle"
# livekit.proto.VideoBufferType: RGBA ABGR ARGB BGRA RGB24 are packed (stride x height bytes).
_PACKED_VIDEO_TYPES = frozenset({0, 1, 2, 3, 4})
# Buffers of one message closer than this are copied into one allocation, so that pointers keep
# their distances (the SDK reads a video frame as one block from data_ptr).
_CLUSTER_GAP = 64 * 1024
_UINT64 = 4  # FieldDescriptor.TYPE_UINT64
_LABEL_REPEATED = 3  # FieldDescriptor.LABEL_REPEATED


def is_repeated(field: Any) -> bool:
    """FieldDescriptor.is_repeated (protobuf >= 6), or its label (protobuf 5, removed in 7)."""
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == _LABEL_REPEATED


def _product(fields: list[str], times: int) -> Callable[[Any], int]:
    def size(holder: Any) -> int:
        total = times
        for name in fields:
            total *= int(getattr(holder, name))
        return total

    return size


def _field(name: str) -> Callable[[Any], int]:
    return lambda holder: int(getattr(holder, name))


def video_frame_bytes(info: Any) -> int:
    """Bytes a VideoBufferInfo's data_ptr covers (the rule of broker/video_layout.ts)."""
    if int(info.type) in _PACKED_VIDEO_TYPES:
        return int(info.stride) * int(info.height)
    components = info.components
    return int(components[0].size) if len(components) > 0 else 0


@dataclass(frozen=True)
class PointerEntry:
    message: str
    field: str
    size: Callable[[Any], int]
    request: Optional[str]  # "copy-in" | "in-out" | None
    output: Optional[str]  # "copy-out" | None


class PointerTable:
    def __init__(self, table: dict[str, Any]) -> None:
        self.entries: dict[tuple[str, str], PointerEntry] = {}
        for item in table["fields"]:
            rule = item["size"]
            if "video" in rule:
                size = video_frame_bytes
            elif "field" in rule:
                size = _field(rule["field"])
            else:
                size = _product(list(rule["product"]), int(rule["times"]))
            entry = PointerEntry(item["message"], item["field"], size, item.get("request"), item.get("output"))
            self.entries[(entry.message, entry.field)] = entry
        self.memory_types: frozenset[str] = frozenset(table["memory_handles"]["types"])

    @classmethod
    def load(cls) -> "PointerTable":
        text = resources.files("livekit_ffi_broker").joinpath("pointer_fields.json").read_text()
        return cls(json.loads(text))


class _Plan:
    """What a message type holds that matters here, computed once per type."""

    __slots__ = ("name", "pointers", "children", "is_memory", "is_owned_handle", "relevant")

    def __init__(self, name: str) -> None:
        self.name = name
        # field name -> PointerEntry, or None for a *_ptr field the table does not know
        self.pointers: dict[str, Optional[PointerEntry]] = {}
        # field name -> (child type name, is_map, is_repeated)
        self.children: dict[str, tuple[str, bool, bool]] = {}
        self.is_memory = False
        self.is_owned_handle = name == OWNED_HANDLE_TYPE
        self.relevant = False


class Planner:
    """Per message type: pointer fields, FfiOwnedHandles and the children that can lead to them."""

    def __init__(self, table: PointerTable) -> None:
        self.table = table
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def plan(self, descriptor: Any) -> _Plan:
        plan = self._plans.get(descriptor.full_name)
        if plan is not None:
            return plan
        with self._lock:
            self._build(descriptor)
            return self._plans[descriptor.full_name]

    def _build(self, root: Any) -> None:
        if root.full_name in self._plans:
            return
        new: dict[str, _Plan] = {}
        stack = [root]
        while stack:
            desc = stack.pop()
            if desc.full_name in self._plans or desc.full_name in new:
                continue
            plan = _Plan(desc.full_name)
            plan.is_memory = desc.full_name in self.table.memory_types
            new[desc.full_name] = plan
            for field in desc.fields:
                if field.message_type is not None:
                    child = field.message_type
                    is_map = child.GetOptions().map_entry
                    if is_map:
                        value = child.fields_by_name.get("value")
                        if value is None or value.message_type is None:
                            continue
                        child = value.message_type
                    plan.children[field.name] = (child.full_name, is_map, is_repeated(field))
                    stack.append(child)
                elif field.type == _UINT64 and field.name.endswith("_ptr"):
                    plan.pointers[field.name] = self.table.entries.get((desc.full_name, field.name))
        # Relevance: a fixed point, the schema has cycles.
        everything = {**self._plans, **new}
        for plan in new.values():
            plan.relevant = plan.is_owned_handle or bool(plan.pointers)
        changed = True
        while changed:
            changed = False
            for plan in new.values():
                if plan.relevant:
                    continue
                if any(everything[child[0]].relevant for child in plan.children.values()):
                    plan.relevant = True
                    changed = True
        for plan in new.values():
            plan.children = {k: v for k, v in plan.children.items() if everything[v[0]].relevant}
        self._plans.update(new)


@dataclass
class PointerRef:
    holder: Any
    field: str
    ptr: int
    entry: Optional[PointerEntry]
    owner: Optional[int]  # the memory handle whose message holds this pointer


def walk(
    planner: Planner,
    message: Any,
    on_pointer: Callable[[PointerRef], None],
    on_handle: Optional[Callable[[int, str, bool], None]] = None,
) -> None:
    """Visit the pointer fields (set, non-zero) and FfiOwnedHandles of ``message``, depth first.

    ``on_handle(id, holder type name, holder is a memory-handle type)``."""
    stack: list[tuple[Any, Optional[int]]] = [(message, None)]
    while stack:
        msg, owner = stack.pop()
        plan = planner.plan(msg.DESCRIPTOR)
        if not plan.relevant:
            continue
        if plan.is_memory and msg.HasField("handle"):
            owner = int(msg.handle.id)
        for field, value in msg.ListFields():
            name = field.name
            if name in plan.pointers:
                if value:
                    on_pointer(PointerRef(msg, name, int(value), plan.pointers[name], owner))
                continue
            child = plan.children.get(name)
            if child is None:
                continue
            child_name, is_map, repeated = child
            if child_name == OWNED_HANDLE_TYPE:
                if on_handle is not None:
                    for handle in value if repeated else (value,):
                        on_handle(int(handle.id), plan.name, plan.is_memory)
                continue
            if is_map:
                stack.extend((v, owner) for v in value.values())
            elif repeated:
                stack.extend((v, owner) for v in value)
            else:
                stack.append((value, owner))


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class RequestMemory:
    buffers: list[tuple[int, memoryview]]  # (ptr, the memory there): what travels as Request.buffers
    in_out: list[tuple[int, int]]  # (ptr, size): memory to write back from the Response
    handle_key: Optional[int]  # first *_handle the request names (owner of loose response memory)
    kind: str


def _request_kind(request: Any) -> tuple[str, Any]:
    which = request.WhichOneof("message")
    if which is None:
        raise BrokerError(INVALID_REQUEST, "FfiRequest has no request set in its oneof")
    return which, getattr(request, which)


def _first_handle(message: Any) -> Optional[int]:
    for field, value in message.ListFields():
        if field.type == _UINT64 and field.name.endswith("_handle") and not is_repeated(field):
            return int(value)
    return None


def collect_request(planner: Planner, request: Any, max_bytes: int) -> RequestMemory:
    """Read the memory behind every pointer field of an FfiRequest (in this process)."""
    kind, body = _request_kind(request)
    ranges: list[list[int]] = []
    in_out: list[tuple[int, int]] = []

    def on_pointer(ref: PointerRef) -> None:
        entry = ref.entry
        holder_name = ref.holder.DESCRIPTOR.name
        if entry is None or entry.request is None:
            raise BrokerError(
                INVALID_REQUEST,
                f"{kind}: {holder_name}.{ref.field} is a pointer field that the broker's pointer table "
                "(liblivekit_ffi 0.12.75 schema) does not carry across processes; this request is newer "
                "than the broker supports",
            )
        size = entry.size(ref.holder)
        if size < 0 or size > max_bytes:
            raise BrokerError(
                RESOURCE_EXHAUSTED,
                f"{kind}: {holder_name}.{ref.field} implies {size} bytes, over the {max_bytes}-byte message limit",
            )
        if size == 0:
            return
        ranges.append([ref.ptr, ref.ptr + size])
        if entry.request == "in-out":
            in_out.append((ref.ptr, size))

    walk(planner, body, on_pointer)
    buffers: list[tuple[int, memoryview]] = []
    if ranges:
        ranges.sort()
        merged = [ranges[0]]
        for start, end in ranges[1:]:
            last = merged[-1]
            if start <= last[1]:
                last[1] = max(last[1], end)
            else:
                merged.append([start, end])
        total = sum(end - start for start, end in merged)
        if total > max_bytes:
            raise BrokerError(RESOURCE_EXHAUSTED, f"{kind}: its memory is {total} bytes, over the {max_bytes}-byte message limit")
        # Views, not copies: the message encoder copies them once (_wire.request), before the
        # request returns to the SDK, which may then reuse its buffer.
        buffers = [(start, memoryview((ctypes.c_char * (end - start)).from_address(start)).cast("B")) for start, end in merged]
    return RequestMemory(buffers, in_out, _first_handle(body), kind)


def write_back(in_out: list[tuple[int, int]], buffers: Iterable[WireBuffer]) -> set[int]:
    """Copy in-out results into this process's memory; returns the ptrs written."""
    wanted = dict(in_out)
    written: set[int] = set()
    for buf in buffers:
        size = wanted.get(buf.ptr)
        if size is None:
            continue
        ctypes.memmove(buf.ptr, buf.address(), min(buf.size, size))
        written.add(buf.ptr)
    return written


# ---------------------------------------------------------------------------------------------
# Responses and events


def _done(memories: Iterable[Any]) -> None:
    """Memories no longer needed: a lane slot among them goes back to the broker."""
    for memory in memories:
        if isinstance(memory, LaneHold):
            memory.done()


class _Cluster:
    """Received Buffers close enough to be one block on the SDK side."""

    __slots__ = ("start", "end", "pieces", "memory", "address")

    def __init__(self, piece: WireBuffer) -> None:
        self.start = piece.ptr
        self.end = piece.ptr + piece.size
        self.pieces: list[WireBuffer] = [piece]
        self.memory: Any = None  # what keeps the block alive: the received message, or a copy
        self.address = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    def materialize(self) -> int:
        if self.memory is None:
            if len(self.pieces) == 1 and self.pieces[0].size > 0:
                piece = self.pieces[0]
                self.memory, self.address = piece.keeper, piece.address()
                return self.address
            memory = bytearray(max(self.end - self.start, 1))  # an empty region still gets an address
            for piece in self.pieces:
                offset = piece.ptr - self.start
                memory[offset : offset + piece.size] = piece.data
                if piece.hold is not None:
                    piece.hold.done()  # copied out of the lane
            self.memory = memory
            self.address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
        return self.address


class OutputMemory:
    """The copies of memory that responses and events point at, and who keeps each alive."""

    WARN_BYTES = 256 * 1024 * 1024

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self._lock = threading.RLock()  # RLock: a drop may come from a __del__ run by GC anywhere
        self._by_handle: dict[int, list[Any]] = {}
        self._handle_bytes: dict[int, int] = {}
        self._loose: dict[Any, list[Any]] = {}
        self._held_bytes = 0
        self._warn_at = self.WARN_BYTES
        self._warned_fields: set[str] = set()

    # What the broker answered ------------------------------------------------------------

    def take(
        self,
        body: Any,
        buffers: Iterable[Any],
        loose_key: Any,
        on_owned_handle: Callable[[int, str], None],
    ) -> None:
        """Rewrite the pointer fields of ``body`` (the chosen oneof of a response or event) to
        the received ``buffers`` (WireBuffers) in this process, and report the non-memory handles
        it carries.

        ``loose_key`` (a tuple: ``("handle", h)`` or ``("kind", name)``) keeps the memory that no
        memory handle owns, replacing what the previous message with the same key kept."""
        clusters = self._clusters(buffers)
        refs: list[PointerRef] = []
        memory_handles: set[int] = set()

        def on_handle(handle: int, holder: str, is_memory: bool) -> None:
            if is_memory:
                memory_handles.add(handle)
            else:
                on_owned_handle(handle, holder)

        walk(self.planner, body, refs.append, on_handle)
        try:
            self._keep(clusters, refs, memory_handles, loose_key)
        finally:
            # A lane slot that no pointer kept is the broker's again at once.
            for cluster in clusters:
                for piece in cluster.pieces:
                    if piece.hold is not None and cluster.memory is not piece.hold:
                        piece.hold.done()

    def _keep(self, clusters: list["_Cluster"], refs: list[PointerRef], memory_handles: set[int], loose_key: Any) -> None:
        if not refs and not memory_handles:
            return
        owners: dict[Any, list[_Cluster]] = {}
        for ref in refs:
            entry = ref.entry
            key = ref.owner if ref.owner is not None else loose_key
            if entry is None or entry.output is None:
                self._warn_field(ref, "the broker does not copy it; the field was set to 0")
                setattr(ref.holder, ref.field, 0)
                continue
            cluster = self._find(clusters, ref.ptr)
            if cluster is None:
                size = max(entry.size(ref.holder), 1)
                self._warn_field(ref, f"no Buffer came with it; it points at {size} zero bytes instead")
                cluster = _Cluster(WireBuffer(ref.ptr, bytes(size)))
            address = cluster.materialize() + (ref.ptr - cluster.start)
            setattr(ref.holder, ref.field, address)
            held = owners.setdefault(key, [])
            if not any(c is cluster for c in held):
                held.append(cluster)
        with self._lock:
            for handle in memory_handles:
                self._by_handle.setdefault(handle, [])
            for key, held_clusters in owners.items():
                memories = [c.memory for c in held_clusters]
                if not isinstance(key, tuple):
                    self._by_handle.setdefault(key, []).extend(memories)
                    size = sum(c.size for c in held_clusters)
                    self._handle_bytes[key] = self._handle_bytes.get(key, 0) + size
                    self._held_bytes += size
                else:
                    _done(self._loose.get(key, ()))
                    self._loose[key] = memories
            if self._held_bytes >= self._warn_at:
                logger.warning(
                    "%d MiB of frame memory received from the broker is still held: the SDK has not "
                    "disposed the handles of %d frames (an AudioStream/VideoStream nobody reads?)",
                    self._held_bytes >> 20,
                    len(self._by_handle),
                )
                self._warn_at *= 2

    @staticmethod
    def _clusters(buffers: Iterable[WireBuffer]) -> list[_Cluster]:
        clusters: list[_Cluster] = []
        for piece in sorted(buffers, key=lambda b: b.ptr):
            last = clusters[-1] if clusters else None
            if last is not None and piece.ptr - last.end <= _CLUSTER_GAP:
                last.pieces.append(piece)
                last.end = max(last.end, piece.ptr + piece.size)
            else:
                clusters.append(_Cluster(piece))
        return clusters

    @staticmethod
    def _find(clusters: list[_Cluster], ptr: int) -> Optional[_Cluster]:
        for cluster in clusters:
            for piece in cluster.pieces:
                if piece.ptr <= ptr < piece.ptr + max(piece.size, 1):
                    return cluster
        return None

    def _warn_field(self, ref: PointerRef, what: str) -> None:
        key = f"{ref.holder.DESCRIPTOR.full_name}.{ref.field}"
        if key in self._warned_fields:
            return
        self._warned_fields.add(key)
        logger.warning("pointer field %s in a message from the broker: %s", key, what)

    # What the SDK releases ------------------------------------------------------------------

    def is_memory_handle(self, handle: int) -> bool:
        with self._lock:
            return handle in self._by_handle

    def release(self, handle: int) -> bool:
        """Free what ``handle`` keeps alive; True if it was a memory handle (nothing to tell the broker)."""
        with self._lock:
            _done(self._loose.pop(("handle", handle), ()))
            memories = self._by_handle.pop(handle, None)
            if memories is None:
                return False
            _done(memories)
            self._held_bytes -= self._handle_bytes.pop(handle, 0)
            if self._held_bytes < self._warn_at // 2 and self._warn_at > self.WARN_BYTES:
                self._warn_at = max(self.WARN_BYTES, self._warn_at // 2)
            return True

    @property
    def held(self) -> tuple[int, int]:
        """(memory handles not yet disposed, bytes they keep)."""
        with self._lock:
            return len(self._by_handle), self._held_bytes
