"""The crash scenario: many worker processes, each using livekit.rtc audio at once, through the
broker. Every process must exit 0 and get its own samples back in order."""
from __future__ import annotations

import pytest

from conftest import run_scenario


def check_pool(result: dict, workers: int, broker) -> None:
    assert result["exitcodes"] == [0] * workers, result["exitcodes"]
    jobs = result["jobs"]
    assert sorted(job["worker"] for job in jobs) == list(range(workers))
    for job in jobs:
        assert job["active"], job
        assert not job["native_loaded"], f"worker {job['worker']} loaded liblivekit_ffi"
        assert job["pid"] != result["parent_pid"]
        for stream in job["streams"]:
            assert stream["in_order"], (job["worker"], stream)
            assert stream["complete"], (job["worker"], stream)
            assert not stream["timed_out"], (job["worker"], stream)
        assert job["handles_after"] == 0, f"worker {job['worker']} still owns {job['handles_after']} handles after closing"
    info = broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)
    assert info.owned_handles == 0


def test_forkserver_pool_of_eight(broker):
    result = run_scenario("pool_driver.py", "--method", "forkserver", "--workers", "8", "--seconds", "3", address=broker.address)
    check_pool(result, 8, broker)


def test_fork_pool(broker):
    result = run_scenario("pool_driver.py", "--method", "fork", "--workers", "8", "--seconds", "3", address=broker.address)
    check_pool(result, 8, broker)


def test_spawn_pool(broker):
    result = run_scenario("pool_driver.py", "--method", "spawn", "--workers", "8", "--seconds", "3", address=broker.address)
    check_pool(result, 8, broker)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_parent_used_the_broker_before_forking(broker, method):
    result = run_scenario(
        "pool_driver.py", "--method", method, "--workers", "4", "--seconds", "2", "--parent-uses-broker", address=broker.address
    )
    check_pool(result, 4, broker)
    parent = result["parent_stream"]
    assert parent["in_order"] and parent["complete"], parent
    assert not result["parent_native_loaded"]
    assert result["parent_handles_after"] == 0
