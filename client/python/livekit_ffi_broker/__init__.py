"""Run the unchanged livekit Python SDK against livekit-ffi-broker instead of liblivekit_ffi.

With ``LIVEKIT_FFI_BROKER`` set (``unix:///path.sock`` or ``host:port``) when Python starts, the
``livekit_ffi_broker.pth`` file installed with this package routes ``livekit.rtc`` through the
broker automatically. Without it (or when .pth files are not processed, e.g. ``python -S``)::

    import livekit_ffi_broker
    livekit_ffi_broker.activate()          # or activate("unix:///run/livekit-ffi-broker.sock")

before the first ``livekit.rtc`` call. Importing this package is cheap: gRPC is imported on the
first request.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ._address import ADDRESS_ENV, DEFAULT_ADDRESS
from ._errors import BrokerError, BrokerUnavailable, FfiRequestError

__version__ = "0.1.0"

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_ADDRESS",
    "BrokerError",
    "BrokerUnavailable",
    "FfiRequestError",
    "activate",
    "is_active",
    "broker_info",
    "__version__",
]


def activate(address: Optional[str] = None) -> None:
    """Route the livekit SDK of this process (and of processes it forks) through the broker.

    ``address``: ``unix:///path.sock``, ``unix:relative.sock``, ``host:port``, ``:port`` or
    ``port``; None means ``$LIVEKIT_FFI_BROKER``, else ``unix:///tmp/livekit-ffi-broker.sock``.
    Call it before the first ``livekit.rtc`` request; calling it again only changes the address
    for clients created afterwards. Raises RuntimeError if this process already loaded
    liblivekit_ffi, ValueError on a malformed address.

    Processes started with spawn or forkserver are new interpreters: they are routed by the .pth
    file when ``LIVEKIT_FFI_BROKER`` is in their environment, else they must call activate()
    themselves. Set ``GRPC_ENABLE_FORK_SUPPORT=true`` before gRPC is imported if this process
    forks after using the broker (the .pth file does that for you).
    """
    import sys

    if "grpc" in sys.modules and not os.environ.get("GRPC_ENABLE_FORK_SUPPORT"):
        import logging

        logging.getLogger("livekit_ffi_broker").info(
            "grpc was imported before activate() without GRPC_ENABLE_FORK_SUPPORT: forking this "
            "process after it used the broker may leave the child's gRPC unusable"
        )
    else:
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "true")
    from ._patch import install

    install(address)


def is_active() -> bool:
    """True when livekit.rtc of this process is (or will be, once imported) routed through the broker."""
    from ._patch import current_address

    return current_address() is not None


def broker_info(address: Optional[str] = None, timeout: float = 10.0) -> Any:
    """The broker's Info RPC (versions, sessions, owned handles): a livekit.ffi_broker.v1.InfoResponse."""
    from ._session import broker_info as _info

    return _info(address, timeout)
