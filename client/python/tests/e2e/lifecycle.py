"""What a session leaves behind, against a real livekit-server (in a network namespace), with the
server's own participant list (RoomService.ListParticipants) as the judge.

    python lifecycle.py --workdir DIR [--broker unix:///path/sock] [--runs 3] [--count 200]

- text_streams (broker only): one worker process, two participants, --count text streams each way
  (tests/e2e/text_streams.py), sampling the session's owned handles from the broker's Info.
- kill_published: a publisher (tests/e2e/publisher.py, a voice as microphone track) SIGKILLed once
  the server lists it; how long until the server lists it no more.
- kill_connecting (broker only): the same publisher SIGKILLed as soon as its broker session exists,
  before its ConnectCallback gave it any handle (its connect still in flight).
- with --stop-broker PID, last: the broker itself stopped (SIGTERM) while a publisher is in the room.

Without --broker every process loads the SDK's own liblivekit_ffi (the in-process comparison).
Prints one JSON line (also DIR/result.json), ending with how the server exited on SIGTERM.
Run with the e2e virtualenv's python (livekit, livekit-api, livekit_ffi_broker).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import API_KEY, API_SECRET, LiveKitServer, driver_main, driver_setup, log  # noqa: E402
from scenario import ROOM, exit_record, first_line, token  # noqa: E402

HERE = Path(__file__).resolve().parent
# Gone means: not listed for this long in a row (a late connect could still add it).
GONE_FOR_S = 1.0


async def listed(lk, identity: str) -> bool:
    from livekit import api

    try:
        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=ROOM))
    except api.TwirpError as err:
        if err.code == api.TwirpErrorCode.NOT_FOUND:  # the room is gone with its last participant
            return False
        raise
    return any(p.identity == identity for p in resp.participants)


def broker_session(address: str, pid: int):
    import livekit_ffi_broker

    return next((s for s in livekit_ffi_broker.broker_info(address, timeout=5).sessions if s.pid == pid), None)


async def kill_and_watch(server: LiveKitServer, env: dict, broker: Optional[str], identity: str, end: str,
                         watch: tuple[float, float], workdir: Path, broker_pid: int = 0) -> dict:
    """Starts a publisher and ends it (`end`): SIGKILLed once "published" (listed by the server)
    or while "connecting"; or, once published, its broker is stopped ("broker_sigterm", SIGTERM
    to `broker_pid`). Then polls the server's list until it is gone."""
    from livekit import api

    record: dict = {"identity": identity, "end": end}
    with open(workdir / f"{identity}.log", "w") as plog:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "publisher.py"), "--url", server.url, "--token", token(identity), "--pitch", "120"],
            env=env, stdout=subprocess.PIPE, stderr=plog, text=True)
    async with api.LiveKitAPI(server.http_url, API_KEY, API_SECRET) as lk:
        try:
            if end == "connecting":
                # The publisher's first request is its ConnectRequest: its session exists from then on.
                deadline = time.monotonic() + 30
                while (session := broker_session(broker, proc.pid)) is None:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{identity}: no broker session appeared")
                    time.sleep(0.005)
                record["owned_handles_at_kill"] = session.owned_handles
            else:
                line = first_line(proc, 60)  # {"published": sid}
                if not line.startswith("{"):
                    raise RuntimeError(f"{identity} did not publish: {exit_record(proc)}")
                while not await listed(lk, identity):
                    await asyncio.sleep(0.05)
        finally:
            if end == "broker_sigterm":
                os.kill(broker_pid, signal.SIGTERM)
            else:
                proc.kill()
        killed = time.monotonic()
        record["killed_at"] = time.time()  # to set beside the broker's log
        polls: list[tuple[float, bool]] = []  # (seconds after the kill when the answer came, listed)
        while True:
            present = await listed(lk, identity)
            t = time.monotonic() - killed
            polls.append((t, present))
            seen = [pt for pt, p in polls if p]
            gone_for = t - (seen[-1] if seen else 0.0)
            if (t >= watch[0] and gone_for >= GONE_FOR_S) or t >= watch[1]:
                break
            await asyncio.sleep(0.05)
        # The first answer without it after the last one with it (None: still listed at the end).
        after = [pt for pt, p in polls if not p and (not seen or pt > seen[-1])]
        record["gone_after_s"] = round(after[0], 2) if after and gone_for >= GONE_FOR_S else None
        record["last_seen_s"] = round(seen[-1], 2) if seen else None
        record["watched_s"] = round(t, 2)
    proc.kill()
    proc.wait()
    record["process"] = exit_record(proc)
    if broker and end != "broker_sigterm":
        record["broker_session_after"] = broker_session(broker, proc.pid) is not None
    log("kill_watched", **record)
    return record


def text_streams(server: LiveKitServer, env: dict, broker: str, count: int, workdir: Path) -> dict:
    with open(workdir / "text-streams.log", "w") as tlog:
        proc = subprocess.run(
            [sys.executable, str(HERE / "text_streams.py"), "--url", server.url, "--token-a", token("ts-a"),
             "--token-b", token("ts-b"), "--count", str(count)],
            env=env, stdout=subprocess.PIPE, stderr=tlog, text=True, timeout=count * 2 + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"text_streams.py exited {proc.returncode}: {(workdir / 'text-streams.log').read_text()[-3000:]}")
    result = json.loads(lines[-1])
    import livekit_ffi_broker

    # Its session ends with its process; then the broker holds nothing of it.
    deadline = time.monotonic() + 15
    while livekit_ffi_broker.broker_info(broker, timeout=5).sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    result["broker_sessions_after"] = len(livekit_ffi_broker.broker_info(broker, timeout=5).sessions)
    log("text_streams", **result)
    return result


def run(workdir: Path, broker: Optional[str], runs: int, count: int, stop_broker: int) -> dict:
    binary, env = driver_setup(broker)
    result: dict = {"broker": broker, "kills": []}
    # In-process a killed participant stays until the server's ICE timeout: watch long enough to see it go.
    watch = (5.0, 30.0) if broker else (2.0, 60.0)
    server = LiveKitServer(binary, workdir)
    with server:
        if broker:
            result["text_streams"] = text_streams(server, env, broker, count, workdir)
        for i in range(runs):
            result["kills"].append(asyncio.run(kill_and_watch(server, env, broker, f"killed-{i}", "published", watch, workdir)))
            if broker:
                result["kills"].append(asyncio.run(kill_and_watch(server, env, broker, f"connecting-{i}", "connecting", watch, workdir)))
        if broker:
            import livekit_ffi_broker

            info = livekit_ffi_broker.broker_info(broker, timeout=5)
            result["broker_at_end"] = {"owned_handles": info.owned_handles, "sessions": len(info.sessions)}
        if stop_broker:
            result["broker_stopped"] = asyncio.run(kill_and_watch(server, env, broker, "broker-stopped", "broker_sigterm", watch, workdir, stop_broker))
        server.close()
    result["server"] = exit_record(server.process)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--stop-broker", type=int, default=0, metavar="PID",
                        help="last, SIGTERM the broker (this pid) while a publisher is in the room")
    return driver_main(parser, lambda args: run(args.workdir, args.broker, args.runs, args.count, args.stop_broker))


if __name__ == "__main__":
    sys.exit(main())
