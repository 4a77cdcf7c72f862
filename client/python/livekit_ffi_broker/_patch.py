"""Make the unchanged livekit SDK run its FFI traffic through the broker.

``livekit.rtc._ffi_client`` is patched right after it is imported (a sys.meta_path finder wraps its
loader), or at once if it already was:

- ``FfiClient.instance`` returns one broker-backed client per process id (a subclass of the SDK's
  FfiClient whose __init__ loads nothing), created on first use; a forked child gets its own;
- ``get_ffi_lib`` refuses to load liblivekit_ffi, so nothing can load it by accident;
- an SDK that loads the library at import (livekit before 1.1.0) gets a stand-in instead, whose
  calls (FfiHandle.dispose's drop) go to the broker client.

The broker-backed client keeps the SDK's contract: ``.queue`` is the SDK's own FfiQueue,
``.request(req)`` is synchronous, ``._pid`` is the creating process, and
``._ffi_lib.livekit_ffi_drop_handle`` is what FfiHandle.dispose calls.
"""
from __future__ import annotations

import atexit
import importlib.abc
import logging
import os
import sys
import threading
from typing import Any, Optional

logger = logging.getLogger("livekit_ffi_broker")

TARGET = "livekit.rtc._ffi_client"
_PATCHED = "_livekit_ffi_broker_patched"

_state_lock = threading.Lock()
_address: Optional[str] = None
_finder: Optional["_SdkFinder"] = None
# Objects of a parent process, kept referenced in a forked child so that no destructor (gRPC
# channel, call) ever runs on them there.
_inherited: list[Any] = []


def _reset_after_fork() -> None:
    global _state_lock, _instance_lock
    _state_lock = threading.Lock()
    _instance_lock = threading.Lock()


_instance_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _PatchingLoader(importlib.abc.Loader):
    """Runs the SDK module's own loader, then patches the module."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with _no_native_load(module):
            self._loader.exec_module(module)
        patch_module(module)


class _ForwardedCall:
    """One C function of the library, forwarded to the process's broker client; takes the
    argtypes/restype the SDK assigns and ignores them."""

    def __init__(self, module: Any, name: str) -> None:
        self._module = module
        self._name = name

    def __call__(self, *args: Any) -> Any:
        return getattr(self._module.FfiClient.instance._ffi_lib, self._name)(*args)


class _ModuleLib:
    """Stands in for the library an SDK loads when its module is imported (livekit before 1.1.0:
    a module-level ``ffi_lib = get_ffi_lib()`` that FfiHandle.dispose calls), so that its handle
    drops reach the broker and liblivekit_ffi is never mapped."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("livekit_ffi_"):
            raise AttributeError(name)
        call = _ForwardedCall(self._module, name)
        setattr(self, name, call)
        return call


class _no_native_load:
    """While the SDK module runs its top level, ctypes.CDLL of liblivekit_ffi gives a _ModuleLib."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __enter__(self) -> None:
        import ctypes

        self._cdll = ctypes.CDLL
        real, module = self._cdll, self._module

        def cdll(name: Any, *args: Any, **kwargs: Any) -> Any:
            if name is not None and "livekit_ffi" in os.path.basename(str(name)):
                return _ModuleLib(module)
            return real(name, *args, **kwargs)

        ctypes.CDLL = cdll  # type: ignore[assignment, misc]

    def __exit__(self, *_exc: Any) -> None:
        import ctypes

        ctypes.CDLL = self._cdll  # type: ignore[misc]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _SdkFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of livekit.rtc._ffi_client that the others find."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _SdkFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def install(address: Optional[str] = None) -> None:
    """Route the SDK through the broker at ``address`` (None: $LIVEKIT_FFI_BROKER or the default)."""
    global _address, _finder
    from ._address import grpc_target, resolve_address

    resolved = resolve_address(address)
    grpc_target(resolved)  # ValueError on a bad address, before anything is patched
    with _state_lock:
        _address = resolved
        if _finder is None:
            _finder = _SdkFinder()
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(TARGET)
    if module is not None:
        patch_module(module)


def current_address() -> Optional[str]:
    return _address


def _refuse_native(*_args: Any, **_kwargs: Any) -> Any:
    raise ImportError(
        "livekit_ffi_broker is active: this process reaches liblivekit_ffi through the broker and "
        "must not load it (unset LIVEKIT_FFI_BROKER to use the native library)"
    )


class _BrokerLib:
    """Stands in for the ctypes library object the SDK keeps as FfiClient._ffi_lib."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def livekit_ffi_drop_handle(self, handle: Any) -> bool:
        value = getattr(handle, "value", handle)
        return self._client._drop_handle(int(value))

    def livekit_ffi_dispose(self) -> None:
        self._client._close()

    def livekit_ffi_initialize(self, *_args: Any) -> None:
        pass

    def livekit_ffi_request(self, *_args: Any) -> int:
        raise RuntimeError("through the broker, requests go through FfiClient.instance.request(req)")


def patch_module(module: Any) -> None:
    """Patch an imported livekit.rtc._ffi_client (idempotent)."""
    if getattr(module, _PATCHED, False):
        return
    sdk_client = module.FfiClient
    existing = sdk_client.__dict__.get("_instance")
    if existing is not None and not getattr(existing, "_through_broker", False):
        raise RuntimeError(
            "livekit_ffi_broker.activate(): this process already loaded liblivekit_ffi through the "
            "livekit SDK; activate the broker before the first livekit.rtc call (or set "
            "LIVEKIT_FFI_BROKER before the interpreter starts)"
        )
    module_lib = module.__dict__.get("ffi_lib")
    if module_lib is not None and not isinstance(module_lib, _ModuleLib):
        raise RuntimeError(
            "livekit_ffi_broker.activate(): this livekit release (before 1.1.0) loaded liblivekit_ffi "
            "when livekit.rtc was imported; activate the broker before importing livekit.rtc (or set "
            "LIVEKIT_FFI_BROKER before the interpreter starts)"
        )
    broker_client = _make_client_class(module)
    classproperty = type(sdk_client.__dict__["instance"])

    def instance(cls: Any) -> Any:
        inst = sdk_client.__dict__.get("_instance")
        pid = os.getpid()
        if inst is not None and inst._pid == pid:
            return inst
        with _instance_lock:
            inst = sdk_client.__dict__.get("_instance")
            if inst is not None and inst._pid == pid:
                return inst
            if inst is not None:
                _inherited.append(inst)  # the parent's, after fork: never touched here
            inst = broker_client(_address)
            sdk_client._instance = inst
            return inst

    sdk_client.instance = classproperty(instance)
    module.get_ffi_lib = _refuse_native
    module.BrokerFfiClient = broker_client
    setattr(module, _PATCHED, True)
    logger.debug("livekit.rtc routed through the broker at %s", _address)


def _make_client_class(module: Any) -> type:
    sdk_client = module.FfiClient
    proto_ffi = module.proto_ffi
    ffi_queue = module.FfiQueue
    sdk_logger = getattr(module, "logger", logging.getLogger("livekit"))
    to_python_level = getattr(module, "to_python_level", None)
    version = getattr(module, "__version__", "")

    class BrokerFfiClient(sdk_client):  # type: ignore[misc, valid-type]
        """FfiClient whose requests and events go through the broker; loads no native code."""

        _through_broker = True

        def __init__(self, address: Optional[str] = None) -> None:  # noqa: D107 - no super(): it loads the library
            from ._address import resolve_address
            from ._session import Connection

            sdk_client._ffi_disposed = False
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._queue = ffi_queue[proto_ffi.FfiEvent]()
            self._ffi_lib = _BrokerLib(self)
            self._address = resolve_address(address)
            self._connection = Connection(
                self._address,
                proto_ffi.FfiRequest,
                proto_ffi.FfiResponse,
                proto_ffi.FfiEvent,
                self._on_event,
                client_name=f"python-livekit/{version}" if version else "python-livekit",
                client_version=_package_version(),
                # What the SDK itself would pass to livekit_ffi_initialize: the broker bridges
                # what this release does differently from the broker's library.
                sdk="python",
                sdk_version=version,
            )
            atexit.register(self._dispose)
            # multiprocessing children (fork, forkserver) leave through os._exit(), which skips
            # atexit; multiprocessing's own exit hooks still run, so end the session there too: the
            # broker then releases the handles at once instead of noticing a broken stream.
            mp_util = sys.modules.get("multiprocessing.util")
            if mp_util is not None:
                mp_util.Finalize(None, self._dispose, exitpriority=-10)

        @property
        def address(self) -> str:
            return self._address

        @property
        def queue(self) -> Any:
            return self._queue

        def request(self, req: Any) -> Any:
            if self._pid != os.getpid():
                # Not reachable through FfiClient.instance (one client per process); only a
                # reference kept across fork() gets here.
                return sdk_client.instance.request(req)
            return self._connection.request(req)

        def _on_event(self, event: Any) -> None:
            which = event.WhichOneof("message")
            if which == "logs":  # the broker logs these itself; forwarded only if one comes
                if to_python_level is not None:
                    for record in event.logs.records:
                        level = to_python_level(record.level)
                        if level is not None:
                            sdk_logger.log(level, "%s:%s:%s - %s", record.target, record.line, record.module_path, record.message)
                return
            if which == "panic":
                logger.error("liblivekit_ffi panicked in the broker: %s", event.panic.message)
                return
            self._queue.put(event)

        def _drop_handle(self, handle: int) -> bool:
            if self._pid != os.getpid():
                return True
            return self._connection.drop_handle(handle)

        def _close(self) -> None:
            if self._pid == os.getpid():
                self._connection.close()

        def _dispose(self) -> None:
            if self._pid != os.getpid() or sdk_client._ffi_disposed:
                return
            sdk_client._ffi_disposed = True
            for handle in list(getattr(module, "_live_handles", ())):
                mark = getattr(handle, "mark_consumed", None)
                if mark is not None:
                    mark()
                else:
                    handle._disposed = True
            # Ending the session makes the broker drop every handle this process owned.
            self._connection.close()

    BrokerFfiClient.__module__ = __name__
    return BrokerFfiClient


def _package_version() -> str:
    try:
        from . import __version__

        return __version__
    except Exception:  # noqa: BLE001
        return ""
