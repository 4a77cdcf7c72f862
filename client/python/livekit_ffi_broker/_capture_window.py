"""A small window of audio captures per source, answered before the library accepts them.

``AudioSource.capture_frame()`` awaits the CaptureAudioFrameCallback of its capture, which the
library sends when the source's queue (``queue_size_ms``) has taken the frame. That wait is the
backpressure agents rely on to push TTS faster than real time; through the broker it also cost a
broker round trip per frame. Here the client answers a capture itself (a synthesized callback)
while fewer than WINDOW earlier answered captures of that source still wait for the library's
callback; otherwise the answer is held back until the callback of an older capture arrives. So a
producer stays at most WINDOW frames ahead of what the library accepted (pacing kept), and never
waits for a round trip while the window has room.

The library still gets one capture of a source at a time, the next when the previous one's
callback is back, as from the SDK in-process: it runs each capture as a task of its own, so two at
once could be taken out of order, and a capture arriving while another waits for room in the
queue fails (InvalidState "failed to capture frame", measured).

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


class _Capture:
    __slots__ = ("async_id", "request_id", "message", "session")

    def __init__(self, async_id: int, request_id: int, message: bytes, session: Any) -> None:
        self.async_id = async_id
        self.request_id = request_id
        self.message = message
        self.session = session  # the _Session its request is pending in


class _Source:
    __slots__ = ("answered", "held", "in_flight", "unsent", "error")

    def __init__(self) -> None:
        self.answered: set[int] = set()  # answered early, the library's callback not yet here
        self.held: deque[int] = deque()  # answer held back: the window was full
        self.in_flight: Optional[int] = None  # the capture the library has
        self.unsent: deque[_Capture] = deque()  # waiting for the one in flight
        self.error = ""  # of an answered capture, for the next answer

    def idle(self) -> bool:
        """Nothing left to track (an error to hand on is kept until the next capture or forget)."""
        return not self.answered and not self.held and self.in_flight is None and not self.unsent and not self.error


class CaptureWindows:
    """The windows of every source. ``answer(async_id, error)`` delivers a callback to the SDK."""

    def __init__(self, answer: Callable[[int, str], None]) -> None:
        self._answer = answer
        self._sources: dict[int, _Source] = {}
        self._source_of: dict[int, int] = {}  # async id -> source handle
        self._lock = threading.Lock()

    def capture(self, source_handle: int, async_id: int, request_id: int, message: bytes, session: Any) -> None:
        """A capture the SDK made (its request pending in ``session``, encoded as ``message``):
        sent now if its source has none in flight, and answered now while the window has room."""
        capture = _Capture(async_id, request_id, message, session)
        with self._lock:
            source = self._sources.get(source_handle)
            if source is None:
                source = self._sources[source_handle] = _Source()
            self._source_of[async_id] = source_handle
            if source.in_flight is None:
                source.in_flight = async_id
                send: Optional[_Capture] = capture
            else:
                source.unsent.append(capture)
                send = None
            if len(source.answered) >= WINDOW:
                source.held.append(async_id)
                error = None
            else:
                source.answered.add(async_id)
                error, source.error = source.error, ""
        if send is not None:
            send.session.send(send.message)
        if error is not None:
            self._answer(async_id, error)

    def settled(self, async_id: int, error: str) -> bool:
        """The library's callback of a capture (or its refusal, or the session's end) arrived.
        True if the client answered that capture already: then it is not delivered again."""
        with self._lock:
            source_handle = self._source_of.pop(async_id, None)
            if source_handle is None:
                return False
            source = self._sources[source_handle]
            send = None
            if source.in_flight == async_id:
                source.in_flight = None
                if source.unsent:
                    send = source.unsent.popleft()
                    source.in_flight = send.async_id
            else:  # never sent: its session ended first
                source.unsent = deque(c for c in source.unsent if c.async_id != async_id)
            early = async_id in source.answered
            if early:
                source.answered.discard(async_id)
                if error and not source.error:
                    source.error = error
            else:
                source.held.remove(async_id)
            released = self._release(source)
            if source.idle():
                del self._sources[source_handle]
        if send is not None:
            send.session.send(send.message)
        if early and error:
            logger.error("livekit-ffi-broker: an audio capture of source %d failed after it was answered: %s", source_handle, error)
        for held_id, held_error in released:
            self._answer(held_id, held_error)
        return early

    def forget(self, source_handle: int) -> None:
        """The source was disposed: what it has not sent is dropped (as the library drops the
        queue of a disposed source), and what it holds back is answered, so no capture_frame waits."""
        with self._lock:
            source = self._sources.pop(source_handle, None)
            if source is None:
                return
            for async_id in (*source.answered, *source.held, *(c.async_id for c in source.unsent)):
                self._source_of.pop(async_id, None)
            if source.in_flight is not None:
                self._source_of.pop(source.in_flight, None)
            held, unsent = list(source.held), list(source.unsent)
        for capture in unsent:
            capture.session.forget(capture.request_id)
        for async_id in held:
            self._answer(async_id, "")

    @staticmethod
    def _release(source: _Source) -> list[tuple[int, str]]:
        released = []
        while source.held and len(source.answered) < WINDOW:
            async_id = source.held.popleft()
            source.answered.add(async_id)
            released.append((async_id, source.error))
            source.error = ""
        return released
