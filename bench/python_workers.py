#!/usr/bin/env python3
"""N Python worker processes at once, each running bench/python_audio.py (S streams: capture and
receive, 10 ms frames at real-time pace), against one broker started here, or in-process.

Shaped like an agent host (many job processes, a few streams each), to measure the Python
client's own cost: what fraction of real time the workers capture, and the CPU seconds of the
workers and of the broker over the run. stdout: one JSON object.

    build/pyvenv/bin/python bench/python_workers.py --workers 10 --streams 2 --seconds 5
    build/pyvenv/bin/python bench/python_workers.py --workers 10 --in-process
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "python_audio.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def start_broker(sock: str) -> subprocess.Popen:
    broker = subprocess.Popen(
        ["node", str(REPO / "dist" / "broker" / "cli.js"), "serve", "--listen", f"unix://{sock}", "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(REPO),
    )
    assert broker.stdout is not None
    for line in broker.stdout:
        if '"msg":"listening"' in line:
            # Keep reading its log, so that the broker never blocks on a full pipe.
            threading.Thread(target=broker.stdout.read, daemon=True).start()
            return broker
    raise SystemExit(f"the broker exited before listening ({broker.wait()})")


def median(values) -> float | None:
    ordered = sorted(v for v in values if v is not None)
    return ordered[len(ordered) // 2] if ordered else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=10)
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--in-process", action="store_true", help="each worker loads the SDK's own liblivekit_ffi")
    a = p.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "LIVEKIT_FFI_BROKER"}
    broker = None
    tmp = tempfile.mkdtemp(prefix="lkb-workers-")
    if not a.in_process:
        broker = start_broker(f"{tmp}/b.sock")
        env["LIVEKIT_FFI_BROKER"] = f"unix://{tmp}/b.sock"
    args = ["--streams", str(a.streams), "--seconds", str(a.seconds), "--warmup", str(a.warmup)]
    broker_cpu0 = proc_cpu_s(broker.pid) if broker else 0.0
    started = time.perf_counter()
    workers = [
        subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(a.workers)
    ]
    results, errors = [], []
    for w in workers:
        out, _ = w.communicate(timeout=a.warmup + a.seconds + 120)
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        last = lines[-1] if lines else {"error": f"exit {w.returncode}, no output"}
        (results.append(last["result"]) if "result" in last else errors.append(last.get("error")))
    wall = time.perf_counter() - started
    broker_cpu = proc_cpu_s(broker.pid) - broker_cpu0 if broker else None
    # The children are reaped: RUSAGE_CHILDREN now holds all of their CPU, whole runs included.
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if broker:
        broker.terminate()
        broker.wait(15)
    due = sum(r["frames_due"] for r in results)
    captured = sum(r["frames_captured"] for r in results)
    received = sum(r["frames_received"] for r in results)
    p50 = sorted(r["latency_ms"]["p50"] for r in results if r["latency_ms"]["p50"] is not None)
    p99 = sorted(r["latency_ms"]["p99"] for r in results if r["latency_ms"]["p99"] is not None)
    print(
        json.dumps(
            {
                "path": "in-process" if a.in_process else "broker",
                "workers": a.workers,
                "streams_per_worker": a.streams,
                "measure_s": a.seconds,
                "workers_failed": errors,
                "frames_due": due,
                "captured_of_real_time": round(captured / due, 3) if due else None,
                "received_of_real_time": round(received / due, 3) if due else None,
                "frames_lost": sum(r["frames_lost"] for r in results),
                "workers_cpu_s_measured": round(sum(r["cpu_s"] for r in results), 2),
                "workers_cpu_s_whole_run": round(children.ru_utime + children.ru_stime, 2),
                "broker_cpu_s_whole_run": None if broker_cpu is None else round(broker_cpu, 2),
                "worker_cpu_ms_per_frame": round(sum(r["cpu_s"] for r in results) / captured * 1000, 3) if captured else None,
                "capture_frame_call_ms_p50_median_worker": median(r["capture_frame_call_ms"]["p50"] for r in results),
                "capture_lag_ms_p50_median_worker": median(r["capture_lag_ms"]["p50"] for r in results),
                "latency_p50_ms_median_worker": p50[len(p50) // 2] if p50 else None,
                "latency_p99_ms_median_worker": p99[len(p99) // 2] if p99 else None,
                "wall_s": round(wall, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
