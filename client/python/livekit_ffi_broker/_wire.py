"""The Session stream's messages as bytes: ClientMessages encoded by hand, ServerMessages read by
hand down to the livekit payloads, so that media bytes are copied as little as the data flow
allows.

Sending: the SDK's FfiRequest is serialized once (by the caller) and a ClientMessage is one join of
its pieces: the request's memory (a capture's samples) is copied once, straight from the SDK's
buffer into the message gRPC writes. With upb (string_at, the field's copy, its serialization)
that was three copies. A drain of the send queue goes out as one ClientMessage (a batch: one
copy more of what it holds, so a message from BATCH_ALONE_BYTES on travels alone).

Receiving: a ServerMessage is read down to its Responses and Events; each FfiEvent/FfiResponse is
parsed once (by the caller, with the SDK's class) and a Buffer's bytes stay where gRPC put them:
a pointer field is rewritten to point into the received message itself (see _memory.OutputMemory),
and the SDK's own copy (AudioFrame._from_owned_info) is the only copy of a received sample.
"""
from __future__ import annotations

import ctypes
from typing import Any, Iterable, Iterator, Optional, Protocol

from ._lane import LaneHold, LanePlacement

# Field keys ((number << 3) | wire type) of the contract (proto/ffi_broker.proto).
_REQUEST = b"\x12"  # ClientMessage.request
_BATCH = b"\x22"  # ClientMessage.batch
_BATCH_MESSAGE = b"\x0a"  # ClientBatch.messages
_REQUEST_ID = b"\x08"  # Request.request_id
_FFI_REQUEST = b"\x12"  # Request.ffi_request
_BUFFERS = b"\x1a"  # Request.buffers
_PACKAGE_FILES = b"\x22"  # Request.package_files
_PTR = b"\x08"  # Buffer.ptr
_DATA = b"\x12"  # Buffer.data
_LANE = b"\x1a"  # Buffer.lane
_LANE_REGION = b"\x08"  # LaneRef.region
_LANE_OFFSET = b"\x10"  # LaneRef.offset
_LANE_LENGTH = b"\x18"  # LaneRef.length

# A message this large goes alone: batching saves a per-message cost that is nothing beside its
# bytes, and joining it into a batch would copy them once more.
BATCH_ALONE_BYTES = 64 * 1024

_SMALL = [bytes([n]) for n in range(128)]


def varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def request(request_id: int, ffi_request: bytes, buffers: Iterable[tuple[int, Any]], package_files: Iterable[bytes] = ()) -> bytes:
    """ClientMessage{request: Request{request_id, ffi_request, buffers, package_files}}.

    ``buffers``: (ptr, bytes-like) whose bytes are copied here, once, or (ptr, LanePlacement) sent
    as a reference into the media lane; ``package_files``: each a serialized PackageFile."""
    pieces: list[Any] = [_REQUEST_ID, varint(request_id), _FFI_REQUEST, varint(len(ffi_request)), ffi_request]
    for ptr, data in buffers:
        if isinstance(data, LanePlacement):
            ref = _LANE_REGION + varint(data.region) + _LANE_OFFSET + varint(data.offset) + _LANE_LENGTH + varint(data.length)
            buffer = _PTR + varint(ptr) + _LANE + varint(len(ref)) + ref
            pieces += (_BUFFERS, varint(len(buffer)), buffer)
            continue
        head = _PTR + varint(ptr) + _DATA + varint(len(data))
        pieces += (_BUFFERS, varint(len(head) + len(data)), head, data)
    for package_file in package_files:
        pieces += (_PACKAGE_FILES, varint(len(package_file)), package_file)
    size = sum(len(p) for p in pieces)
    return b"".join([_REQUEST, varint(size), *pieces])


def batches(messages: list[bytes]) -> Iterator[tuple[bytes, int]]:
    """The encoded ClientMessages of one drain of the send queue, in order: consecutive small ones
    as one ClientMessage{batch} (one alone stays as it is), large ones alone; each with the number
    of messages it carries."""
    run: list[bytes] = []
    for message in messages:
        if len(message) >= BATCH_ALONE_BYTES:
            if run:
                yield _batch(run), len(run)
                run = []
            yield message, 1
        else:
            run.append(message)
    if run:
        yield _batch(run), len(run)


def _batch(messages: list[bytes]) -> bytes:
    if len(messages) == 1:
        return messages[0]
    pieces: list[bytes] = []
    for message in messages:
        pieces += (_BATCH_MESSAGE, varint(len(message)), message)
    return b"".join([_BATCH, varint(sum(len(p) for p in pieces)), *pieces])


def request_id(message: bytes) -> tuple[bool, int]:
    """Of one encoded ClientMessage holding a request or a drop (not a batch): (whether it is a
    request, its request_id; 0 for a drop without one)."""
    ((number, a, b),) = _fields(message, 0, len(message))
    wanted = 1 if number == 2 else 2  # Request.request_id, DropHandles.request_id
    return number == 2, next((x for n, x, _ in _fields(message, a, b) if n == wanted), 0)


# Receiving -------------------------------------------------------------------------------------


class WireBuffer:
    """A received Buffer: its bytes are raw[start:stop], in the message as gRPC delivered it, or,
    with ``lane`` (region, offset, length, release), in the media lane: once the session resolved
    it, ``hold`` is its slot there (and what keeps it)."""

    __slots__ = ("ptr", "raw", "start", "stop", "lane", "hold")

    def __init__(self, ptr: int, raw: bytes, start: int = 0, stop: Optional[int] = None, lane: Optional[tuple[int, int, int, int]] = None) -> None:
        self.ptr = ptr
        self.raw = raw
        self.start = start
        self.stop = len(raw) if stop is None else stop
        self.lane = lane
        self.hold: Optional[LaneHold] = None

    @property
    def size(self) -> int:
        return self.lane[2] if self.lane is not None else self.stop - self.start

    @property
    def keeper(self) -> Any:
        """What keeps its bytes where address() says."""
        return self.hold if self.hold is not None else self.raw

    @property
    def data(self) -> memoryview:
        if self.hold is not None:
            return memoryview((ctypes.c_char * self.size).from_address(self.hold.address)).cast("B")
        return memoryview(self.raw)[self.start : self.stop]

    def address(self) -> int:
        """Where its bytes are in this process (valid while ``keeper`` is referenced, or held)."""
        if self.hold is not None:
            return self.hold.address
        return ctypes.cast(ctypes.c_char_p(self.raw), ctypes.c_void_p).value + self.start  # type: ignore[operator]


def _varint_rest(buf: bytes, pos: int, value: int) -> tuple[int, int]:
    """A varint whose first byte (``value``, >= 0x80) was read; ``pos`` is after it."""
    value &= 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """The fields of one message in buf[pos:end], as (number, a, b): a varint's value as a (b 0),
    or a length-delimited field's bytes as buf[a:b]. A list, not a generator, and one-byte
    varints read inline: this runs for every field of every message received."""
    out = []
    while pos < end:
        key = buf[pos]
        pos += 1
        if key > 0x7F:
            key, pos = _varint_rest(buf, pos, key)
        wire = key & 7
        if wire == 1 or wire == 5:  # fixed width: none in the contract today, skipped
            pos += 8 if wire == 1 else 4
            continue
        if wire != 0 and wire != 2:
            raise ValueError(f"unsupported protobuf wire type {wire} in a message from the broker")
        value = buf[pos]
        pos += 1
        if value > 0x7F:
            value, pos = _varint_rest(buf, pos, value)
        if wire == 2:
            out.append((key >> 3, pos, pos + value))
            pos += value
        else:
            out.append((key >> 3, value, 0))
    if pos > end:
        raise ValueError("truncated message from the broker")
    return out


def _buffer(raw: bytes, start: int, end: int) -> WireBuffer:
    ptr, data_start, data_stop, lane = 0, start, start, None
    for number, a, b in _fields(raw, start, end):
        if number == 1:
            ptr = a
        elif number == 2:
            data_start, data_stop = a, b
        elif number == 3:
            ref = [0, 0, 0, 0]  # LaneRef: region, offset, length, release
            for field, value, _ in _fields(raw, a, b):
                if 1 <= field <= 4:
                    ref[field - 1] = value
            lane = (ref[0], ref[1], ref[2], ref[3])
    return WireBuffer(ptr, raw, data_start, data_stop, lane)


class ServerSink(Protocol):
    """What a ServerMessage is read into (the session); each method gets one message's parts."""

    def on_welcome(self, welcome: Any) -> None: ...

    def on_response(self, request_id: int, ffi_response: bytes, buffers: list[WireBuffer], error: Optional[Any]) -> None: ...

    def on_events(self, events: list[tuple[int, bytes, list[WireBuffer]]]) -> None: ...

    def on_notice(self, notice: Any) -> None: ...


def read_server_message(raw: bytes, sink: ServerSink, pb: Any, start: int = 0, end: Optional[int] = None) -> None:
    """Hand the ServerMessage in raw[start:end] to ``sink``; a ServerBatch's messages in order."""
    for number, a, b in _fields(raw, start, len(raw) if end is None else end):
        if number == 3:
            sink.on_events([_parts(raw, x, y)[:3] for inner, x, y in _fields(raw, a, b) if inner == 1])
        elif number == 2:
            request_id, ffi_response, buffers, error = _parts(raw, a, b)
            sink.on_response(request_id, ffi_response, buffers, None if error is None else pb.Error.FromString(raw[error[0] : error[1]]))
        elif number == 5:
            for inner, x, y in _fields(raw, a, b):
                if inner == 1:
                    read_server_message(raw, sink, pb, x, y)
        elif number == 4:
            sink.on_notice(pb.Notice.FromString(raw[a:b]))
        elif number == 1:
            sink.on_welcome(pb.Welcome.FromString(raw[a:b]))


def _parts(raw: bytes, start: int, end: int) -> tuple[int, bytes, list[WireBuffer], Optional[tuple[int, int]]]:
    """Event and Response share a layout: 1 a uint64 (seq, request_id), 2 the livekit payload
    (ffi_event, ffi_response), 3 the Buffers, 4 (Response.error) a message, as its span."""
    number, payload, buffers, fourth = 0, b"", [], None
    for field, a, b in _fields(raw, start, end):
        if field == 1:
            number = a
        elif field == 2:
            payload = raw[a:b]
        elif field == 3:
            buffers.append(_buffer(raw, a, b))
        elif field == 4:
            fourth = (a, b)
    return number, payload, buffers, fourth
