"""A long session of text streams: two participants in one process (one broker session), each
sending --count text streams (stream_text: open, write, close) to the other, which reads each one
whole. Samples the session's owned handles from the broker's Info as it goes.

    python text_streams.py --url ws://ADDR:7880 --token-a JWT --token-b JWT --count 200

Prints one JSON line: messages sent and received per participant, and the owned-handle samples
[(messages so far, owned handles)].
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os

import livekit_ffi_broker
from livekit import rtc

TOPIC = "lkb-lifecycle"
SAMPLE_EVERY = 20


def owned_handles() -> int:
    info = livekit_ffi_broker.broker_info(os.environ["LIVEKIT_FFI_BROKER"])
    mine = [s for s in info.sessions if s.pid == os.getpid()]
    assert len(mine) == 1, f"expected one broker session of pid {os.getpid()}: {info}"
    return mine[0].owned_handles


async def connect(url: str, token: str, received: list[str], done: asyncio.Event, count: int) -> rtc.Room:
    room = rtc.Room()
    tasks: set[asyncio.Task] = set()

    async def read(reader: rtc.TextStreamReader) -> None:
        received.append(await reader.read_all())
        if len(received) == count:
            done.set()

    def on_stream(reader: rtc.TextStreamReader, _identity: str) -> None:
        task = asyncio.ensure_future(read(reader))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    room.register_text_stream_handler(TOPIC, on_stream)
    await room.connect(url, token)
    return room


async def send(room: rtc.Room, to: str, text: str) -> None:
    writer = await room.local_participant.stream_text(destination_identities=[to], topic=TOPIC)
    await writer.write(text)
    await writer.aclose()


async def run(url: str, token_a: str, token_b: str, count: int) -> dict:
    received_a: list[str] = []
    received_b: list[str] = []
    done_a, done_b = asyncio.Event(), asyncio.Event()
    a = await connect(url, token_a, received_a, done_a, count)
    b = await connect(url, token_b, received_b, done_b, count)
    while len(a.remote_participants) == 0 or len(b.remote_participants) == 0:
        await asyncio.sleep(0.05)
    samples = [(0, owned_handles())]
    for i in range(1, count + 1):
        await send(a, b.local_participant.identity, f"a->b {i}")
        await send(b, a.local_participant.identity, f"b->a {i}")
        if i % SAMPLE_EVERY == 0:
            # What was sent so far has been read: its readers are in the count too.
            while len(received_a) < i or len(received_b) < i:
                await asyncio.sleep(0.01)
            samples.append((i, owned_handles()))
    await asyncio.wait_for(asyncio.gather(done_a.wait(), done_b.wait()), 30)
    await a.disconnect()
    await b.disconnect()
    return {
        "sent": {"a": count, "b": count},
        "received": {"a": len(received_a), "b": len(received_b)},
        # Each message arrived whole, once.
        "intact": sorted(received_b) == sorted(f"a->b {i}" for i in range(1, count + 1))
        and sorted(received_a) == sorted(f"b->a {i}" for i in range(1, count + 1)),
        "owned_handles": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-a", required=True)
    parser.add_argument("--token-b", required=True)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.token_a, args.token_b, args.count))), flush=True)


if __name__ == "__main__":
    main()
