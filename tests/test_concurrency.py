"""Many writers at once — coroutines and threads, several stores as several processes would be —
saving, updating and deleting the same messages and threads: afterwards every record's references
resolve, every record restores to one of the versions written, and nothing is left behind."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.convex.values import dumps
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.operations import verify
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, MessageUpdate, Thread
from media import b64, data_url, image_bytes

IMAGES = [image_bytes("png", 60_000, seed=700 + i) for i in range(4)]


@dataclass
class Arena:
    convex: LocalConvex
    localstack: LocalStack
    prefix: str

    def config(self) -> OffloadConfig:
        return OffloadConfig(
            convex_url=self.convex.url,
            convex_admin_key=self.convex.admin_key,
            buckets={"images": s3_bucket(self.localstack, "images", prefix=self.prefix)},
        )


@pytest.fixture(scope="module")
def arena(localstack: LocalStack) -> Iterator[Arena]:
    with LocalConvex() as convex:
        yield Arena(convex, localstack, f"concurrency-{uuid.uuid4().hex[:8]}/")


def version(message_id: str, thread: str, choice: int, text: str) -> Message:
    """One version of a message: some text and one or two of the images."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts.append({"type": "file", "mimeType": "image/png", "data": b64(IMAGES[choice % 4])})
    if choice % 3 == 0:
        parts.append(
            {"type": "file", "url": data_url(IMAGES[(choice + 1) % 4], "image/png"), "mediaType": "image/png"}
        )
    return Message(
        id=message_id,
        thread_id=thread,
        resource_id="arena-user",
        role="user",
        content={"format": 2, "parts": parts},
    )


async def assert_all_consistent(arena: Arena, expected: dict[str, set[str]]) -> None:
    """Every stored message restores to a version that was written; every reference resolves."""
    async with OffloadingStore.connect(arena.config()) as store:
        report = await verify(store, deep=True, grace=timedelta(days=1))
        assert report.ok, report.problems
        found = await store.memory.list_messages_by_id(sorted(expected))
        for message in found:
            assert dumps(message.content) in expected[message.id], message.id
        await store.lifecycle.gc(grace=timedelta(0))
        after = await verify(store, deep=True, grace=timedelta(0))
        assert after.ok, after.problems


async def test_many_coroutines_on_several_stores_write_the_same_messages(arena: Arena) -> None:
    thread = f"arena-{uuid.uuid4().hex[:6]}"
    ids = [f"{thread}-{i}" for i in range(5)]
    expected: dict[str, set[str]] = {mid: set() for mid in ids}
    rng = random.Random(1)
    stores = [OffloadingStore.connect(arena.config()) for _ in range(3)]
    try:
        await stores[0].memory.save_thread(Thread(id=thread, resource_id="arena-user"))

        async def writer(worker: int) -> None:
            store = stores[worker % 3]
            for step in range(8):
                mid = rng.choice(ids)
                choice = rng.randrange(12)
                if step % 3 == 2:
                    text = f"updated by {worker}/{step}"
                    content = {
                        "parts": [
                            {"type": "text", "text": text},
                            {"type": "file", "mimeType": "image/png", "data": b64(IMAGES[choice % 4])},
                        ]
                    }
                    for updated in await store.memory.update_messages(
                        [MessageUpdate(id=mid, content=content)]
                    ):
                        expected[mid].add(dumps(updated.content))
                else:
                    message = version(mid, thread, choice, f"written by {worker}/{step}")
                    expected[mid].add(dumps(message.content))
                    await store.memory.save_messages([message])
                if step % 4 == 0:
                    await store.memory.update_thread(thread, f"title {worker}", {"worker": worker})

        await asyncio.gather(*(writer(w) for w in range(12)))
    finally:
        for store in stores:
            await store.aclose()
    await assert_all_consistent(arena, expected)


def test_threads_with_their_own_loops_write_the_same_messages(arena: Arena) -> None:
    thread = f"arena-{uuid.uuid4().hex[:6]}"
    ids = [f"{thread}-{i}" for i in range(4)]
    expected: dict[str, set[str]] = {mid: set() for mid in ids}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        async def run() -> None:
            rng = random.Random(number)
            async with OffloadingStore.connect(arena.config()) as store:
                for step in range(6):
                    mid = rng.choice(ids)
                    message = version(mid, thread, rng.randrange(12), f"thread {number} step {step}")
                    with lock:
                        expected[mid].add(dumps(message.content))
                    await store.memory.save_messages([message])

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=300)
    assert not errors, errors
    asyncio.run(assert_all_consistent(arena, expected))


async def test_deletes_racing_saves(arena: Arena) -> None:
    rng = random.Random(3)
    threads = [f"arena-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    expected: dict[str, set[str]] = {f"{t}-{i}": set() for t in threads for i in range(3)}
    stores = [OffloadingStore.connect(arena.config()) for _ in range(2)]
    try:

        async def saver(worker: int) -> None:
            for step in range(10):
                mid = rng.choice(sorted(expected))
                message = version(mid, mid.rsplit("-", 1)[0], rng.randrange(12), f"saver {worker} {step}")
                expected[mid].add(dumps(message.content))
                await stores[worker % 2].memory.save_messages([message])

        async def deleter(worker: int) -> None:
            for _step in range(6):
                if rng.random() < 0.5:
                    await stores[worker % 2].memory.delete_messages([rng.choice(sorted(expected))])
                else:
                    await stores[worker % 2].memory.delete_thread(rng.choice(threads))

        await asyncio.gather(*(saver(w) for w in range(6)), *(deleter(w) for w in range(3)))
    finally:
        for store in stores:
            await store.aclose()
    await assert_all_consistent(arena, expected)
