"""Restores stream: every backend hands an object over in chunks, and the text is made as they come.

`restored_text` is checked against a plain `header + base64(bytes)` for any way of cutting the bytes
into chunks (hypothesis), and refuses bytes of the wrong size or hash without reading on past the
size the manifest names. Each backend's `read_with` gives chunks of at most `READ_CHUNK` bytes that
join into the object, on the backend's own threads for S3 and folders, and None for a missing key.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pybase64
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import s3_bucket
from convex_offload import AttachmentIntegrityError, BlobStore, BucketConfig, Message, OffloadingStore
from convex_offload.blobs.base import READ_CHUNK
from convex_offload.blobs.factory import open_bucket
from convex_offload.config import OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.restorer import Mismatch, restored_text
from media import b64, image_bytes


def cut(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """`data` in chunks of the given sizes (cycled), the last one whatever is left."""
    at, i = 0, 0
    while at < len(data):
        step = sizes[i % len(sizes)]
        yield data[at : at + step]
        at, i = at + step, i + 1


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=5000),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=8),
    header=st.sampled_from(["", "data:image/png;base64,", "data:application/pdf;name=a.pdf;base64,"]),
)
def test_the_streamed_text_is_header_and_base64_however_the_bytes_arrive(
    data: bytes, sizes: list[int], header: str
) -> None:
    sha = hashlib.sha256(data).hexdigest()
    text = restored_text(cut(data, sizes), size=len(data), sha256=sha, header=header)
    assert text == header + pybase64.b64encode(data).decode("ascii")


def test_bytes_of_another_size_or_hash_are_refused() -> None:
    data = b"0123456789" * 100
    sha = hashlib.sha256(data).hexdigest()
    assert restored_text(cut(data, [64]), size=len(data) + 1, sha256=sha, header="") == Mismatch("1000")
    assert restored_text(cut(data[::-1], [64]), size=len(data), sha256=sha, header="") == Mismatch(None)
    read: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            read.append(1)
            yield b"x" * 100

    assert restored_text(endless(), size=250, sha256=sha, header="") == Mismatch("more than 250")
    assert len(read) == 3, "reading stops at the first chunk past the size the manifest names"


async def check_read_with(store: BlobStore, *, off_loop: bool) -> None:
    data = image_bytes("png", 2 * READ_CHUNK + 5, seed=91)
    key = f"stream/{uuid.uuid4().hex}.png"
    await store.put(
        key, data, content_type="image/png", sha256=hashlib.sha256(data).hexdigest(), disposition=None
    )
    loop_thread = threading.current_thread()
    seen: list[int] = []
    threads: set[bool] = set()

    def consume(chunks: Iterator[bytes]) -> bytes:
        threads.add(threading.current_thread() is not loop_thread)
        parts = []
        for chunk in chunks:
            seen.append(len(chunk))
            parts.append(chunk)
        return b"".join(parts)

    assert await store.read_with(key, consume) == data
    assert max(seen) <= READ_CHUNK, seen
    assert len(seen) >= 3, seen
    assert threads == {off_loop}
    assert await store.read_with(f"stream/{uuid.uuid4().hex}.png", consume) is None


async def test_memory_buckets_stream(tmp_path: Path) -> None:
    await check_read_with(open_bucket("m", BucketConfig(provider="memory")), off_loop=False)


async def test_local_buckets_stream_on_their_threads(tmp_path: Path) -> None:
    store = open_bucket("l", BucketConfig(provider="local", path=tmp_path))
    try:
        await check_read_with(store, off_loop=True)
    finally:
        await store.aclose()


async def test_s3_buckets_stream_on_their_threads(localstack: LocalStack) -> None:
    store = open_bucket("s3", s3_bucket(localstack, "images", prefix="stream-test/"))
    try:
        await check_read_with(store, off_loop=True)
    finally:
        await store.aclose()


async def test_convex_file_storage_is_consumed_off_the_loop(local_convex: LocalConvex) -> None:
    async with ConvexClient(local_convex.url, local_convex.admin_key) as client:
        store = open_bucket("files", BucketConfig(provider="convex"), convex=client)
        await check_read_with(store, off_loop=True)


async def test_an_object_changed_in_the_bucket_is_refused_while_it_streams(
    localstack: LocalStack, local_convex: LocalConvex
) -> None:
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"images": s3_bucket(localstack, "images", prefix=f"stream-{uuid.uuid4().hex[:6]}/")},
    )
    big = image_bytes("png", 3 * READ_CHUNK + 1, seed=92)
    message = Message(
        id=f"stream-{uuid.uuid4().hex[:8]}",
        thread_id="stream-thread",
        resource_id="stream-user",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(big)}]},
    )
    async with OffloadingStore.connect(config) as writer:
        await writer.memory.save_messages([message])
        key = writer.offloader.key_for("images", "stream-user", hashlib.sha256(big).hexdigest())
    s3 = localstack.s3_client()
    bad = bytearray(big)
    bad[READ_CHUNK + 7] ^= 1
    await asyncio.to_thread(s3.put_object, Bucket="images", Key=key, Body=bytes(bad))
    async with OffloadingStore.connect(config) as reader:
        with pytest.raises(AttachmentIntegrityError, match="sha256"):
            await reader.memory.list_messages_by_id([message.id])
        await asyncio.to_thread(s3.put_object, Bucket="images", Key=key, Body=big + b"tail")
        reader.offloader.restorer.values.drop("images", key)
        with pytest.raises(AttachmentIntegrityError, match=f"more than {len(big)} bytes"):
            await reader.memory.list_messages_by_id([message.id])
    await asyncio.to_thread(s3.put_object, Bucket="images", Key=key, Body=big)
    async with OffloadingStore.connect(config) as reader:
        assert await reader.memory.list_messages_by_id([message.id]) == [message]
