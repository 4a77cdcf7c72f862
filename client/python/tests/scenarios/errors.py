"""Failure paths, driven step by step by the test over stdin/stdout.

    errors.py lost        the broker is stopped, then killed, while a request waits for it
    errors.py refused     requests the broker (or this client) refuses
    errors.py connect     two requests, reporting how each ended (no broker, authentication)
    errors.py explicit ADDRESS
                          no LIVEKIT_FFI_BROKER: livekit.rtc imported first, then activate(ADDRESS)
    errors.py threads     several threads, each with its own event loop, start using the SDK at once
    errors.py restart     the broker is killed under capture traffic, then a new one starts on the
                          same socket: the error reaches the app, a new session follows
    errors.py pipelined   captures answered by the client while the broker is stopped; a refused
                          capture raised from capture_frame()

Prints one JSON line at the end.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_worker  # noqa: E402


def step(name: str) -> None:
    """Tell the test where we are and wait for its go-ahead."""
    print(name, flush=True)
    line = sys.stdin.readline().strip()
    assert line == "go", f"expected go after {name}, got {line!r}"


def describe(err: BaseException | None) -> dict | None:
    if err is None:
        return None
    return {"type": type(err).__name__, "code": getattr(err, "code", None), "message": str(err)}


async def read_own_stream(name: str):
    """An audio source, a track on it and an AudioStream of that track, read by a task into a list:
    (source, track, stream, reader task, received events)."""
    from livekit import rtc

    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    stream = rtc.AudioStream(track)
    received: list = []

    async def read():
        async for event in stream:
            received.append(event)

    return source, track, stream, asyncio.create_task(read()), received


def lost() -> dict:
    from livekit import rtc

    import livekit_ffi_broker

    out: dict = {}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def setup():
        source, track, stream, reader, _ = await read_own_stream("lost")
        for i in range(5):
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(5, i).tobytes(), 48000, 1, 480))
        return source, track, stream, reader

    source, track, stream, reader = loop.run_until_complete(setup())
    step("READY")  # the test stops the broker (SIGSTOP)

    result: dict = {}

    def pending_request() -> None:
        started = time.monotonic()
        try:
            rtc.AudioSource(48000, 1, loop=loop)
            result["error"] = None
        except BaseException as err:  # noqa: BLE001
            result["error"] = err
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=pending_request)
    thread.start()
    time.sleep(0.5)
    out["pending_while_stopped"] = thread.is_alive()
    step("PENDING")  # the test kills the broker (SIGKILL)
    killed = time.monotonic()
    thread.join(10)
    out["pending_woken"] = not thread.is_alive()
    out["pending_error"] = describe(result.get("error"))
    out["woken_after_kill_s"] = round(time.monotonic() - killed, 3)

    async def stream_end():
        try:
            await asyncio.wait_for(reader, 5)
            return True
        except asyncio.TimeoutError:
            return False

    out["stream_ended"] = loop.run_until_complete(stream_end())

    for name in ("next_request", "reconnect"):
        started = time.monotonic()
        try:
            source.clear_queue()
            out[name] = None
        except BaseException as err:  # noqa: BLE001
            out[name] = describe(err)
        out[name + "_s"] = round(time.monotonic() - started, 3)
    out["is_broker_unavailable"] = isinstance(result.get("error"), livekit_ffi_broker.BrokerUnavailable)
    return out


def refused() -> dict:
    from livekit.rtc._ffi_client import FfiClient
    from livekit.rtc._proto import ffi_pb2

    import livekit_ffi_broker

    out: dict = {}

    def attempt(name: str, req) -> None:
        try:
            FfiClient.instance.request(req)
            out[name] = None
        except livekit_ffi_broker.BrokerError as err:
            out[name] = describe(err)

    req = ffi_pb2.FfiRequest()
    req.new_audio_stream.track_handle = 987654321
    req.new_audio_stream.type = 0
    attempt("not_owned", req)

    # Sent without waiting (its response is empty): the call returns, and the refusal is raised
    # from the next such call naming the same handle once it has come.
    req = ffi_pb2.FfiRequest()
    req.clear_audio_buffer.source_handle = 987654321
    attempt("pipelined_not_owned_first", req)
    started = time.monotonic()
    while time.monotonic() - started < 5:
        time.sleep(0.05)
        attempt("pipelined_not_owned_later", req)
        if out["pipelined_not_owned_later"] is not None:
            break

    req = ffi_pb2.FfiRequest()
    setattr(req.dispose, "async", False)
    attempt("dispose", req)

    # Requests of a schema newer than the broker's (livekit >= 1.2); older SDKs have neither.
    kinds = ffi_pb2.FfiRequest.DESCRIPTOR.fields_by_name
    if "capture_encoded_video_frame" in kinds:
        # Its pointer field is not in the broker's table.
        req = ffi_pb2.FfiRequest()
        req.capture_encoded_video_frame.source_handle = 1
        req.capture_encoded_video_frame.buffer.data_ptr = 0x1000
        req.capture_encoded_video_frame.buffer.data_len = 16
        attempt("newer_pointer", req)
    if "stop_capture" in kinds:
        # No pointers: the broker does not know its kind.
        req = ffi_pb2.FfiRequest()
        req.stop_capture.capture_handle = 1
        attempt("newer_kind", req)

    # The session goes on after refusals.
    from livekit import rtc

    source = rtc.AudioSource(48000, 1)
    out["still_works"] = source._ffi_handle.handle != 0
    source._ffi_handle.dispose()
    out["is_assertion_error"] = issubclass(livekit_ffi_broker.FfiRequestError, AssertionError)
    return out


def connect() -> dict:
    from livekit import rtc

    out: dict = {}
    for name in ("first", "second"):
        started = time.monotonic()
        try:
            rtc.AudioSource(48000, 1)
            out[name] = None
        except BaseException as err:  # noqa: BLE001
            out[name] = describe(err)
        out[name + "_s"] = round(time.monotonic() - started, 3)
    out["native_loaded"] = media_worker.native_library_loaded()
    return out


def explicit(address: str) -> dict:
    from livekit import rtc  # imported before activation: patched in place

    import livekit_ffi_broker

    assert not livekit_ffi_broker.is_active()
    livekit_ffi_broker.activate(address)
    out = {"active": livekit_ffi_broker.is_active()}
    out["stream"] = asyncio.run(media_worker.stream_audio("explicit", 123, 0.5, rtc))
    out["native_loaded"] = media_worker.native_library_loaded()
    out["handles_after"] = media_worker.own_session_handles() if os.environ.get("LIVEKIT_FFI_BROKER") else None
    from livekit.rtc._ffi_client import FfiClient

    out["client_class"] = type(FfiClient.instance).__name__
    return out


def threads() -> dict:
    from livekit import rtc

    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait()  # the first requests race to open the session
        results[i] = asyncio.run(media_worker.stream_audio(f"thread{i}", 1000 * i, 1.0, rtc))

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    from livekit.rtc._ffi_client import FfiClient

    import livekit_ffi_broker

    info = livekit_ffi_broker.broker_info()
    return {
        "streams": results,
        "sessions_of_this_process": sum(1 for s in info.sessions if s.pid == os.getpid()),
        "handles_after": media_worker.own_session_handles(),
        "memory_held": list(FfiClient.instance._connection.memory.held),
    }


def restart() -> dict:
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient

    out: dict = {}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    connection = FfiClient.instance._connection

    source, track, stream, reader, received = loop.run_until_complete(read_own_stream("restart"))
    out["session_before"] = connection._session.welcome.session_id
    frame = rtc.AudioFrame(media_worker.signal_frame(5, 0).tobytes(), 48000, 1, 480)

    async def capture_until_error(limit_s: float):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(source.capture_frame(frame), 10)
            except Exception as err:  # noqa: BLE001 - what the app sees
                return err
            await asyncio.sleep(0.01)
        return None

    loop.run_until_complete(capture_until_error(0.5))  # traffic flows
    out["received_before"] = len(received) > 0
    step("READY")  # the test kills the broker with SIGKILL, then says go
    killed = time.monotonic()
    err = loop.run_until_complete(capture_until_error(30))
    out["capture_error"] = describe(err)
    out["error_after_kill_s"] = round(time.monotonic() - killed, 3)
    loop.run_until_complete(asyncio.wait_for(reader, 10))  # the stream ends too
    out["stream_ended"] = True

    # Requests fail fast while no broker runs (backoff, not a connect timeout each).
    failures = []
    for _ in range(5):
        started = time.monotonic()
        try:
            rtc.AudioSource(48000, 1, loop=loop)
        except Exception as err:  # noqa: BLE001
            failures.append({"type": type(err).__name__, "s": round(time.monotonic() - started, 3)})
    out["while_down"] = failures
    step("DOWN")  # the test starts a new broker on the same socket, then says go

    # The app retries as a production agent would; the client's backoff paces the attempts.
    restarted = time.monotonic()
    attempts = 0
    while time.monotonic() - restarted < 30:
        attempts += 1
        try:
            new_source = rtc.AudioSource(48000, 1, loop=loop)
            break
        except Exception:  # noqa: BLE001
            time.sleep(0.05)
    else:
        raise AssertionError("no new session within 30 s of the new broker")
    out["recovered_after_s"] = round(time.monotonic() - restarted, 3)
    out["attempts"] = attempts
    out["session_after"] = connection._session.welcome.session_id
    loop.run_until_complete(new_source.aclose())
    return out


def pipelined() -> dict:
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient
    from livekit.rtc._proto import ffi_pb2

    out: dict = {}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    source = rtc.AudioSource(48000, 1, queue_size_ms=1000)
    samples = media_worker.signal_frame(5, 0)
    frame = rtc.AudioFrame(samples.tobytes(), 48000, 1, 480)
    queue = FfiClient.instance.queue.subscribe(loop=loop)
    step("READY")  # the test stops the broker (SIGSTOP)

    def capture_request() -> "ffi_pb2.FfiRequest":
        req = ffi_pb2.FfiRequest()
        req.capture_audio_frame.source_handle = source._ffi_handle.handle
        req.capture_audio_frame.buffer.CopyFrom(frame._proto_info())
        return req

    started = time.monotonic()
    ids = [FfiClient.instance.request(capture_request()).capture_audio_frame.async_id for _ in range(3)]
    out["answered_while_stopped_s"] = round(time.monotonic() - started, 3)
    out["distinct_ids"] = len(set(ids)) == 3
    step("STOPPED")  # the test resumes the broker (SIGCONT)

    async def callbacks() -> dict:
        seen: dict = {}
        while len(seen) < len(ids):
            event = await asyncio.wait_for(queue.get(), 10)
            if event.WhichOneof("message") == "capture_audio_frame" and event.capture_audio_frame.async_id in ids:
                seen[event.capture_audio_frame.async_id] = event.capture_audio_frame.error
        return seen

    seen = loop.run_until_complete(callbacks())
    out["callbacks_in_order"] = list(seen) == ids
    out["callback_errors"] = [e for e in seen.values() if e]

    # A capture the broker refuses (a source this session does not own) is answered at once (the
    # window has room); its refusal is raised from the next capture_frame of that source.
    foreign = rtc.AudioSource(48000, 1)
    foreign._ffi_handle.handle = 987654321

    async def refused() -> None:
        await foreign.capture_frame(frame)
        out["first_refused_capture_returned"] = True
        while True:
            await asyncio.sleep(0.05)
            await foreign.capture_frame(frame)

    out["refused"] = None
    try:
        loop.run_until_complete(asyncio.wait_for(refused(), 10))
    except Exception as err:  # noqa: BLE001 - the SDK raises a plain Exception with the callback's error
        out["refused"] = describe(err)
    loop.run_until_complete(source.aclose())
    return out


def main() -> int:
    mode = sys.argv[1]
    if mode == "lost":
        out = lost()
    elif mode == "refused":
        out = refused()
    elif mode == "connect":
        out = connect()
    elif mode == "threads":
        out = threads()
    elif mode == "restart":
        out = restart()
    elif mode == "pipelined":
        out = pipelined()
    elif mode == "explicit":
        out = explicit(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
