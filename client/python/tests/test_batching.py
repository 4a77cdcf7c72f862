"""Requests issued in one drain of the send queue travel in one ClientMessage.batch, and the
broker handles them in order: every stream's samples come back in order and complete."""
from __future__ import annotations

from conftest import run_scenario


def test_requests_of_one_drain_travel_in_a_batch(broker):
    out = run_scenario("batching.py", address=broker.address)
    assert out["batched"] > 0, out
    for stream in out["streams"]:
        assert stream["in_order"] and stream["complete"] and not stream["timed_out"], out
    assert out["handles_after"] == 0, out
