"""Resuming a session whose stream broke (broker and worker both alive), and the fall-back to a
new session when the broker no longer keeps it."""
from __future__ import annotations

import signal

from conftest import SteppedScenario, run_scenario, scenario_env, start_broker

FRAME_SAMPLES = 480  # media_worker.FRAME


def test_stream_break_resumes_the_same_session(broker):
    out = run_scenario("resume.py", "resume", "2", address=broker.address)
    assert not out["native_loaded"]
    assert len(out["breaks"]) == 2, out
    for b in out["breaks"]:
        # Same session, its handles kept, connected again on the new stream.
        assert b["before"] and b["after"], b
        assert b["after"]["session_id"] == b["before"]["session_id"] == out["session_before"], b
        assert b["after"]["owned_handles"] == b["before"]["owned_handles"] >= 3, b
        assert b["after"]["connected"], b
        assert b["same_session_object"], b
        assert b["request_after_break_s"] < 5, b
    assert out["session_after"] == out["session_before"]
    assert out["resumes"] == 2, out
    samples = out["samples"]
    # Every sample in order; a gap only as large as what EventsDropped reported.
    assert samples["in_order"], samples
    missing = samples["sent"] - samples["received"]
    assert missing <= out["events_dropped"] * FRAME_SAMPLES, (samples, out["events_dropped"])
    if out["events_dropped"] == 0:
        assert samples["complete"] and out["all_received"], samples
    assert out["info_after"]["session_id"] == out["session_before"]
    assert out["handles_after"] == 0, out
    assert "Traceback" not in out["_stderr"], out["_stderr"][-3000:]


def test_no_resume_grace_falls_back_to_a_new_session(tmp_dir):
    broker = start_broker(tmp_dir, "--resume-grace", "0")
    try:
        out = run_scenario("resume.py", "fallback", address=broker.address)
    finally:
        broker.stop()
    assert out["old_received"], out
    assert out["stream_ended"] and out["stream_ended_after_s"] < 5, out
    assert out["old_state"] == "failed" and out["old_resumes"] == 0, out
    assert out["next_request"] is not None and out["next_request_is_unavailable"], out
    assert out["next_request"]["code"] == 5, out
    assert out["new_session_object"] and out["session_after"] != out["session_before"], out
    assert out["new_samples"]["in_order"] and out["new_samples"]["complete"], out
    assert out["info_after"]["session_id"] == out["session_after"], out
    assert out["handles_after"] == 0, out


def test_pending_request_fails_and_requests_while_resuming_wait(broker):
    scenario = SteppedScenario("resume.py", "pending", scenario_env(broker.address))
    try:
        scenario.wait_for("READY")
        broker.process.send_signal(signal.SIGSTOP)  # the request made next stays pending
        scenario.go()
        scenario.wait_for("WAITING")
        broker.process.send_signal(signal.SIGCONT)
        scenario.go()
        out = scenario.result(timeout=60)
    finally:
        if broker.process.poll() is None:
            broker.process.send_signal(signal.SIGCONT)
        scenario.kill()
    # Pending at the break: its outcome is unknown, it fails at once.
    assert out["pending_while_stopped"] and out["pending_woken"], out
    assert out["pending_at_break"]["type"] == "BrokerUnavailable" and out["pending_at_break"]["code"] == 5, out
    # Made while resuming: waits, then succeeds on the same session.
    assert out["state_while_stopped"] == "resuming" and out["waiting_while_resuming"], out
    assert out["while_resuming"] is None, out
    # An AudioStream closed just before the break (its drop's answer lost) closes after the resume.
    assert out["aclose_waits_while_resuming"] and out["aclose_done"], out
    assert out["same_session_object"] and out["session_after"] == out["session_before"] and out["resumes"] == 1, out
    samples = out["samples"]
    assert samples["in_order"], samples
    assert samples["sent"] - samples["received"] <= out["events_dropped"] * FRAME_SAMPLES, (samples, out)
