#!/usr/bin/env python3
"""Generate the Python stubs of the broker contract and copy the shared tables.

    python generate.py          write livekit_ffi_broker/_gen/ffi_broker_pb2.py(+.pyi),
                                livekit_ffi_broker/pointer_fields.json and package_file_fields.json
    python generate.py --check  exit 1 if those committed files differ from what would be written

Inputs: ../../proto/ffi_broker.proto, ../../proto/pointer_fields.json and
../../proto/package_file_fields.json (the repository's contract and the tables the broker reads). Needs grpcio-tools (its bundled protoc), pinned
in pyproject.toml's `test` extra so that every machine generates byte-identical files.

One post-processing step: protoc's Python output calls
google.protobuf.runtime_version.ValidateProtobufRuntimeVersion(), which refuses every protobuf
runtime older than the protoc that generated the file (7.35 for grpcio-tools 1.85). The module
only uses the descriptor-pool and builder APIs that protobuf has had since 4.21, and the livekit
SDK itself accepts protobuf >= 5, so the check is removed to keep that range working.
"""
from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTO_DIR = REPO / "proto"
PROTO_FILE = "ffi_broker.proto"
POINTER_TABLE = PROTO_DIR / "pointer_fields.json"
PACKAGE_FILE_TABLE = PROTO_DIR / "package_file_fields.json"
PACKAGE = HERE / "livekit_ffi_broker"
GEN_DIR = PACKAGE / "_gen"
OUTPUTS = ("ffi_broker_pb2.py", "ffi_broker_pb2.pyi")

_VERSION_CHECK = re.compile(
    r"from google\.protobuf import runtime_version as _runtime_version\n"
    r"|_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:[^\n]*\n)*?\)\n"
)


def _protoc(out_dir: Path) -> None:
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("generate.py needs grpcio-tools: pip install -e 'client/python[test]'")
    import importlib.resources

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        PROTO_FILE,
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {PROTO_DIR / PROTO_FILE}")


def _post_process(text: str) -> str:
    text, count = _VERSION_CHECK.subn("", text)
    if count not in (0, 2):
        sys.exit(f"unexpected protoc output: {count} parts of the runtime version check found")
    return text


def render() -> dict[str, str]:
    """Every generated file, relative to the package, and its content."""
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _protoc(Path(tmp))
        for name in OUTPUTS:
            text = (Path(tmp) / name).read_text()
            files[f"_gen/{name}"] = _post_process(text) if name.endswith(".py") else text
    files["pointer_fields.json"] = POINTER_TABLE.read_text()
    files["package_file_fields.json"] = PACKAGE_FILE_TABLE.read_text()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    args = parser.parse_args()
    files = render()
    stale = []
    for rel, content in files.items():
        path = PACKAGE / rel
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(rel)
            diff = difflib.unified_diff(
                (current or "").splitlines(keepends=True),
                content.splitlines(keepends=True),
                f"committed/{rel}",
                f"generated/{rel}",
                n=1,
            )
            sys.stderr.writelines(list(diff)[:40])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(
            f"stale generated files in {PACKAGE.relative_to(REPO)}: {', '.join(stale)}; "
            "run `python client/python/generate.py` and commit the result",
            file=sys.stderr,
        )
        return 1
    init = GEN_DIR / "__init__.py"
    if not args.check and not init.exists():
        init.write_text('"""Generated from proto/ffi_broker.proto by generate.py; do not edit."""\n')
    if args.check:
        print("generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
