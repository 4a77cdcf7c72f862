"""Parts of the client that need no broker: addresses, the pointer table against the SDK's schema,
request memory, response/event memory and its lifetime, errors, activation, generated files."""
from __future__ import annotations

import ctypes
import pickle
import subprocess
import sys

import pytest
from google.protobuf.descriptor import FieldDescriptor

from livekit_ffi_broker import BrokerError, BrokerUnavailable, FfiRequestError
from livekit_ffi_broker._address import grpc_target
from livekit_ffi_broker._memory import OutputMemory, Planner, PointerTable, collect_request, walk
from livekit_ffi_broker._wire import WireBuffer
from conftest import HERE, scenario_env

from livekit.rtc._proto import audio_frame_pb2, ffi_pb2, video_frame_pb2


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(PointerTable.load())


def test_addresses():
    assert grpc_target("unix:///tmp/b.sock") == "unix:///tmp/b.sock"
    assert grpc_target("unix:rel.sock") == "unix:rel.sock"
    assert grpc_target("localhost:5000") == "localhost:5000"
    assert grpc_target(":5000") == "127.0.0.1:5000"
    assert grpc_target("5000") == "127.0.0.1:5000"
    assert grpc_target("[::1]:5000") == "[::1]:5000"
    for bad in ("unix:", "nope", "host:99999"):
        with pytest.raises(ValueError):
            grpc_target(bad)


def sdk_pointer_fields() -> set[tuple[str, str]]:
    seen: set[str] = set()
    found: set[tuple[str, str]] = set()
    stack = [ffi_pb2.FfiRequest.DESCRIPTOR, ffi_pb2.FfiResponse.DESCRIPTOR, ffi_pb2.FfiEvent.DESCRIPTOR]
    while stack:
        desc = stack.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for field in desc.fields:
            if field.message_type is not None:
                stack.append(field.message_type)
            elif field.type == FieldDescriptor.TYPE_UINT64 and field.name.endswith("_ptr"):
                found.add((desc.full_name, field.name))
    return found


def test_pointer_table_covers_the_sdk_schema():
    table = PointerTable.load()
    missing = sdk_pointer_fields() - set(table.entries)
    # livekit 1.2's schema is newer than the broker's 0.12.75: encoded video frames are the only
    # pointer field the table may lack (such requests are refused with a clear error); older SDKs'
    # schemas (the SDK matrix) have no pointer field the table lacks.
    assert missing <= {("livekit.proto.EncodedVideoBufferInfo", "data_ptr")}


def i420_request(width: int, height: int) -> tuple[ffi_pb2.FfiRequest, bytearray]:
    from livekit import rtc

    data = bytearray(range(256)) * ((width * height * 3 // 2) // 256 + 1)
    data = data[: width * height * 3 // 2]
    frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, data)
    req = ffi_pb2.FfiRequest()
    req.capture_video_frame.source_handle = 1
    req.capture_video_frame.buffer.CopyFrom(frame._proto_info())
    return req, frame._data


def test_video_request_travels_as_one_buffer(planner):
    req, data = i420_request(64, 48)
    memory = collect_request(planner, req, 64 << 20)
    address = req.capture_video_frame.buffer.data_ptr
    assert [(ptr, len(b)) for ptr, b in memory.buffers] == [(address, 64 * 48 * 3 // 2)]
    assert memory.buffers[0][1] == bytes(data)
    assert memory.in_out == [] and memory.handle_key == 1


def test_apm_request_is_in_out_and_written_back(planner):
    from livekit_ffi_broker._memory import write_back

    samples = bytearray(b"\x01\x00" * 480)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(samples))
    req = ffi_pb2.FfiRequest()
    req.apm_process_stream.apm_handle = 7
    req.apm_process_stream.data_ptr = addr
    req.apm_process_stream.size = len(samples)
    req.apm_process_stream.sample_rate = 48000
    req.apm_process_stream.num_channels = 1
    memory = collect_request(planner, req, 64 << 20)
    assert memory.in_out == [(addr, 960)]

    assert write_back(memory.in_out, [WireBuffer(addr, b"\x02\x00" * 480)]) == {addr}
    assert samples == bytearray(b"\x02\x00" * 480)


def test_oversized_request_is_refused_before_reading(planner):
    req = ffi_pb2.FfiRequest()
    req.capture_audio_frame.source_handle = 1
    req.capture_audio_frame.buffer.data_ptr = 8  # never read: refused on size first
    req.capture_audio_frame.buffer.num_channels = 2
    req.capture_audio_frame.buffer.samples_per_channel = 1 << 30
    req.capture_audio_frame.buffer.sample_rate = 48000
    with pytest.raises(BrokerError) as err:
        collect_request(planner, req, 64 << 20)
    assert err.value.code == 4


def video_event(remote: int, gap: int) -> tuple[ffi_pb2.FfiEvent, list[WireBuffer]]:
    w, h = 8, 4
    y, u = w * h, (w // 2) * (h // 2)
    event = ffi_pb2.FfiEvent()
    ev = event.video_stream_event
    ev.stream_handle = 11
    owned = ev.frame_received.buffer
    owned.handle.id = 42
    info = owned.info
    info.type = video_frame_pb2.VideoBufferType.I420
    info.width, info.height = w, h
    info.data_ptr = remote
    planes = [(remote, w, y), (remote + y + gap, w // 2, u), (remote + y + gap + u + gap, w // 2, u)]
    for ptr, stride, size in planes:
        c = info.components.add()
        c.data_ptr, c.stride, c.size = ptr, stride, size
    if gap == 0:
        buffers = [WireBuffer(remote, bytes([1]) * y + bytes([2]) * u + bytes([3]) * u)]
    else:
        buffers = [WireBuffer(p, bytes([i + 1]) * size) for i, (p, _, size) in enumerate(planes)]
    return event, buffers


@pytest.mark.parametrize("gap", [0, 24])
def test_event_memory_is_local_and_lives_until_the_handle_is_dropped(planner, gap):
    memory = OutputMemory(planner)
    event, buffers = video_event(0x7F0000001000, gap)
    owned: list = []
    memory.take(event.video_stream_event, buffers, ("kind", "event", "video_stream_event"), lambda h, t: owned.append((h, t)))
    info = event.video_stream_event.frame_received.buffer.info
    base = info.data_ptr
    assert base != 0x7F0000001000
    # Interior pointers keep their distances inside one local allocation.
    assert [c.data_ptr - base for c in info.components] == [0, 32 + gap, 32 + gap + 8 + gap]
    for i, c in enumerate(info.components):
        assert ctypes.string_at(c.data_ptr, c.size) == bytes([i + 1]) * c.size
    assert owned == []  # OwnedVideoBuffer is a memory handle: never the session's to drop
    assert memory.held[0] == 1 and memory.is_memory_handle(42)
    assert memory.release(42)
    assert memory.held == (0, 0)
    assert not memory.release(42)


def test_stream_events_after_the_delivered_eos_are_not_delivered(planner):
    """Seen with four threads streaming at once (test_errors.py::test_threads_share_one_session):
    the broker routes the library's last frames of a dropped stream to its former owner after the
    drop's answer, when this client has delivered the stream's EOS and the SDK's reader is gone.
    Delivered, such a frame reached no reader and its memory copy was never freed."""
    from types import SimpleNamespace

    from livekit_ffi_broker._session import Connection

    delivered: list = []
    conn = Connection("unix:///nonexistent.sock", ffi_pb2.FfiRequest, ffi_pb2.FfiResponse, ffi_pb2.FfiEvent, delivered.append)
    session = SimpleNamespace(eos_delivered=set(), owned={})

    def frame(stream: int, handle: int) -> tuple[bytes, list]:
        event = ffi_pb2.FfiEvent()
        ev = event.audio_stream_event
        ev.stream_handle = stream
        owned = ev.frame_received.frame
        owned.handle.id = handle
        owned.info.data_ptr, owned.info.num_channels, owned.info.sample_rate, owned.info.samples_per_channel = 0x7F0000002000, 1, 48000, 480
        return event.SerializeToString(), [WireBuffer(0x7F0000002000, bytes(960))]

    conn.deliver_eos(session, 7, "livekit.proto.OwnedAudioStream")
    assert [e.audio_stream_event.WhichOneof("message") for e in delivered] == ["eos"]
    conn.take_event(session, *frame(7, 70))  # in flight when the stream was dropped
    real_eos = ffi_pb2.FfiEvent()
    real_eos.audio_stream_event.stream_handle = 7
    real_eos.audio_stream_event.eos.SetInParent()
    conn.take_event(session, real_eos.SerializeToString(), [])
    assert len(delivered) == 1 and conn.memory.held == (0, 0)
    assert session.eos_delivered == set()  # forgotten once the real EOS came
    conn.take_event(session, *frame(8, 80))  # another stream's frames still go through
    assert len(delivered) == 2 and conn.memory.held == (1, 960)


def test_non_memory_handles_are_reported(planner):
    memory = OutputMemory(planner)
    resp = ffi_pb2.FfiResponse()
    resp.new_audio_stream.stream.handle.id = 5
    owned: list = []
    memory.take(resp.new_audio_stream, [], ("kind", "x"), lambda h, t: owned.append((h, t)))
    assert owned == [(5, "livekit.proto.OwnedAudioStream")]


def test_sox_output_lives_until_the_next_call_on_the_resampler(planner):
    memory = OutputMemory(planner)
    for round_ in range(2):
        resp = ffi_pb2.FfiResponse()
        resp.push_sox_resampler.output_ptr = 0x5000
        resp.push_sox_resampler.size = 4
        memory.take(resp.push_sox_resampler, [WireBuffer(0x5000, bytes([round_]) * 4)], ("handle", 9), lambda h, t: None)
        assert ctypes.string_at(resp.push_sox_resampler.output_ptr, 4) == bytes([round_]) * 4
    assert len(memory._loose) == 1  # replaced, not accumulated
    assert not memory.release(9)  # the resampler's handle is not a memory handle...
    assert memory._loose == {}  # ...but dropping it frees its last output


def test_walk_finds_audio_frames(planner):
    event = ffi_pb2.FfiEvent()
    frame = event.audio_stream_event.frame_received.frame
    frame.handle.id = 3
    frame.info.data_ptr = 0x10
    frame.info.num_channels = 1
    frame.info.samples_per_channel = 480
    frame.info.sample_rate = 48000
    refs = []
    walk(planner, event, refs.append)
    assert [(r.field, r.ptr, r.owner, r.entry.size(r.holder)) for r in refs] == [("data_ptr", 0x10, 3, 960)]


def test_errors():
    err = BrokerError(2, "nope")
    assert str(err) == "PERMISSION_DENIED: nope" and err.code_name == "PERMISSION_DENIED"
    for e in (err, BrokerUnavailable("gone"), FfiRequestError("refused")):
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e) and copy.code == e.code and copy.detail == e.detail
    assert isinstance(FfiRequestError("x"), AssertionError) and FfiRequestError("x").code == 3
    assert BrokerUnavailable("x").code == 5 and isinstance(BrokerUnavailable("x"), BrokerError)


def run_python(code: str, address: str | None, *flags: str) -> str:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", code], env=scenario_env(address), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_pth_activation_is_lazy():
    code = (
        "import sys, os\n"
        "print('finder' if any(type(f).__name__ == '_SdkFinder' for f in sys.meta_path) else 'none',"
        " 'grpc' in sys.modules, os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))\n"
        "from livekit import rtc\n"
        "from livekit.rtc import _ffi_client\n"
        "print(hasattr(_ffi_client, 'BrokerFfiClient'), 'grpc' in sys.modules,"
        " 'liblivekit_ffi' in open('/proc/self/maps').read())\n"
    )
    assert run_python(code, "unix:///tmp/unused.sock").splitlines() == ["finder False true", "True False False"]
    # Without the variable nothing is installed, and `python -S` skips .pth files altogether.
    assert run_python(code.split("from livekit")[0], None) == "none False None"
    assert run_python(code.split("from livekit")[0], "unix:///tmp/unused.sock", "-S").startswith("none")


def test_native_library_is_refused_once_active():
    code = (
        "import livekit_ffi_broker\n"
        "livekit_ffi_broker.activate('unix:///tmp/unused.sock')\n"
        "from livekit.rtc import _ffi_client\n"
        "try:\n"
        "    _ffi_client.get_ffi_lib()\n"
        "except ImportError as e:\n"
        "    print('refused')\n"
    )
    assert run_python(code, None) == "refused"


def test_generated_files_are_current():
    proc = subprocess.run([sys.executable, str(HERE.parent / "generate.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
