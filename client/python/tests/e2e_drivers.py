"""Runs a driver of tests/e2e (its own process, with the python of an e2e virtualenv) from a
pytest, after checking what the end-to-end tests need: that virtualenv, network namespaces and the
livekit-server binary. A missing one skips with the reason; with LKB_E2E_REQUIRE=1 (set by
.ci/run) it fails instead."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, HERE, livekit_server_binary, unavailable

sys.path.insert(0, str(HERE / "e2e"))

from harness import remove_namespace  # noqa: E402


def e2e_python(pair: str) -> Path:
    """The python of the virtualenv of an e2e version pair (scripts/python-venvs.sh)."""
    return REPO / "build" / f"pyvenv-e2e-{pair}" / "bin" / "python"


# The drivers other than the agent's scenario need only livekit and livekit-api: the newest pair's.
E2E_PYTHON = e2e_python("newest")


def require_e2e(python: Path = E2E_PYTHON) -> None:
    if not python.exists():
        unavailable(f"{python} is missing: scripts/python-venvs.sh creates it (livekit-agents and livekit-api)")
    livekit_server_binary()


def run_driver(script: str, *args: str, timeout: float, python: Path = E2E_PYTHON) -> dict:
    """Runs tests/e2e/<script> with `args`; its last stdout line starting with {"broker" is its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GRPC_"))}
    proc = subprocess.Popen([str(python), str(HERE / "e2e" / script), *args],
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
