"""The room scenarios' test tone: a 0.3 full-scale sine captured into an AudioSource in 10 ms frames
at real-time pace (the source's queue paces it), for as long as the caller lets it run."""
from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = RATE // 100  # 10 ms


async def capture_sine(source: rtc.AudioSource, hz: float, stop: asyncio.Event) -> int:
    """Captures the sine until `stop` is set; returns the frames sent."""
    sent = 0
    step = 2 * np.pi * hz / RATE
    while not stop.is_set():
        samples = (0.3 * 32767 * np.sin(step * (np.arange(FRAME) + sent * FRAME))).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
        sent += 1
    return sent
