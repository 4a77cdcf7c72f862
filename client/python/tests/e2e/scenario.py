"""One run of the crash scenario against a real livekit-server, with or without the broker.

    python scenario.py --workdir DIR [--broker unix:///path/sock] [--seconds 24]

A livekit-server in a network namespace; a livekit-agents worker (PROCESS jobs, forkserver) whose
job runs the report's AgentSession with a voice turn (agent_worker.py); two publishers that speak
in turns, each with a voice of its own pitch (120 Hz, 210 Hz), and listen to the agent; one job
dispatched to the room, which listens for --seconds. With --broker every Python process here (worker, forkserver, job, publishers)
goes through the broker; without it each loads the SDK's own liblivekit_ffi (the baseline).

Prints one JSON line (also written to DIR/result.json): what the job measured and its voice turns,
what each publisher heard of the agent, how every process ended (exit code, or the signal that
ended it; `hung` when something did not finish in time), with the broker what it held for the
job's process after the job ended and at the end, and a `summary` of those figures.
Run with the python of a version pair's virtualenv (build/pyvenv-e2e-*: livekit-agents,
livekit-plugins-silero, livekit-api, livekit_ffi_broker).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import API_KEY, API_SECRET, LiveKitServer, Reaper, driver_main, driver_setup, log  # noqa: E402
from signals import PUBLISHERS  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOM = "lkb-e2e-room"


def token(identity: str) -> str:
    from livekit import api

    grants = api.VideoGrants(room_join=True, room=ROOM, can_subscribe=True, can_publish=True)
    return api.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(grants).to_jwt()


async def dispatch(http_url: str, agent_name: str) -> str:
    from livekit import api

    async with api.LiveKitAPI(http_url, API_KEY, API_SECRET) as lk:
        d = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name=agent_name, room=ROOM))
        return d.id


def exit_record(proc: subprocess.Popen) -> dict:
    code = proc.returncode
    if code is None:
        return {"pid": proc.pid, "running": True}
    if code < 0:
        return {"pid": proc.pid, "signal": signal.Signals(-code).name}
    return {"pid": proc.pid, "exitcode": code}


def stop(proc: subprocess.Popen, timeout: float) -> dict:
    """SIGTERM, wait; SIGKILL if it does not end in time (then `hung`)."""
    record: dict = {}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            record["hung"] = True
            proc.kill()
            proc.wait()
    return {**exit_record(proc), **record}


def first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of `proc`; "" at EOF or when none came within `timeout`."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline()


def read_events(workdir: Path) -> list[dict]:
    path = workdir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(what: str, probe, timeout: float, reaper: Reaper, alive: list[subprocess.Popen]):
    """Polls `probe` until it returns something truthy; None on timeout or when a process of
    `alive` ends first (both are results the caller reports, not exceptions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reaper.reap()
        value = probe()
        if value:
            return value
        dead = [p for p in alive if p.poll() is not None]
        if dead:
            log("ended_early", waiting_for=what, processes=[exit_record(p) for p in dead])
            return None
        time.sleep(0.2)
    log("timeout", waiting_for=what, seconds=timeout)
    return None


def broker_state(address: str, job_pids: list[int]) -> dict:
    import livekit_ffi_broker

    info = livekit_ffi_broker.broker_info(address, timeout=5)
    return {
        "owned_handles": info.owned_handles,
        "sessions": [{"pid": s.pid, "client_name": s.client_name, "owned_handles": s.owned_handles} for s in info.sessions],
        "job_sessions": [{"pid": s.pid, "owned_handles": s.owned_handles} for s in info.sessions if s.pid in job_pids],
    }


def drive(server: LiveKitServer, workdir: Path, broker: Optional[str], seconds: float, env: dict, reaper: Reaper,
          procs: dict[str, subprocess.Popen], result: dict) -> None:
    """Worker, publishers, dispatch, the job's result; returns early when a step fails (the
    result says which), the caller stops every process."""
    worker_env = {**env, "LIVEKIT_URL": server.url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET,
                  "LKB_E2E_OUT": str(workdir), "LKB_E2E_SECONDS": str(seconds)}
    with open(workdir / "agent-worker.log", "w") as wlog:
        procs["worker"] = reaper.track(subprocess.Popen(
            [sys.executable, str(HERE / "agent_worker.py")],
            env=worker_env, stdout=wlog, stderr=subprocess.STDOUT))
    registered = wait_until("worker registration", lambda: [e for e in read_events(workdir) if e["event"] == "registered"],
                            120, reaper, [procs["worker"]])
    if not registered:
        if procs["worker"].poll() is None:
            result["hung"].append("worker registration")
        else:
            result["failed"] = "worker registration"
        return
    log("worker_registered", worker_id=registered[0]["worker_id"])

    published: dict[str, str] = {}
    for identity, pitch in PUBLISHERS.items():
        with open(workdir / f"{identity}.log", "w") as plog:
            procs[identity] = reaper.track(subprocess.Popen(
                [sys.executable, str(HERE / "publisher.py"), "--url", server.url, "--token", token(identity), "--pitch", str(pitch)],
                env=env, stdout=subprocess.PIPE, stderr=plog, text=True))
    for identity in PUBLISHERS:
        line = first_line(procs[identity], 60)  # {"published": sid}
        if not line.startswith("{"):
            if procs[identity].poll() is None:
                result["hung"].append(f"{identity} publishing")
            else:
                result["failed"] = f"{identity} publishing"
            return
        published[identity] = json.loads(line)["published"]
    log("published", tracks=published)
    result["published"] = published

    result["dispatch_id"] = asyncio.run(dispatch(server.http_url, "lkb-e2e-agent"))
    dispatched = time.monotonic()
    log("dispatched", dispatch_id=result["dispatch_id"])

    def job_result():
        files = sorted(workdir.glob("job-*.json"))
        if files:
            return json.loads(files[0].read_text())
        # A job process that ended without writing its result (a crash) ends the wait.
        return next(({"crashed": e} for e in read_events(workdir) if e["event"] == "process_closed" and e["exitcode"] != 0), None)

    job = wait_until("the job's result", job_result, seconds + 90, reaper, list(procs.values()))
    result["durations"]["dispatch_to_result_s"] = round(time.monotonic() - dispatched, 1)
    result["job"] = job
    if job is None:
        result["hung"].append("job result")
        return
    job_pid = job.get("pid")
    if job_pid is None:
        return
    closed = wait_until("the job process's end",
                        lambda: [e for e in read_events(workdir) if e["event"] == "process_closed" and e["pid"] == job_pid],
                        30, reaper, [procs["worker"]])
    if not closed:
        result["hung"].append("job process exit")
    elif broker:
        result["broker_after_job"] = broker_state(broker, [job_pid])


def summarize(result: dict) -> dict:
    """The figures a run is judged by, in a few lines: what the job received from each publisher,
    what each publisher received from the agent, the broker's handles."""
    job = result.get("job") or {}
    voice = job.get("voice") or {}
    return {
        "versions": job.get("versions"),
        "frames": {t["identity"]: t["frames"] for t in job.get("tracks", [])},
        "turns": [{"identity": t["identity"], "transcript": t["transcript"], "answered": bool(t.get("replies"))}
                  for t in voice.get("turns", [])],
        "heard_by_publishers": {
            identity: {
                "reply_audio_s": p.get("agent_audio", {}).get("audible_s"),
                "reply_hz": p.get("agent_audio", {}).get("hz"),
                "replies": p.get("agent_audio", {}).get("replies"),
                "transcription_streams": len(p.get("transcription_streams", [])),
                "transcription_events": len(p.get("transcription_events", [])),
                "texts": sorted({t["text"] for t in p.get("transcription_streams", []) + p.get("transcription_events", [])}),
            }
            for identity, p in result.get("publishers", {}).items()
        },
        "handles": {
            "job_mid_read": (job.get("broker_session_mid_read") or {}).get("owned_handles"),
            "job_after_read": (job.get("broker_session_after_read") or {}).get("owned_handles"),
            "after_job": (result.get("broker_after_job") or {}).get("owned_handles"),
            "at_end": (result.get("broker_at_end") or {}).get("owned_handles"),
        },
        "durations": result.get("durations"),
    }


def run(workdir: Path, broker: Optional[str], seconds: float) -> dict:
    reaper = Reaper()
    started = time.monotonic()
    result: dict = {"broker": broker, "seconds": seconds, "hung": [], "durations": {}}
    binary, env = driver_setup(broker)
    procs: dict[str, subprocess.Popen] = {}
    with LiveKitServer(binary, workdir) as server:
        reaper.track(server.process)
        result["durations"]["server_up_s"] = round(time.monotonic() - started, 1)
        try:
            drive(server, workdir, broker, seconds, env, reaper, procs, result)
        finally:
            for identity in PUBLISHERS:
                if identity in procs:
                    record = stop(procs[identity], 15)
                    for line in procs[identity].stdout.read().splitlines():
                        if line.startswith('{"stopped"'):
                            record.update(json.loads(line)["stopped"])
                    result.setdefault("publishers", {})[identity] = record
            if "worker" in procs:
                result["worker"] = stop(procs["worker"], 60)
            result["job_processes"] = [e for e in read_events(workdir) if e["event"] == "process_closed"]
            if broker:
                result["broker_at_end"] = broker_state(broker, [e["pid"] for e in result["job_processes"]])
    result["server"] = exit_record(server.process)
    # The forkserver outlives the worker's main process by a moment (it leaves when its pipe
    # closes) and is re-parented to us: wait until no descendant is left.
    result["left_running"] = reaper.drain(10)
    result["orphans"] = reaper.orphans
    result["durations"]["total_s"] = round(time.monotonic() - started, 1)
    result["summary"] = summarize(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=24.0)
    return driver_main(parser, lambda args: run(args.workdir, args.broker, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
