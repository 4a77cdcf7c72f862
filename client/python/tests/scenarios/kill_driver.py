"""kill -9 of a worker in the middle of its stream (run with LIVEKIT_FFI_BROKER set).

A Pool of workers runs audio jobs while a victim process streams; once the victim's session owns
handles, it is SIGKILLed. Prints one JSON line with what the broker's Info showed and the jobs'
results."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_worker  # noqa: E402
import livekit_ffi_broker  # noqa: E402


def session_of(info, pid):
    return next((s for s in info.sessions if s.pid == pid), None)


def wait_info(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        info = livekit_ffi_broker.broker_info()
        if predicate(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"Info never satisfied the condition:\n{info}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="forkserver")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    ctx = multiprocessing.get_context(args.method)
    out: dict = {}
    ready = ctx.Event()
    victim = ctx.Process(target=media_worker.long_audio_job, args=(0, 30.0, ready))
    victim.start()
    pool = ctx.Pool(args.workers)
    processes = list(pool._pool)
    jobs = [pool.apply_async(media_worker.audio_job, (i + 1, 4.0)) for i in range(args.workers)]
    try:
        assert ready.wait(30), "the victim never started streaming"
        info = wait_info(lambda i: (s := session_of(i, victim.pid)) is not None and s.owned_handles >= 3)
        out["victim_handles_before"] = session_of(info, victim.pid).owned_handles
        out["sessions_before"] = len(info.sessions)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        out["victim_exitcode"] = victim.exitcode
        killed_at = time.monotonic()
        info = wait_info(lambda i: session_of(i, victim.pid) is None)
        out["victim_session_gone_after_s"] = round(time.monotonic() - killed_at, 3)
        out["owned_after_kill"] = info.owned_handles
        out["owned_by_others_after_kill"] = sum(s.owned_handles for s in info.sessions)
        out["jobs"] = [job.get(timeout=60) for job in jobs]
    finally:
        pool.close()
        pool.join()
        if victim.is_alive():
            victim.kill()
    out["exitcodes"] = [p.exitcode for p in processes]
    info = wait_info(lambda i: i.owned_handles == 0 and not i.sessions)
    out["owned_at_end"] = info.owned_handles
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
