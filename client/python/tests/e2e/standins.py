"""Local stand-ins for the network providers of a voice agent: the subclasses of livekit-agents'
own stt.STT, llm.LLM and tts.TTS that a plugin would be, doing something checkable instead.

- PitchSTT hears a speech segment (cut by the Silero VAD through the agents' StreamAdapter) and
  transcribes it as the pitch of the voice it heard: "a voice at 120 hertz".
- FixedLLM answers every turn with REPLY_TEXT.
- SineTTS speaks any text as REPLY_SECONDS of a REPLY_HZ sine.

The same code runs on livekit-agents 1.5.2 and 1.8.9: the abstract methods it implements have the
same signatures in both.
"""
from __future__ import annotations

import uuid

from livekit import rtc
from livekit.agents import APIConnectOptions, llm, stt, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from signals import REPLY_HZ, REPLY_SECONDS, REPLY_TEXT, audible, frames_of, from_pcm, pitch_hz, sine, to_pcm

TTS_RATE = 24000
# Less voice than this is a scrap (the job may start listening mid-turn): too short to tell its
# pitch, so no transcript, as an STT gives none for noise.
MIN_VOICE_S = 0.5


def transcript_for(hz: float) -> str:
    return f"a voice at {round(hz)} hertz"


class PitchSTT(stt.STT):
    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))

    async def _recognize_impl(
        self, buffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = from_pcm(frame.data)[:: frame.num_channels]
        voice_s = int(audible(frames_of(samples, frame.sample_rate)).sum()) / 100
        text = transcript_for(pitch_hz(samples, frame.sample_rate)) if voice_s >= MIN_VOICE_S else ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language="en", text=text, confidence=1.0)],
        )


class _FixedStream(llm.LLMStream):
    async def _run(self) -> None:
        self._event_ch.send_nowait(
            llm.ChatChunk(id=str(uuid.uuid4()), delta=llm.ChoiceDelta(role="assistant", content=REPLY_TEXT))
        )


class FixedLLM(llm.LLM):
    def chat(self, *, chat_ctx: llm.ChatContext, tools=None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
             **_: object) -> llm.LLMStream:
        return _FixedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _SineStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(request_id=str(uuid.uuid4()), sample_rate=TTS_RATE, num_channels=1, mime_type="audio/pcm")
        output_emitter.push(to_pcm(sine(REPLY_HZ, REPLY_SECONDS, TTS_RATE)))
        output_emitter.flush()


class SineTTS(tts.TTS):
    def __init__(self) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=TTS_RATE, num_channels=1)

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _SineStream(tts=self, input_text=text, conn_options=conn_options)
