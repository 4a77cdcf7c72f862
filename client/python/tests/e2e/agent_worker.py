"""The agent of the crash report: a livekit-agents worker with PROCESS jobs started by forkserver,
whose entrypoint is the report's: `AgentSession()` started with an `Agent(instructions=...)`.

    python agent_worker.py                (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET set)

Env: LKB_E2E_OUT (directory for results), LKB_E2E_SECONDS (how long the job listens, default 24).
With LIVEKIT_FFI_BROKER set, the .pth of livekit_ffi_broker routes every process of the worker
(main, forkserver, job processes) through the broker.

The Agent has a real Silero VAD (loaded in prewarm, as the agent templates do) and the stand-ins
of standins.py for STT, LLM and TTS, so each turn a publisher speaks is answered with audio and
transcriptions. The session listens to one participant at a time (RoomIO links one); once the
agent has answered it, the session is linked to a publisher it has not heard yet, so every
publisher gets a turn. Beside the session the job reads both publishers' tracks itself, to count
their frames and check their signal.

The main process writes `events.jsonl` (registration, each job process's exit code, read from the
pool because the job processes are children of the forkserver, not of anything the test can wait
for); each job process writes `job-<pid>.json`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, JobExecutorType, JobProcess, WorkerOptions
from livekit.agents import __version__ as agents_version
from livekit.agents.worker import AgentServer
from livekit.plugins import silero

from signals import RATE, audible, frames_of, from_pcm, seconds_report
from standins import FixedLLM, PitchSTT, SineTTS

AGENT_NAME = "lkb-e2e-agent"
OUT = Path(os.environ.get("LKB_E2E_OUT", "."))
SECONDS = float(os.environ.get("LKB_E2E_SECONDS", "24"))
PUBLISHERS = 2
INSTRUCTIONS = "You are a helpful voice AI assistant."


def emit(record: dict) -> None:
    record["t"] = round(time.time(), 3)
    with open(OUT / "events.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def native_library_mapped() -> bool:
    with open("/proc/self/maps") as maps:
        return "livekit_ffi" in maps.read()


def parent_cmdline() -> str:
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def broker_session() -> dict | None:
    """This process's session as the broker sees it (None without the broker)."""
    if not os.environ.get("LIVEKIT_FFI_BROKER"):
        return None
    import livekit_ffi_broker

    info = livekit_ffi_broker.broker_info()
    mine = [s for s in info.sessions if s.pid == os.getpid()]
    return {
        "active": livekit_ffi_broker.is_active(),
        "sessions": len(mine),
        "owned_handles": sum(s.owned_handles for s in mine),
    }


async def read_track(identity: str, track: rtc.Track, seconds: float) -> dict:
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    chunks: list[np.ndarray] = []
    frames = 0
    first = last = None
    started = time.monotonic()
    deadline = started + seconds
    try:
        while time.monotonic() < deadline:
            try:
                event = await asyncio.wait_for(stream.__anext__(), timeout=max(0.01, deadline - time.monotonic()))
            except (asyncio.TimeoutError, StopAsyncIteration):
                break
            now = time.monotonic() - started
            first = now if first is None else first
            last = now
            frames += 1
            chunks.append(from_pcm(event.frame.data))
    finally:
        await stream.aclose()
    samples = np.concatenate(chunks) if chunks else np.zeros(0)
    return {
        "identity": identity,
        "frames": frames,
        "samples": int(len(samples)),
        "audible_fraction": round(float(np.mean(audible(frames_of(samples)))), 3) if len(samples) >= RATE else 0.0,
        "first_frame_s": None if first is None else round(first, 3),
        "last_frame_s": None if last is None else round(last, 3),
        "windows": seconds_report(samples),
    }


class Turns:
    """What the session did, from its own events: each final transcript with the participant the
    session was linked to, each answer of the agent. Moves the session on to a publisher it has
    not heard once the agent has answered the current one."""

    def __init__(self, session: AgentSession, room: rtc.Room) -> None:
        self.session = session
        self.room = room
        self.started = time.monotonic()
        self.turns: list[dict] = []
        self.errors: list[str] = []
        self.heard: set[str] = set()
        session.on("user_input_transcribed", self.on_transcribed)
        session.on("conversation_item_added", self.on_item)
        session.on("error", lambda ev: self.errors.append(repr(ev.error)))

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def linked(self) -> str | None:
        participant = self.session.room_io.linked_participant
        return participant.identity if participant else None

    def on_transcribed(self, ev) -> None:
        if ev.is_final:
            self.turns.append({"identity": self.linked(), "transcript": ev.transcript, "heard_s": self.now()})

    def on_item(self, ev) -> None:
        # Items are messages, and other things (an agent handoff at the start) with no role.
        if getattr(ev.item, "role", None) != "assistant" or not self.turns:
            return
        self.turns[-1].setdefault("replies", []).append({"text": ev.item.text_content, "answered_s": self.now()})
        self.heard.add(self.turns[-1]["identity"])
        others = sorted(p for p in self.room.remote_participants if p not in self.heard)
        if others:
            self.session.room_io.set_participant(others[0])

    def report(self) -> dict:
        return {"turns": self.turns, "errors": self.errors}


async def publisher_tracks(room: rtc.Room) -> dict[str, rtc.Track]:
    """The audio track of each publisher, once all are subscribed."""
    tracks: dict[str, rtc.Track] = {}
    both = asyncio.Event()

    def on_track(track: rtc.Track, _pub, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tracks[participant.identity] = track
            if len(tracks) >= PUBLISHERS:
                both.set()

    room.on("track_subscribed", on_track)
    for participant in room.remote_participants.values():
        for pub in participant.track_publications.values():
            if pub.track is not None:
                on_track(pub.track, pub, participant)  # type: ignore[arg-type]
    await asyncio.wait_for(both.wait(), timeout=30)
    room.off("track_subscribed", on_track)
    return tracks


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


async def entrypoint(ctx: JobContext) -> None:
    result: dict = {
        "pid": os.getpid(),
        "parent_cmdline": parent_cmdline(),
        "native_mapped_at_start": native_library_mapped(),
        "versions": {"livekit": rtc.__version__, "livekit-agents": agents_version},
    }
    try:
        await ctx.connect()
        session = AgentSession()
        turns = Turns(session, ctx.room)
        await session.start(
            room=ctx.room,
            agent=Agent(instructions=INSTRUCTIONS, vad=ctx.proc.userdata["vad"], stt=PitchSTT(), llm=FixedLLM(), tts=SineTTS()),
        )
        tracks = await publisher_tracks(ctx.room)
        reads = [read_track(identity, track, SECONDS) for identity, track in sorted(tracks.items())]

        async def session_mid_read() -> dict | None:
            # Asked while the job holds its room, tracks, streams and the agent's output.
            await asyncio.sleep(SECONDS / 2)
            return await asyncio.to_thread(broker_session)

        *tracks_read, result["broker_session_mid_read"] = await asyncio.gather(*reads, session_mid_read())
        result["tracks"] = tracks_read
        result["voice"] = turns.report()
        result["broker_session_after_read"] = await asyncio.to_thread(broker_session)
        await session.aclose()
        result["native_mapped_at_end"] = native_library_mapped()
    except BaseException as e:  # reported to the test, which fails on it; a cancellation goes on
        result["error"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, Exception):
            raise
    finally:
        tmp = OUT / f".job-{os.getpid()}.json"
        tmp.write_text(json.dumps(result))
        tmp.rename(OUT / f"job-{os.getpid()}.json")
        ctx.shutdown(reason="lkb-e2e: read done")


async def serve(server: AgentServer) -> None:
    """Runs the worker until SIGTERM, then drains and closes it.

    Not `cli.run_app(server)`: its SIGTERM handler raises an exception from the signal handler,
    which asyncio swallows (and logs) when the signal lands while the loop runs a callback, and it
    ignores any further signal, so the worker then never exits (seen once in ten in-process runs
    of the baseline). The pool, forkserver and job processes are the same either way.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(server.run(devmode=False))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([running, stopped], return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        running.result()  # run() ended by itself: raise what ended it
        return
    await server.drain()
    await server.aclose()
    await running


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = AgentServer.from_server_options(
        WorkerOptions(
            entrypoint_fnc=entrypoint,
            prewarm_fnc=prewarm,
            agent_name=AGENT_NAME,  # explicit dispatch: the test dispatches one job to one room
            job_executor_type=JobExecutorType.PROCESS,
            multiprocessing_context="forkserver",  # the default on Linux, spelled out: it is the scenario
            num_idle_processes=1,
            # The test machine runs builds beside us: its CPU load must not make the worker
            # refuse the job (above 0.7 it marks itself unavailable).
            load_fnc=lambda: 0.0,
            # Nor slow imports there kill an idle process at the default 10 s.
            initialize_process_timeout=60.0,
            port=0,  # its health HTTP server: any free port
        )
    )
    server.on("worker_registered", lambda worker_id, _info: emit({"event": "registered", "worker_id": worker_id, "pid": os.getpid()}))

    def watch_pool() -> None:
        # The pool is created by run(); its process_closed event carries each job process's exit
        # code (negative: ended by that signal).
        pool = server._proc_pool
        pool.on("process_started", lambda proc: emit({"event": "process_started", "pid": proc.pid}))
        pool.on("process_closed", lambda proc: emit({"event": "process_closed", "pid": proc.pid, "exitcode": proc.exitcode}))

    server.on("worker_started", watch_pool)
    asyncio.run(serve(server))


if __name__ == "__main__":
    main()
