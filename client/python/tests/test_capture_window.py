"""The capture window keeps AudioSource's backpressure: a producer faster than real time is held
to real time through the broker, as in-process, and its frames come out in order."""
from __future__ import annotations

from conftest import run_scenario, run_with_broker_stopped, scenario_env

SECONDS, QUEUE_S = 3.0, 0.1
WINDOW_S = 0.04  # _capture_window.WINDOW frames of 10 ms
SLACK_S = 0.1  # timer and scheduling jitter of a loaded machine


def check(out: dict) -> None:
    # The source accepts frames at real time once its queue is full: pushing 3 s of audio cannot
    # end before 3 s minus what the queue (and, through the broker, the window) holds.
    assert out["pushed_s"] >= SECONDS - QUEUE_S - WINDOW_S - SLACK_S, out
    samples = out["samples"]
    assert samples["in_order"] and samples["complete"], out


def test_producer_faster_than_real_time_is_held_to_real_time(broker):
    out = run_scenario("capture_pacing.py", address=broker.address)
    assert out["through_broker"] and not out["native_loaded"], out
    check(out)
    # Not held to more than real time either: the window does not make it wait a round trip
    # per frame beyond what the library's queue imposes.
    assert out["pushed_s"] < SECONDS + 1.0, out
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)


def test_in_process_anchor():
    # The same producer on the SDK's own liblivekit_ffi: what the broker path must match.
    out = run_scenario("capture_pacing.py", address=None)
    assert not out["through_broker"] and out["native_loaded"], out
    check(out)


def test_captures_queued_meanwhile_go_out_joined(broker):
    # The library has one capture of a source at a time; those made meanwhile (here while the
    # broker is stopped) leave as one request, their samples joined, in order.
    out = run_with_broker_stopped(broker, "capture_pacing.py", "joined", scenario_env(broker.address))
    assert out["blocked_while_stopped"], out  # the window filled: the producer was held back
    assert out["joined"] >= 2, out
    assert out["samples"]["in_order"] and out["samples"]["complete"], out
