"""Failure paths: a lost broker, refusals, no broker at all, and explicit activation."""
from __future__ import annotations

import json
import signal

import pytest

from conftest import SteppedScenario, run_scenario, run_with_broker_stopped, scenario_env, start_broker


@pytest.mark.parametrize("resume_window_ms", ["0", "1500"])
def test_lost_broker_wakes_pending_requests_and_ends_streams(broker, resume_window_ms):
    # With a resume window, the client first tries to resume (the broker is gone: it cannot), then
    # behaves as without one.
    scenario = SteppedScenario(
        "errors.py",
        "lost",
        scenario_env(broker.address, LIVEKIT_FFI_BROKER_CONNECT_TIMEOUT="3", LIVEKIT_FFI_BROKER_RESUME_WINDOW_MS=resume_window_ms),
    )
    try:
        scenario.wait_for("READY")
        broker.process.send_signal(signal.SIGSTOP)  # alive but silent: the next request waits
        scenario.go()
        scenario.wait_for("PENDING")
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        scenario.go()
        out = scenario.result(timeout=60)
    finally:
        scenario.kill()
    assert out["pending_while_stopped"], out
    assert out["pending_woken"] and out["woken_after_kill_s"] < 5, out
    assert out["pending_error"]["type"] == "BrokerUnavailable" and out["pending_error"]["code"] == 5, out
    assert out["stream_ended"], "AudioStream iteration did not end after the broker was lost"
    # The first request after the loss reports it; the next one tries a new session and fails fast.
    assert out["next_request"]["type"] == "BrokerUnavailable", out
    assert out["reconnect"]["type"] == "BrokerUnavailable", out
    assert out["next_request_s"] < 1 and out["reconnect_s"] < 5, out


def test_refusals_raise_broker_errors(broker):
    out = run_scenario("errors.py", "refused", address=broker.address)
    assert out["not_owned"]["type"] == "BrokerError" and out["not_owned"]["code"] == 2, out
    assert "987654321" in out["not_owned"]["message"]
    # A request whose answer the SDK does not need is sent without waiting: its refusal comes
    # from the next such request naming that handle.
    assert out["pipelined_not_owned_first"] is None, out
    later = out["pipelined_not_owned_later"]
    assert later is not None and later["code"] == 2 and "987654321" in later["message"], out
    assert out["dispose"]["code"] == 2, out
    # Asked only of an SDK whose schema has them (livekit >= 1.2; the SDK matrix runs older ones).
    from livekit.rtc._proto import ffi_pb2

    kinds = ffi_pb2.FfiRequest.DESCRIPTOR.fields_by_name
    if "capture_encoded_video_frame" in kinds:
        assert out["newer_pointer"]["code"] == 1 and "pointer" in out["newer_pointer"]["message"], out
    if "stop_capture" in kinds:
        assert out["newer_kind"]["code"] == 1 and "newer" in out["newer_kind"]["message"], out
    assert out["still_works"]
    assert out["is_assertion_error"]
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)


def test_broker_killed_and_restarted(tmp_dir):
    # SIGKILL of the broker under capture traffic: the app gets BrokerUnavailable promptly (the
    # socket refuses, so the client does not wait out its resume window), requests fail fast while
    # no broker runs, and once a new broker listens on the same (stale) socket a new session opens.
    broker = start_broker(tmp_dir)
    scenario = SteppedScenario("errors.py", "restart", scenario_env(broker.address))
    new_broker = None
    try:
        scenario.wait_for("READY")
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        scenario.go()
        scenario.wait_for("DOWN")
        new_broker = start_broker(tmp_dir)  # the killed broker's socket file is still there
        scenario.go()
        out = scenario.result(timeout=90)
    finally:
        scenario.kill()
        if new_broker is not None:
            new_broker.stop()
    assert out["received_before"], out
    # Raised by the client, or (a capture already sent) by the SDK from its callback's error.
    error = out["capture_error"]
    assert error is not None and (error["type"] == "BrokerUnavailable" or "UNAVAILABLE" in error["message"]), out
    assert out["error_after_kill_s"] < 5, out  # the resume window is 10 s: not waited out
    assert out["stream_ended"]
    assert len(out["while_down"]) == 5 and all(f["type"] == "BrokerUnavailable" and f["s"] < 5 for f in out["while_down"]), out
    assert out["session_after"] != out["session_before"], out
    print("RELIABILITY", json.dumps({"suite": "python_broker_restart", **out}))


def test_captures_are_pipelined(broker):
    # CaptureAudioFrame is answered by the client (its async id chosen there, its callback
    # synthesized while the source's window has room) and sent without waiting: the SDK's capture
    # loop does not block on a broker round trip per frame. Were captures not pipelined, the
    # stopped broker would hold them until this request timeout.
    out = run_with_broker_stopped(broker, "errors.py", "pipelined", scenario_env(broker.address, LIVEKIT_FFI_BROKER_REQUEST_TIMEOUT="5"))
    assert out["answered_while_stopped_s"] < 5, out  # a stopped broker answers nothing
    assert out["distinct_ids"], out
    assert out["callbacks_in_order"] and out["callback_errors"] == [], out
    assert out["first_refused_capture_returned"], out
    assert out["refused"] is not None and "987654321" in out["refused"]["message"], out
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)


def test_no_broker_fails_fast(tmp_dir):
    out = run_scenario("errors.py", "connect", address=f"unix://{tmp_dir}/nobody.sock", LIVEKIT_FFI_BROKER_CONNECT_TIMEOUT="3")
    for name in ("first", "second"):
        assert out[name]["type"] == "BrokerUnavailable", out
        assert out[name + "_s"] < 4, out
    assert not out["native_loaded"]


def test_explicit_activate_after_import(broker):
    out = run_scenario("errors.py", "explicit", broker.address, address=None)
    assert out["active"]
    assert out["client_class"] == "BrokerFfiClient"
    assert out["stream"]["in_order"] and out["stream"]["complete"], out
    assert not out["native_loaded"]
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)


def test_threads_share_one_session(broker):
    out = run_scenario("errors.py", "threads", address=broker.address)
    for stream in out["streams"]:
        assert stream is not None and stream["in_order"] and stream["complete"], out
    assert out["sessions_of_this_process"] == 1
    assert out["handles_after"] == 0
    assert out["memory_held"] == [0, 0]


def test_auth_token(tmp_dir):
    token_file = tmp_dir / "token"
    token_file.write_text("a-token-of-at-least-16-chars\n")
    broker = start_broker(tmp_dir, "--auth-token-file", str(token_file))
    try:
        out = run_scenario("errors.py", "connect", address=broker.address)
        assert out["first"]["type"] == "BrokerUnavailable" and "UNAUTHENTICATED" in out["first"]["message"], out
        out = run_scenario("errors.py", "connect", address=broker.address, LIVEKIT_FFI_BROKER_AUTH_TOKEN_FILE=str(token_file))
        assert out["first"] is None and out["second"] is None, out
        out = run_scenario("errors.py", "connect", address=broker.address, LIVEKIT_FFI_BROKER_AUTH_TOKEN="a-token-of-at-least-16-chars")
        assert out["first"] is None, out
    finally:
        broker.stop()
