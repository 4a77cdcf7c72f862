"""What sessions leave behind, through the broker, against a real livekit-server (tests/e2e/lifecycle.py):

- a long session (200 text streams each way) holds a bounded number of handles: the broker forgets
  the readers and writers the library frees by itself, and never drops them again (the library
  would log "Attempted to drop unknown FFI handle");
- a worker SIGKILLed while publishing, or while its connect is still in flight, is gone from the
  server's participant list within 2 s, and the server shuts down cleanly at the end.

Skips (e2e_drivers.require_e2e) when the e2e virtualenv, the server or network namespaces are missing.
"""
from __future__ import annotations

import json

from e2e_drivers import require_e2e, run_driver

MESSAGES = 200
RUNS = 2
# Owned handles may move by what one step holds (a stream open at the sample); never by message count.
HANDLE_SLACK = 10
GONE_WITHIN_S = 2.0


def test_sessions_leave_nothing_on_the_server_and_hold_bounded_handles(broker, tmp_dir):
    require_e2e()
    result = run_driver("lifecycle.py", "--workdir", str(tmp_dir / "run"), "--broker", broker.address,
                        "--runs", str(RUNS), "--count", str(MESSAGES), timeout=600)
    print("LIFECYCLE", json.dumps(result))

    streams = result["text_streams"]
    assert streams["received"] == {"a": MESSAGES, "b": MESSAGES} and streams["intact"], streams
    counts = [n for _, n in streams["owned_handles"]]
    assert len(counts) == MESSAGES // 20 + 1 and max(counts) - counts[0] <= HANDLE_SLACK, streams["owned_handles"]
    assert streams["broker_sessions_after"] == 0, streams

    for kill in result["kills"]:
        assert kill["process"].get("signal") == "SIGKILL", kill
        assert kill["gone_after_s"] is not None and kill["gone_after_s"] <= GONE_WITHIN_S, kill
        assert not kill["broker_session_after"], kill
    # The in-flight case was hit: killed before its ConnectCallback, whose room the broker then closed.
    connecting = [k for k in result["kills"] if k["connecting"]]
    assert len(connecting) == RUNS and any(k["owned_handles_at_kill"] == 0 for k in connecting), connecting
    assert any("a connect completed after its session ended" in line for line in broker.lines), broker.log()

    # livekit-server stops on SIGTERM only once no participant is left.
    assert result["server"].get("exitcode") == 0, result["server"]
    assert result["broker_at_end"] == {"owned_handles": 0, "sessions": 0}, result["broker_at_end"]
    unknown = [line for line in broker.lines if "Attempted to drop unknown FFI handle" in line]
    assert unknown == [], unknown[:5]
    assert broker.process.poll() is None, "the broker died"
