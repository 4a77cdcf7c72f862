"""SDK releases older than the broker's liblivekit_ffi, against a real livekit-server (the e2e
harness, tests/e2e/harness.py), and the library-wide events of a room routed to its owner only.

- livekit 1.1.5 (the crash report's SDK, the e2e report pair's virtualenv) never sends the
  ReadyForRoomEventRequest that liblivekit_ffi 0.12.75 waits for after each ConnectCallback. Through
  the broker its rooms get their events past the library's 15 s timeout, both with the bridge
  (the broker sends it) and with the broker started on 1.1.5's own library (--ffi-lib, no bridge).
- The server sees the broker's participants as the Python SDK (--sdk-name/--sdk-version), never
  UNKNOWN, and the library never logs "unknown SDK name".
- A session that reports a modern SDK and never sends ReadyForRoomEvent gets the library's panic
  about its room 15 s later; another session in the same room gets nothing of it.
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import HERE, livekit_server_binary, scenario_env, start_broker, unavailable

sys.path.insert(0, str(HERE / "e2e"))

from harness import LiveKitServer  # noqa: E402
from sdk_rooms import join_token  # noqa: E402
from e2e_drivers import e2e_python  # noqa: E402

SECONDS = 20  # past the library's 15 s ReadyForRoomEvent timeout
READY_TIMEOUT_S = 15


def sdk_venv() -> Path:
    python = e2e_python("report")
    if not python.exists():
        unavailable(f"{python} is missing: scripts/python-venvs.sh creates it (livekit 1.1.5)")
    return python


def own_library(python: Path) -> str:
    """The liblivekit_ffi the SDK of `python` ships (livekit/rtc/resources)."""
    code = "import livekit.rtc, pathlib; print(pathlib.Path(livekit.rtc.__file__).parent / 'resources' / 'liblivekit_ffi.so')"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def server_client_infos(server: LiveKitServer) -> dict[str, dict]:
    """The ClientInfo the server logged for each participant when it became active."""
    infos = {}
    for line in server.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == "participant active" and "clientInfo" in record:
            infos[record["participant"]] = record["clientInfo"]
    return infos


@pytest.mark.parametrize("library", ["bridge", "own-library"])
def test_sdk_1_1_5_rooms_get_their_events_past_15_s(tmp_dir, library):
    python = sdk_venv()
    binary = livekit_server_binary()
    extra = ["--ffi-lib", own_library(python)] if library == "own-library" else []
    broker = start_broker(tmp_dir, *extra)
    try:
        with LiveKitServer(binary, tmp_dir) as server:
            proc = subprocess.Popen(
                [str(python), str(HERE / "e2e" / "sdk_rooms.py"), "--url", server.url, "--seconds", str(SECONDS)],
                env=scenario_env(broker.address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            try:
                session = broker.wait_info(lambda i: len(i.sessions) > 0, timeout=30).sessions[0]
                out, err = proc.communicate(timeout=SECONDS + 90)
            finally:
                proc.kill()
            assert proc.returncode == 0, f"sdk_rooms.py exited {proc.returncode}\n{out[-3000:]}\n{err[-6000:]}"
            result = json.loads(out.strip().splitlines()[-1])
            infos = server_client_infos(server)
    finally:
        broker.stop()
    summary = json.dumps(result)
    log = "\n".join(broker.lines)

    # The listener saw the publisher's track, its audio and its data packets for the whole run,
    # well past the 15 s after which the library tears down a room whose client never said ready.
    events = result["events"]
    assert result["sdk_version"] == "1.1.5" and not result.get("timed_out"), summary
    assert events["track_subscribed"]["first_s"] < 5, summary
    assert events["data_received"]["count"] >= 0.9 * result["packets_sent"], summary
    assert events["data_received"]["last_s"] > READY_TIMEOUT_S + 2, summary
    assert result["frames"] >= 0.9 * SECONDS * 100 and result["last_frame_s"] > READY_TIMEOUT_S + 2, summary
    assert result["disconnect_reasons"] == [] and result["remote_participants"] == ["publisher"], summary
    assert result["listener_disconnect"] == "ok" and result["publisher_disconnect"] == "ok", summary
    assert "ReadyForRoomEventRequest" not in log and "panicked" not in log, log[-4000:]

    # What the session reported and got: ready-for-room-event only where the library needs it;
    # drop-unread-stream-readers on any library (the SDK never reads the readers it hands out).
    assert (session.sdk, session.sdk_version) == ("python", "1.1.5"), session
    ready = ["ready-for-room-event"] if library == "bridge" else []
    assert list(session.bridges) == ready + ["drop-unread-stream-readers"], session
    started = [json.loads(line) for line in broker.lines if '"msg":"session started"' in line]
    assert started and started[0]["bridges"] == list(session.bridges), started

    # The server saw the Python SDK at the broker's --sdk-version (its defaults), not UNKNOWN.
    assert set(infos) == {"listener", "publisher"}, infos
    for identity, info in infos.items():
        assert (info.get("sdk"), info.get("version")) == ("PYTHON", "1.2.1"), (identity, info)
    assert "unknown SDK name" not in log, log[-4000:]


def test_the_python_client_reports_the_installed_sdk(broker):
    """The client names the SDK as the SDK names itself to livekit_ffi_initialize; a current
    release gets no bridge."""
    code = (
        "import json, livekit_ffi_broker\n"
        "from livekit import rtc\n"
        "source = rtc.AudioSource(48000, 1)\n"
        "mine = [s for s in livekit_ffi_broker.broker_info().sessions if s.pid == __import__('os').getpid()]\n"
        "print(json.dumps([rtc.__version__, [(s.sdk, s.sdk_version, list(s.bridges)) for s in mine]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=scenario_env(broker.address), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    version, sessions = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sessions == [["python", version, []]], (version, sessions)


class RawSession:
    """A broker Session spoken directly (no SDK): every ServerMessage it gets is kept."""

    def __init__(self, address: str, name: str, sdk_version: str) -> None:
        import grpc

        from livekit_ffi_broker._address import grpc_target
        from livekit_ffi_broker._gen import ffi_broker_pb2 as pb

        self.pb = pb
        self.channel = grpc.insecure_channel(grpc_target(address))
        self.outgoing: queue.Queue = queue.Queue()
        self.received: list[Any] = []
        self.changed = threading.Condition()
        self.ids = iter(range(1, 1 << 30))
        call = self.channel.stream_stream(
            "/livekit.ffi_broker.v1.FfiBroker/Session",
            request_serializer=pb.ClientMessage.SerializeToString,
            response_deserializer=pb.ServerMessage.FromString,
        )(iter(self.outgoing.get, None))
        self.outgoing.put(pb.ClientMessage(hello=pb.Hello(client_name=name, sdk="python", sdk_version=sdk_version)))
        threading.Thread(target=self._read, args=(call,), daemon=True).start()
        self.wait(lambda m: m.WhichOneof("message") == "welcome", 10, "Welcome")

    def _read(self, call: Any) -> None:
        try:
            for message in call:
                with self.changed:
                    self.received.append(message)
                    self.changed.notify_all()
        except Exception:  # noqa: BLE001 - the stream ends when the test closes the channel
            pass

    def wait(self, predicate: Callable[[Any], bool], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                if not self.changed.wait(deadline - time.monotonic()) and time.monotonic() > deadline:
                    raise AssertionError(f"no {what} within {timeout} s; got {[m.WhichOneof('message') for m in self.received]}")

    def request(self, ffi_request: Any) -> Any:
        from livekit.rtc._proto import ffi_pb2

        request_id = next(self.ids)
        self.outgoing.put(self.pb.ClientMessage(request=self.pb.Request(request_id=request_id, ffi_request=ffi_request.SerializeToString())))
        response = self.wait(lambda m: m.WhichOneof("message") == "response" and m.response.request_id == request_id, 30, f"Response {request_id}").response
        assert not response.HasField("error"), response.error
        return ffi_pb2.FfiResponse.FromString(response.ffi_response)

    def ffi_events(self) -> list[Any]:
        from livekit.rtc._proto import ffi_pb2

        with self.changed:
            return [ffi_pb2.FfiEvent.FromString(e.ffi_event) for m in self.received if m.WhichOneof("message") == "events" for e in m.events.events]

    def panics(self) -> list[str]:
        with self.changed:
            return [m.notice.ffi_panic.message for m in self.received if m.WhichOneof("message") == "notice" and m.notice.WhichOneof("notice") == "ffi_panic"]

    def connect(self, url: str, identity: str) -> int:
        """Joins the room; returns the room handle of the ConnectCallback."""
        from livekit.rtc._proto import ffi_pb2

        req = ffi_pb2.FfiRequest()
        req.connect.url = url
        req.connect.token = join_token(identity)
        req.connect.options.auto_subscribe = True
        async_id = self.request(req).connect.async_id
        done = self.wait(lambda m: m.WhichOneof("message") == "events" and any(
            e.connect.async_id == async_id for e in map(ffi_pb2.FfiEvent.FromString, (x.ffi_event for x in m.events.events))), 30, "ConnectCallback")
        callback = next(e.connect for e in map(ffi_pb2.FfiEvent.FromString, (x.ffi_event for x in done.events.events)) if e.connect.async_id == async_id)
        assert callback.WhichOneof("message") == "result", callback
        return callback.result.room.handle.id

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_the_ready_for_room_event_panic_reaches_only_the_rooms_session(broker, tmp_dir):
    binary = livekit_server_binary()
    with LiveKitServer(binary, tmp_dir) as server:
        from livekit.rtc._proto import ffi_pb2

        ready = RawSession(broker.address, "ready", "1.2.1")
        unready = RawSession(broker.address, "unready", "1.2.1")
        try:
            # A modern SDK: no bridge; the ready session says ready itself, as livekit >= 1.1.10 does.
            assert [list(s.wait(lambda m: m.WhichOneof("message") == "welcome", 1, "Welcome").welcome.bridges) for s in (ready, unready)] == [[], []]
            ready_room = ready.connect(server.url, "ready")
            say_ready = ffi_pb2.FfiRequest()
            say_ready.ready_for_room_event.room_handle = ready_room
            ready.request(say_ready)
            unready_room = unready.connect(server.url, "unready")
            connected_at = time.monotonic()

            # The library gives up on the unready room after 15 s and reports it as a panic that
            # names the room, and as a log record: both to its session only.
            unready.wait(lambda m: m.WhichOneof("message") == "notice", READY_TIMEOUT_S + 15, "the FfiPanic notice")
            waited = time.monotonic() - connected_at
            named = f"(room_handle={unready_room})"
            panics = unready.panics()
            assert len(panics) == 1 and "timed out waiting for ReadyForRoomEventRequest" in panics[0] and named in panics[0], panics
            assert waited > READY_TIMEOUT_S - 1, waited
            unready.wait(lambda m: m.WhichOneof("message") == "events" and any(
                named in r.message for e in m.events.events for r in ffi_pb2.FfiEvent.FromString(e.ffi_event).logs.records), 5, "the log record naming the room")
            # The ready session saw the unready participant come and go with its room, and nothing
            # of the library's words about that room.
            ready.wait(lambda m: m.WhichOneof("message") == "events" and any(
                ffi_pb2.FfiEvent.FromString(e.ffi_event).room_event.HasField("participant_disconnected") for e in m.events.events), 15, "the participant leaving")
            time.sleep(1.5)  # the library flushes its log records once a second
            assert ready.panics() == [], ready.panics()
            leaked = [r.message for e in ready.ffi_events() if e.WhichOneof("message") == "logs" for r in e.logs.records]
            assert leaked == [], leaked
            # The operator's log has both.
            log = "\n".join(broker.lines)
            assert f"timed out waiting for ReadyForRoomEventRequest after ConnectCallback {named}" in log and '"msg":"liblivekit_ffi panicked"' in log
        finally:
            ready.close()
            unready.close()
