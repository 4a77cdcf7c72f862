#!/usr/bin/env python3
"""A producer faster than real time: 3 s of audio pushed into an AudioSource with a small queue,
each capture_frame awaited, nothing else slowing it down (as an agent pushes TTS). Through the
broker or in-process (no LIVEKIT_FFI_BROKER). Prints JSON: how long the pushing took, how long
the capture_frame calls took, and the samples the AudioStream of the source's track gave back."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import media_worker  # noqa: E402
from media_worker import FRAME, SAMPLE_RATE, close_stream, open_stream, wait_samples  # noqa: E402

SECONDS = 3.0
QUEUE_MS = 100
BASE = 4242


async def main() -> dict:
    from livekit import rtc

    frames = int(SECONDS * 100)
    source, track, stream, chunks, reader = await open_stream(rtc, "pacing", QUEUE_MS)
    payloads = [media_worker.signal_frame(BASE, i).tobytes() for i in range(frames)]
    calls_ms = []
    started = time.monotonic()
    for payload in payloads:
        t0 = time.monotonic()
        await source.capture_frame(rtc.AudioFrame(payload, SAMPLE_RATE, 1, FRAME))
        calls_ms.append((time.monotonic() - t0) * 1000)
    pushed_s = time.monotonic() - started
    await wait_samples(chunks, frames * FRAME, 10)
    await close_stream(source, track, stream, reader)
    received = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    calls = np.sort(np.asarray(calls_ms))
    return {
        "seconds": SECONDS,
        "queue_ms": QUEUE_MS,
        "pushed_s": round(pushed_s, 3),
        "capture_call_ms": {"p50": round(float(calls[len(calls) // 2]), 3), "max": round(float(calls[-1]), 3)},
        "samples": media_worker.check_samples(received, BASE, frames),
        "through_broker": bool(os.environ.get("LIVEKIT_FFI_BROKER")),
        "native_loaded": media_worker.native_library_loaded(),
    }


async def joined() -> dict:
    """Captures queued while the broker is stopped (SIGSTOP, between the steps) go out joined once
    it runs again: the samples still come out in order and complete."""
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient

    from errors import step

    frames = 50
    source, track, stream, chunks, reader = await open_stream(rtc, "joined")

    async def produce(first: int, last: int) -> None:
        for i in range(first, last):
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(BASE, i).tobytes(), SAMPLE_RATE, 1, FRAME))

    await produce(0, 1)
    step("READY")  # the test stops the broker
    producer = asyncio.create_task(produce(1, frames))
    await asyncio.sleep(0.5)
    out: dict = {"blocked_while_stopped": not producer.done()}
    await asyncio.get_running_loop().run_in_executor(None, step, "STOPPED")  # the test lets it run again
    await asyncio.wait_for(producer, 20)
    await wait_samples(chunks, frames * FRAME, 10)
    await close_stream(source, track, stream, reader)
    received = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    out["joined"] = FfiClient.instance._connection.capture_windows.joined
    out["samples"] = media_worker.check_samples(received, BASE, frames)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(joined() if sys.argv[1:] == ["joined"] else main())))
