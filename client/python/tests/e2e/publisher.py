"""A participant that speaks in turns and listens to the agent, until SIGTERM.

    python publisher.py --url ws://ADDR:7880 --token JWT --pitch 120

It publishes a microphone track of voice bursts at --pitch Hz (signals.voice_burst: Silero VAD
takes them for speech), BURST_S long with PAUSE_S of silence between them and in step with the
wall clock, so the agent's VAD sees each turn end and the answer fits in the pause. It subscribes
to the agent's audio only and records every lk.transcription text stream and every transcription
event it receives.

Prints JSON lines: {"published": sid} once the track is published, {"stopped": {...}} at the end
(what it sent; the agent's audio it heard: seconds, dominant frequency, separate replies; the
transcriptions). Through the broker when LIVEKIT_FFI_BROKER is set, with the SDK's own library
otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

import numpy as np
from livekit import rtc

from signals import BURST_S, FRAME, PAUSE_S, RATE, audible, dominant_hz, frames_of, from_pcm, rms, to_pcm, voice_burst

TRANSCRIPTION_TOPIC = "lk.transcription"  # livekit-agents' TOPIC_TRANSCRIPTION
REPLY_GAP_FRAMES = 30  # 300 ms of silence or more separates two replies


def is_agent(participant: rtc.RemoteParticipant) -> bool:
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


class Listener:
    """The agent's audio and the transcriptions, as this participant receives them."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.chunks: list[np.ndarray] = []
        self.streams: list[dict] = []
        self.events: list[dict] = []
        self.tasks: set[asyncio.Task] = set()
        self.audio: rtc.AudioStream | None = None
        room.on("track_published", self.on_published)
        room.on("track_subscribed", self.on_subscribed)
        room.on("transcription_received", self.on_transcription)
        room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self.on_text_stream)

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_published(self, pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if is_agent(participant) and pub.kind == rtc.TrackKind.KIND_AUDIO:
            pub.set_subscribed(True)

    def on_subscribed(self, track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if is_agent(participant) and track.kind == rtc.TrackKind.KIND_AUDIO and self.audio is None:
            self.audio = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
            self.spawn(self.read_audio(self.audio))

    async def read_audio(self, stream: rtc.AudioStream) -> None:
        async for event in stream:
            self.chunks.append(from_pcm(event.frame.data))

    def on_transcription(self, segments: list, participant, _pub) -> None:
        for seg in segments:
            if seg.final:
                self.events.append({"from": participant.identity if participant else None, "text": seg.text})

    def on_text_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            self.streams.append({"from": sender, "text": text, "attributes": dict(reader.info.attributes)})

        self.spawn(read())

    async def close(self) -> None:
        if self.audio is not None:
            await self.audio.aclose()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)

    def report(self) -> dict:
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0)
        frames = frames_of(samples)
        loud = audible(frames)
        heard = frames[loud].reshape(-1)
        # Separate replies: runs of audible frames split by REPLY_GAP_FRAMES of silence.
        replies, gap = 0, REPLY_GAP_FRAMES
        for on in loud:
            if on and gap >= REPLY_GAP_FRAMES:
                replies += 1
            gap = 0 if on else gap + 1
        return {
            "frames": len(frames),
            "audible_s": round(int(loud.sum()) / 100, 2),
            "hz": round(dominant_hz(heard, RATE), 1) if len(heard) else None,
            "rms": round(rms(heard), 4),
            "replies": replies,
        }


async def run(url: str, token: str, pitch: float) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    room = rtc.Room()
    listener = Listener(room)
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("voice", source)
    pub = await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    print(json.dumps({"published": pub.sid}), flush=True)
    rng = np.random.default_rng(int(pitch))  # the same voice every run
    silence = np.zeros(int(PAUSE_S * RATE))
    sent = bursts = audible_sent = 0
    loudest = 0.0
    turn = np.zeros(int(-time.time() % (BURST_S + PAUSE_S) * RATE))  # silence until in step
    while True:
        for start in range(0, len(turn) - FRAME + 1, FRAME):
            if stop.is_set():
                break
            # capture_frame paces us at real time once the source's queue is full.
            await source.capture_frame(rtc.AudioFrame(to_pcm(turn[start : start + FRAME]), RATE, 1, FRAME))
            sent += 1
        if stop.is_set():
            break
        speech = voice_burst(pitch, BURST_S, rng)
        bursts += 1
        audible_sent += int(audible(frames_of(speech)).sum())
        loudest = max(loudest, rms(speech[:RATE]))
        turn = np.concatenate([speech, silence])
    await listener.close()
    await room.disconnect()
    await source.aclose()
    return {
        "frames_sent": sent,
        "bursts": bursts,
        "audible_fraction_sent": round(audible_sent / (max(bursts, 1) * (BURST_S + PAUSE_S) * 100), 3),
        "loudest_second_rms_sent": round(loudest, 4),
        "agent_audio": listener.report(),
        "transcription_streams": listener.streams,
        "transcription_events": listener.events,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--pitch", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps({"stopped": asyncio.run(run(args.url, args.token, args.pitch))}), flush=True)


if __name__ == "__main__":
    main()
