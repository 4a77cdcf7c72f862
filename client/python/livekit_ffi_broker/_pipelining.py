"""Requests the client answers itself and sends without waiting for the broker.

Their answer is nothing the SDK needs before it goes on, read from the SDK's own schema (so it
holds for every release):

- **by callback**: the request has ``request_async_id`` and its response is only ``async_id``;
  the outcome comes as an FfiEvent callback of the same name holding only ``async_id`` and an
  ``error`` string (CaptureAudioFrame, PublishData, SetLocalMetadata, PublishTranscription,
  SendStreamChunk, UnpublishTrack, ...; not Connect or PublishTrack, whose callbacks carry a
  result). The client chooses the
  async id and answers at once; a refusal by the broker, or a session lost before the answer,
  comes to the SDK as that callback with the error, which the SDK raises where it awaits it.
- **without an answer**: the response has no field (CaptureVideoFrame, ClearAudioBuffer,
  SetSubscribed, ReadyForRoomEvent, ...). The client answers with the empty response; a refusal cannot
  be raised from the call that is gone, so it is logged when it arrives and raised from the next
  such request naming the same handle (after that one is sent): the SDK sees it where it would
  have, one call late.

The broker handles a session's requests in order, so a request sent after a pipelined one sees its
effect, exactly as if the SDK had waited.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional

logger = logging.getLogger("livekit_ffi_broker")

_STRING = 9  # FieldDescriptor.TYPE_STRING


class Pipelining:
    """Per request kind, whether it is pipelined: "callback", "empty" or None (the SDK waits)."""

    def __init__(self, request_type: Any, response_type: Any, event_type: Any) -> None:
        self._request_fields = request_type.DESCRIPTOR.fields_by_name
        self._response_fields = response_type.DESCRIPTOR.fields_by_name
        self._event_fields = event_type.DESCRIPTOR.fields_by_name
        self._modes: dict[str, Optional[str]] = {}
        # handle -> the refusal of a request "without an answer" naming it, not yet raised
        self._deferred: dict[int, BaseException] = {}
        self._lock = threading.Lock()

    def mode(self, kind: str, body: Any) -> Optional[str]:
        if kind not in self._modes:
            self._modes[kind] = self._mode_of(kind)
        mode = self._modes[kind]
        if mode == "callback" and body.HasField("request_async_id"):
            return None  # the SDK chose the id itself: it expects the library's own answer
        return mode

    def _mode_of(self, kind: str) -> Optional[str]:
        response = self._response_fields.get(kind)
        if response is None or response.message_type is None:
            return None
        answer = [f.name for f in response.message_type.fields]
        if not answer:
            return "empty"
        request = self._request_fields[kind].message_type
        event = self._event_fields.get(kind)
        if answer != ["async_id"] or "request_async_id" not in request.fields_by_name or event is None or event.message_type is None:
            return None
        # Only callbacks that carry nothing but their outcome: a synthesized one (a refusal) then
        # stands in completely, and the broker, which re-encodes a callback to give it back the
        # client's async id, never re-encodes a result an older library filled in differently
        # (measured: the broker on livekit 1.1.5's own library died re-encoding a ConnectCallback
        # whose ParticipantInfo lacked client_protocol, required in its 0.12.75 schema).
        callback = event.message_type.fields_by_name
        error = callback.get("error")
        if set(callback) == {"async_id", "error"} and error.type == _STRING:
            return "callback"
        return None

    # Refusals of requests without an answer ------------------------------------------------

    def refused(self, handle: Optional[int], kind: str, error: BaseException) -> None:
        logger.error("livekit-ffi-broker: %s (sent without waiting) was refused: %s", kind, error)
        if handle is not None:
            with self._lock:
                self._deferred.setdefault(handle, error)

    def raise_deferred(self, handle: Optional[int]) -> None:
        """Raise the refusal of an earlier request naming ``handle``, if one came."""
        if handle is None or not self._deferred:
            return
        with self._lock:
            deferred = self._deferred.pop(handle, None)
        if deferred is not None:
            raise deferred

    def forget(self, handle: int) -> None:
        with self._lock:
            self._deferred.pop(handle, None)
