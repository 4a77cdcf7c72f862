"""A small window of audio captures per source, answered before the library accepts them.

``AudioSource.capture_frame()`` awaits the CaptureAudioFrameCallback of its capture, which the
library sends when the source's queue (``queue_size_ms``) has taken the frame. That wait is the
backpressure agents rely on to push TTS faster than real time; through the broker it also cost a
broker round trip per frame. Here the client answers a capture itself (a synthesized callback)
while fewer than WINDOW earlier answered captures of that source still wait for the library's
callback; otherwise the answer is held back until the callback of an older capture arrives. So a
producer stays at most WINDOW frames ahead of what the library accepted (pacing kept), and never
waits for a round trip while the window has room.

The library gets one capture of a source at a time, the next when the previous one's callback is
back, as from the SDK in-process: it runs each capture as a task of its own, so two at once could
be taken out of order, and one arriving while another waits for room fails (InvalidState "failed
to capture frame", measured). Captures that queued up meanwhile go out as one (their samples
joined), so a source is not held to one frame per round trip: the library's queue takes any
length up to its size (twice its size is its room), so they are joined only up to
``queue_size_ms`` of audio, and never for a source without a queue (which takes 10 ms frames only).

WINDOW = 4: at 10 ms frames that covers a round trip of up to 40 ms (on a loaded 2-core host a
round trip takes several ms, far more than an idle 0.5 ms), while adding at most 4 frames to the
audio a producer can queue beyond ``queue_size_ms``.

An answered capture's real callback is not delivered (its capture_frame has returned). If it
carries an error, that error is logged and becomes the error of the next answer of that source:
the next capture_frame() raises it, as the SDK raises a callback's error.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Optional

logger = logging.getLogger("livekit_ffi_broker")

WINDOW = 4


class Capture:
    """One capture_frame: the SDK's FfiRequest (its async id set) and its samples (a view of the
    SDK's memory while its request() runs, a copy once it waits)."""

    __slots__ = ("async_id", "request", "data")

    def __init__(self, async_id: int, request: Any, data: Any) -> None:
        self.async_id = async_id
        self.request = request
        self.data = data

    @property
    def buffer(self) -> Any:
        return self.request.capture_audio_frame.buffer

    def joinable(self, other: "Capture") -> bool:
        a, b = self.buffer, other.buffer
        return a.sample_rate == b.sample_rate and a.num_channels == b.num_channels


class _Source:
    __slots__ = ("queue_ms", "answered", "held", "in_flight", "unsent", "error")

    def __init__(self, queue_ms: int) -> None:
        self.queue_ms = queue_ms
        self.answered: set[int] = set()  # answered early, the library's callback not yet here
        self.held: deque[int] = deque()  # answer held back: the window was full
        self.in_flight: Optional[tuple[int, list[int]]] = None  # (its async id, the captures it holds)
        self.unsent: deque[Capture] = deque()  # waiting for the one in flight
        self.error = ""  # of an answered capture, for the next answer

    def idle(self) -> bool:
        """Nothing left to track (an error to hand on is kept until the next capture or forget)."""
        return not self.answered and not self.held and self.in_flight is None and not self.unsent and not self.error

    def next_group(self) -> list[Capture]:
        """The unsent captures that go out next as one: as many as join within the queue's size."""
        group = [self.unsent.popleft()]
        if self.queue_ms <= 0:
            return group
        room = group[0].buffer.sample_rate * self.queue_ms // 1000 - group[0].buffer.samples_per_channel
        while self.unsent and self.unsent[0].joinable(group[0]) and self.unsent[0].buffer.samples_per_channel <= room:
            room -= self.unsent[0].buffer.samples_per_channel
            group.append(self.unsent.popleft())
        return group


class CaptureWindows:
    """The windows of every source.

    ``answer(async_id, error)`` delivers a callback to the SDK; ``dispatch(source_handle, group,
    sent_id)`` sends a group of captures as one request whose callback will carry ``sent_id``
    (raising if it cannot be sent); ``new_id()`` gives the async id of a joined group."""

    def __init__(
        self,
        answer: Callable[[int, str], None],
        dispatch: Callable[[int, list[Capture], int], None],
        new_id: Callable[[], int],
    ) -> None:
        self._answer = answer
        self._dispatch = dispatch
        self._new_id = new_id
        self._sources: dict[int, _Source] = {}
        self._queue_ms: dict[int, int] = {}  # source handle -> its queue_size_ms
        self._source_of: dict[int, int] = {}  # async id sent -> source handle
        self._lock = threading.Lock()
        self.joined = 0  # captures sent joined to others (for tests and benchmarks)

    def new_source(self, source_handle: int, queue_ms: int) -> None:
        with self._lock:
            self._queue_ms[source_handle] = queue_ms

    def capture(self, source_handle: int, capture: Capture) -> None:
        """A capture the SDK made (inside its request() call): sent now if its source has none in
        flight, and answered now while the window has room."""
        with self._lock:
            source = self._sources.get(source_handle)
            if source is None:
                source = self._sources[source_handle] = _Source(self._queue_ms.get(source_handle, 0))
            if source.in_flight is None:
                send = self._in_flight(source_handle, source, [capture])
            else:
                send = None
                capture.data = bytes(capture.data)  # the SDK may reuse its buffer once request() returns
                source.unsent.append(capture)
            if len(source.answered) >= WINDOW:
                source.held.append(capture.async_id)
                error = None
            else:
                source.answered.add(capture.async_id)
                error, source.error = source.error, ""
        if send is not None:
            self._send(source_handle, *send)
        if error is not None:
            self._answer(capture.async_id, error)

    def settled(self, sent_id: int, error: str) -> bool:
        """The library's callback of a request this window sent (or its refusal, or the
        session's end) arrived. True if it was one: its captures are answered here, so the event
        itself is not delivered."""
        with self._lock:
            source_handle = self._source_of.pop(sent_id, None)
            if source_handle is None:
                return False
            source = self._sources[source_handle]
            answers, answered_early = [], False
            for async_id in source.in_flight[1] if source.in_flight else ():
                if async_id in source.answered:
                    source.answered.discard(async_id)
                    answered_early = True
                else:
                    source.held.remove(async_id)
                    answers.append((async_id, error))
            if error and answered_early and not source.error:
                source.error = error
            source.in_flight = None
            answers += self._release(source)
            send = self._in_flight(source_handle, source, source.next_group()) if source.unsent else None
            if send is None and source.idle():
                del self._sources[source_handle]
        if error and answered_early:
            logger.error("livekit-ffi-broker: an audio capture of source %d failed after it was answered: %s", source_handle, error)
        for async_id, answer_error in answers:
            self._answer(async_id, answer_error)
        if send is not None:
            self._send(source_handle, *send)
        return True

    def forget(self, source_handle: int) -> None:
        """The source was disposed: what it has not sent is dropped (as the library drops the
        queue of a disposed source), and what it holds back is answered, so no capture_frame waits."""
        with self._lock:
            self._queue_ms.pop(source_handle, None)
            source = self._sources.pop(source_handle, None)
            if source is None:
                return
            if source.in_flight is not None:
                self._source_of.pop(source.in_flight[0], None)
            held = list(source.held)
        for async_id in held:
            self._answer(async_id, "")

    def after_resume(self) -> None:
        """The session resumed on a new stream. A capture in flight at the break whose request
        was lost with it would hold its source for good; one the broker got is answered within
        its queue's length of audio (or comes in the events sent again). So what is still in
        flight after that, and 2 s more, is let go as if answered."""
        with self._lock:
            in_flight = {s.in_flight[0]: s.queue_ms for s in self._sources.values() if s.in_flight is not None}
        if not in_flight:
            return

        def expire() -> None:
            for sent_id in in_flight:
                with self._lock:
                    lost = sent_id in self._source_of
                if lost and self.settled(sent_id, ""):
                    logger.warning("livekit-ffi-broker: an audio capture sent before the stream broke got no answer; going on")

        timer = threading.Timer(max(in_flight.values()) / 1000 + 2.0, expire)
        timer.daemon = True
        timer.start()

    def _in_flight(self, source_handle: int, source: _Source, group: list[Capture]) -> tuple[list[Capture], int]:
        """Make ``group`` the source's capture in flight (under the lock, before it is sent: its
        callback may come before dispatch returns); returns what _send needs."""
        sent_id = group[0].async_id if len(group) == 1 else self._new_id()
        source.in_flight = (sent_id, [c.async_id for c in group])
        self._source_of[sent_id] = source_handle
        return group, sent_id

    def _send(self, source_handle: int, group: list[Capture], sent_id: int) -> None:
        if len(group) > 1:
            self.joined += len(group)
        try:
            self._dispatch(source_handle, group, sent_id)
        except Exception as err:  # noqa: BLE001 - no session to send it on: its captures fail with that
            self.settled(sent_id, str(err))

    @staticmethod
    def _release(source: _Source) -> list[tuple[int, str]]:
        released = []
        while source.held and len(source.answered) < WINDOW:
            async_id = source.held.popleft()
            source.answered.add(async_id)
            released.append((async_id, source.error))
            source.error = ""
        return released
