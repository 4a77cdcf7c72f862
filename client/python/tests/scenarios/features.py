"""AudioResampler, AudioProcessingModule, VideoFrame.convert and a video source -> stream round
trip, with the public livekit.rtc API only. Run with LIVEKIT_FFI_BROKER set to go through the
broker, or without it to compute the same with the SDK's own liblivekit_ffi (the reference).

Prints one JSON line.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_worker  # noqa: E402


def sine(freq: float, rate: int, samples: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(samples) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def resampler(rtc) -> dict:
    source = sine(440, 48000, 48000)
    res = rtc.AudioResampler(48000, 16000, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH)
    out = []
    for i in range(0, len(source), 480):
        chunk = source[i : i + 480]
        frame = rtc.AudioFrame(chunk.tobytes(), 48000, 1, len(chunk))
        for produced in res.push(frame):
            assert produced.sample_rate == 16000
            out.append(np.frombuffer(produced.data, dtype=np.int16).copy())
    # also the bytearray form
    for produced in res.push(bytearray(sine(440, 48000, 480).tobytes())):
        out.append(np.frombuffer(produced.data, dtype=np.int16).copy())
    for produced in res.flush():
        out.append(np.frombuffer(produced.data, dtype=np.int16).copy())
    data = np.concatenate(out)
    # The output is a 440 Hz tone at 16 kHz: its spectrum peaks at 440 Hz.
    segment = data[1000:15000].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(segment))
    peak_hz = float(np.argmax(spectrum) * 16000 / len(segment))
    return {
        "samples": int(len(data)),
        "data": base64.b64encode(data.tobytes()).decode(),
        "peak_hz": peak_hz,
        "rms": float(np.sqrt(np.mean(data.astype(np.float64) ** 2))),
    }


def apm(rtc) -> dict:
    module = rtc.AudioProcessingModule(noise_suppression=True, high_pass_filter=True, auto_gain_control=True)
    rng = np.random.default_rng(7)
    changed = 0
    processed_all = bytearray()
    frames = 100
    for i in range(frames):
        samples = (sine(300, 48000, 480) // 4 + rng.integers(-2000, 2000, 480)).astype(np.int16)
        original = samples.tobytes()
        frame = rtc.AudioFrame(bytearray(original), 48000, 1, 480)
        module.process_stream(frame)
        processed = bytes(frame.data.cast("B"))
        if processed != original:
            changed += 1
        processed_all += processed
        reverse = rtc.AudioFrame(bytearray(original), 48000, 1, 480)
        module.process_reverse_stream(reverse)
    module.set_stream_delay_ms(10)
    return {"frames": frames, "changed_in_place": changed, "data": base64.b64encode(bytes(processed_all)).decode()}


def rgba_frame(rtc, width: int, height: int, color: tuple[int, int, int]) -> "rtc.VideoFrame":
    pixels = np.empty((height, width, 4), dtype=np.uint8)
    pixels[:, :] = (*color, 255)
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, bytearray(pixels.tobytes()))


def mean_rgb(frame) -> list[float]:
    rgba = frame.convert(frame_type_rgba()) if frame.type != frame_type_rgba() else frame
    arr = np.frombuffer(rgba.data, dtype=np.uint8).reshape(rgba.height, rgba.width, 4)
    return [round(float(arr[:, :, c].mean()), 1) for c in range(3)]


def frame_type_rgba():
    from livekit import rtc

    return rtc.VideoBufferType.RGBA


def convert(rtc) -> dict:
    width, height = 64, 48
    frame = rgba_frame(rtc, width, height, (200, 40, 90))
    i420 = frame.convert(rtc.VideoBufferType.I420)
    back = i420.convert(rtc.VideoBufferType.RGBA)
    planes = [len(i420.get_plane(n)) for n in range(3)]
    return {
        "i420_type": int(i420.type),
        "i420_bytes": len(i420.data),
        "planes": planes,
        "roundtrip_rgb": mean_rgb(back),
        "i420_sha256": hashlib.sha256(bytes(i420.data)).hexdigest(),
    }


COLORS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)]


async def video(rtc) -> dict:
    width, height = 160, 120
    source = rtc.VideoSource(width, height)
    track = rtc.LocalVideoTrack.create_video_track("video", source)
    stream = rtc.VideoStream(track)
    received: list[dict] = []

    async def read() -> None:
        async for event in stream:
            frame = event.frame
            received.append(
                {"w": frame.width, "h": frame.height, "type": int(frame.type), "rgb": mean_rgb(frame), "ts": event.timestamp_us}
            )
            if len(received) >= len(COLORS) * 3:
                return

    reader = asyncio.create_task(read())
    for i, color in enumerate(COLORS * 3):
        source.capture_frame(rgba_frame(rtc, width, height, color), timestamp_us=1_000_000 + i * 33_000)
        await asyncio.sleep(0.03)
    try:
        await asyncio.wait_for(reader, 5)
    except asyncio.TimeoutError:
        pass
    await asyncio.wait_for(stream.aclose(), 5)
    await source.aclose()
    track._ffi_handle.dispose()

    def nearest(rgb: list[float]) -> int:
        return int(np.argmin([sum((a - b) ** 2 for a, b in zip(rgb, c)) for c in COLORS]))

    sequence = [nearest(r["rgb"]) for r in received]
    return {
        "received": len(received),
        "sizes": sorted({(r["w"], r["h"]) for r in received}),
        "color_sequence": sequence,
        "max_color_error": max(
            (max(abs(a - b) for a, b in zip(r["rgb"], COLORS[nearest(r["rgb"])])) for r in received), default=None
        ),
        "timestamps_increasing": all(a["ts"] < b["ts"] for a, b in zip(received, received[1:])),
    }


def main() -> int:
    from livekit import rtc

    out = {
        "resampler": resampler(rtc),
        "apm": apm(rtc),
        "convert": convert(rtc),
        "video": asyncio.run(video(rtc)),
        "native_loaded": media_worker.native_library_loaded(),
    }
    if os.environ.get("LIVEKIT_FFI_BROKER"):
        import gc

        gc.collect()
        out["handles_after"] = media_worker.own_session_handles()
        from livekit.rtc._ffi_client import FfiClient

        out["memory_held"] = list(FfiClient.instance._connection.memory.held)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
