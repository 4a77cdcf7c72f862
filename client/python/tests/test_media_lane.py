"""The shared-memory media lane from the Python client: on the Unix socket the SDK's captured
samples and received frames cross in the lane (each one copy), with the same results as inline;
turned off, or over TCP, media travel inline. Every slot the SDK held goes back to the broker once
the SDK disposed of its frame."""
from __future__ import annotations

import socket

import pytest

from conftest import run_scenario, start_broker
from test_features import is_subsequence


def check_media(out: dict) -> None:
    for stream in out["streams"]:
        assert stream["in_order"] and stream["complete"] and not stream["timed_out"], out
    video = out["video"]
    assert video["received"] >= 15, video
    assert is_subsequence(video["color_sequence"], [0, 1, 2, 3, 4, 5] * 3), video
    assert video["max_color_error"] <= 8, video
    assert out["handles_after"] == 0, out


def test_unix_socket_media_cross_in_the_lane(broker):
    out = run_scenario("media_lane.py", address=broker.address)
    check_media(out)
    lane = out["lane"]
    assert lane is not None, "the client opened the broker's lane"
    # Requests: 18 video frames and 2 × 100 captures of 10 ms, which the capture window joins
    # (one in flight per source: those queued behind it leave as one), so fewer than 218.
    assert lane["placed"] >= 50, lane
    # Frames received: 2 × 100 audio frames and the video frames, each held in the lane.
    assert lane["held"] >= 200, lane
    assert lane["outstanding"] == 0, f"frames the SDK disposed of still hold lane slots: {lane}"


def test_lane_turned_off_media_travel_inline(broker):
    out = run_scenario("media_lane.py", address=broker.address, LIVEKIT_FFI_BROKER_MEDIA_LANE="off")
    check_media(out)
    assert out["lane"] is None


@pytest.fixture
def tcp_broker(tmp_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = start_broker(tmp_dir, "--listen", f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}"
    b.stop()


def test_over_tcp_the_client_asks_for_no_lane(tcp_broker):
    out = run_scenario("media_lane.py", address=tcp_broker)
    check_media(out)
    assert out["lane"] is None
