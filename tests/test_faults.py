"""Faults injected between the offloading store and its servers (a proxy of our own in front of
LocalStack and of the local Convex server): bounded retries where safe, typed errors where not, and
afterwards no record references a missing or partial object and no acknowledged write is lost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import ConvexFunctionError, ConvexTransportError, UploadError
from convex_offload.offload.operations import verify
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore
from media import b64, image_bytes
from testkit.faultproxy import INTERNAL_ERROR, FaultProxy, Request


def is_put(request: Request) -> bool:
    return request.method == "PUT"


def is_get(request: Request) -> bool:
    return request.method == "GET"


def is_record_write(request: Request) -> bool:
    return b"offload/records:write" in request.body


@dataclass
class Rig:
    """A Convex server and LocalStack, each behind a fault proxy."""

    convex: LocalConvex
    localstack: LocalStack
    s3: FaultProxy
    front: FaultProxy
    prefix: str

    def config(self, **overrides: Any) -> OffloadConfig:
        bucket_extra = overrides.pop("bucket", {})
        return OffloadConfig(
            convex_url=self.front.url,
            convex_admin_key=self.convex.admin_key,
            buckets={
                "images": s3_bucket(
                    self.localstack, "images", prefix=self.prefix, endpoint_url=self.s3.url, **bucket_extra
                )
            },
            **overrides,
        )

    def direct_config(self) -> OffloadConfig:
        return OffloadConfig(
            convex_url=self.convex.url,
            convex_admin_key=self.convex.admin_key,
            buckets={"images": s3_bucket(self.localstack, "images", prefix=self.prefix)},
        )


@pytest.fixture(scope="module")
def rig(localstack: LocalStack) -> Iterator[Rig]:
    with LocalConvex() as convex:
        convex_port = int(convex.url.rsplit(":", 1)[1])
        s3_port = int(localstack.endpoint_url.rsplit(":", 1)[1])
        with FaultProxy("127.0.0.1", s3_port) as s3, FaultProxy("127.0.0.1", convex_port) as front:
            yield Rig(convex, localstack, s3, front, f"faults-{uuid.uuid4().hex[:8]}/")


@pytest.fixture(autouse=True)
def clean_proxies(rig: Rig) -> Iterator[None]:
    rig.s3.clear()
    rig.front.clear()
    yield
    rig.s3.clear()
    rig.front.clear()
    rig.s3.up()
    rig.front.up()


@pytest.fixture
async def plain(rig: Rig) -> AsyncIterator[ConvexStore]:
    async with ConvexStore(rig.convex.url, rig.convex.admin_key) as store:
        yield store


def image_message(seed: int, *, size: int = 150_000) -> Message:
    img = image_bytes("png", size, seed=seed)
    thread = f"faults-{uuid.uuid4().hex[:8]}"
    return Message(
        id=f"{thread}-m",
        thread_id=thread,
        resource_id="faults-user",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )


async def assert_consistent(rig: Rig) -> None:
    """No record references a missing, partial or corrupted object."""
    async with OffloadingStore.connect(rig.direct_config()) as store:
        report = await verify(store, deep=True, grace=timedelta(days=1))
    assert report.ok, report.problems


async def read_back(rig: Rig, message: Message) -> Message | None:
    async with OffloadingStore.connect(rig.direct_config()) as store:
        found = await store.memory.list_messages_by_id([message.id])
    return found[0] if found else None


# --- S3 ---------------------------------------------------------------------------------------


async def test_s3_throttling_and_server_errors_are_retried(rig: Rig) -> None:
    rig.s3.fail_next(2, status=503, match=is_put)
    rig.s3.fail_next(1, status=500, body=INTERNAL_ERROR, match=is_get)
    message = image_message(1)
    async with OffloadingStore.connect(rig.config()) as store:
        await store.memory.save_messages([message])
        async with OffloadingStore.connect(rig.config()) as reader:
            assert await reader.memory.list_messages_by_id([message.id]) == [message]
    assert rig.s3.stats.faults["status 503"] == 2
    assert rig.s3.stats.faults["status 500"] == 1
    await assert_consistent(rig)


async def test_persistent_s3_failure_is_an_upload_error_and_nothing_is_written(
    rig: Rig, plain: ConvexStore
) -> None:
    rig.s3.fail_next(50, status=500, body=INTERNAL_ERROR, match=is_put)
    message = image_message(2)
    async with OffloadingStore.connect(rig.config(bucket={"max_attempts": 3})) as store:
        with pytest.raises(UploadError, match=r"/parts/0/data"):
            await store.memory.save_messages([message])
    assert rig.s3.stats.faults["status 500"] >= 3
    assert await plain.memory.list_messages_by_id([message.id]) == []
    await assert_consistent(rig)


async def test_connection_reset_mid_upload_is_retried_and_the_object_is_whole(rig: Rig) -> None:
    rig.s3.reset_after(65_536, match=is_put)
    message = image_message(3, size=400_000)
    async with OffloadingStore.connect(rig.config()) as store:
        await store.memory.save_messages([message])
    assert rig.s3.stats.faults["reset"] == 1
    assert await read_back(rig, message) == message
    await assert_consistent(rig)


async def test_s3_timeouts_are_retried_then_surface_as_upload_error(rig: Rig, plain: ConvexStore) -> None:
    slow = rig.config(bucket={"timeout_seconds": 0.5, "max_attempts": 2})
    rig.s3.delay_next(2.0, match=is_put)
    once = image_message(4)
    async with OffloadingStore.connect(slow) as store:
        await store.memory.save_messages([once])
    assert await read_back(rig, once) == once

    rig.s3.delay_next(2.0, count=5, match=is_put)
    never = image_message(5)
    async with OffloadingStore.connect(slow) as store:
        with pytest.raises(UploadError):
            await store.memory.save_messages([never])
    assert await plain.memory.list_messages_by_id([never.id]) == []
    await assert_consistent(rig)


async def test_s3_down_then_up(rig: Rig, plain: ConvexStore) -> None:
    message = image_message(6)
    rig.s3.down()
    async with OffloadingStore.connect(rig.config(bucket={"max_attempts": 2})) as store:
        with pytest.raises(UploadError):
            await store.memory.save_messages([message])
        assert await plain.memory.list_messages_by_id([message.id]) == []
        rig.s3.up()
        await store.memory.save_messages([message])
    assert await read_back(rig, message) == message
    await assert_consistent(rig)


# --- Convex -----------------------------------------------------------------------------------


async def test_convex_5xx_is_retried(rig: Rig) -> None:
    rig.front.fail_next(2, status=503, body=b"", content_type="text/plain", match=is_record_write)
    message = image_message(7)
    async with OffloadingStore.connect(rig.config()) as store:
        await store.memory.save_messages([message])
    assert rig.front.stats.faults["status 503"] == 2
    assert await read_back(rig, message) == message


async def test_convex_function_failure_is_typed_not_retried_and_leaves_no_orphan(
    rig: Rig, plain: ConvexStore
) -> None:
    failure = json.dumps(
        {"status": "error", "errorMessage": "Server Error\nUncaught Error: injected"}
    ).encode()
    writes: list[Request] = []

    def counting(request: Request) -> bool:
        if is_record_write(request):
            writes.append(request)
            return True
        return False

    rig.front.fail_next(1, status=560, body=failure, content_type="application/json", match=counting)
    rig.front.fail_next(
        1, status=503, body=b"", content_type="text/plain", match=counting
    )  # would catch a retry
    message = image_message(8)
    async with OffloadingStore.connect(rig.config()) as store:
        with pytest.raises(ConvexFunctionError, match="injected"):
            await store.memory.save_messages([message])
        key = store.offloader.key_for(
            "images", "faults-user", hashlib.sha256(image_bytes("png", 150_000, seed=8)).hexdigest()
        )
    assert rig.front.stats.faults["status 560"] == 1
    assert len(writes) == 1, "a function failure is never retried"
    assert await plain.memory.list_messages_by_id([message.id]) == []
    listed = rig.localstack.s3_client().list_objects_v2(Bucket="images", Prefix=key)
    assert listed.get("KeyCount", 0) == 0, "the object of a write that failed is deleted at once"
    await assert_consistent(rig)


async def test_convex_timeout_after_the_write_committed_is_retried_safely(rig: Rig) -> None:
    rig.front.delay_response(1.5, match=is_record_write)
    message = image_message(9)
    async with OffloadingStore.connect(rig.config(convex_timeout_seconds=0.5)) as store:
        await store.memory.save_messages([message])
        assert store.store.client.stats.retries >= 1
    assert rig.front.stats.faults["delay_response"] == 1
    assert await read_back(rig, message) == message
    await assert_consistent(rig)


async def test_convex_down_is_a_transport_error_and_nothing_is_written(rig: Rig, plain: ConvexStore) -> None:
    message = image_message(10)
    rig.front.down()
    async with OffloadingStore.connect(rig.config(convex_timeout_seconds=2)) as store:
        with pytest.raises(ConvexTransportError):
            await store.memory.save_messages([message])
    rig.front.up()
    assert await plain.memory.list_messages_by_id([message.id]) == []
    await assert_consistent(rig)


# --- a process killed between its uploads and its record write --------------------------------

WRITER = """
import asyncio, sys
from convex_offload.config import OffloadConfig
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message

async def main() -> None:
    config = OffloadConfig.load(sys.argv[1])
    message = Message.model_validate_json(sys.stdin.read())
    async with OffloadingStore.connect(config) as store:
        await store.memory.save_messages([message])

asyncio.run(main())
"""


async def test_killed_between_uploads_and_write_leaves_nothing_gc_cannot_reclaim(
    rig: Rig, plain: ConvexStore, tmp_path: Path
) -> None:
    config = rig.config(lease_seconds=1)
    path = tmp_path / "writer.toml"
    lines = [
        f'convex_url = "{config.convex_url}"',
        f'convex_admin_key = "{rig.convex.admin_key}"',
        "lease_seconds = 0.001",
        "[buckets.images]",
        'provider = "s3"',
        'bucket = "images"',
        f'endpoint_url = "{rig.s3.url}"',
        f'region = "{rig.localstack.region}"',
        'access_key_id = "test"',
        'secret_access_key = "test"',
        f'prefix = "{rig.prefix}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    message = image_message(11)
    release = threading.Event()
    rig.front.hold_next(release, match=is_record_write)
    rig.front.stats.held.clear()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, text=True)
    assert writer.stdin is not None
    writer.stdin.write(message.model_dump_json())
    writer.stdin.close()
    sha = hashlib.sha256(image_bytes("png", 150_000, seed=11)).hexdigest()
    async with OffloadingStore.connect(rig.direct_config()) as store:
        key = store.offloader.key_for("images", "faults-user", sha)
    s3 = rig.localstack.s3_client()
    try:
        assert rig.front.stats.held.wait(timeout=60), "the writer reached its record write"
        assert s3.head_object(Bucket="images", Key=key)["ContentLength"] > 0, "its upload happened"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    # The held request is dropped when its client dies; `release` is never set.
    assert await plain.memory.list_messages_by_id([message.id]) == [], "the write never happened"
    await assert_consistent(rig)

    async with OffloadingStore.connect(rig.direct_config()) as store:
        report = await store.lifecycle.gc(grace=timedelta(0))
    assert ("images", key) in report.deleted, "the orphan's lease expired and gc took it"
    assert s3.list_objects_v2(Bucket="images", Prefix=key).get("KeyCount", 0) == 0
