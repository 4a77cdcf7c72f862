"""Worker code for the scenario drivers: uses only the public livekit.rtc API, as a job would.

Importable by multiprocessing children (spawn and forkserver re-import it by name).
"""
from __future__ import annotations

import array
import asyncio
import gc
import os
import time
from typing import Any

SAMPLE_RATE = 48000
FRAME = 480  # 10 ms


def native_library_loaded() -> bool:
    with open("/proc/self/maps") as maps:
        return "liblivekit_ffi" in maps.read()


def signal_frame(base: int, index: int) -> array.array:
    """Samples of frame ``index`` of a stream: never 0 (0 is the silence of an under-run),
    different for every (worker, track) base, so frames of another stream cannot pass as ours."""
    start = index * FRAME
    return array.array("h", [((base + start + k) % 32000) + 1 for k in range(FRAME)])


def expected_samples(base: int, frames: int) -> array.array:
    out = array.array("h")
    for i in range(frames):
        out.extend(signal_frame(base, i))
    return out


def check_samples(received: array.array, base: int, frames: int) -> dict[str, Any]:
    expected = expected_samples(base, frames)
    nonzero = array.array("h", (v for v in received if v != 0))
    silence = len(received) - len(nonzero)
    in_order = nonzero.tobytes() == expected[: len(nonzero)].tobytes()
    return {
        "sent": len(expected),
        "received": len(nonzero),
        "silence": silence,
        "in_order": in_order,
        "complete": len(nonzero) == len(expected),
    }


async def stream_audio(tag: str, base: int, seconds: float, rtc: Any, on_streaming: Any = None) -> dict[str, Any]:
    """One audio track: AudioSource -> LocalAudioTrack -> AudioStream, ``seconds`` of signal."""
    frames = int(seconds * 100)
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track(tag, source)
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    received = array.array("h")
    wanted = frames * FRAME

    async def read() -> None:
        nonzero = 0
        async for event in stream:
            data = event.frame.data
            received.extend(data)
            nonzero += sum(1 for v in data if v != 0)
            if nonzero >= wanted:
                return

    reader = asyncio.create_task(read())
    for i in range(frames):
        samples = signal_frame(base, i)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, FRAME))
        if i == 10 and on_streaming is not None:
            on_streaming()
    try:
        await asyncio.wait_for(reader, timeout=seconds + 10)
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    result = check_samples(received, base, frames)
    result["timed_out"] = timed_out
    await asyncio.wait_for(stream.aclose(), timeout=10)
    await source.aclose()
    track._ffi_handle.dispose()  # the SDK does this when the track is collected; do it now
    return result


def own_session_handles() -> int:
    """Handles the broker holds for this process's session (-1: no session)."""
    import livekit_ffi_broker

    info = livekit_ffi_broker.broker_info()
    for session in info.sessions:
        if session.pid == os.getpid():
            return int(session.owned_handles)
    return -1


def audio_job(worker: int, seconds: float = 3.0, tracks: int = 2) -> dict[str, Any]:
    """A pool job: ``tracks`` audio tracks at once for ``seconds``, then everything closed."""
    import livekit_ffi_broker
    from livekit import rtc

    started = time.monotonic()

    async def main() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(stream_audio(f"w{worker}-t{t}", worker * 4000 + t * 2000, seconds, rtc) for t in range(tracks))
            )
        )

    streams = asyncio.run(main())
    gc.collect()
    return {
        "worker": worker,
        "pid": os.getpid(),
        "active": livekit_ffi_broker.is_active(),
        "native_loaded": native_library_loaded(),
        "streams": streams,
        "handles_after": own_session_handles(),
        "elapsed": round(time.monotonic() - started, 2),
    }


def long_audio_job(worker: int, seconds: float, ready: Any) -> None:
    """A process that streams for a long time and says when it is streaming (for kill -9)."""
    from livekit import rtc

    async def main() -> None:
        await stream_audio(f"victim{worker}", 9000 + worker * 100, seconds, rtc, on_streaming=ready.set)

    asyncio.run(main())
