"""Media helpers whose memory crosses the process boundary in every way the pointer table has:
sox resampler (copy-in, output_ptr copied out), APM (in-out), VideoConvert (frame in, owned video
buffer out) and a video source -> track -> stream round trip (frame events with planes). Results
are compared with the same computation on the SDK's own liblivekit_ffi in a separate process."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from conftest import run_scenario


@pytest.fixture(scope="module")
def native_reference():
    # Without LIVEKIT_FFI_BROKER: the SDK loads its bundled liblivekit_ffi (a reference, not a worker).
    return run_scenario("features.py", address=None)


def samples(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.int16).astype(np.int32)


def is_subsequence(seq: list, of: list) -> bool:
    it = iter(of)
    return all(any(x == y for y in it) for x in seq)


def test_features_through_the_broker(broker, native_reference):
    result = run_scenario("features.py", address=broker.address)
    assert not result["native_loaded"]
    assert native_reference["native_loaded"]  # the reference really ran natively

    res, ref = result["resampler"], native_reference["resampler"]
    assert res["samples"] == ref["samples"] == 16000 + 160  # 1 s, then one more 10 ms push
    assert abs(res["peak_hz"] - 440) < 2
    # Same samples as the native library, up to the rounding of a different build of it.
    assert np.max(np.abs(samples(res["data"]) - samples(ref["data"]))) <= 4

    apm, ref = result["apm"], native_reference["apm"]
    assert apm["changed_in_place"] == apm["frames"]  # in-out memory written back into the frames
    assert np.max(np.abs(samples(apm["data"]) - samples(ref["data"]))) <= 4

    conv, ref = result["convert"], native_reference["convert"]
    assert conv["i420_type"] == ref["i420_type"]
    assert conv["planes"] == ref["planes"] == [64 * 48, 32 * 24, 32 * 24]
    assert conv["i420_sha256"] == ref["i420_sha256"]
    assert max(abs(a - b) for a, b in zip(conv["roundtrip_rgb"], (200, 40, 90))) <= 3

    video = result["video"]
    # Frames in capture order; the stream may skip one under load, never reorder.
    assert video["received"] >= 15, video
    assert video["sizes"] == [[160, 120]]
    assert is_subsequence(video["color_sequence"], [0, 1, 2, 3, 4, 5] * 3), video
    assert video["max_color_error"] <= 8
    assert video["timestamps_increasing"]

    assert result["handles_after"] == 0
    assert result["memory_held"] == [0, 0]  # every frame copy freed when the SDK disposed it
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)
