"""The hand-made wire format (_wire) against upb: ClientMessages it encodes are what the contract
parses, batches keep their order, and a ServerMessage (a ServerBatch too) is read into the same
parts upb finds, with Buffer bytes left in the received message."""
from __future__ import annotations

import ctypes

from livekit_ffi_broker._gen import ffi_broker_pb2 as pb
from livekit_ffi_broker import _wire


def test_request_encodes_as_the_contract_parses_it():
    samples = bytearray(range(256)) * 4
    view = memoryview((ctypes.c_char * len(samples)).from_buffer(samples)).cast("B")
    package_file = pb.PackageFile(path="/x/plugin.so", distribution="d", version="1.0", file="plugin.so").SerializeToString()
    for request_id in (1, 300, 1 << 40):
        message = pb.ClientMessage.FromString(
            _wire.request(request_id, b"\x0a\x02\x08\x01", [(0x7F00DEADBEEF, view), (8, b"")], [package_file])
        )
        request = message.request
        assert request.request_id == request_id and request.ffi_request == b"\x0a\x02\x08\x01"
        assert [(b.ptr, b.data) for b in request.buffers] == [(0x7F00DEADBEEF, bytes(samples)), (8, b"")]
        assert request.package_files[0].path == "/x/plugin.so"


def test_a_drain_travels_as_one_batch_in_order():
    drop = pb.ClientMessage()
    drop.drop_handles.handles.append(9)
    small = [_wire.request(i, b"", []) for i in range(1, 4)] + [drop.SerializeToString()]
    large = _wire.request(99, b"", [(16, bytes(_wire.BATCH_ALONE_BYTES))])
    out = list(_wire.batches(small[:2] + [large] + small[2:]))
    assert [count for _, count in out] == [2, 1, 2]
    assert out[1][0] is large  # a large message alone, between the batches around it
    first, last = (pb.ClientMessage.FromString(m) for m, _ in (out[0], out[2]))
    assert [m.request.request_id for m in first.batch.messages] == [1, 2]
    assert [m.WhichOneof("message") for m in last.batch.messages] == ["request", "drop_handles"]
    assert list(_wire.batches(small[:1])) == [(small[0], 1)]  # one message stays plain


class Recorder:
    def __init__(self) -> None:
        self.parts: list = []

    def on_welcome(self, welcome) -> None:
        self.parts.append(("welcome", welcome.session_id))

    def on_response(self, request_id, ffi_response, buffers, error) -> None:
        self.parts.append(("response", request_id, ffi_response, [(b.ptr, bytes(b.data)) for b in buffers], error and error.code))

    def on_events(self, events) -> None:
        self.parts.append(("events", [(seq, ffi_event, [(b.ptr, bytes(b.data)) for b in buffers]) for seq, ffi_event, buffers in events]))

    def on_notice(self, notice) -> None:
        self.parts.append(("notice", notice.WhichOneof("notice")))


def test_server_batch_is_read_in_order():
    batch = pb.ServerMessage()
    response = batch.batch.messages.add().response
    response.request_id = 7
    response.ffi_response = b"\x01\x02"
    response.buffers.add(ptr=0x5000, data=b"out")
    events = batch.batch.messages.add().events
    events.events.add(seq=1, ffi_event=b"\x0a\x00").buffers.add(ptr=0x7F0000001000, data=bytes(960))
    events.events.add(seq=2, ffi_event=b"")
    batch.batch.messages.add().notice.shutting_down.grace_ms = 5
    refused = batch.batch.messages.add().response
    refused.request_id = 8
    refused.error.code = 2
    raw = batch.SerializeToString()
    recorder = Recorder()
    _wire.read_server_message(raw, recorder, pb)
    assert recorder.parts == [
        ("response", 7, b"\x01\x02", [(0x5000, b"out")], None),
        ("events", [(1, b"\x0a\x00", [(0x7F0000001000, bytes(960))]), (2, b"", [])]),
        ("notice", "shutting_down"),
        ("response", 8, b"", [], 2),
    ]


def test_received_bytes_stay_in_the_message():
    message = pb.ServerMessage()
    message.events.events.add(seq=1).buffers.add(ptr=1, data=b"frame bytes")
    raw = message.SerializeToString()
    found: list = []

    class Sink(Recorder):
        def on_events(self, events) -> None:
            found.extend(events[0][2])

    _wire.read_server_message(raw, Sink(), pb)
    (buffer,) = found
    assert buffer.raw is raw  # no copy: the address points into the received message
    assert ctypes.string_at(buffer.address(), buffer.size) == b"frame bytes"


def test_request_id_of_an_encoded_message():
    drop = pb.ClientMessage()
    drop.drop_handles.handles.extend([3, 4])
    plain = drop.SerializeToString()
    drop.drop_handles.request_id = 77
    assert _wire.request_id(_wire.request(1 << 33, b"x", [])) == (True, 1 << 33)
    assert _wire.request_id(plain) == (False, 0)
    assert _wire.request_id(drop.SerializeToString()) == (False, 77)
