"""One process's connection to the broker: a gRPC channel with one Session stream at a time.

A session whose stream breaks (UNAVAILABLE, CANCELLED, INTERNAL) is resumed on a new stream and
channel, Hello{resume_token, last_seq}, within RESUME_WINDOW_S: requests pending at the break fail,
requests made meanwhile wait, events go on after the last one delivered (see _Session._resume).

Threads: the caller of ``request`` blocks until its Response (the SDK's FfiClient.request is
synchronous); gRPC's own thread consumes the outgoing queue; one reader thread of ours reads the
ServerMessages in order, resolves Responses and hands decoded, materialized FfiEvents to
``on_event`` (FfiQueue.put, which uses loop.call_soon_threadsafe as the native callback does).

A Connection belongs to the process that created it. After fork() the child never touches the
parent's channel, stream or threads (they are kept referenced, so no destructor runs on them in
the child); the child's own FfiClient opens its own channel and session.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import threading
import time
from typing import Any, Callable, Optional, Sequence

from . import _errors, _wire
from ._address import grpc_target
from ._capture_window import Capture, CaptureWindows
from ._errors import BrokerError, BrokerUnavailable
from ._lane import MIN_BYTES as LANE_MIN_BYTES, Lane, LanePlacement
from ._memory import OutputMemory, Planner, PointerTable, RequestMemory, collect_request, write_back
from ._package_files import describe as describe_package_files
from ._pipelining import Pipelining

logger = logging.getLogger("livekit_ffi_broker")

SESSION_METHOD = "/livekit.ffi_broker.v1.FfiBroker/Session"
INFO_METHOD = "/livekit.ffi_broker.v1.FfiBroker/Info"

MiB = 1024 * 1024


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


CONNECT_TIMEOUT_S = _env_float("LIVEKIT_FFI_BROKER_CONNECT_TIMEOUT", 10.0)
REQUEST_TIMEOUT_S = _env_float("LIVEKIT_FFI_BROKER_REQUEST_TIMEOUT", 60.0)
MAX_MESSAGE_BYTES = int(_env_float("LIVEKIT_FFI_BROKER_MAX_MESSAGE_BYTES", 64 * MiB))
CLOSE_GRACE_S = 2.0
# How long a session whose stream broke is resumed for (0: not resumed); the broker's own
# --resume-grace (default 10000 ms) bounds it as well.
RESUME_WINDOW_S = max(0.0, _env_float("LIVEKIT_FFI_BROKER_RESUME_WINDOW_MS", 10000.0) / 1000.0)
RESUME_BACKOFF_FIRST_S = 0.05
RESUME_BACKOFF_MAX_S = 1.0
# After a failed attempt to open a session, the next attempts wait (exponential, jittered): until
# then requests fail at once, so a process whose broker is down does not hammer its socket.
RECONNECT_BACKOFF_FIRST_S = 0.1
RECONNECT_BACKOFF_MAX_S = max(RECONNECT_BACKOFF_FIRST_S, _env_float("LIVEKIT_FFI_BROKER_RECONNECT_MAX_MS", 5000.0) / 1000.0)
# What gRPC says when nothing listens at the address: the broker process is gone, and with it
# every session it held, so resuming is pointless.
UNREACHABLE_MARKERS = ("Connection refused", "No such file or directory", "ECONNREFUSED", "ENOENT")
AUTH_TOKEN_ENV = "LIVEKIT_FFI_BROKER_AUTH_TOKEN"
# LIVEKIT_FFI_BROKER_MEDIA_LANE=off: media travel inline even on a Unix socket.
LANE_ENABLED = os.environ.get("LIVEKIT_FFI_BROKER_MEDIA_LANE", "on").strip().lower() not in ("0", "off", "false", "no")
AUTH_TOKEN_FILE_ENV = "LIVEKIT_FFI_BROKER_AUTH_TOKEN_FILE"


def auth_token() -> str:
    """Hello.auth_token: $LIVEKIT_FFI_BROKER_AUTH_TOKEN, else the content of
    $LIVEKIT_FFI_BROKER_AUTH_TOKEN_FILE (stripped), else none."""
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if token:
        return token
    path = os.environ.get(AUTH_TOKEN_FILE_ENV, "").strip()
    if not path:
        return ""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        raise BrokerUnavailable(f"cannot read the broker auth token from {path}: {err}") from None

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # One channel per process and per broker: never share a subchannel with another channel.
    ("grpc.use_local_subchannel_pool", 1),
]

_table: Optional[PointerTable] = None
_planner: Optional[Planner] = None
_planner_lock = threading.Lock()


def _reset_locks_after_fork() -> None:
    # A lock held by another thread of the parent at fork() would stay held in the child forever.
    global _planner_lock
    _planner_lock = threading.Lock()
    if _planner is not None:
        _planner.reset_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def planner() -> Planner:
    global _table, _planner
    with _planner_lock:
        if _planner is None:
            _table = PointerTable.load()
            _planner = Planner(_table)
        return _planner


def _pb():
    from ._gen import ffi_broker_pb2

    return ffi_broker_pb2


RESUMABLE = frozenset({"UNAVAILABLE", "CANCELLED", "INTERNAL"})


def _drop_message(handle: int, request_id: int = 0) -> bytes:
    message = _pb().ClientMessage()
    message.drop_handles.handles.append(handle)
    message.drop_handles.request_id = request_id
    return message.SerializeToString()


def _status_code(err: BaseException) -> Any:
    code = getattr(err, "code", None)
    if callable(code):
        try:
            return code()
        except Exception:  # noqa: BLE001
            return None
    return None


def _grpc_error_text(err: BaseException) -> str:
    code = getattr(err, "code", None)
    details = getattr(err, "details", None)
    if callable(code) and callable(details):
        try:
            return f"gRPC {code().name}: {details()}"
        except Exception:  # noqa: BLE001
            pass
    return repr(err)


# Owned* types of streams whose reader, in the SDK, waits for an EOS event after disposing the
# stream's handle (AudioStream.aclose, VideoStream.aclose): FfiEvent field, event message field.
STREAM_EOS = {
    "livekit.proto.OwnedAudioStream": "audio_stream_event",
    "livekit.proto.OwnedVideoStream": "video_stream_event",
}


# Client-chosen async ids (of pipelined requests) start high, clear of the small integers the
# library issues.
PIPELINED_ID_BASE = 1 << 61


class _Waiter:
    __slots__ = ("event", "memory", "response", "error", "callback", "resend", "placements")

    def __init__(
        self,
        memory: Optional[RequestMemory],
        callback: Optional[Callable[[Optional[BaseException]], None]] = None,
    ) -> None:
        # Only a caller that blocks needs an Event; a pipelined request (most of them) does not.
        self.event: Optional[threading.Event] = threading.Event() if callback is None else None
        self.memory = memory
        self.response: Any = None
        self.error: Optional[BaseException] = None
        self.callback = callback
        # a DropHandles with request_id: sent again on the new stream when the session resumes
        self.resend: Any = None
        # what the request placed in the media lane: the broker is done with it once answered
        self.placements: list[LanePlacement] = []

    def resolve(self) -> None:
        for placement in self.placements:
            Lane.free(placement)
        if self.callback is not None:
            try:
                self.callback(self.error)
            except Exception:  # noqa: BLE001
                logger.exception("livekit-ffi-broker: completion callback failed")
        else:
            self.event.set()


class _ResumeFailed(Exception):
    """A resume attempt the broker answered in a way that makes further attempts pointless."""


class _Stream:
    """One gRPC Session call (and its channel): the first of a session, or one that resumes it.

    Messages travel as bytes both ways (_wire): ``outgoing`` holds encoded ClientMessages, and the
    call yields ServerMessages as gRPC received them."""

    def __init__(self, session: "_Session", hello: Any) -> None:
        import grpc

        pb = _pb()
        self.session = session
        self.outgoing: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()
        self.channel = grpc.insecure_channel(grpc_target(session.address), options=CHANNEL_OPTIONS)
        method = self.channel.stream_stream(SESSION_METHOD)
        self.call = method(self._outgoing_messages(pb.ClientMessage(hello=hello).SerializeToString()))

    def _outgoing_messages(self, hello: bytes):
        """What gRPC's writer thread sends: the Hello, then each drain of the queue (what was
        queued while the previous write was in flight) as one message."""
        yield hello
        get, get_nowait = self.outgoing.get, self.outgoing.get_nowait
        while True:
            message = get()
            if message is None:
                return
            drained = [message]
            while True:
                try:
                    message = get_nowait()
                except queue.Empty:
                    break
                if message is None:
                    yield from self._drained(drained)
                    return
                drained.append(message)
            yield from self._drained(drained)

    def _drained(self, messages: list[bytes]):
        for message, count in _wire.batches(messages):
            if count > 1:
                self.session.batched += count
            yield message

    def end(self) -> None:
        """Release the request iterator and the channel (the call is over)."""
        self.outgoing.put(None)
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001
            pass


class _Session:
    """One broker session, on one Session stream at a time: when the stream breaks, the session is
    resumed on a new stream (same session, same handles) within RESUME_WINDOW_S; a failed or closed
    session is replaced by a new one."""

    def __init__(self, connection: "Connection") -> None:
        self.connection = connection
        self.address = connection.address
        self.pid = os.getpid()
        # connecting | open | resuming | closing | closed | failed
        self.state = "connecting"
        self.failure: Optional[BrokerError] = None
        self.failure_reported = False
        self.welcome: Any = None
        # handles this session owns -> their Owned* type name
        self.owned: dict[int, str] = {}
        # stream handles whose EOS this client delivered itself (see Connection.drop_handle)
        self.eos_delivered: set[int] = set()
        self.pending: dict[int, _Waiter] = {}
        self.lock = threading.Lock()
        self.welcomed = threading.Event()
        self.ended = threading.Event()
        # set while the session is not resuming (requests made while it resumes wait on it)
        self.not_resuming = threading.Event()
        self.not_resuming.set()
        self.last_seq = 0
        self.resumes = 0  # times this session was resumed on a new stream
        self.events_dropped = 0  # events the broker reported dropped (EventsDropped notices)
        self.batched = 0  # requests and drops sent inside a ClientMessage.batch
        # messages sent while resuming: written to the new stream once resumed
        self.backlog: list[Any] = []
        self.token = auth_token()
        # The media lane of Welcome.lane, once open (_lane.py); the same across resumes.
        self.lane: Optional[Lane] = None
        self.stream = _Stream(self, self._hello())
        self.reader = threading.Thread(
            target=self._run, name=f"livekit-ffi-broker-reader-{self.pid}", daemon=True
        )
        self.reader.start()

    def _hello(self, resume_token: str = "", last_seq: int = 0) -> Any:
        pb = _pb()
        return pb.Hello(
            client_name=self.connection.client_name,
            client_version=self.connection.client_version,
            sdk=self.connection.sdk,
            sdk_version=self.connection.sdk_version,
            pid=self.pid,
            auth_token=self.token,
            resume_token=resume_token,
            last_seq=last_seq,
            accepts_batches=True,
            # The lane's regions are opened by path: only a worker on the broker's host can.
            lane=pb.LaneRequest() if self.address.strip().startswith("unix:") and LANE_ENABLED else None,
        )

    @property
    def call(self) -> Any:
        """The gRPC call of the current stream (tests cancel it to break the stream)."""
        return self.stream.call

    # Outgoing ---------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        with self.lock:
            if self.state == "resuming":
                self.backlog.append(message)
                return
            stream = self.stream
        stream.outgoing.put(message)

    # Lifecycle --------------------------------------------------------------------------------

    def wait_welcome(self, timeout: float) -> None:
        if not self.welcomed.wait(timeout):
            self.fail(BrokerUnavailable(f"no Welcome from the broker at {self.address} within {timeout:g} s"))
            self.call.cancel()
        if self.state not in ("open", "resuming"):
            self.failure_reported = True
            raise self.failure or BrokerUnavailable("session closed before Welcome")

    def wait_resumed(self) -> None:
        """While the session resumes, wait for it (at most the resume window, plus a little);
        raise if it ended instead."""
        if self.state == "resuming":
            self.not_resuming.wait(RESUME_WINDOW_S + CONNECT_TIMEOUT_S)
        if self.state != "open":
            self.failure_reported = True
            raise self.failure or BrokerUnavailable("session closed")

    def close(self, grace: float) -> None:
        """Half-close the stream (the broker then drops every handle of the session) and wait a
        little for the broker to finish it."""
        with self.lock:
            if self.state not in ("open", "connecting", "resuming"):
                return
            resuming = self.state == "resuming"
            self.state = "closing"
            pending = list(self.pending.values())
            self.pending.clear()
            self.backlog.clear()
            stream = self.stream
        self.not_resuming.set()
        for waiter in pending:
            waiter.error = BrokerUnavailable("session closed")
            waiter.resolve()
        if resuming:
            # No stream to half-close: the broker releases the handles after its grace period,
            # or at once when this process is gone.
            stream.call.cancel()
            self.ended.wait(grace)
            return
        stream.outgoing.put(None)
        if not self.ended.wait(grace):
            self.stream.call.cancel()

    def fail(self, error: BrokerError) -> None:
        with self.lock:
            if self.state in ("failed", "closed"):
                return
            closing = self.state == "closing"
            was_open = self.state in ("open", "resuming")
            self.state = "closed" if closing else "failed"
            self.failure = None if closing else error
            pending = list(self.pending.values())
            self.pending.clear()
            self.backlog.clear()
            stream = self.stream
        self.welcomed.set()
        self.not_resuming.set()
        for waiter in pending:
            waiter.error = error
            waiter.resolve()
        if not closing:
            # Every waiting request gets the error now, and so does the next request made
            # (Connection.session); the one after that opens a new session.
            self.failure_reported = False
            if was_open:  # a failure to connect is raised to the caller instead
                logger.error("livekit-ffi-broker: %s", error.detail)
            # Streams of a lost session end: their readers get an EOS instead of waiting forever.
            for handle, type_name in list(self.owned.items()):
                if type_name in STREAM_EOS:
                    self.connection.deliver_eos(self, handle, type_name)
        stream.outgoing.put(None)

    # Requests ---------------------------------------------------------------------------------

    def start_drop(self, request_id: int, handle: int, callback: Callable[[Optional[BaseException]], None]) -> None:
        """DropHandles with a request_id: ``callback`` runs (on the reader thread) once the broker
        has dropped the handle, after every event it sent before, or when the session ends."""
        waiter = _Waiter(None, callback)
        with self.lock:
            if self.state not in ("open", "resuming"):
                waiter.error = self.failure or BrokerUnavailable("session closed")
                pending = False
            else:
                self.pending[request_id] = waiter
                pending = True
        if not pending:
            waiter.resolve()
            return
        waiter.resend = _drop_message(handle, request_id)
        self.send(waiter.resend)

    def start_request(
        self,
        request_id: int,
        ffi_request: bytes,
        memory: RequestMemory,
        callback: Optional[Callable[[Optional[BaseException]], None]] = None,
        package_files: Sequence[tuple[str, str, str, str]] = (),
        send: bool = True,
    ) -> tuple[_Waiter, bytes]:
        """Sends one request; with ``callback`` nobody waits for the response: the callback runs
        (on the reader thread) with its error, or None, once it comes or the session ends.
        ``package_files``: (path, distribution, version, file) of the package files it names.
        With ``send=False`` the request is pending and its ClientMessage (the request's memory
        copied into it) is the caller's to ``send`` later."""
        pb = _pb()
        waiter = _Waiter(memory, callback)
        while True:
            with self.lock:
                if self.state == "open":
                    self.pending[request_id] = waiter
                    break
                if self.state != "resuming":
                    raise self.failure or BrokerUnavailable("session closed")
            self.wait_resumed()
        files = [
            pb.PackageFile(path=path, distribution=dist, version=version, file=file).SerializeToString()
            for path, dist, version, file in package_files
        ]
        buffers = memory.buffers
        lane = self.lane
        if lane is not None and buffers:
            buffers = [self._placed(waiter, lane, ptr, data) if len(data) >= LANE_MIN_BYTES else (ptr, data) for ptr, data in buffers]
        message = _wire.request(request_id, ffi_request, buffers, files)
        if send:
            self.send(message)
        return waiter, message

    @staticmethod
    def _placed(waiter: _Waiter, lane: Lane, ptr: int, data: Any) -> tuple[int, Any]:
        """(ptr, LanePlacement) when the lane has room for ``data``, else as they are."""
        placement = lane.place(data)
        if placement is None:
            return ptr, data
        waiter.placements.append(placement)
        return ptr, placement

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.pending.pop(request_id, None)

    # Incoming ---------------------------------------------------------------------------------

    def _run(self) -> None:
        """The reader thread: reads the current stream; when it breaks, resumes the session on a
        new one, or ends the session."""
        error: Optional[BrokerError] = None
        try:
            while True:
                code, error = self._read(self.stream)
                self.stream.end()
                if error is None or not self._resumable(code):
                    break
                error = self._resume(error)
                if error is None:
                    continue  # resumed: read the new stream
                break
        except BaseException as err:  # noqa: BLE001 - never leave the session half-alive
            error = BrokerUnavailable(f"session with the broker at {self.address} failed: {err!r}")
        finally:
            self.fail(error or BrokerUnavailable(f"session ended by the broker at {self.address}"))
            if self.lane is not None:
                self.lane.close()
            self.ended.set()
            self.stream.end()

    def _read(self, stream: _Stream) -> tuple[Any, Optional[BrokerError]]:
        """Reads one stream to its end: (the gRPC status code or None, the error or None)."""
        try:
            for raw in stream.call:
                self._on_message(raw)
        except Exception as err:  # noqa: BLE001 - grpc.RpcError and anything unexpected
            code = _status_code(err)
            if self.state == "connecting":
                return code, BrokerUnavailable(f"could not open a session with the broker at {self.address}: {_grpc_error_text(err)}")
            return code, BrokerUnavailable(f"session with the broker at {self.address} failed: {_grpc_error_text(err)}")
        if self.state == "connecting":
            return None, BrokerUnavailable(f"the broker at {self.address} ended the session before Welcome")
        # The broker finished the stream with OK (after ShuttingDown, say): a clean end.
        return None, None

    def _resumable(self, code: Any) -> bool:
        return (
            self.state == "open"  # not connecting, not closing (a deliberate close cancels too)
            and RESUME_WINDOW_S > 0
            and getattr(code, "name", None) in RESUMABLE
            and self.welcome is not None
            and bool(self.welcome.resume_token)
            and self.pid == os.getpid()
        )

    def _resume(self, cause: BrokerError) -> Optional[BrokerError]:
        """Reopens the session on new streams with backoff until the broker resumes it (None) or
        the window ends (the error to end the session with)."""
        with self.lock:
            if self.state != "open":
                return cause
            self.state = "resuming"
            self.not_resuming.clear()
            # Their responses went with the broken stream: the requests' outcome is unknown.
            pending = list(self.pending.values())
            # Drops of stream handles whose answer was lost are sent again once resumed: the
            # broker answers (dropped now, or PERMISSION_DENIED: dropped already) after every
            # event it sent before, and the stream's EOS follows as usual.
            self.pending = {k: w for k, w in self.pending.items() if w.callback is not None}
            resends = [w.resend for w in self.pending.values() if w.resend is not None]
            self.backlog = resends + self._unsent(self.stream) + self.backlog
        for waiter in pending:
            if waiter.callback is None:
                waiter.error = BrokerUnavailable(f"{cause.detail} (outcome of the request unknown)")
                waiter.resolve()
        logger.warning("livekit-ffi-broker: %s; resuming the session", cause.detail)
        started = time.monotonic()
        deadline = started + RESUME_WINDOW_S
        delay = RESUME_BACKOFF_FIRST_S
        last_error = cause
        attempt = 0
        while self.state == "resuming":
            # Wait a little first, also before the first attempt: the broker must see the old
            # stream break (else, with --resume-grace 0, it would still hold the session).
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, RESUME_BACKOFF_MAX_S)
            if self.state != "resuming":
                break
            attempt += 1
            try:
                if self._resume_once(deadline):
                    self.resumes += 1
                    self.connection.capture_windows.after_resume()
                    logger.warning(
                        "livekit-ffi-broker: session %s resumed after %.2f s (attempt %d)",
                        self.welcome.session_id,
                        time.monotonic() - started,
                        attempt,
                    )
                    return None
            except _ResumeFailed as err:
                return BrokerUnavailable(f"could not resume the session with the broker at {self.address}: {err}")
            except BrokerError as err:
                last_error = err
                if any(marker in err.detail for marker in UNREACHABLE_MARKERS):
                    return BrokerUnavailable(
                        f"the broker at {self.address} is gone ({err.detail}): the session and its handles are lost"
                    )
        if self.state != "resuming":
            return cause  # closed meanwhile
        return BrokerUnavailable(
            f"could not resume the session with the broker at {self.address} within {RESUME_WINDOW_S:g} s: {last_error.detail}"
        )

    def _unsent(self, stream: _Stream) -> list[bytes]:
        """What gRPC never took from a broken stream's queue was never sent: the pipelined
        requests among it (their waiters are kept) and plain drops go out again on the new
        stream. A pipelined audio capture lost there would hold its source's window for good."""
        again = []
        while True:
            try:
                message = stream.outgoing.get_nowait()
            except queue.Empty:
                return again
            if message is None:
                continue
            is_request, request_id = _wire.request_id(message)
            if (request_id in self.pending) if is_request else request_id == 0:
                again.append(message)

    def _resume_once(self, deadline: float) -> bool:
        """One attempt: a new stream with Hello{resume_token, last_seq}; True once the Welcome
        says resumed (the session is open again on that stream)."""
        import grpc

        stream = _Stream(self, self._hello(self.welcome.resume_token, self.last_seq))
        with self.lock:
            if self.state != "resuming":
                stream.call.cancel()
                stream.end()
                return False
            self.stream = stream
        timer = threading.Timer(max(0.01, min(CONNECT_TIMEOUT_S, deadline - time.monotonic())), stream.call.cancel)
        timer.daemon = True
        timer.start()
        try:
            first = _pb().ServerMessage.FromString(next(iter(stream.call)))
        except StopIteration:
            stream.end()
            raise BrokerUnavailable("the broker ended the stream before Welcome") from None
        except grpc.RpcError as err:
            stream.end()
            code = getattr(_status_code(err), "name", None)
            if code in ("NOT_FOUND", "UNAUTHENTICATED"):
                raise _ResumeFailed(_grpc_error_text(err)) from None
            raise BrokerUnavailable(_grpc_error_text(err)) from None
        finally:
            timer.cancel()
        which = first.WhichOneof("message")
        if which != "welcome" or not first.welcome.resumed:
            stream.call.cancel()
            stream.end()
            what = "a new session" if which == "welcome" else which
            raise _ResumeFailed(f"the broker answered the resume with {what}")
        with self.lock:
            if self.state != "resuming":
                stream.call.cancel()
                return False
            self.welcome = first.welcome
            self.state = "open"
            backlog, self.backlog = self.backlog, []
            for message in backlog:
                stream.outgoing.put(message)
        self.not_resuming.set()
        return True

    def _on_message(self, raw: bytes) -> None:
        pb = _pb()
        if self.state == "connecting":
            message = pb.ServerMessage.FromString(raw)
            which = message.WhichOneof("message")
            if which != "welcome":
                raise BrokerError(_errors.UNAVAILABLE, f"the broker sent {which} before Welcome")
            self.welcome = message.welcome
            self._open_lane(message.welcome)
            with self.lock:
                if self.state == "connecting":
                    self.state = "open"
            self.welcomed.set()
            return
        _wire.read_server_message(raw, self, pb)

    def _open_lane(self, welcome: Any) -> None:
        if not welcome.HasField("lane"):
            return
        if not welcome.lane.HasField("to_broker"):
            logger.info("livekit-ffi-broker: no media lane (%s); media travel inline", welcome.lane.unavailable)
            return
        try:
            self.lane = Lane(welcome.lane)
        except (OSError, ValueError) as err:
            logger.info("livekit-ffi-broker: the broker's media lane could not be opened (%s); media travel inline", err)

    def on_welcome(self, welcome: Any) -> None:
        logger.warning("livekit-ffi-broker: a second Welcome from the broker ignored (session %s)", welcome.session_id)

    def on_response(self, request_id: int, ffi_response: bytes, buffers: list, error: Any) -> None:
        with self.lock:
            waiter = self.pending.pop(request_id, None)
        if waiter is None:
            return  # timed out, or closed meanwhile
        try:
            if error is not None:
                waiter.error = self.connection.contract_error(error, waiter.memory)
                return
            if waiter.callback is not None:  # a DropHandles acknowledgement or a pipelined request
                return
            memory = waiter.memory
            if memory is not None and memory.in_out:
                written = write_back(memory.in_out, buffers)
                buffers = [b for b in buffers if b.ptr not in written]
            waiter.response = self.connection.take_response(self, ffi_response, buffers, memory)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            waiter.error = err
        finally:
            waiter.resolve()

    def on_events(self, events: list) -> None:
        for seq, ffi_event, buffers in events:
            if self.state != "open":
                return
            if seq <= self.last_seq:
                continue  # sent again after a resume: delivered already
            if seq != self.last_seq + 1 and self.last_seq != 0:
                logger.debug("event seq %d after %d", seq, self.last_seq)
            self.last_seq = seq
            try:
                for buffer in buffers:
                    if buffer.lane is not None:
                        if self.lane is None:
                            raise ValueError("an event refers to the media lane, and this session has none open")
                        buffer.hold = self.lane.hold(*buffer.lane)
                self.connection.take_event(self, ffi_event, buffers)
            except Exception:  # noqa: BLE001 - one bad event must not end the session
                logger.exception("livekit-ffi-broker: could not deliver event seq %d", seq)
                for buffer in buffers:
                    if buffer.hold is not None:
                        buffer.hold.done()

    def on_notice(self, notice: Any) -> None:
        which = notice.WhichOneof("notice")
        if which == "ffi_panic":
            # Without a broker the SDK SIGTERMs its own process on a panic. Here the panic is the
            # broker's, which ends every session soon; this process is fine, so log and go on.
            logger.error("liblivekit_ffi panicked in the broker: %s", notice.ffi_panic.message)
        elif which == "shutting_down":
            logger.warning("the broker is shutting down (grace %d ms)", notice.shutting_down.grace_ms)
        elif which == "events_dropped":
            dropped = notice.events_dropped
            self.events_dropped += dropped.count
            logger.warning(
                "the broker dropped %d events of this session from seq %d: %s",
                dropped.count,
                dropped.first_seq,
                dropped.reason,
            )


class Connection:
    """What one process needs to run FfiRequests through the broker."""

    def __init__(
        self,
        address: str,
        request_type: Any,
        response_type: Any,
        event_type: Any,
        on_event: Callable[[Any], None],
        client_name: str = "python-worker",
        client_version: str = "",
        sdk: str = "",
        sdk_version: str = "",
    ) -> None:
        grpc_target(address)  # a bad address fails here, not later
        self.address = address
        self.pid = os.getpid()
        self.client_name = client_name
        self.client_version = client_version
        # Hello.sdk/sdk_version: the SDK whose requests this connection carries.
        self.sdk = sdk
        self.sdk_version = sdk_version
        self.response_type = response_type
        self.event_type = event_type
        self.on_event = on_event
        self.planner = planner()
        self.memory = OutputMemory(self.planner)
        self.pipelining = Pipelining(request_type, response_type, event_type)
        self.request_type = request_type
        self.capture_windows = CaptureWindows(self._answer_capture, self._dispatch_captures, lambda: next(self._pipelined_ids))
        self._ids = itertools.count(1)
        self._pipelined_ids = itertools.count(PIPELINED_ID_BASE)
        self._lock = threading.Lock()
        self._session: Optional[_Session] = None
        self._closed = False
        # Reconnect backoff: no new session is tried before _retry_at (monotonic s).
        self._retry_at = 0.0
        self._retry_delay = RECONNECT_BACKOFF_FIRST_S
        self._last_connect_error: Optional[BrokerError] = None

    # Sessions -----------------------------------------------------------------------------------

    def session(self) -> _Session:
        """The open session, opening one if needed (callers racing here share it)."""
        created = False
        with self._lock:
            if self._closed:
                raise BrokerUnavailable("the connection to the broker was closed (FfiClient disposed)")
            session = self._session
            if session is not None and session.state == "failed" and not session.failure_reported:
                session.failure_reported = True
                assert session.failure is not None
                raise session.failure
            if session is None or session.state not in ("open", "connecting", "resuming"):
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    raise BrokerUnavailable(
                        f"the broker at {self.address} was unreachable ({self._last_connect_error}); "
                        f"the next attempt is in {wait * 1000:.0f} ms"
                    )
                session = _Session(self)
                self._session = session
                created = True
        if session.state == "resuming":
            session.wait_resumed()  # the same session once resumed; raises if it ended instead
        elif session.state != "open":
            try:
                session.wait_welcome(CONNECT_TIMEOUT_S)
            except BrokerError as err:
                if created:
                    self._back_off(err)
                raise
        if created:
            self._retry_delay = RECONNECT_BACKOFF_FIRST_S
            welcome = session.welcome
            logger.info(
                "livekit-ffi-broker: session %s with the broker at %s (broker %s, liblivekit_ffi %s)",
                welcome.session_id,
                self.address,
                welcome.broker_version,
                welcome.ffi_version,
            )
        return session

    def _back_off(self, error: BrokerError) -> None:
        with self._lock:
            self._last_connect_error = error
            self._retry_at = time.monotonic() + self._retry_delay * random.uniform(0.5, 1.0)
            self._retry_delay = min(self._retry_delay * 2, RECONNECT_BACKOFF_MAX_S)

    def close(self, grace: float = CLOSE_GRACE_S) -> None:
        with self._lock:
            self._closed = True
            session = self._session
        if session is not None and session.pid == os.getpid():
            session.close(grace)

    # Requests -----------------------------------------------------------------------------------

    def request(self, request: Any) -> Any:
        kind = request.WhichOneof("message")
        mode = self.pipelining.mode(kind, getattr(request, kind)) if kind is not None else None
        if mode == "callback":
            return self._pipelined_by_callback(request, kind)
        if mode == "empty":
            return self._pipelined_without_answer(request, kind)
        memory = collect_request(self.planner, request, MAX_MESSAGE_BYTES)
        ffi_request = request.SerializeToString()
        session = self.session()
        request_id = next(self._ids)
        waiter, _ = session.start_request(request_id, ffi_request, memory, package_files=describe_package_files(request))
        if not waiter.event.wait(REQUEST_TIMEOUT_S):  # type: ignore[union-attr]
            session.forget(request_id)
            raise BrokerUnavailable(
                f"no answer from the broker at {self.address} to {memory.kind} within {REQUEST_TIMEOUT_S:g} s"
            )
        if waiter.error is not None:
            raise waiter.error
        if kind == "new_audio_source":  # how much audio its captures may join (_capture_window)
            self.capture_windows.new_source(waiter.response.new_audio_source.source.handle.id, request.new_audio_source.queue_size_ms)
        return waiter.response

    def _pipelined_by_callback(self, request: Any, kind: str) -> Any:
        """Answered here with an async id of the client's choice (see _pipelining); an audio
        capture goes through its source's window (_capture_window)."""
        async_id = next(self._pipelined_ids)
        body = getattr(request, kind)
        body.request_async_id = async_id
        memory = collect_request(self.planner, request, MAX_MESSAGE_BYTES)
        session = self.session()  # no session: raised here, as for any request
        if kind == "capture_audio_frame":
            data = memory.buffers[0][1] if memory.buffers else b""
            self.capture_windows.capture(body.source_handle, Capture(async_id, request, data))
        else:

            def settled(error: Optional[BaseException]) -> None:
                if error is not None:  # else the library's callback event follows, routed by async_id
                    self._deliver_callback(kind, async_id, str(error))

            session.start_request(next(self._ids), request.SerializeToString(), memory, settled)
        response = self.response_type()
        getattr(response, kind).async_id = async_id
        return response

    def _dispatch_captures(self, source_handle: int, group: list[Capture], sent_id: int) -> None:
        """CaptureWindows.dispatch: one CaptureAudioFrameRequest for ``group``, its samples joined."""
        if len(group) == 1:
            request, data = group[0].request, group[0].data
        else:
            request = self.request_type()
            request.CopyFrom(group[0].request)
            body = request.capture_audio_frame
            body.request_async_id = sent_id
            body.buffer.samples_per_channel = sum(c.request.capture_audio_frame.buffer.samples_per_channel for c in group)
            data = b"".join(c.data for c in group)
        buffer = request.capture_audio_frame.buffer
        memory = RequestMemory([(buffer.data_ptr, data)] if data else [], [], source_handle, "capture_audio_frame")

        def settled(error: Optional[BaseException]) -> None:
            if error is not None:  # else the library's callback event follows, routed by async_id
                self.capture_windows.settled(sent_id, str(error))

        # Not self.session(): this may run on the reader thread, which must never open a session.
        session = self._session
        if session is None or session.state not in ("open", "resuming"):
            raise BrokerUnavailable("session closed")
        session.start_request(next(self._ids), request.SerializeToString(), memory, settled)

    def _pipelined_without_answer(self, request: Any, kind: str) -> Any:
        """Answered here with its empty response (see _pipelining)."""
        memory = collect_request(self.planner, request, MAX_MESSAGE_BYTES)
        handle = memory.handle_key

        def settled(error: Optional[BaseException]) -> None:
            if error is not None:
                self.pipelining.refused(handle, kind, error)

        self.session().start_request(next(self._ids), request.SerializeToString(), memory, settled)
        self.pipelining.raise_deferred(handle)
        response = self.response_type()
        getattr(response, kind).SetInParent()
        return response

    def _deliver_callback(self, kind: str, async_id: int, error: str) -> None:
        event = self.event_type()
        callback = getattr(event, kind)
        callback.async_id = async_id
        if error:
            callback.error = error
        self.on_event(event)

    def _answer_capture(self, async_id: int, error: str) -> None:
        self._deliver_callback("capture_audio_frame", async_id, error)

    def contract_error(self, error: Any, memory: Optional[RequestMemory]) -> BrokerError:
        message = error.message
        if memory is not None and error.code == _errors.INVALID_REQUEST and "no request set in its oneof" in message:
            message += (
                f" (the SDK's {memory.kind} request is newer than the broker's liblivekit_ffi schema)"
            )
        return _errors.from_contract(error.code, message)

    def take_response(self, session: _Session, data: bytes, buffers: list, memory: Optional[RequestMemory]) -> Any:
        response = self.response_type.FromString(data)
        which = response.WhichOneof("message")
        if which is None:
            return response
        if memory is not None and memory.handle_key is not None:
            loose_key: Any = ("handle", memory.handle_key)
        else:
            loose_key = ("kind", "response", which)
        self.memory.take(getattr(response, which), buffers, loose_key, session.owned.__setitem__)
        return response

    def take_event(self, session: _Session, data: bytes, buffers: Any) -> None:
        event = self.event_type.FromString(data)
        which = event.WhichOneof("message")
        if which is None:
            return
        if which == "capture_audio_frame":
            callback = event.capture_audio_frame
            if self.capture_windows.settled(callback.async_id, callback.error):
                return  # the window answers its captures itself
        elif which in ("audio_stream_event", "video_stream_event"):
            body = getattr(event, which)
            if body.stream_handle in session.eos_delivered:
                # This client delivered the stream's EOS on the drop's answer, so its reader has
                # unsubscribed; the broker still routes the library's last events about a dropped
                # handle to its former owner (frames still in flight, then the real EOS). Delivered,
                # a frame would reach no reader and its memory copy would never be freed.
                if body.WhichOneof("message") == "eos":
                    session.eos_delivered.discard(body.stream_handle)
                return
        self.memory.take(getattr(event, which), buffers, ("kind", "event", which), session.owned.__setitem__)
        self.on_event(event)

    def deliver_eos(self, session: _Session, handle: int, type_name: str) -> None:
        """Deliver the EOS event of a stream whose handle was dropped (or whose session ended).

        The SDK's AudioStream/VideoStream.aclose() disposes the stream's handle, then waits for the
        stream's EOS event, which the library sends after the drop. The broker routes events of a
        dropped handle to its former owner for a few seconds only, so this client delivers it,
        after every event the broker sent before the drop; what arrives later about the stream
        (frames still in flight, the real EOS) is not delivered (see take_event).
        """
        if handle in session.eos_delivered:
            return
        if len(session.eos_delivered) > 4096:
            session.eos_delivered.clear()
        session.eos_delivered.add(handle)
        event = self.event_type()
        body = getattr(event, STREAM_EOS[type_name])
        body.stream_handle = handle
        body.eos.SetInParent()
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001
            logger.exception("livekit-ffi-broker: could not deliver the EOS of stream %d", handle)

    # Handles ------------------------------------------------------------------------------------

    def drop_handle(self, handle: int) -> bool:
        """The SDK disposed ``handle``. Memory handles only free their local copy (the broker has
        dropped them already); handles of the current session go to the broker as DropHandles
        (fire-and-forget); any other handle (of a parent process before fork, or of a lost
        session) is not this session's to drop and is ignored."""
        if self.memory.release(handle):
            return True
        self.capture_windows.forget(handle)
        self.pipelining.forget(handle)
        session = self._session
        if session is None or session.pid != os.getpid() or session.state not in ("open", "resuming"):
            return True
        with session.lock:
            type_name = session.owned.pop(handle, None)
        if type_name is None:
            return True
        if type_name in STREAM_EOS:
            session.start_drop(
                next(self._ids), handle, lambda _error: self.deliver_eos(session, handle, type_name)
            )
            return True
        session.send(_drop_message(handle))
        return True


def broker_info(address: Optional[str] = None, timeout: float = 10.0) -> Any:
    """The broker's Info (versions, sessions, owned handles) as a livekit.ffi_broker.v1.InfoResponse.

    Uses a channel of its own, closed before returning.
    """
    import grpc

    from ._address import resolve_address

    pb = _pb()
    addr = resolve_address(address)
    channel = grpc.insecure_channel(grpc_target(addr), options=CHANNEL_OPTIONS)
    try:
        info = channel.unary_unary(
            INFO_METHOD,
            request_serializer=pb.InfoRequest.SerializeToString,
            response_deserializer=pb.InfoResponse.FromString,
        )
        try:
            return info(pb.InfoRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise BrokerUnavailable(f"Info from the broker at {addr} failed: {_grpc_error_text(err)}") from None
    finally:
        channel.close()
