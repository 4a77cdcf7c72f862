"""A multiprocessing Pool of audio workers (run with LIVEKIT_FFI_BROKER set).

    python pool_driver.py --method forkserver --workers 8 --seconds 3 [--parent-uses-broker]

Prints one JSON line: the jobs' results, the pool processes' exit codes, what the parent saw.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True, choices=["fork", "forkserver", "spawn"])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--parent-uses-broker", action="store_true")
    args = parser.parse_args()
    ctx = multiprocessing.get_context(args.method)
    if args.method == "forkserver":
        ctx.set_forkserver_preload(["media_worker"])
    out: dict = {"method": args.method, "parent_pid": os.getpid()}

    parent_loop = None
    parent = None
    if args.parent_uses_broker:
        from livekit import rtc

        # The parent opens its session and keeps objects alive across the forks.
        parent_loop = asyncio.new_event_loop()

        async def parent_setup():
            source = rtc.AudioSource(48000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("parent", source)
            frame = rtc.AudioFrame(media_worker.signal_frame(1, 0).tobytes(), 48000, 1, 480)
            await source.capture_frame(frame)
            return source, track

        parent = parent_loop.run_until_complete(parent_setup())

    started = time.monotonic()
    pool = ctx.Pool(args.workers)
    processes = list(pool._pool)  # to read their exit codes after join
    try:
        jobs = [pool.apply_async(media_worker.audio_job, (i, args.seconds)) for i in range(args.workers)]
        out["jobs"] = [job.get(timeout=60 + args.seconds * 4) for job in jobs]
    finally:
        pool.close()
        pool.join()
    out["pool_seconds"] = round(time.monotonic() - started, 2)
    out["exitcodes"] = [p.exitcode for p in processes]

    if parent is not None:
        from livekit import rtc

        source, track = parent

        async def parent_after():
            # The parent's session still works after forking.
            res = await media_worker.stream_audio("parent-after", 31000, 0.5, rtc)
            await source.capture_frame(rtc.AudioFrame(media_worker.signal_frame(1, 1).tobytes(), 48000, 1, 480))
            await source.aclose()
            track._ffi_handle.dispose()
            return res

        out["parent_stream"] = parent_loop.run_until_complete(parent_after())
        out["parent_native_loaded"] = media_worker.native_library_loaded()
        out["parent_handles_after"] = media_worker.own_session_handles()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
