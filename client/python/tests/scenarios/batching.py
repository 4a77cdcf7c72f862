#!/usr/bin/env python3
"""Four audio streams of one process captured at once (one task each, as fast as their windows
let them), so that requests queue up while gRPC writes and leave in batches. Prints JSON: each
stream's samples as received, and how many requests the session sent inside batches."""
from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import media_worker  # noqa: E402


async def main() -> dict:
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient

    streams = await asyncio.gather(*(media_worker.stream_audio(f"batch{i}", 1000 * i, 1.0, rtc) for i in range(4)))
    session = FfiClient.instance._connection._session
    return {"streams": streams, "batched": session.batched, "handles_after": media_worker.own_session_handles()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
