"""One of two participants of the SDK-matrix room scenario (tests/test_room_livekit.py), with the
public livekit.rtc API only, so that the same code runs on every SDK release of the matrix.

    python room_peer.py --role alice|bob --url ws://ADDR:7880 --token JWT --peer IDENTITY --seconds 20

alice publishes a 440 Hz sine as a microphone track and sends a text stream; bob subscribes to
her track and reads it, and sends a byte stream. Each records the other's metadata and attributes. Each sends a data packet to the other as soon as
it sees the other in the room and again after ``--seconds`` (past liblivekit_ffi 0.12.75's 15 s
ReadyForRoomEvent timeout), so both directions are checked early and late.

Never raises on a failed check: it records what happened and prints one JSON line
{"peer": {...}} at the end, so that the matrix can say what failed on which SDK release.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from typing import Any

import numpy as np
from livekit import rtc

from sine_track import RATE, capture_sine

HZ = 440
TEXT = "matrix text stream: " + "héllo wörld " * 300  # several chunks, non-ASCII
BYTES = bytes((i * 7 + 3) % 251 for i in range(200_000))  # several chunks
DATA_TOPIC = "matrix-data"


def emit(**fields: Any) -> None:
    print(json.dumps({"t": round(time.time(), 3), **fields}), flush=True)


def windows(samples: np.ndarray) -> list[dict]:
    """Per second of received audio: the FFT peak and the RMS (full scale 1.0)."""
    out = []
    for start in range(0, len(samples) - RATE + 1, RATE):
        second = samples[start : start + RATE].astype(np.float64) / 32768
        rms = float(np.sqrt(np.mean(second**2)))
        peak = float(np.argmax(np.abs(np.fft.rfft(second))) * RATE / len(second))
        out.append({"peak_hz": round(peak, 1), "rms": round(rms, 3)})
    return out


class Peer:
    def __init__(self, role: str, peer_identity: str, seconds: float) -> None:
        self.role = role
        self.peer_identity = peer_identity
        self.seconds = seconds
        self.room: rtc.Room  # made in run(): a Room belongs to the loop it is made in
        self.result: dict[str, Any] = {"role": role, "sdk": rtc.__version__, "errors": []}
        self.data: list[dict] = []
        self.streams: dict[str, Any] = {}
        self.audio_task: asyncio.Task | None = None
        self.disconnected: list[str] = []
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def error(self, what: str, exc: BaseException) -> None:
        self.result["errors"].append(f"{what}: {type(exc).__name__}: {exc}")
        emit(error=what, detail=f"{type(exc).__name__}: {exc}")

    def wire(self) -> None:
        room = self.room

        @room.on("participant_connected")
        def _joined(p: rtc.RemoteParticipant) -> None:
            if p.identity == self.peer_identity:
                self.peer_seen.set()

        @room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            sender = packet.participant.identity if packet.participant else None
            self.data.append({"from": sender, "topic": packet.topic, "data": bytes(packet.data).decode(), "at": self.elapsed()})

        @room.on("disconnected")
        def _gone(reason: Any = None) -> None:
            self.disconnected.append(f"{reason} at {self.elapsed()} s")
            emit(disconnected=str(reason), at=self.elapsed())

        @room.on("track_subscribed")
        def _subscribed(track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO and self.audio_task is None:
                self.audio_task = asyncio.ensure_future(self.read_audio(track))

        def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
            async def read() -> None:
                try:
                    text = await reader.read_all()
                    self.streams["text"] = {"from": identity, "chars": len(text), "equal": text == TEXT, "at": self.elapsed()}
                except Exception as exc:  # noqa: BLE001 - recorded
                    self.error("text stream read", exc)

            asyncio.ensure_future(read())

        def on_bytes(reader: rtc.ByteStreamReader, identity: str) -> None:
            async def read() -> None:
                try:
                    chunks = [bytes(chunk) async for chunk in reader]
                    data = b"".join(chunks)
                    self.streams["bytes"] = {
                        "from": identity, "bytes": len(data), "equal": hashlib.sha256(data).digest() == hashlib.sha256(BYTES).digest(),
                        "at": self.elapsed(),
                    }
                except Exception as exc:  # noqa: BLE001 - recorded
                    self.error("byte stream read", exc)

            asyncio.ensure_future(read())

        room.register_text_stream_handler("matrix-text", on_text)
        room.register_byte_stream_handler("matrix-bytes", on_bytes)

    async def read_audio(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        chunks: list[np.ndarray] = []
        frames = 0
        first = None
        deadline = time.monotonic() + self.seconds
        try:
            async for event in stream:
                if first is None:
                    first = self.elapsed()
                frames += 1
                chunks.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())
                if time.monotonic() >= deadline:
                    break
        except Exception as exc:  # noqa: BLE001 - recorded
            self.error("audio stream", exc)
        finally:
            await stream.aclose()
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        self.result["audio_in"] = {
            "frames": frames, "seconds_read": round(len(samples) / RATE, 2), "first_frame_at": first, "windows": windows(samples)
        }

    async def publish_sine(self, stop: asyncio.Event) -> None:
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("sine", source)
        opts = rtc.TrackPublishOptions()
        opts.source = rtc.TrackSource.SOURCE_MICROPHONE
        pub = await self.room.local_participant.publish_track(track, opts)
        emit(published=pub.sid)
        sent = await capture_sine(source, HZ, stop)
        self.result["audio_out"] = {"frames_sent": sent}
        await self.room.local_participant.unpublish_track(track.sid)
        await source.aclose()

    async def send_data(self, label: str) -> None:
        try:
            await self.room.local_participant.publish_data(
                f"{label} from {self.role}".encode(), reliable=True, destination_identities=[self.peer_identity], topic=DATA_TOPIC
            )
        except Exception as exc:  # noqa: BLE001 - recorded
            self.error(f"publish_data {label}", exc)

    async def send_stream(self) -> None:
        lp = self.room.local_participant
        try:
            if self.role == "alice":
                writer = await lp.stream_text(destination_identities=[self.peer_identity], topic="matrix-text")
                for i in range(0, len(TEXT), 1000):  # several writes: a stream, not one message
                    await writer.write(TEXT[i : i + 1000])
            else:
                writer = await lp.stream_bytes("matrix.bin", destination_identities=[self.peer_identity], topic="matrix-bytes")
                for i in range(0, len(BYTES), 15_000):
                    await writer.write(BYTES[i : i + 15_000])
            await writer.aclose()
            self.result["stream_sent"] = True
        except Exception as exc:  # noqa: BLE001 - recorded
            self.error("stream send", exc)

    async def run(self, url: str, token: str) -> dict:
        self.room = rtc.Room()
        self.peer_seen = asyncio.Event()
        self.wire()
        try:
            await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        except Exception as exc:  # noqa: BLE001 - recorded
            self.error("connect", exc)
            return self.result
        self.result["connected_at"] = self.elapsed()
        emit(connected=self.room.local_participant.identity, room=self.room.name)
        if self.peer_identity in {p.identity for p in self.room.remote_participants.values()}:
            self.peer_seen.set()
        stop = asyncio.Event()
        publisher = asyncio.ensure_future(self.publish_sine(stop)) if self.role == "alice" else None
        try:
            await asyncio.wait_for(self.peer_seen.wait(), timeout=self.seconds)
            self.result["peer_seen_at"] = self.elapsed()
            # Now, while it is surely in the room: at the end it may have left already.
            other = next(p for p in self.room.remote_participants.values() if p.identity == self.peer_identity)
            self.result["peer_info"] = {"metadata": other.metadata, "attributes": dict(other.attributes)}
            await self.send_data("early")
            await self.send_stream()
        except asyncio.TimeoutError:
            self.result["errors"].append(f"{self.peer_identity} never appeared in the room")
        # Stay in the room past the library's 15 s ReadyForRoomEvent timeout, then talk again.
        await asyncio.sleep(max(0.0, self.seconds - self.elapsed()))
        await self.send_data("late")
        await asyncio.sleep(3)  # the other side's late packet, and the end of the audio read
        if self.audio_task is not None:
            await asyncio.wait_for(self.audio_task, timeout=10)
        stop.set()
        if publisher is not None:
            try:
                await asyncio.wait_for(publisher, timeout=10)
            except Exception as exc:  # noqa: BLE001 - recorded
                self.error("publisher", exc)
        self.result["connection_state_at_end"] = rtc.ConnectionState.Name(self.room.connection_state)
        self.result["data_in"] = self.data
        self.result["streams_in"] = self.streams
        self.result["disconnected_early"] = list(self.disconnected)
        try:
            await asyncio.wait_for(self.room.disconnect(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - recorded
            self.error("disconnect", exc)
        self.result["ended_at"] = self.elapsed()
        return self.result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["alice", "bob"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    peer = Peer(args.role, args.peer, args.seconds)
    result = asyncio.run(peer.run(args.url, args.token))
    import livekit_ffi_broker

    result["through_broker"] = livekit_ffi_broker.is_active()
    with open("/proc/self/maps") as maps:
        result["native_loaded"] = "liblivekit_ffi" in maps.read()
    print(json.dumps({"peer": result}), flush=True)


if __name__ == "__main__":
    main()
