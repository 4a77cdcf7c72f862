"""The end-to-end test's voice turn, as every side knows it (publishers, the agent's stand-ins, the
driver, the test), and the one analysis every side applies to its sounds.

Silero VAD does not take a pure tone for speech (its probability stays under 0.05 for a sine at
any pitch), so the publishers speak a synthetic voice: syllables of a few vowels (additive
harmonics shaped by formants) with a fricative before each, at a steady pitch. Every burst of it
is detected as speech, and its pitch (pitch_hz) names the publisher. The agent's reply is a pure
sine at REPLY_HZ, which no publisher's harmonics hit.
numpy only.
"""
from __future__ import annotations

import numpy as np

RATE = 48000
FRAME = RATE // 100  # 10 ms
LEVEL = 0.3  # peak of a voice burst and of the reply, full scale = 1
# Who speaks, at which pitch (Hz): no harmonic of either is REPLY_HZ.
PUBLISHERS = {"pub-120": 120, "pub-210": 210}
# Each publisher's turn: voice, then silence long enough for the answer. Both keep time with the
# wall clock (a turn starts at a multiple of the period), so they speak at once and are silent at
# once: the agent, moved from one to the other after answering, never joins the other mid-turn.
BURST_S, PAUSE_S = 1.5, 4.5
# The agent's answer to every turn: this text (the LLM stand-in), spoken as a sine (the TTS stand-in).
REPLY_TEXT = "Hello from the agent behind the broker."
REPLY_HZ = 880
REPLY_SECONDS = 1.2
# A 10 ms frame or a second is "audible" from this RMS on (a burst's syllables are ~0.1, silence 0).
AUDIBLE_RMS = 0.02

# (F1, F2, F3) of a few vowels, Hz.
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240), (660, 1720, 2410)]


def _vowel(pitch: float, seconds: float, formants: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    # Falling by 4% each side of the pitch, with a slight vibrato: a level machine tone is not speech.
    f0 = np.linspace(pitch * 1.04, pitch * 0.96, n) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out = np.zeros(n)
    for k in range(1, int(4000 // pitch) + 1):
        gain = sum(1 / np.sqrt(1 + ((pitch * k - f) / 80) ** 2) for f in formants) / k
        out += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    ramp = int(0.03 * RATE)
    out[:ramp] *= np.linspace(0, 1, ramp)
    out[-ramp:] *= np.linspace(1, 0, ramp)
    return out / np.max(np.abs(out))


def voice_burst(pitch: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of speech-like sound at `pitch` Hz, peak LEVEL, as float samples at RATE."""
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < seconds * RATE:
        hiss = np.diff(rng.standard_normal(int(0.06 * RATE)), prepend=0)  # a fricative
        parts.append(0.05 * hiss * np.hanning(len(hiss)))
        parts.append(_vowel(pitch, rng.uniform(0.2, 0.3), _VOWELS[rng.integers(len(_VOWELS))], rng))
        parts.append(np.zeros(int(0.05 * RATE)))
    out = np.concatenate(parts)[: int(seconds * RATE)]
    return LEVEL * out / np.max(np.abs(out))


def sine(hz: float, seconds: float, rate: int) -> np.ndarray:
    return LEVEL * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def to_pcm(samples: np.ndarray) -> bytes:
    return (samples * 32767).astype(np.int16).tobytes()


def from_pcm(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16).astype(np.float64) / 32768.0


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency above 50 Hz, to 1 Hz or better (zero-padded to at least a second):
    Opus is lossy, so signals are compared by frequency, not sample by sample."""
    n = max(len(samples), rate)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n))
    spectrum[: int(50 * n / rate)] = 0  # DC and rumble
    return float(np.argmax(spectrum) * rate / n)


def pitch_hz(samples: np.ndarray, rate: int) -> float:
    """The fundamental of a voice, 60 to 500 Hz: the strongest frequency within 15% above the
    lowest one of at least 30% of the band's strongest. A vowel's strongest harmonic is often the
    one nearest its first formant, not the fundamental; but the fundamental is weaker by less than
    half (the voice's harmonics fall 1/k), and the next harmonic is 100% above it."""
    n = max(len(samples), rate)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n))
    lo = int(60 * n / rate)
    band = spectrum[lo : int(500 * n / rate)]
    first = lo + int(np.argmax(band >= 0.3 * band.max()))
    near = spectrum[first : int(first * 1.15) + 1]
    return float((first + np.argmax(near)) * rate / n)


def seconds_report(samples: np.ndarray) -> list[dict]:
    """Of each whole second of voice at RATE: its pitch, RMS, and how much of it is audible."""
    return [
        {
            "pitch_hz": round(pitch_hz(second, RATE)),
            "rms": round(rms(second), 4),
            "audible_s": round(int(audible(frames_of(second)).sum()) / 100, 2),
        }
        for second in (samples[s : s + RATE] for s in range(0, len(samples) - RATE + 1, RATE))
    ]


def frames_of(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """`samples` as rows of 10 ms frames; a partial last frame is left out."""
    frame = rate // 100
    return samples[: len(samples) // frame * frame].reshape(-1, frame)


def audible(frames: np.ndarray) -> np.ndarray:
    """Which rows of `frames` are audible."""
    return np.sqrt(np.mean(frames**2, axis=1)) >= AUDIBLE_RMS
