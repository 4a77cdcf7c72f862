#!/usr/bin/env python3
"""One Python worker process of the `workers` benchmark (bench/workers.ts), public livekit.rtc API only.

The workload is bench/python_audio.py's run(): S inbound streams (AudioSource -> LocalAudioTrack ->
AudioStream, captured into and read back) and C capture-only sources (an agent's TTS output), 10 ms
frames at real-time pace. Run as is for the SDK in-process, or with LIVEKIT_FFI_BROKER set to route it
through the broker (client/python's .pth activation).

Protocol with the parent: once set up it prints {"event": "ready"} and waits for the line "go" on
stdin (so that every worker of a case starts together), then runs and prints {"result": {...}}, the
run's figures with every frame's latency (latencies_ms), and exits on the line "exit" (or end of
stdin): the parent samples every process at the end of the window, so none may exit before.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

import python_audio
from python_audio import emit


async def worker(a: argparse.Namespace) -> None:
    # Read stdin on the event loop itself: no executor thread that the benchmark would count.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def wait_for_go() -> None:
        emit({"event": "ready"})
        line = (await reader.readline()).decode().strip()
        if line != "go":
            raise RuntimeError(f"expected 'go' on stdin, read {line!r}")

    try:
        result = await python_audio.run(a.streams, a.seconds, a.warmup, a.queue_ms, capture_only=a.capture_only, before_start=wait_for_go, keep_latencies=True)
        emit({"result": result})
    except Exception as e:  # noqa: BLE001 - reported as JSON for the parent
        emit({"error": repr(e)})
    await reader.readline()  # "exit", or end of stdin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--capture-only", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--queue-ms", type=int, default=1000)
    a = p.parse_args()
    asyncio.run(worker(a))


if __name__ == "__main__":
    main()
