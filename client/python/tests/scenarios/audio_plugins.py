"""LiveKit's noise cancellation as the agent templates use it: the plugin imported at module level,
then `noise_cancellation.BVC()` given to the AudioStreams of a remote track, in a room of a real
livekit-server. One participant publishes a 440 Hz sine; another reads it through two filtered
streams (AudioStream.from_track and .from_participant, the two requests that carry filter
options) for a few seconds.

    python audio_plugins.py --url ws://ADDR:7880 [--seconds 3] [--fork]
    python audio_plugins.py --import-only

--fork runs the room in a child forked after the import: its broker session never loaded the
plugin (the import ran in the parent), as in a worker that forks its jobs.

Prints one JSON line: the frames of each stream, their peak frequency, and the paths the worker
named (so the test can check that the broker used its own copies instead); with --import-only,
only those paths, once the import (and so the plugin's load) succeeded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

# As the templates do: at module level, before any room exists. Through the broker this sends
# LoadAudioFilterPluginRequest naming the plugin in this process's site-packages.
from livekit.plugins import noise_cancellation  # noqa: E402
from livekit import rtc  # noqa: E402

# The room scenarios' shared pieces (tests/e2e): tokens for the dev server, the test tone.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from access_token import access_token  # noqa: E402
from sine_track import RATE, capture_sine  # noqa: E402

HZ = 440
ROOM = "audio-plugins"


async def publish(room: rtc.Room, stop: asyncio.Event) -> None:
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("sine", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    await capture_sine(source, HZ, stop)
    await source.aclose()


async def read(stream: rtc.AudioStream, seconds: float) -> dict:
    frames, chunks = 0, []
    deadline = time.monotonic() + seconds
    async for event in stream:
        frames += 1
        chunks.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())
        if time.monotonic() > deadline:
            break
    await stream.aclose()
    data = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(1)
    tail = data[-RATE:]  # the last second: past the jitter buffer's start
    peak_hz = float(np.argmax(np.abs(np.fft.rfft(tail))) * RATE / len(tail))
    return {"frames": frames, "peak_hz": peak_hz, "rms": float(np.sqrt(np.mean(tail ** 2)))}


async def run(url: str, seconds: float) -> dict:
    options = noise_cancellation.BVC()
    publisher, listener = rtc.Room(), rtc.Room()
    subscribed: asyncio.Future = asyncio.get_running_loop().create_future()

    @listener.on("track_subscribed")
    def _on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and not subscribed.done():
            subscribed.set_result((track, participant))

    await listener.connect(url, access_token("listener", ROOM))
    await publisher.connect(url, access_token("publisher", ROOM), rtc.RoomOptions(auto_subscribe=False))
    stop = asyncio.Event()
    sending = asyncio.create_task(publish(publisher, stop))
    track, participant = await asyncio.wait_for(subscribed, 30)
    by_track = rtc.AudioStream.from_track(track=track, noise_cancellation=options)
    by_participant = rtc.AudioStream.from_participant(
        participant=participant, track_source=rtc.TrackSource.SOURCE_MICROPHONE, noise_cancellation=options
    )
    results = await asyncio.gather(read(by_track, seconds), read(by_participant, seconds))
    stop.set()
    await sending
    await publisher.disconnect()
    await listener.disconnect()
    return {"from_track": results[0], "from_participant": results[1], **named_paths()}


def named_paths() -> dict:
    return {"plugin_path": noise_cancellation.plugin.plugin_path(), "model_path": noise_cancellation.BVC().options["modelPath"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--import-only", action="store_true")
    parser.add_argument("--fork", action="store_true")
    args = parser.parse_args()
    if args.import_only:
        result = named_paths()
    elif args.fork:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.apply(in_child, (args.url, args.seconds))
    else:
        result = asyncio.run(run(args.url, args.seconds))
    print(json.dumps(result), flush=True)


def in_child(url: str, seconds: float) -> dict:
    return {**asyncio.run(run(url, seconds)), "pid": os.getpid()}


if __name__ == "__main__":
    main()
