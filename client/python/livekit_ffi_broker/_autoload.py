"""Imported by livekit_ffi_broker.pth at interpreter start-up when LIVEKIT_FFI_BROKER is set.

Installs the import hook only (no gRPC, no livekit import) and makes gRPC fork-safe before
anything imports it. Never raises: a broken hook must not break the interpreter.
"""
import os


def _autoload() -> None:
    address = os.environ.get("LIVEKIT_FFI_BROKER", "").strip()
    if not address:
        return
    try:
        # gRPC reads this when it is imported; a process that used the broker and then forks needs it
        # (without it, the child's new channel can hang). An explicit setting is kept.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "true")
        from ._patch import install

        install(address)
    except Exception as err:  # noqa: BLE001
        import sys

        print(f"livekit_ffi_broker: not activated ({err!r})", file=sys.stderr)


_autoload()
