"""A worker killed with SIGKILL mid-stream: the broker releases its handles, the others go on."""
from __future__ import annotations

import signal

from conftest import run_scenario


def test_kill_9_worker_mid_stream(broker):
    result = run_scenario("kill_driver.py", "--method", "forkserver", "--workers", "3", address=broker.address)
    assert result["victim_exitcode"] == -signal.SIGKILL
    assert result["victim_handles_before"] >= 3
    # The victim's session is gone with its handles; what is left belongs to the live workers.
    assert result["owned_after_kill"] == result["owned_by_others_after_kill"]
    assert result["victim_session_gone_after_s"] < 5
    assert result["exitcodes"] == [0, 0, 0]
    for job in result["jobs"]:
        assert not job["native_loaded"]
        for stream in job["streams"]:
            assert stream["in_order"] and stream["complete"] and not stream["timed_out"], (job["worker"], stream)
        assert job["handles_after"] == 0
    assert result["owned_at_end"] == 0
