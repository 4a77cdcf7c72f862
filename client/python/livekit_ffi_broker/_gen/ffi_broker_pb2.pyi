from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientMessage(_message.Message):
    __slots__ = ("hello", "request", "drop_handles", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DROP_HANDLES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    request: Request
    drop_handles: DropHandles
    batch: ClientBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., request: _Optional[_Union[Request, _Mapping]] = ..., drop_handles: _Optional[_Union[DropHandles, _Mapping]] = ..., batch: _Optional[_Union[ClientBatch, _Mapping]] = ...) -> None: ...

class ClientBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ClientMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ClientMessage, _Mapping]]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "response", "events", "notice", "batch")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    response: Response
    events: EventBatch
    notice: Notice
    batch: ServerBatch
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., response: _Optional[_Union[Response, _Mapping]] = ..., events: _Optional[_Union[EventBatch, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ..., batch: _Optional[_Union[ServerBatch, _Mapping]] = ...) -> None: ...

class ServerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ServerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ServerMessage, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("client_name", "client_version", "pid", "resume_token", "auth_token", "last_seq", "sdk", "sdk_version", "accepts_batches", "lane")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    client_version: str
    pid: int
    resume_token: str
    auth_token: str
    last_seq: int
    sdk: str
    sdk_version: str
    accepts_batches: bool
    lane: LaneRequest
    def __init__(self, client_name: _Optional[str] = ..., client_version: _Optional[str] = ..., pid: _Optional[int] = ..., resume_token: _Optional[str] = ..., auth_token: _Optional[str] = ..., last_seq: _Optional[int] = ..., sdk: _Optional[str] = ..., sdk_version: _Optional[str] = ..., accepts_batches: _Optional[bool] = ..., lane: _Optional[_Union[LaneRequest, _Mapping]] = ...) -> None: ...

class LaneRequest(_message.Message):
    __slots__ = ("to_broker_bytes", "to_client_bytes")
    TO_BROKER_BYTES_FIELD_NUMBER: _ClassVar[int]
    TO_CLIENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    to_broker_bytes: int
    to_client_bytes: int
    def __init__(self, to_broker_bytes: _Optional[int] = ..., to_client_bytes: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "resume_token", "ffi_version", "broker_version", "resumed", "bridges", "lane")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FFI_VERSION_FIELD_NUMBER: _ClassVar[int]
    BROKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    BRIDGES_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resume_token: str
    ffi_version: str
    broker_version: str
    resumed: bool
    bridges: _containers.RepeatedScalarFieldContainer[str]
    lane: MediaLane
    def __init__(self, session_id: _Optional[str] = ..., resume_token: _Optional[str] = ..., ffi_version: _Optional[str] = ..., broker_version: _Optional[str] = ..., resumed: _Optional[bool] = ..., bridges: _Optional[_Iterable[str]] = ..., lane: _Optional[_Union[MediaLane, _Mapping]] = ...) -> None: ...

class MediaLane(_message.Message):
    __slots__ = ("to_broker", "to_client", "unavailable")
    TO_BROKER_FIELD_NUMBER: _ClassVar[int]
    TO_CLIENT_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    to_broker: LaneRegion
    to_client: LaneRegion
    unavailable: str
    def __init__(self, to_broker: _Optional[_Union[LaneRegion, _Mapping]] = ..., to_client: _Optional[_Union[LaneRegion, _Mapping]] = ..., unavailable: _Optional[str] = ...) -> None: ...

class LaneRegion(_message.Message):
    __slots__ = ("id", "path", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: int
    path: str
    size: int
    def __init__(self, id: _Optional[int] = ..., path: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("request_id", "ffi_request", "buffers", "package_files")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FFI_REQUEST_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FILES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    ffi_request: bytes
    buffers: _containers.RepeatedCompositeFieldContainer[Buffer]
    package_files: _containers.RepeatedCompositeFieldContainer[PackageFile]
    def __init__(self, request_id: _Optional[int] = ..., ffi_request: _Optional[bytes] = ..., buffers: _Optional[_Iterable[_Union[Buffer, _Mapping]]] = ..., package_files: _Optional[_Iterable[_Union[PackageFile, _Mapping]]] = ...) -> None: ...

class PackageFile(_message.Message):
    __slots__ = ("path", "distribution", "version", "file")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    path: str
    distribution: str
    version: str
    file: str
    def __init__(self, path: _Optional[str] = ..., distribution: _Optional[str] = ..., version: _Optional[str] = ..., file: _Optional[str] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("request_id", "ffi_response", "buffers", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FFI_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    ffi_response: bytes
    buffers: _containers.RepeatedCompositeFieldContainer[Buffer]
    error: Error
    def __init__(self, request_id: _Optional[int] = ..., ffi_response: _Optional[bytes] = ..., buffers: _Optional[_Iterable[_Union[Buffer, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "ffi_event", "buffers")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FFI_EVENT_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ffi_event: bytes
    buffers: _containers.RepeatedCompositeFieldContainer[Buffer]
    def __init__(self, seq: _Optional[int] = ..., ffi_event: _Optional[bytes] = ..., buffers: _Optional[_Iterable[_Union[Buffer, _Mapping]]] = ...) -> None: ...

class Buffer(_message.Message):
    __slots__ = ("ptr", "data", "lane")
    PTR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    ptr: int
    data: bytes
    lane: LaneRef
    def __init__(self, ptr: _Optional[int] = ..., data: _Optional[bytes] = ..., lane: _Optional[_Union[LaneRef, _Mapping]] = ...) -> None: ...

class LaneRef(_message.Message):
    __slots__ = ("region", "offset", "length", "release")
    REGION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    region: int
    offset: int
    length: int
    release: int
    def __init__(self, region: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., release: _Optional[int] = ...) -> None: ...

class DropHandles(_message.Message):
    __slots__ = ("handles", "request_id")
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[int]
    request_id: int
    def __init__(self, handles: _Optional[_Iterable[int]] = ..., request_id: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[Error.Code]
        INVALID_REQUEST: _ClassVar[Error.Code]
        PERMISSION_DENIED: _ClassVar[Error.Code]
        FFI_ERROR: _ClassVar[Error.Code]
        RESOURCE_EXHAUSTED: _ClassVar[Error.Code]
        UNAVAILABLE: _ClassVar[Error.Code]
    CODE_UNSPECIFIED: Error.Code
    INVALID_REQUEST: Error.Code
    PERMISSION_DENIED: Error.Code
    FFI_ERROR: Error.Code
    RESOURCE_EXHAUSTED: Error.Code
    UNAVAILABLE: Error.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: Error.Code
    message: str
    def __init__(self, code: _Optional[_Union[Error.Code, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("events_dropped", "ffi_panic", "shutting_down")
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    FFI_PANIC_FIELD_NUMBER: _ClassVar[int]
    SHUTTING_DOWN_FIELD_NUMBER: _ClassVar[int]
    events_dropped: EventsDropped
    ffi_panic: FfiPanic
    shutting_down: ShuttingDown
    def __init__(self, events_dropped: _Optional[_Union[EventsDropped, _Mapping]] = ..., ffi_panic: _Optional[_Union[FfiPanic, _Mapping]] = ..., shutting_down: _Optional[_Union[ShuttingDown, _Mapping]] = ...) -> None: ...

class EventsDropped(_message.Message):
    __slots__ = ("count", "first_seq", "reason")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    count: int
    first_seq: int
    reason: str
    def __init__(self, count: _Optional[int] = ..., first_seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class FfiPanic(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class ShuttingDown(_message.Message):
    __slots__ = ("grace_ms",)
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    grace_ms: int
    def __init__(self, grace_ms: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("broker_version", "ffi_version", "ffi_library", "uptime_s", "sessions", "owned_handles", "events_total")
    BROKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    FFI_VERSION_FIELD_NUMBER: _ClassVar[int]
    FFI_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    OWNED_HANDLES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    broker_version: str
    ffi_version: str
    ffi_library: str
    uptime_s: float
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    owned_handles: int
    events_total: int
    def __init__(self, broker_version: _Optional[str] = ..., ffi_version: _Optional[str] = ..., ffi_library: _Optional[str] = ..., uptime_s: _Optional[float] = ..., sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ..., owned_handles: _Optional[int] = ..., events_total: _Optional[int] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "client_name", "pid", "owned_handles", "queued_events", "dropped_events", "connected", "sdk", "sdk_version", "bridges")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    OWNED_HANDLES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    BRIDGES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    client_name: str
    pid: int
    owned_handles: int
    queued_events: int
    dropped_events: int
    connected: bool
    sdk: str
    sdk_version: str
    bridges: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., client_name: _Optional[str] = ..., pid: _Optional[int] = ..., owned_handles: _Optional[int] = ..., queued_events: _Optional[int] = ..., dropped_events: _Optional[int] = ..., connected: _Optional[bool] = ..., sdk: _Optional[str] = ..., sdk_version: _Optional[str] = ..., bridges: _Optional[_Iterable[str]] = ...) -> None: ...
