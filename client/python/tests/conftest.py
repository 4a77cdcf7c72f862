"""Fixtures: a real broker (node dist/broker/cli.js) per test, and scenario drivers run as their
own Python processes with LIVEKIT_FFI_BROKER set, so activation goes through the installed .pth."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
CLI = REPO / "dist" / "broker" / "cli.js"
SCENARIOS = HERE / "scenarios"


@dataclass
class Broker:
    address: str
    process: subprocess.Popen
    log_path: Path
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines[-60:])

    def info(self) -> Any:
        import livekit_ffi_broker

        return livekit_ffi_broker.broker_info(self.address, timeout=5)

    def wait_info(self, predicate: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        info = self.info()
        while not predicate(info):
            if time.monotonic() > deadline:
                raise AssertionError(f"broker Info never satisfied the condition; last Info:\n{info}")
            time.sleep(0.1)
            info = self.info()
        return info

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_broker(tmp: Path, *extra: str) -> Broker:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: build the broker first (npm install)")
    sock = tmp / "b.sock"
    address = f"unix://{sock}"
    log_path = tmp / "broker.log"
    process = subprocess.Popen(
        ["node", str(CLI), "serve", "--listen", address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(REPO),
    )
    broker = Broker(address, process, log_path)
    listening = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with open(log_path, "w") as log:
            for line in process.stdout:
                broker.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()
                if '"msg":"listening"' in line:
                    listening.set()

    threading.Thread(target=pump, daemon=True).start()
    if not listening.wait(30):
        broker.stop(signal.SIGKILL)
        pytest.fail(f"the broker did not start listening:\n{broker.log()}")
    return broker


@pytest.fixture
def broker(tmp_dir: Path):
    b = start_broker(tmp_dir)
    yield b
    b.stop()


def scenario_env(address: Optional[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GRPC_"))}
    if address is not None:
        env["LIVEKIT_FFI_BROKER"] = address
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_scenario(script: str, *args: str, address: Optional[str], timeout: float = 120, **env: str) -> dict[str, Any]:
    """Run tests/scenarios/<script> with the broker address in its environment; its last stdout
    line is JSON. Fails with the scenario's output when it exits non-zero."""
    cmd = [sys.executable, str(SCENARIOS / script), *args]
    proc = subprocess.run(cmd, env=scenario_env(address, **env), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{script} printed no JSON result\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    result["_stderr"] = proc.stderr
    return result


def unavailable(reason: str) -> None:
    """Skip with the reason; with LKB_E2E_REQUIRE=1 (set by .ci/run) fail instead."""
    if os.environ.get("LKB_E2E_REQUIRE") == "1":
        pytest.fail(f"end-to-end test required (LKB_E2E_REQUIRE=1) but: {reason}")
    pytest.skip(reason)


def livekit_server_binary() -> str:
    """The pinned livekit-server (built once per machine), if network namespaces for it work here."""
    sys.path.insert(0, str(HERE / "e2e"))
    from harness import netns_usable, server_binary

    ok, why = netns_usable()
    if not ok:
        unavailable(f"cannot create a network namespace for livekit-server: {why}")
    binary, why = server_binary(build=True)
    if binary is None:
        unavailable(f"no livekit-server binary: {why}")
    return binary


def run_with_broker_stopped(broker: "Broker", script: str, mode: str, env: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """A stepped scenario that prints READY (the broker is then SIGSTOPped), STOPPED (it is let
    run again), then its JSON result."""
    scenario = SteppedScenario(script, mode, env)
    try:
        scenario.wait_for("READY")
        broker.process.send_signal(signal.SIGSTOP)
        scenario.go()
        scenario.wait_for("STOPPED")
        broker.process.send_signal(signal.SIGCONT)
        scenario.go()
        return scenario.result(timeout=timeout)
    finally:
        broker.process.send_signal(signal.SIGCONT)
        scenario.kill()


class SteppedScenario:
    """A scenario driven step by step: it prints a marker line (READY, ...) and waits for "go" on
    stdin, so the test can stop, kill or start brokers at exactly that point."""

    def __init__(self, script: str, mode: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCENARIOS / script), mode],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for(self, marker: str) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == marker:
                return
        raise AssertionError(f"the scenario ended before {marker}: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """Waits for the scenario to end; it must exit 0 with a JSON last line."""
        stdout, stderr = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, stderr
        return json.loads(stdout.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


@pytest.fixture
def tmp_dir():
    # Short: a unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="lkfb-", dir="/tmp") as d:
        yield Path(d)
