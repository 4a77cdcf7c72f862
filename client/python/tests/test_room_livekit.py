"""The SDK-matrix room scenario: two participants through the broker in one room of a real
livekit-server (tests/e2e/harness.py), each its own process and broker session
(tests/e2e/room_peer.py). alice publishes a 440 Hz sine, bob subscribes and checks its frames and
frequency; each sees the other's metadata and attributes (from its token); a data packet each way
early and again after 22 s; a text stream alice -> bob and a byte stream bob -> alice. The room
lives longer than liblivekit_ffi 0.12.75's 15 s ReadyForRoomEvent timeout, so an SDK that never
sends ReadyForRoomEventRequest fails here.

It runs with whatever livekit the interpreter has: scripts/sdk-matrix.py runs it once per SDK
release of client/python/sdk_matrix.json. The peers' results, the broker's Info of their sessions
and the broker's warnings go into the JUnit report (record_property "room") for the matrix table.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from conftest import HERE, livekit_server_binary, scenario_env

sys.path.insert(0, str(HERE / "e2e"))

from harness import LiveKitServer  # noqa: E402
from access_token import access_token  # noqa: E402

SECONDS = 22  # past the library's 15 s timeout, with margin for a slow connect
ROOM = "sdk-matrix"
PEERS = {"alice": "bob", "bob": "alice"}


class PeerProcess:
    def __init__(self, role: str, url: str, address: str) -> None:
        self.role = role
        self.lines: list[str] = []
        self.connected = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "e2e" / "room_peer.py"), "--role", role, "--url", url,
             "--token", access_token(role, ROOM, metadata=f"{role} metadata", attributes={"matrix.role": role}), "--peer", PEERS[role], "--seconds", str(SECONDS)],
            env=scenario_env(address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if '"connected"' in line:
                self.connected.set()

    def result(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        time.sleep(0.2)  # the pump's last lines
        found = [json.loads(line)["peer"] for line in self.lines if line.startswith('{"peer"')]
        peer = found[-1] if found else {"role": self.role, "errors": ["printed no result"]}
        peer["exitcode"] = self.proc.returncode
        peer["stderr_tail"] = stderr[-3000:]
        return peer


def session_view(info) -> list[dict]:
    """Every field of each session in the broker's Info (bridge fields included, when the broker has them)."""
    from google.protobuf.json_format import MessageToDict

    return [MessageToDict(s, preserving_proto_field_name=True) for s in info.sessions]


def broker_warnings(lines: list[str]) -> list[str]:
    """The broker's warnings and errors (pino level >= 40), without duplicates, first 20."""
    out: list[str] = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level", 0) >= 40:
            text = f"{rec.get('msg', '')}: {rec.get('message', rec.get('err', ''))}".strip(": ")
            if text not in out:
                out.append(text)
    return out[:20]


def audio_problems(audio: dict | None) -> list[str]:
    if not audio:
        return ["bob received no audio track"]
    problems = []
    if audio["frames"] < 0.95 * 100 * audio["seconds_read"] or audio["seconds_read"] < SECONDS - 8:
        problems.append(f"bob got {audio['frames']} frames over {audio['seconds_read']} s")
    audible = [w for w in audio["windows"] if w["rms"] >= 0.05]
    wrong = [w for w in audible if abs(w["peak_hz"] - 440) > 2 or w["rms"] > 0.26]
    if wrong:
        problems.append(f"seconds not at 440 Hz and the sent level: {wrong}")
    full = [w for w in audible if w["rms"] >= 0.15]
    if len(full) < 0.8 * len(audio["windows"]):
        problems.append(f"only {len(full)} of {len(audio['windows'])} seconds at the sent level")
    return problems


def peer_problems(peer: dict) -> list[str]:
    role, other = peer["role"], PEERS[peer["role"]]
    problems = [f"{role}: {e}" for e in peer.get("errors", [])]
    if peer.get("exitcode") != 0:
        problems.append(f"{role} exited {peer.get('exitcode')}: {peer.get('stderr_tail', '')[-800:]}")
        return problems
    if not peer.get("through_broker") or peer.get("native_loaded"):
        problems.append(f"{role} did not run through the broker (or loaded liblivekit_ffi)")
    if peer.get("disconnected_early") or peer.get("connection_state_at_end") != "CONN_CONNECTED":
        problems.append(f"{role} lost the room: {peer.get('disconnected_early')}, state {peer.get('connection_state_at_end')}")
    # By content: a packet that arrives before its sender's ParticipantConnected has no participant.
    got = [d["data"] for d in peer.get("data_in", [])]
    for label in ("early", "late"):
        if f"{label} from {other}" not in got:
            problems.append(f"{role} never got the {label} data packet from {other} (got {got})")
    # Its token's metadata and attributes, as the server sent them: ParticipantInfo decoded right.
    seen = peer.get("peer_info") or {}
    if seen.get("metadata") != f"{other} metadata" or seen.get("attributes") != {"matrix.role": other}:
        problems.append(f"{role} saw {other} as {seen}")
    kind = "text" if role == "bob" else "bytes"
    stream = peer.get("streams_in", {}).get(kind)
    if not stream or not stream["equal"] or stream["from"] != other:
        problems.append(f"{role} did not receive {other}'s {kind} stream intact: {stream}")
    return problems


def test_two_peers_in_a_room_through_the_broker(broker, tmp_dir, record_property):
    binary = livekit_server_binary()
    with LiveKitServer(binary, tmp_dir) as server:
        peers = [PeerProcess(role, server.url, broker.address) for role in PEERS]
        sessions: dict[str, list[dict]] = {}
        for peer in peers:
            peer.connected.wait(30)
        time.sleep(2)
        sessions["joined"] = session_view(broker.info())
        time.sleep(16)  # past the library's 15 s timeout after ConnectCallback
        sessions["after_15s"] = session_view(broker.info())
        results = {peer.role: peer.result(timeout=SECONDS + 60) for peer in peers}
    warnings = broker_warnings(broker.lines)
    record_property("room", json.dumps({
        "peers": {role: {k: v for k, v in r.items() if k != "stderr_tail"} for role, r in results.items()},
        "sessions": sessions, "broker_warnings": warnings,
    }))
    problems = audio_problems(results["bob"].get("audio_in"))
    for peer in results.values():
        problems += peer_problems(peer)
    assert not problems, "\n".join(problems + ["broker warnings:"] + warnings)
    broker.wait_info(lambda i: i.owned_handles == 0 and not i.sessions)
