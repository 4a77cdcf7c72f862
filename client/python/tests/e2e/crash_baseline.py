"""How often the crash scenario (scenario.py) crashes or hangs, over N runs: without the broker
(each process loads the SDK's own liblivekit_ffi) and, with --with-broker, through a broker
started here. Not part of CI: it is the measurement behind the README's "Why".

    python crash_baseline.py --runs 10 [--seconds 30] [--with-broker] [--out summary.json]

A run *crashed* when any process of it ended by a signal (the job process, reported by the
worker's pool, the worker, the publishers, the forkserver, the server) or the job process exited
non-zero without its result; it *hung* when a step did not finish in time (SIGKILLed then).
Prints one JSON line per run and a summary.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import REPO, remove_namespace  # noqa: E402


def classify(result: dict) -> dict:
    signals = []
    job_exits = [e["exitcode"] for e in result.get("job_processes", [])]
    signals += [f"job process: {-c}" for c in job_exits if c < 0]
    for name, record in [("worker", result.get("worker", {})), ("server", result.get("server", {})),
                         *((n, r) for n, r in result.get("publishers", {}).items())]:
        if "signal" in record and not record.get("hung"):
            signals.append(f"{name}: {record['signal']}")
    signals += [f"orphan {o['pid']}: {o['signal']}" for o in result.get("orphans", []) if "signal" in o]
    job = result.get("job") or {}
    hung = list(result.get("hung", []))
    hung += [f"{n} did not stop" for n, r in [("worker", result.get("worker", {})), *result.get("publishers", {}).items()] if r.get("hung")]
    if result.get("left_running"):
        hung.append(f"left running: {result['left_running']}")
    tracks = {t["identity"]: t["frames"] for t in job.get("tracks", [])}
    return {
        "crashed": bool(signals) or "crashed" in job,
        "hung": bool(hung),
        "signals": signals,
        "hung_steps": hung,
        "failed": result.get("failed") or job.get("error"),
        "frames": tracks,
        "native_mapped": job.get("native_mapped_at_end"),
        "seconds": result.get("durations", {}).get("total_s"),
    }


def start_broker(tmp: Path) -> tuple[subprocess.Popen, str]:
    address = f"unix://{tmp}/b.sock"
    log = open(tmp / "broker.log", "w")
    proc = subprocess.Popen(["node", str(REPO / "dist" / "broker" / "cli.js"), "serve", "--listen", address],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while '"msg":"listening"' not in (tmp / "broker.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"broker did not start:\n{(tmp / 'broker.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return proc, address


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--with-broker", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lkb-baseline-", dir="/tmp"))
    broker = None
    address = None
    if args.with_broker:
        broker, address = start_broker(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "GRPC_"))}
    runs = []
    try:
        for i in range(args.runs):
            workdir = tmp / f"run-{i}"
            cmd = [sys.executable, str(HERE / "scenario.py"), "--workdir", str(workdir), "--seconds", str(args.seconds)]
            if address:
                cmd += ["--broker", address]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out, _ = proc.communicate(timeout=args.seconds + 400)
                lines = [line for line in out.splitlines() if line.startswith('{"broker"')]
                record = classify(json.loads(lines[-1])) if lines else {"crashed": False, "hung": False, "failed": f"driver exited {proc.returncode}"}
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                record = {"crashed": False, "hung": True, "hung_steps": ["driver timeout"]}
            finally:
                remove_namespace(proc.pid)
            record["run"] = i
            record["workdir"] = str(workdir)
            runs.append(record)
            print(json.dumps(record), flush=True)
    finally:
        broker_exit = None
        if broker is not None:
            broker_exit = broker.poll()  # None: still alive after every run
            broker.terminate()
            broker.wait(timeout=15)
    summary = {
        "mode": "broker" if args.with_broker else "in-process liblivekit_ffi",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": len(runs),
        "seconds_per_job": args.seconds,
        "crashed": sum(1 for r in runs if r["crashed"]),
        "hung": sum(1 for r in runs if r["hung"]),
        "failed": sum(1 for r in runs if r.get("failed") and not r["crashed"] and not r["hung"]),
        "clean": sum(1 for r in runs if not r["crashed"] and not r["hung"] and not r.get("failed")),
        "signals": sorted({s for r in runs for s in r.get("signals", [])}),
    }
    if args.with_broker:
        summary["broker_died_during_runs"] = broker_exit is not None
    print(json.dumps({"summary": summary}), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
