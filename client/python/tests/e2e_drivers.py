"""Runs a driver of tests/e2e (its own process, with the python of an e2e virtualenv) from a
pytest, after checking what the end-to-end tests need: that virtualenv, network namespaces and the
livekit-server binary. A missing one skips with the reason; with LKB_E2E_REQUIRE=1 (set by
.ci/run) it fails instead."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, HERE

sys.path.insert(0, str(HERE / "e2e"))

from harness import netns_usable, remove_namespace, server_binary  # noqa: E402

from pathlib import Path


def e2e_python(pair: str) -> Path:
    """The python of the virtualenv of an e2e version pair (scripts/python-venvs.sh)."""
    return REPO / "build" / f"pyvenv-e2e-{pair}" / "bin" / "python"


# The drivers other than the agent's scenario need only livekit and livekit-api: the newest pair's.
E2E_PYTHON = e2e_python("newest")


def unavailable(reason: str) -> None:
    if os.environ.get("LKB_E2E_REQUIRE") == "1":
        pytest.fail(f"end-to-end test required (LKB_E2E_REQUIRE=1) but: {reason}")
    pytest.skip(reason)


def require_e2e(python: Path = E2E_PYTHON) -> None:
    if not python.exists():
        unavailable(f"{python} is missing: scripts/python-venvs.sh creates it (livekit-agents and livekit-api)")
    ok, why = netns_usable()
    if not ok:
        unavailable(f"cannot create a network namespace for livekit-server: {why}")
    binary, why = server_binary(build=True)
    if binary is None:
        unavailable(f"no livekit-server binary: {why}")


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
