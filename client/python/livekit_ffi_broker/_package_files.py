"""Describe the package files a request names by path, driven by the shared table
(package_file_fields.json): an audio filter plugin, its dependencies, the model paths in
``audio_filter_options``. The broker does not share this process's file system: it opens its own
copy of the file, found by distribution, version and the file's path inside it, which this module
finds with importlib.metadata.
"""
from __future__ import annotations

import functools
import json
import os
from importlib import metadata, resources
from typing import Any, Iterator, Optional


@functools.lru_cache(maxsize=None)
def _table() -> dict[str, list[tuple[str, str]]]:
    """Request message full name -> [(field, holds)]."""
    text = resources.files("livekit_ffi_broker").joinpath("package_file_fields.json").read_text()
    table: dict[str, list[tuple[str, str]]] = {}
    for entry in json.loads(text)["fields"]:
        table.setdefault(entry["message"], []).append((entry["field"], entry["holds"]))
    return table


def _strings(document: Any) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, list):
        for item in document:
            yield from _strings(item)
    elif isinstance(document, dict):
        for item in document.values():
            yield from _strings(item)


def _named_paths(message: Any, fields: list[tuple[str, str]]) -> Iterator[str]:
    for field, holds in fields:
        value = getattr(message, field)
        if holds == "path":
            yield from ([value] if isinstance(value, str) else value)
        elif message.HasField(field):
            try:
                yield from _strings(json.loads(value))
            except ValueError:
                pass  # the broker refuses it, saying why


@functools.lru_cache(maxsize=256)
def owner(path: str) -> Optional[tuple[str, str, str]]:
    """(distribution, version, file inside it) of the installed distribution that holds ``path``."""
    if not os.path.isabs(path) or not os.path.isfile(path):
        return None
    real = os.path.realpath(path)
    for dist in metadata.distributions():
        base = os.path.realpath(str(dist.locate_file("")))
        if not real.startswith(base + os.sep):
            continue
        relative = os.path.relpath(real, base).replace(os.sep, "/")
        if any(str(f) == relative for f in dist.files or ()):
            return dist.metadata["Name"], dist.version, relative
    return None


def describe(request: Any) -> list[tuple[str, str, str, str]]:
    """(path, distribution, version, file) for each package file ``request`` names by path."""
    kind = request.WhichOneof("message")
    if kind is None:
        return []
    message = getattr(request, kind)
    fields = _table().get(message.DESCRIPTOR.full_name)
    if not fields:
        return []
    described = []
    for path in dict.fromkeys(_named_paths(message, fields)):
        found = owner(path)
        if found is not None:
            described.append((path, *found))
    return described
