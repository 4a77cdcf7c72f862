#!/usr/bin/env python3
"""Two audio streams and a video stream of one process through the broker, with the media lane
as this process gets it (on a Unix socket unless LIVEKIT_FFI_BROKER_MEDIA_LANE=off; never over
TCP). Prints JSON: each stream's samples as received, the video frames' colours, and what crossed
in the lane."""
from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features  # noqa: E402
import media_worker  # noqa: E402


async def main() -> dict:
    from livekit import rtc
    from livekit.rtc._ffi_client import FfiClient

    streams = await asyncio.gather(*(media_worker.stream_audio(f"lane{i}", 1000 * i, 1.0, rtc) for i in range(2)))
    video = await features.video(rtc)
    session = FfiClient.instance._connection._session
    lane = session.lane
    # Let the SDK dispose of the last frames it read (their slots go back to the broker then).
    await asyncio.sleep(0.2)
    return {
        "streams": streams,
        "video": video,
        "lane": None if lane is None else {"placed": lane.placed, "held": lane.held, "outstanding": lane.outstanding},
        "handles_after": media_worker.own_session_handles(),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
