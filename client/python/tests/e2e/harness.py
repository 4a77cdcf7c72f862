"""A real livekit-server in a network namespace of its own, and a reaper that sees every
descendant's end. Standard library only.

WebRTC does not gather loopback candidates, so the server runs in a namespace `lkb-e2e-<pid>`
joined to the root namespace by a veth pair on a /30 of 10.213.0.0/16: the server has the first
address, the clients (in the root namespace) the second. Its ICE servers are its own address, so
clients contact nothing but those two addresses (and loopback, for the broker).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[4]
SERVER_SCRIPT = REPO / "scripts" / "livekit-server.sh"
API_KEY, API_SECRET = "devkey", "secret"  # livekit-server --dev


def log(event: str, **fields) -> None:
    print(json.dumps({"e2e": event, "t": round(time.time(), 3), **fields}), flush=True)


def driver_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], dict]) -> int:
    """A driver's main: adds --workdir (made) and --broker to `parser`, runs `run(args)`, writes
    its result to DIR/result.json and prints it as one JSON line."""
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--broker", default=None, help="broker address; none: the SDK loads liblivekit_ffi itself")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like an error, so the namespace and every process are still torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    (args.workdir / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)
    return 0


def driver_setup(broker: Optional[str]) -> tuple[str, dict[str, str]]:
    """The server binary (built if needed) and the environment of a driver's SDK processes:
    through the broker at `broker`, else with the SDK's own liblivekit_ffi."""
    binary, why = server_binary(build=True)
    if binary is None:
        raise RuntimeError(why)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GRPC_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if broker:
        env["LIVEKIT_FFI_BROKER"] = broker
    return binary, env


def server_binary(build: bool) -> tuple[Optional[str], str]:
    """(path, "") or (None, why not)."""
    proc = subprocess.run(["bash", str(SERVER_SCRIPT), "build" if build else "path"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"{SERVER_SCRIPT.name} {'build' if build else 'path'} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout.strip().splitlines()[-1], ""


def netns_usable() -> tuple[bool, str]:
    """Whether this process may create network namespaces (root with CAP_SYS_ADMIN and CAP_NET_ADMIN)."""
    if shutil.which("ip") is None:
        return False, "`ip` (iproute2) is not installed"
    probe = f"lkb-probe-{os.getpid()}"
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return False, f"`ip netns add` failed: {proc.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True, ""


def namespace_name(owner_pid: int) -> str:
    return f"lkb-e2e-{owner_pid}"


def remove_namespace(owner_pid: int) -> None:
    """Kills what still runs in the namespace of `owner_pid` and deletes it with its veth pair;
    harmless when already gone. Also the last resort of a test whose driver was killed."""
    ns = namespace_name(owner_pid)
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "link", "del", f"lkbe{owner_pid}h"], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class LiveKitServer:
    """`with LiveKitServer(binary, workdir) as s:` s.url (ws://), s.http_url; torn down on exit,
    also when the body raises."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.owner = os.getpid()
        self.ns = namespace_name(self.owner)
        block = self.owner % 16384  # a /30 per owner pid, so parallel runs do not collide
        base = (10 << 24) | (213 << 16) | (block * 4)
        self.server_ip = self._dotted(base + 1)
        self.client_ip = self._dotted(base + 2)
        self.url = f"ws://{self.server_ip}:7880"
        self.http_url = f"http://{self.server_ip}:7880"
        self.process: Optional[subprocess.Popen] = None
        self.log_path = workdir / "livekit-server.log"

    @staticmethod
    def _dotted(n: int) -> str:
        return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))

    def _ip(self, *args: str) -> None:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def __enter__(self) -> "LiveKitServer":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        host_if, ns_if = f"lkbe{self.owner}h", f"lkbe{self.owner}n"
        self._ip("netns", "add", self.ns)
        self._ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        self._ip("link", "set", ns_if, "netns", self.ns)
        self._ip("addr", "add", f"{self.client_ip}/30", "dev", host_if)
        self._ip("link", "set", host_if, "up")
        self._ip("-n", self.ns, "addr", "add", f"{self.server_ip}/30", "dev", ns_if)
        self._ip("-n", self.ns, "link", "set", ns_if, "up")
        self._ip("-n", self.ns, "link", "set", "lo", "up")
        config = {
            "rtc": {
                "udp_port": 7882,
                "tcp_port": 7881,
                "use_external_ip": False,
                "node_ip": self.server_ip,
                # Without STUN servers of its own the server hands clients Google's; this makes the
                # only ICE server its own address (nothing answers STUN there; host candidates suffice).
                "stun_servers": [f"{self.server_ip}:3478"],
                "ips": {"includes": [f"{self.server_ip}/32"]},
            },
            "turn": {"enabled": False},
            "logging": {"json": True, "level": "info"},
        }
        log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.binary, "--dev", "--bind", self.server_ip, "--node-ip", self.server_ip,
             "--config-body", json.dumps(config)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"livekit-server exited {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.http_url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"livekit-server did not answer on {self.http_url}:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        log("livekit_server_ready", url=self.url, netns=self.ns, pid=self.process.pid)

    def close(self) -> Optional[int]:
        """Stops the server (SIGTERM, then SIGKILL after 10 s) and removes namespace and veth.
        Returns the server's exit code (negative: the signal that ended it)."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.process.returncode
        remove_namespace(self.owner)
        return code

    def __exit__(self, *exc) -> None:
        self.close()


PR_SET_CHILD_SUBREAPER = 36
P_ALL = 0


class Reaper:
    """Makes this process the subreaper of its descendants: a process whose parent dies (the
    forkserver when the worker's main process exits, a job process left behind) is re-parented
    here, and its end is recorded instead of vanishing into init. Children started with Popen
    are left to Popen."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.popen: dict[int, subprocess.Popen] = {}
        self.orphans: list[dict] = []

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.popen[proc.pid] = proc
        return proc

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            proc = self.popen.get(info.si_pid)
            if proc is not None:
                proc.poll()  # Popen reaps it and keeps its return code
                continue
            _, status = os.waitpid(info.si_pid, 0)
            record = {"pid": info.si_pid}
            if os.WIFSIGNALED(status):
                record["signal"] = signal.Signals(os.WTERMSIG(status)).name
            else:
                record["exitcode"] = os.WEXITSTATUS(status)
            self.orphans.append(record)
            log("orphan_reaped", **record)

    def drain(self, timeout: float) -> list[int]:
        """Reaps until no child is left; kills (and returns) what still runs after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reap()
            try:
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return []
            time.sleep(0.1)
        left = [int(pid) for path in Path("/proc/self/task").glob("*/children") for pid in path.read_text().split()]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        self.reap()
        return left
