"""A participant that publishes one audio track with a sine of a known frequency until SIGTERM.

    python publisher.py --url ws://ADDR:7880 --token JWT --hz 440

Prints JSON lines: {"published": sid} once the track is published, {"stopped": {...}} at the end.
Through the broker when LIVEKIT_FFI_BROKER is set, with the SDK's own library otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = RATE // 100  # 10 ms


async def run(url: str, token: str, hz: float) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    room = rtc.Room()
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("sine", source)
    pub = await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    print(json.dumps({"published": pub.sid}), flush=True)
    sent = 0
    step = 2 * np.pi * hz / RATE
    while not stop.is_set():
        # Continuous phase across frames; capture_frame paces us at real time once the source's
        # queue is full.
        phase = step * (np.arange(FRAME) + sent * FRAME)
        samples = (0.3 * 32767 * np.sin(phase)).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
    await room.disconnect()
    await source.aclose()
    return {"frames_sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--hz", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps({"stopped": asyncio.run(run(args.url, args.token, args.hz))}), flush=True)


if __name__ == "__main__":
    main()
