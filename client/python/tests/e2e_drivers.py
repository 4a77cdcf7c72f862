"""Runs a driver of tests/e2e (its own process, with the e2e virtualenv's python) from a pytest,
after checking what the end-to-end tests need: the e2e virtualenv, network namespaces and the
livekit-server binary. A missing one skips with the reason; with LKB_E2E_REQUIRE=1 (set by
.ci/run) it fails instead."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, HERE, livekit_server_binary, unavailable

sys.path.insert(0, str(HERE / "e2e"))

from harness import remove_namespace  # noqa: E402

E2E_PYTHON = REPO / "build" / "pyvenv-e2e" / "bin" / "python"


def require_e2e() -> None:
    if not E2E_PYTHON.exists():
        unavailable(f"{E2E_PYTHON} is missing: scripts/test-python.sh creates it (livekit-agents and livekit-api)")
    livekit_server_binary()


def run_driver(script: str, *args: str, timeout: float) -> dict:
    """Runs tests/e2e/<script> with `args`; its last stdout line starting with {"broker" is its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GRPC_"))}
    proc = subprocess.Popen([str(E2E_PYTHON), str(HERE / "e2e" / script), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{script} did not finish\n{out[-4000:]}\n{err[-4000:]}")
    finally:
        # The driver tears its namespace down itself; this covers a driver that was killed.
        remove_namespace(proc.pid)
    lines = [line for line in out.splitlines() if line.startswith('{"broker"')]
    assert proc.returncode == 0 and lines, f"{script} exited {proc.returncode}\n{out[-4000:]}\n{err[-6000:]}"
    return json.loads(lines[-1])
