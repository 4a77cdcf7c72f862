"""A worker whose Session stream breaks while it streams audio, with the broker and the worker
untouched: the test hook cancels the gRPC call of the current session from inside the worker.

    resume.py resume [BREAKS]   streams 4 s of signal, breaking the stream BREAKS times (default 2)
    resume.py fallback          the broker runs with --resume-grace 0: the session is lost, the
                                client falls back to a new session
    resume.py pending           driven over stdin/stdout: a request pending at the break (broker
                                stopped) fails; one made while resuming waits and proceeds

Prints one JSON line at the end.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_worker  # noqa: E402
from media_worker import FRAME, SAMPLE_RATE, close_stream, open_stream, wait_samples  # noqa: E402


def own_session() -> Optional[dict[str, Any]]:
    import livekit_ffi_broker

    info = livekit_ffi_broker.broker_info()
    for s in info.sessions:
        if s.pid == os.getpid():
            return {"session_id": s.session_id, "owned_handles": int(s.owned_handles), "connected": bool(s.connected)}
    return None


def current_session() -> Any:
    from livekit.rtc._ffi_client import FfiClient

    return FfiClient.instance._connection._session


def break_stream() -> Any:
    """The test hook: cancel the gRPC call of the current session stream (a transient break)."""
    session = current_session()
    call = session.call
    call.cancel()
    # A request made before the reader thread notices would be "pending at the break" (and fail
    # with BrokerUnavailable); this scenario checks the requests made after it, which wait.
    deadline = time.monotonic() + 5
    while session.state == "open" and session.call is call and time.monotonic() < deadline:
        time.sleep(0.001)
    return session


def describe(err: Optional[BaseException]) -> Optional[dict]:
    if err is None:
        return None
    return {"type": type(err).__name__, "code": getattr(err, "code", None), "message": str(err)}


async def second_stream(rtc: Any, track: Any) -> tuple[Any, list, Any]:
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    chunks: list[np.ndarray] = []

    async def read() -> None:
        async for event in stream:
            chunks.append(event)

    return stream, chunks, asyncio.create_task(read())



def resume(breaks: int) -> dict:
    from livekit import rtc

    out: dict[str, Any] = {"breaks": []}
    base = 777
    frames = 400
    break_at = [int((k + 1) * frames / (breaks + 1)) for k in range(breaks)]

    async def main() -> None:
        source, track, stream, chunks, reader = await open_stream(rtc, "resume")
        session = current_session()
        out["session_before"] = session.welcome.session_id
        for i in range(frames):
            if i in break_at:
                before = own_session()
                started = time.monotonic()
                broken = break_stream()
                # The next request waits for the resume, then proceeds on the same session.
                await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(base, i).tobytes(), SAMPLE_RATE, 1, FRAME))
                after = own_session()
                out["breaks"].append(
                    {
                        "frame": i,
                        "before": before,
                        "after": after,
                        "same_session_object": broken is current_session(),
                        "request_after_break_s": round(time.monotonic() - started, 3),
                    }
                )
                continue
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(base, i).tobytes(), SAMPLE_RATE, 1, FRAME))
        out["all_received"] = await wait_samples(chunks, frames * FRAME, 10)
        received = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        out["samples"] = media_worker.check_samples(received, base, frames)
        session = current_session()
        out["session_after"] = session.welcome.session_id
        out["same_session_object"] = session is current_session()
        out["resumes"] = session.resumes
        out["events_dropped"] = session.events_dropped
        out["last_seq"] = session.last_seq
        out["info_after"] = own_session()
        await close_stream(source, track, stream, reader)

    asyncio.run(main())
    gc.collect()
    out["handles_after"] = media_worker.own_session_handles()
    out["native_loaded"] = media_worker.native_library_loaded()
    return out


def fallback() -> dict:
    from livekit import rtc

    import livekit_ffi_broker

    out: dict[str, Any] = {}

    async def main() -> None:
        source, track, stream, chunks, reader = await open_stream(rtc, "old")
        for i in range(20):
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(3, i).tobytes(), SAMPLE_RATE, 1, FRAME))
        out["old_received"] = await wait_samples(chunks, 20 * FRAME, 10)
        old = current_session()
        out["session_before"] = old.welcome.session_id
        broken = time.monotonic()
        old.call.cancel()
        # The broker no longer has the session: the resume fails, the stream gets its EOS.
        try:
            await asyncio.wait_for(reader, 10)
            out["stream_ended"] = True
        except asyncio.TimeoutError:
            out["stream_ended"] = False
        out["stream_ended_after_s"] = round(time.monotonic() - broken, 3)
        out["old_state"] = old.state
        out["old_resumes"] = old.resumes
        # As on a lost broker: the first request reports the loss, the next opens a new session.
        try:
            source.clear_queue()
            out["next_request"] = None
        except BaseException as err:  # noqa: BLE001
            out["next_request"] = describe(err)
            out["next_request_is_unavailable"] = isinstance(err, livekit_ffi_broker.BrokerUnavailable)
        source2, track2, stream2, chunks2, reader2 = await open_stream(rtc, "new")
        for i in range(100):
            await source2.capture_frame(rtc.AudioFrame(media_worker.signal_frame(11, i).tobytes(), SAMPLE_RATE, 1, FRAME))
        await wait_samples(chunks2, 100 * FRAME, 10)
        received = np.concatenate(chunks2) if chunks2 else np.zeros(0, dtype=np.int16)
        out["new_samples"] = media_worker.check_samples(received, 11, 100)
        new = current_session()
        out["session_after"] = new.welcome.session_id
        out["new_session_object"] = new is not old
        out["info_after"] = own_session()
        await close_stream(source2, track2, stream2, reader2)

    asyncio.run(main())
    gc.collect()
    out["handles_after"] = media_worker.own_session_handles()
    return out


def step(name: str) -> None:
    """Tell the test where we are and wait for its go-ahead."""
    print(name, flush=True)
    line = sys.stdin.readline().strip()
    assert line == "go", f"expected go after {name}, got {line!r}"


def pending() -> dict:
    import threading

    from livekit import rtc

    out: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    base = 4242

    async def capture(source: Any, first: int, count: int) -> None:
        for i in range(first, first + count):
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(base, i).tobytes(), SAMPLE_RATE, 1, FRAME))

    source, track, stream, chunks, reader = loop.run_until_complete(open_stream(rtc, "pending"))
    second, second_chunks, second_reader = loop.run_until_complete(second_stream(rtc, track))
    loop.run_until_complete(capture(source, 0, 50))
    session = current_session()
    out["session_before"] = session.welcome.session_id
    step("READY")  # the test stops the broker (SIGSTOP)

    def in_thread(name: str) -> threading.Thread:
        def run() -> None:
            started = time.monotonic()
            try:
                rtc.AudioSource(SAMPLE_RATE, 1, loop=loop)
                out[name] = None
            except BaseException as err:  # noqa: BLE001
                out[name] = describe(err)
            out[name + "_s"] = round(time.monotonic() - started, 3)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # Its drop (DropHandles with a request_id) is pending at the break: sent again once resumed,
    # and aclose() ends after it.
    closing = loop.create_task(second.aclose())
    loop.run_until_complete(asyncio.sleep(0.2))
    at_break = in_thread("pending_at_break")
    time.sleep(0.3)
    out["pending_while_stopped"] = at_break.is_alive()
    break_stream()
    at_break.join(5)
    out["pending_woken"] = not at_break.is_alive()
    while_resuming = in_thread("while_resuming")
    time.sleep(0.5)
    out["state_while_stopped"] = session.state
    loop.run_until_complete(asyncio.sleep(0.1))
    out["aclose_waits_while_resuming"] = not closing.done()
    out["waiting_while_resuming"] = while_resuming.is_alive()
    step("WAITING")  # the test resumes the broker (SIGCONT)
    while_resuming.join(15)
    out["same_session_object"] = session is current_session()
    out["session_after"] = current_session().welcome.session_id
    out["resumes"] = session.resumes
    try:
        loop.run_until_complete(asyncio.wait_for(closing, 10))
        loop.run_until_complete(asyncio.wait_for(second_reader, 10))
        out["aclose_done"] = True
    except asyncio.TimeoutError:
        out["aclose_done"] = False
    loop.run_until_complete(capture(source, 50, 50))
    out["all_received"] = loop.run_until_complete(wait_samples(chunks, 100 * FRAME, 10))
    received = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    out["samples"] = media_worker.check_samples(received, base, 100)
    out["events_dropped"] = session.events_dropped
    loop.run_until_complete(close_stream(source, track, stream, reader))
    return out


def main() -> int:
    mode = sys.argv[1]
    if mode == "resume":
        out = resume(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    elif mode == "fallback":
        out = fallback()
    elif mode == "pending":
        out = pending()
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
