#!/usr/bin/env python3
"""Capture-to-receive audio latency and throughput of the livekit Python SDK, public API only.

One process, no LiveKit server: for each of S streams, rtc.AudioSource -> LocalAudioTrack ->
rtc.AudioStream on that track. The process captures 10 ms frames (480 samples, 48 kHz mono) of a
ramp into every source at real-time pace and receives the frames back from the streams.

Run it as is for the SDK in-process (it loads its bundled liblivekit_ffi), or with
LIVEKIT_FFI_BROKER=unix:///path.sock to route it through livekit-ffi-broker (client/python).

Every sample names its own index (a ramp over all 65535 non-zero int16 values, as
bench/audio_latency.ts), so a received frame tells which capture its samples came from even when
the stream re-chunks frames or inserts silence. Latency of a frame = its receive time (when the
`async for` over the AudioStream yields it) - the send time of the capture holding its last
non-silent sample (time.perf_counter_ns just before AudioSource.capture_frame).

stdout: JSON lines. {"event": "measure_start"} and {"event": "measure_end"} when the measured
window starts and ends (so a parent can sample other processes' CPU), then {"result": {...}}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Awaitable, Callable

import numpy as np
from livekit import rtc

SAMPLE_RATE = 48000
FRAME = 480  # samples per capture: 10 ms
FRAME_NS = 10_000_000
PERIOD = 65535  # distinct non-zero int16 values: the ramp repeats every 1.37 s
TICK_S = 0.002  # pacing timer; each tick sends every frame that is due by now

# Ramp value of sample index n: (n % PERIOD) + 1 below 32767, else (n % PERIOD) - PERIOD; never 0.
_phase = np.arange(PERIOD + FRAME, dtype=np.int64) % PERIOD
RAMP = np.where(_phase < 32767, _phase + 1, _phase - PERIOD).astype(np.int16)


def ramp_phase(value: int) -> int:
    return value - 1 if value > 0 else value + PERIOD


def cpu_s() -> float:
    # RUSAGE_SELF covers every thread of the process, including liblivekit_ffi's when in-process.
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def nearest_rank(ascending: np.ndarray, q: float) -> float:
    """Percentile q (0..1) of an ascending array by nearest rank, as bench/stats.ts."""
    rank = max(1, int(np.ceil(q * len(ascending))))
    return float(ascending[min(rank, len(ascending)) - 1])


def summarize(values: list[float], digits: int = 2) -> dict:
    if not values:
        return {"count": 0, "p50": None, "p99": None, "p999": None, "max": None, "mean": None}
    a = np.sort(np.asarray(values, dtype=np.float64))

    def pct(q: float) -> float:
        return nearest_rank(a, q)

    return {
        "count": len(a),
        "p50": round(pct(0.5), digits),
        "p99": round(pct(0.99), digits),
        "p999": round(pct(0.999), digits),
        "max": round(float(a[-1]), digits),
        "mean": round(float(a.mean()), digits),
    }


# The quantiles charts draw distributions from (bench/stats.ts CHART_QUANTILES).
CHART_QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999]


def quantiles(values: list[float], digits: int = 2) -> list:
    if not values:
        return [[q, None] for q in CHART_QUANTILES]
    a = np.sort(np.asarray(values, dtype=np.float64))
    return [[q, round(nearest_rank(a, q), digits)] for q in CHART_QUANTILES]


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class StreamState:
    """A source and its track; with_stream=False is a capture-only source (an agent's TTS output)."""

    def __init__(self, index: int, total: int, queue_ms: int, with_stream: bool = True) -> None:
        self.source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=queue_ms)
        self.track = rtc.LocalAudioTrack.create_audio_track(f"bench{index}", self.source)
        self.stream = rtc.AudioStream(self.track, sample_rate=SAMPLE_RATE, num_channels=1) if with_stream else None
        self.sent_at = np.zeros(total, dtype=np.int64)  # send time (ns) of capture k
        self.captures = 0
        self.received = np.zeros(total, dtype=bool)  # capture k had samples come back
        self.next_index = 0  # index after the last sample received
        self.frames = 0
        self.silent = 0
        self.silent_warmup = 0
        self.undecodable = 0
        self.out_of_sequence = 0


async def run(
    streams: int,
    seconds: float,
    warmup: float,
    queue_ms: int,
    capture_only: int = 0,
    before_start: Callable[[], Awaitable[None]] | None = None,
    keep_latencies: bool = False,
) -> dict:
    """capture_only: sources captured into at the same pace with no stream reading them back.
    before_start: awaited once everything is set up, before the first capture. keep_latencies:
    the result also lists every frame's latency (latencies_ms), for a parent to aggregate."""
    total = round((warmup + seconds) * 1000 / 10)
    first_measured = round(warmup * 1000 / 10)
    setup_start = time.perf_counter()
    states = [StreamState(i, total, queue_ms) for i in range(streams)]
    outbound = [StreamState(streams + i, total, queue_ms, with_stream=False) for i in range(capture_only)]
    setup_s = time.perf_counter() - setup_start
    if before_start is not None:
        await before_start()

    latencies: list[float] = []
    by_second: list[list[float]] = [[] for _ in range(int(np.ceil(seconds)))]
    phase = "warmup"
    capture_errors = 0
    capture_error: str | None = None
    capture_call_ms: list[float] = []

    async def receive(st: StreamState) -> None:
        async for ev in st.stream:
            t = time.perf_counter_ns()
            samples = np.frombuffer(ev.frame.data, dtype=np.int16)
            nz = np.flatnonzero(samples)
            if len(nz) == 0:
                if st.next_index == 0 or phase == "tail":
                    continue
                if phase == "measure":
                    st.silent += 1
                else:
                    st.silent_warmup += 1
                continue
            first_v = int(samples[nz[0]])
            last_v = int(samples[nz[-1]])
            # Samples come out in order: the first one's index is next_index plus the gap of lost
            # samples; one lying behind (less than half a period) is counted as out of sequence.
            ahead = (ramp_phase(first_v) - st.next_index % PERIOD) % PERIOD
            if ahead < PERIOD // 2:
                first = st.next_index + ahead
            else:
                first = st.next_index - (PERIOD - ahead)
                st.out_of_sequence += 1
            last = first + (ramp_phase(last_v) - ramp_phase(first_v)) % PERIOD
            st.next_index = max(st.next_index, last + 1)
            k0, k = first // FRAME, last // FRAME
            if k >= st.captures:
                st.undecodable += 1
                continue
            if k0 >= 0:
                st.received[k0 : k + 1] = True
            if k < first_measured:
                continue
            st.frames += 1
            lat = (t - int(st.sent_at[k])) / 1e6
            latencies.append(lat)
            sec = (k - first_measured) * 10 // 1000
            if sec < len(by_second):
                by_second[sec].append(lat)

    lag_ms: list[float] = []
    started = 0
    end_ns = 0

    async def sender(st: StreamState) -> None:
        # One task per stream awaiting capture_frame in a loop, as an agent does. Capture k is due
        # at started + k * 10 ms (real-time pace on the monotonic clock, so timer jitter does not
        # accumulate); a late sender sends at once to catch up, and stops at the end of the
        # window: an SDK path that cannot keep up captures fewer frames (and shows capture lag),
        # rather than building an unbounded backlog.
        nonlocal capture_errors, capture_error
        for k in range(total):
            due = started + k * FRAME_NS
            now = time.perf_counter_ns()
            if now >= end_ns:
                return
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            start = (k * FRAME) % PERIOD
            frame = rtc.AudioFrame(RAMP[start : start + FRAME].tobytes(), SAMPLE_RATE, 1, FRAME)
            t0 = time.perf_counter_ns()
            st.sent_at[k] = t0
            st.captures = k + 1
            try:
                await st.source.capture_frame(frame)
            except Exception as e:  # noqa: BLE001 - counted and reported
                capture_errors += 1
                if capture_error is None:
                    capture_error = repr(e)
            if k >= first_measured:
                capture_call_ms.append((time.perf_counter_ns() - t0) / 1e6)
                lag_ms.append((t0 - due) / 1e6)

    receivers = [asyncio.create_task(receive(st)) for st in states]
    started = time.perf_counter_ns()
    end_ns = started + total * FRAME_NS
    senders = [asyncio.create_task(sender(st)) for st in states + outbound]
    # The measured window: captures due from first_measured on.
    await asyncio.sleep(max(0.0, (started + first_measured * FRAME_NS - time.perf_counter_ns()) / 1e9))
    phase = "measure"
    emit({"event": "measure_start"})
    cpu0, wall0 = cpu_s(), time.perf_counter()
    await asyncio.wait(senders, timeout=(end_ns - time.perf_counter_ns()) / 1e9 + queue_ms / 1000 + 5)
    cpu1, wall1 = cpu_s(), time.perf_counter()
    emit({"event": "measure_end"})
    phase = "tail"
    for t in senders:
        t.cancel()
    captured_total = [st.captures for st in states]
    outbound_captured = sum(max(0, st.captures - first_measured) for st in outbound)
    # Captures sent inside the measured window by the clock, per source at most the window's worth
    # (a sender catching up after a stall sends more), summed over every source: a sender that fell
    # behind sends warm-up frames late, inside the window, which frames_captured (by index) leaves out.
    window_start = started + first_measured * FRAME_NS
    captures_in_window = sum(
        min(total - first_measured, int(np.count_nonzero((st.sent_at[: st.captures] >= window_start) & (st.sent_at[: st.captures] < end_ns))))
        for st in states + outbound
    )

    # Let the tail through the source queues (all samples back, or the queue's worth of time).
    deadline = time.perf_counter() + queue_ms / 1000 + 1
    while time.perf_counter() < deadline:
        if all(st.next_index >= st.captures * FRAME for st in states):
            break
        await asyncio.sleep(0.02)

    frames_due = streams * (total - first_measured)
    frames_captured = sum(max(0, c - first_measured) for c in captured_total)
    lost = sum(int((~st.received[first_measured:c]).sum()) for st, c in zip(states, captured_total) if c > first_measured)
    received = sum(st.frames for st in states)
    measured_wall = wall1 - wall0
    cpu = cpu1 - cpu0

    teardown_start = time.perf_counter()
    for st in states + outbound:
        if st.stream is not None:
            await st.stream.aclose()
        await st.source.aclose()
    for r in receivers:
        r.cancel()
    teardown_s = time.perf_counter() - teardown_start

    return {
        "path": "broker" if os.environ.get("LIVEKIT_FFI_BROKER") else "in-process",
        "broker": os.environ.get("LIVEKIT_FFI_BROKER") or None,
        "streams": streams,
        "queue_size_ms": queue_ms,
        "warmup_s": warmup,
        "measure_s": seconds,
        "measured_wall_s": round(measured_wall, 3),
        "frames_due": frames_due,
        "captures_due_in_window": (streams + capture_only) * (total - first_measured),
        "captures_in_window": captures_in_window,
        "frames_captured": frames_captured,
        "frames_received": received,
        "frames_lost": lost,
        "frames_per_s_received": round(received / seconds, 1),
        "silent_frames": sum(st.silent for st in states),
        "silent_frames_warmup": sum(st.silent_warmup for st in states),
        "undecodable_frames": sum(st.undecodable for st in states),
        "out_of_sequence_frames": sum(st.out_of_sequence for st in states),
        "capture_errors": capture_errors,
        **({"capture_error": capture_error} if capture_error else {}),
        "latency_ms": summarize(latencies),
        "latency_quantiles_ms": quantiles(latencies),
        "latency_p50_ms_by_second": [summarize(v, 1)["p50"] for v in by_second],
        "capture_frame_call_ms": summarize(capture_call_ms, 3),
        "capture_lag_ms": summarize(lag_ms, 2),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_frames": round(cpu / (frames_captured / 1000), 4) if frames_captured else None,
        "cpu_s_per_1000_frames_note": "this process, all threads, over the measured window; per 1000 captured frames (each frame is captured and received once)",
        "setup_s": round(setup_s, 3),
        "teardown_s": round(teardown_s, 3),
        **(
            {"capture_only_sources": capture_only, "capture_only_frames_due": capture_only * (total - first_measured), "capture_only_frames_captured": outbound_captured}
            if capture_only
            else {}
        ),
        **({"latencies_ms": [round(v, 3) for v in latencies]} if keep_latencies else {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--queue-ms", type=int, default=1000)
    a = p.parse_args()
    try:
        result = asyncio.run(run(a.streams, a.seconds, a.warmup, a.queue_ms))
    except Exception as e:  # noqa: BLE001 - reported as JSON for the parent
        emit({"error": repr(e)})
        sys.exit(1)
    emit({"result": result})


if __name__ == "__main__":
    main()
