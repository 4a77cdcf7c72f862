#!/usr/bin/env python3
"""grpcio's sync API (a request-iterator thread and a reader thread, what client/python uses)
against its asyncio API (grpc.aio on a loop thread of its own) for the Python client's Session
stream, on the real broker. The caller is a plain thread blocking on each answer, as the SDK's
synchronous FfiClient.request is.

Per API: round trip of one request at a time (NewAudioResampler, its handle dropped after), p50
and p99 in µs, and the process CPU per request (all threads); then a burst: 200 requests sent
before any answer is awaited, CPU per request. stdout: one JSON object.

    build/pyvenv/bin/python bench/python_grpc_api.py [--iterations 3000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "client" / "python"))
from livekit_ffi_broker._gen import ffi_broker_pb2 as pb  # noqa: E402
from livekit.rtc._proto import ffi_pb2  # noqa: E402


REPO = Path(__file__).resolve().parent.parent
METHOD = "/livekit.ffi_broker.v1.FfiBroker/Session"
BURST = 200


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


def resampler_request() -> bytes:
    req = ffi_pb2.FfiRequest()
    req.new_audio_resampler.SetInParent()
    return req.SerializeToString()


class Answers:
    """Responses by request id, waited for by the calling thread."""

    def __init__(self) -> None:
        self.waiting: dict[int, list] = {}
        self.lock = threading.Lock()

    def expect(self, request_id: int) -> threading.Event:
        done = threading.Event()
        with self.lock:
            self.waiting[request_id] = [done, None]
        return done

    def take(self, request_id: int):
        with self.lock:
            return self.waiting.pop(request_id)[1]

    def on_message(self, message) -> None:
        if message.WhichOneof("message") != "response":
            return
        with self.lock:
            slot = self.waiting.get(message.response.request_id)
        if slot is not None:
            slot[1] = message.response
            slot[0].set()


class SyncClient:
    def __init__(self, target: str, answers: Answers) -> None:
        self.outgoing: "queue.SimpleQueue" = queue.SimpleQueue()
        self.channel = grpc.insecure_channel(target)
        call = self.channel.stream_stream(METHOD, request_serializer=pb.ClientMessage.SerializeToString, response_deserializer=pb.ServerMessage.FromString)(iter(self.outgoing.get, None))
        self.outgoing.put(pb.ClientMessage(hello=pb.Hello(client_name="bench-grpc-sync")))
        self.welcomed = threading.Event()

        def read() -> None:
            try:
                for message in call:
                    if message.WhichOneof("message") == "welcome":
                        self.welcomed.set()
                    answers.on_message(message)
            except grpc.RpcError:
                pass  # cancelled by close()

        threading.Thread(target=read, daemon=True).start()
        self.welcomed.wait(10)

    def send(self, message) -> None:
        self.outgoing.put(message)

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


class AioClient:
    def __init__(self, target: str, answers: Answers) -> None:
        self.loop = asyncio.new_event_loop()
        self.welcomed = threading.Event()
        self.ready = threading.Event()
        self.answers = answers
        self.target = target
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(10)
        self.welcomed.wait(10)

    async def _open(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.target)
        self.outgoing: asyncio.Queue = asyncio.Queue()
        self.call = self.channel.stream_stream(METHOD, request_serializer=pb.ClientMessage.SerializeToString, response_deserializer=pb.ServerMessage.FromString)()
        await self.call.write(pb.ClientMessage(hello=pb.Hello(client_name="bench-grpc-aio")))
        self.loop.create_task(self._write())
        self.loop.create_task(self._read())

    async def _write(self) -> None:
        try:
            while True:
                await self.call.write(await self.outgoing.get())
        except asyncio.InvalidStateError:
            pass  # the call ended: close()

    async def _read(self) -> None:
        try:
            async for message in self.call:
                if message.WhichOneof("message") == "welcome":
                    self.welcomed.set()
                self.answers.on_message(message)
        except grpc.RpcError:
            pass  # cancelled by close()

    def send(self, message) -> None:
        self.loop.call_soon_threadsafe(self.outgoing.put_nowait, message)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.channel.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def measure(client, answers: Answers, iterations: int) -> dict:
    ffi_request = resampler_request()
    ids = iter(range(1, 1 << 62))
    response_type = ffi_pb2.FfiResponse

    def call(request_id: int) -> threading.Event:
        done = answers.expect(request_id)
        client.send(pb.ClientMessage(request=pb.Request(request_id=request_id, ffi_request=ffi_request)))
        return done

    def drop(response) -> None:
        handle = response_type.FromString(response.ffi_response).new_audio_resampler.resampler.handle.id
        client.send(pb.ClientMessage(drop_handles=pb.DropHandles(handles=[handle])))

    rtts = []
    warmup = iterations // 10
    cpu0 = 0.0
    for i in range(warmup + iterations):
        if i == warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter_ns()
        request_id = next(ids)
        call(request_id).wait(10)
        rtts.append((time.perf_counter_ns() - t0) / 1000)
        drop(answers.take(request_id))
    cpu_rtt = time.process_time() - cpu0
    rtts = sorted(rtts[warmup:])

    cpu0 = time.process_time()
    bursts = max(1, iterations // BURST)
    for _ in range(bursts):
        pending = [(rid, call(rid)) for rid in (next(ids) for _ in range(BURST))]
        for rid, done in pending:
            done.wait(10)
            drop(answers.take(rid))
    cpu_burst = time.process_time() - cpu0
    return {
        "round_trip_us": {"p50": round(rtts[len(rtts) // 2], 1), "p99": round(rtts[int(len(rtts) * 0.99)], 1)},
        "cpu_us_per_request_one_at_a_time": round(cpu_rtt / iterations * 1e6, 1),
        "cpu_us_per_request_burst": round(cpu_burst / (bursts * BURST) * 1e6, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=3000)
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="lkb-grpc-api-")
    broker = start_broker(f"{tmp}/b.sock")
    target = f"unix://{tmp}/b.sock"
    out = {"grpcio": grpc.__version__, "iterations": a.iterations}
    try:
        # Alternated twice: the machine is shared, so one run of each could be skewed by others.
        for name, make in (("sync", SyncClient), ("aio", AioClient), ("sync_again", SyncClient), ("aio_again", AioClient)):
            answers = Answers()
            client = make(target, answers)
            out[name] = measure(client, answers, a.iterations)
            client.close()
    finally:
        broker.terminate()
        broker.wait(15)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
