"""Broker addresses, as the broker's --listen and the TypeScript client read them.

``unix:///abs/path.sock``, ``unix:relative.sock``, ``HOST:PORT``, ``:PORT`` or ``PORT`` (TCP on
127.0.0.1).
"""
from __future__ import annotations

import os
import re

ADDRESS_ENV = "LIVEKIT_FFI_BROKER"
DEFAULT_ADDRESS = "unix:///tmp/livekit-ffi-broker.sock"

_TCP = re.compile(r"^(?:(\[[0-9a-fA-F:]+\]|[^:\s]*):)?(\d{1,5})$")


def resolve_address(address: str | None = None) -> str:
    """The address given, else $LIVEKIT_FFI_BROKER, else the broker's default socket."""
    if address:
        return address.strip()
    from_env = os.environ.get(ADDRESS_ENV, "").strip()
    return from_env or DEFAULT_ADDRESS


def grpc_target(address: str) -> str:
    """The gRPC channel target for a broker address; ValueError when it is not one."""
    text = address.strip()
    if text.startswith("unix:"):
        path = text[len("unix://") :] if text.startswith("unix://") else text[len("unix:") :]
        if not path:
            raise ValueError(f'address "{address}": a unix address needs a path, e.g. unix:///tmp/broker.sock')
        return f"unix://{path}" if path.startswith("/") else f"unix:{path}"
    match = _TCP.match(text)
    if match is None:
        raise ValueError(f'address "{address}": expected unix:///PATH, HOST:PORT, :PORT or PORT')
    host = match.group(1) or "127.0.0.1"
    port = int(match.group(2))
    if port > 65535:
        raise ValueError(f'address "{address}": port must be 0-65535')
    return f"{host}:{port}"
