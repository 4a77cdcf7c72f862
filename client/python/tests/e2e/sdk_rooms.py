"""Two participants of the installed `livekit` SDK in one room, past the library's 15 s
ReadyForRoomEvent timeout: a publisher sends a 440 Hz sine and a data packet every 0.5 s, a
listener subscribes, reads the audio and records every room event with its time.

    python sdk_rooms.py --url ws://ADDR:7880 --seconds 20

Through the broker when LIVEKIT_FFI_BROKER is set (the Python client's .pth routes the SDK),
with the SDK's own library otherwise. Prints one JSON line: the SDK version, the listener's
events by kind (count, first and last second after its connect), audio frames, whether either
room was disconnected, and how both disconnects went. Standard library and the SDK only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
from livekit import rtc

from access_token import access_token

ROOM = "sdk-rooms"
RATE = 48000
FRAME = RATE // 100


def join_token(identity: str) -> str:
    return access_token(identity, ROOM)


class Listener:
    """Records the room's events (every name the SDK emits) with seconds since connect."""

    EVENTS = ("participant_connected", "participant_disconnected", "track_published", "track_subscribed",
              "track_unsubscribed", "data_received", "active_speakers_changed", "connection_quality_changed",
              "connection_state_changed", "disconnected", "reconnecting", "reconnected", "room_updated")

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.t0 = time.monotonic()
        self.events: dict[str, dict] = {}
        self.frames = 0
        self.last_frame_s = None
        self.disconnect_reasons: list = []
        self.readers: list[asyncio.Task] = []
        for name in self.EVENTS:
            room.on(name, self._recorder(name))

    def _recorder(self, name: str):
        def record(*args) -> None:
            t = round(time.monotonic() - self.t0, 3)
            entry = self.events.setdefault(name, {"count": 0, "first_s": t})
            entry["count"] += 1
            entry["last_s"] = t
            if name == "disconnected":
                self.disconnect_reasons.append(str(args[0]) if args else None)
            if name == "track_subscribed" and args[0].kind == rtc.TrackKind.KIND_AUDIO:
                self.readers.append(asyncio.ensure_future(self._read(args[0])))
        return record

    async def _read(self, track: rtc.Track) -> None:
        async for _ in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            self.frames += 1
            self.last_frame_s = round(time.monotonic() - self.t0, 3)


async def publish(room: rtc.Room, seconds: float) -> int:
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("sine", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    sent, packets = 0, 0
    step = 2 * np.pi * 440 / RATE
    end = time.monotonic() + seconds
    next_packet = time.monotonic()
    while time.monotonic() < end:
        samples = (0.3 * 32767 * np.sin(step * (np.arange(FRAME) + sent * FRAME))).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
        if time.monotonic() >= next_packet:
            await room.local_participant.publish_data(f"packet {packets}".encode(), reliable=True)
            packets += 1
            next_packet += 0.5
    await source.aclose()
    return packets


async def disconnect(room: rtc.Room) -> str:
    try:
        await asyncio.wait_for(room.disconnect(), 10)
        return "ok"
    except Exception as err:  # noqa: BLE001 - reported, not raised: the test judges it
        return f"{type(err).__name__}: {err}"


async def run(url: str, seconds: float) -> dict:
    listener_room, publisher_room = rtc.Room(), rtc.Room()
    listener = Listener(listener_room)
    result: dict = {"sdk_version": rtc.__version__}

    async def scenario() -> None:
        await listener_room.connect(url, join_token("listener"))
        listener.t0 = time.monotonic()
        await publisher_room.connect(url, join_token("publisher"), rtc.RoomOptions(auto_subscribe=False))
        result["packets_sent"] = await publish(publisher_room, seconds)
        await asyncio.sleep(1.0)  # the last packets and frames in flight

    try:
        # A room whose events never come can leave an SDK call waiting for good.
        await asyncio.wait_for(scenario(), seconds + 30)
    except asyncio.TimeoutError:
        result["timed_out"] = True
    # Copied: what the rooms saw before this script's own disconnects.
    result.update(
        events=json.loads(json.dumps(listener.events)),
        frames=listener.frames,
        last_frame_s=listener.last_frame_s,
        disconnect_reasons=list(listener.disconnect_reasons),
        listener_state=int(listener_room.connection_state),
        publisher_state=int(publisher_room.connection_state),
        remote_participants=sorted(listener_room.remote_participants),
    )
    result["publisher_disconnect"] = await disconnect(publisher_room)
    result["listener_disconnect"] = await disconnect(listener_room)
    for reader in listener.readers:
        reader.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
