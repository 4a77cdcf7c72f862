"""What sessions leave behind, through the broker, against a real livekit-server (tests/e2e/lifecycle.py):

- a long session (200 text streams each way) holds a bounded number of handles: the broker forgets
  the readers and writers the library frees by itself, and never drops them again (the library
  would log "Attempted to drop unknown FFI handle");
- a worker SIGKILLed while publishing is gone from the server's participant list within 2 s; one
  SIGKILLed while its connect is in flight, within 2 s of the library completing that connect (it
  cannot be cancelled); so is one whose broker is stopped; the server shuts down cleanly at the end.

Skips (e2e_drivers.require_e2e) when the e2e virtualenv, the server or network namespaces are missing.
"""
from __future__ import annotations

import json
from datetime import datetime

from e2e_drivers import require_e2e, run_driver

MESSAGES = 200
RUNS = 2
# Owned handles may move by what one step holds (a stream open at the sample); never by message count.
HANDLE_SLACK = 10
GONE_WITHIN_S = 2.0
CONNECT_COMPLETED = "a connect completed after its session ended"


def log_time(line: str) -> float:
    """The epoch seconds of a broker log line (pino JSON, ISO time)."""
    return datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00")).timestamp()


def test_sessions_leave_nothing_on_the_server_and_hold_bounded_handles(broker, tmp_dir):
    require_e2e()
    result = run_driver("lifecycle.py", "--workdir", str(tmp_dir / "run"), "--broker", broker.address,
                        "--runs", str(RUNS), "--count", str(MESSAGES), "--stop-broker", str(broker.process.pid), timeout=600)
    print("LIFECYCLE", json.dumps(result))

    streams = result["text_streams"]
    assert streams["received"] == {"a": MESSAGES, "b": MESSAGES} and streams["intact"], streams
    counts = [n for _, n in streams["owned_handles"]]
    assert len(counts) == MESSAGES // 20 + 1 and max(counts) - counts[0] <= HANDLE_SLACK, streams["owned_handles"]
    assert streams["broker_sessions_after"] == 0, streams

    # A connect in flight cannot be cancelled: the broker can disconnect its room only once the library
    # completed it (its log says when), so that room is due within 2 s of then, the others of the kill.
    completed = sorted(log_time(line) for line in broker.lines if CONNECT_COMPLETED in line)
    for kill in result["kills"]:
        assert kill["process"].get("signal") == "SIGKILL", kill
        in_flight = kill["end"] == "connecting" and kill["owned_handles_at_kill"] == 0
        if in_flight:
            kill["connect_completed_after_s"] = round(next((t for t in completed if t >= kill["killed_at"]), float("inf")) - kill["killed_at"], 2)
        due = max(0.0, kill.get("connect_completed_after_s", 0.0)) + GONE_WITHIN_S
        assert kill["gone_after_s"] is not None and kill["gone_after_s"] <= due, kill
        assert not kill["broker_session_after"], kill
    print("KILLS", json.dumps(result["kills"]))
    # The in-flight case was hit: killed before its ConnectCallback, whose room the broker then closed.
    connecting = [k for k in result["kills"] if k["end"] == "connecting"]
    assert len(connecting) == RUNS and any("connect_completed_after_s" in k for k in connecting), connecting

    assert result["broker_at_end"] == {"owned_handles": 0, "sessions": 0}, result["broker_at_end"]
    unknown = [line for line in broker.lines if "Attempted to drop unknown FFI handle" in line]
    assert unknown == [], unknown[:5]

    # Last, the broker stopped (SIGTERM) with a publisher in the room: it disconnects the room too.
    stopped = result["broker_stopped"]
    assert stopped["gone_after_s"] is not None and stopped["gone_after_s"] <= GONE_WITHIN_S, stopped
    assert broker.process.wait(timeout=30) == 0, broker.log()
    # livekit-server stops on SIGTERM only once no participant is left.
    assert result["server"].get("exitcode") == 0, result["server"]
