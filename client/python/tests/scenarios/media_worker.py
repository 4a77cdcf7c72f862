"""Worker code for the scenario drivers: uses only the public livekit.rtc API, as a job would.

Importable by multiprocessing children (spawn and forkserver re-import it by name).
"""
from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

import numpy as np

SAMPLE_RATE = 48000
FRAME = 480  # 10 ms


def native_library_loaded() -> bool:
    with open("/proc/self/maps") as maps:
        return "liblivekit_ffi" in maps.read()


def signal_frame(base: int, index: int) -> np.ndarray:
    """Samples of frame ``index`` of a stream: never 0 (0 is the silence of an under-run),
    different for every (worker, track) base, so frames of another stream cannot pass as ours."""
    start = index * FRAME
    return (((base + start + np.arange(FRAME)) % 32000) + 1).astype(np.int16)


def expected_samples(base: int, frames: int) -> np.ndarray:
    return (((base + np.arange(frames * FRAME)) % 32000) + 1).astype(np.int16)


def check_samples(received: np.ndarray, base: int, frames: int) -> dict[str, Any]:
    expected = expected_samples(base, frames)
    nonzero = received[received != 0]
    in_order = bool(np.array_equal(nonzero, expected[: len(nonzero)]))
    return {
        "sent": int(len(expected)),
        "received": int(len(nonzero)),
        "silence": int(len(received) - len(nonzero)),
        "in_order": in_order,
        "complete": len(nonzero) == len(expected),
    }


async def stream_audio(tag: str, base: int, seconds: float, rtc: Any, on_streaming: Any = None) -> dict[str, Any]:
    """One audio track: AudioSource -> LocalAudioTrack -> AudioStream, ``seconds`` of signal."""
    frames = int(seconds * 100)
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track(tag, source)
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    chunks: list[np.ndarray] = []
    wanted = frames * FRAME

    async def read() -> None:
        nonzero = 0
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16).copy()
            chunks.append(data)
            nonzero += int(np.count_nonzero(data))
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
    received = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    result = check_samples(received, base, frames)
    result["timed_out"] = timed_out
    await asyncio.wait_for(stream.aclose(), timeout=10)
    await source.aclose()
    track._ffi_handle.dispose()  # the SDK does this when the track is collected; do it now
    return result


async def open_stream(rtc: Any, tag: str, queue_ms: int = 1000) -> tuple[Any, Any, Any, list, Any]:
    """AudioSource -> LocalAudioTrack -> AudioStream, and a task collecting what the stream gives."""
    source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=queue_ms)
    track = rtc.LocalAudioTrack.create_audio_track(tag, source)
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    chunks: list[np.ndarray] = []

    async def read() -> None:
        async for event in stream:
            chunks.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())

    return source, track, stream, chunks, asyncio.create_task(read())


async def wait_samples(chunks: list, wanted: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while sum(int(np.count_nonzero(c)) for c in chunks) < wanted:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def close_stream(source: Any, track: Any, stream: Any, reader: Any) -> None:
    await asyncio.wait_for(stream.aclose(), timeout=10)
    await asyncio.wait_for(reader, timeout=10)
    await source.aclose()
    track._ffi_handle.dispose()


def own_session_handles(settle: float = 5.0) -> int:
    """Handles the broker holds for this process's session (-1: no session), once they settle at 0
    (drops are fire-and-forget on the session stream, Info comes over another connection)."""
    import livekit_ffi_broker

    deadline = time.monotonic() + settle
    while True:
        info = livekit_ffi_broker.broker_info()
        owned = next((int(s.owned_handles) for s in info.sessions if s.pid == os.getpid()), -1)
        if owned <= 0 or time.monotonic() > deadline:
            return owned
        time.sleep(0.05)


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
