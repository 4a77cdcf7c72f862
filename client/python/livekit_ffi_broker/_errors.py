"""The exceptions the broker client raises (no dependencies, so importing them is free)."""
from __future__ import annotations

# livekit.ffi_broker.v1.Error.Code
CODE_UNSPECIFIED = 0
INVALID_REQUEST = 1
PERMISSION_DENIED = 2
FFI_ERROR = 3
RESOURCE_EXHAUSTED = 4
UNAVAILABLE = 5

_CODE_NAMES = {
    CODE_UNSPECIFIED: "CODE_UNSPECIFIED",
    INVALID_REQUEST: "INVALID_REQUEST",
    PERMISSION_DENIED: "PERMISSION_DENIED",
    FFI_ERROR: "FFI_ERROR",
    RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    UNAVAILABLE: "UNAVAILABLE",
}


def code_name(code: int) -> str:
    """The contract's name of an Error.Code, e.g. 'PERMISSION_DENIED'; 'CODE_<n>' for unknown ones."""
    return _CODE_NAMES.get(code, f"CODE_{code}")


class BrokerError(Exception):
    """A request the broker refused (a contract Error in its Response), or a failed session.

    ``code`` is the contract's ``Error.Code`` number, ``code_name`` its name and ``detail`` the text
    the broker (or this client) gave; ``str(err)`` is ``"<CODE_NAME>: <detail>"``.
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = int(code)
        self.code_name = code_name(self.code)
        self.detail = message
        super().__init__(f"{self.code_name}: {message}")

    def __reduce__(self):  # picklable (multiprocessing sends exceptions between processes)
        return (self.__class__, (self.code, self.detail))


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached, or the session with it was lost (code UNAVAILABLE).

    Every request waiting for an answer when the session is lost raises it, and so does the first
    request made after that; later requests open a new session. Handles of the lost session are
    gone (the broker dropped them), so objects created before the loss cannot be used again.
    """

    def __init__(self, message: str, code: int = UNAVAILABLE) -> None:
        super().__init__(code, message)

    def __reduce__(self):
        return (self.__class__, (self.detail, self.code))


class FfiRequestError(BrokerError, AssertionError):
    """liblivekit_ffi refused the request (code FFI_ERROR: the library returned no response).

    Without a broker the SDK meets this case in ``FfiClient.request`` as
    ``assert handle != INVALID_HANDLE``, i.e. an AssertionError; this class is an AssertionError
    too, so code written against the SDK sees the same exception type, with the broker's reason.
    """

    def __init__(self, message: str, code: int = FFI_ERROR) -> None:
        super().__init__(code, message)

    def __reduce__(self):
        return (self.__class__, (self.detail, self.code))


def from_contract(code: int, message: str) -> BrokerError:
    """The exception for a contract Error carried in a Response."""
    text = message or code_name(code)
    if code == FFI_ERROR:
        return FfiRequestError(text)
    if code == UNAVAILABLE:
        return BrokerUnavailable(text)
    return BrokerError(code, text)
