"""The OffloadingStore end to end: the local Convex server, LocalStack buckets, Convex file storage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import s3_bucket
from convex_offload.config import BucketConfig, OffloadConfig, RoutingRule
from convex_offload.convex.values import document_size, dumps
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import AttachmentIntegrityError, RecordTooLargeError, UploadError
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, MessageUpdate, Resource, Thread
from convex_offload.store.store import ConvexStore
from media import MIME, b64, data_url, image_bytes
from test_offload_engine import every_location

T0 = datetime(2025, 7, 1, tzinfo=UTC)


def msg(thread: str, resource: str, index: int, content: dict[str, Any]) -> Message:
    return Message(
        id=f"{thread}-m{index}",
        thread_id=thread,
        resource_id=resource,
        role="user",
        content=content,
        created_at=T0 + timedelta(seconds=index),
    )


async def stored_row(store: ConvexStore, message_id: str) -> dict[str, Any]:
    row = await store.db.load("mastra_messages", {"id": message_id})
    assert row is not None
    return row


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp", "pdf"])
async def test_offloads_every_location_and_restores_exactly(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str], kind: str
) -> None:
    thread, resource = uid("t"), uid("r")
    img = image_bytes(kind, 300_000, seed=11)
    original = msg(thread, resource, 0, every_location(img, MIME[kind]))
    await offloading.memory.save_messages([original])

    row = await stored_row(store, original.id)
    assert document_size(row) < 10_000, "the stored record keeps only references"
    assert b64(img)[:500] not in row["content"]
    [restored] = await offloading.memory.list_messages_by_id([original.id])
    assert dumps(restored.content) == dumps(original.content)
    assert restored == original


async def test_pdf_and_images_route_to_their_buckets(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str], localstack: LocalStack
) -> None:
    thread, resource = uid("t"), uid("r")
    pdf, png = image_bytes("pdf", 200_000, seed=12), image_bytes("png", 200_000, seed=12)
    content = {
        "format": 2,
        "parts": [
            {"type": "file", "mimeType": "application/pdf", "data": b64(pdf)},
            {"type": "file", "mimeType": "image/png", "data": b64(png)},
        ],
    }
    await offloading.memory.save_messages([msg(thread, resource, 0, content)])
    refs = json.loads((await stored_row(store, f"{thread}-m0"))["content"])["metadata"][MANIFEST_KEY]["refs"]
    assert [(r["bucket"], r["sniffed_type"]) for r in refs] == [
        ("documents", "application/pdf"),
        ("images", "image/png"),
    ]
    s3 = localstack.s3_client()
    assert s3.head_object(Bucket="documents", Key=refs[0]["key"])["ContentType"] == "application/pdf"
    assert refs[1]["key"].startswith("chat/")
    assert s3.head_object(Bucket="images", Key=refs[1]["key"])["ContentLength"] == len(png)


async def test_resaving_an_unchanged_message_uploads_nothing(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    img = image_bytes("jpeg", 150_000, seed=13)
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "file", "mimeType": "image/jpeg", "data": b64(img)}]},
    )
    await offloading.memory.save_messages([message])
    uploads = offloading.offloader.stats.uploads
    await offloading.memory.save_messages([message])
    await offloading.memory.save_messages([message.model_copy(deep=True)])
    assert offloading.offloader.stats.uploads == uploads


async def test_a_new_process_finds_the_object_through_the_registry(
    s3_config: OffloadConfig, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    img = image_bytes("png", 120_000, seed=14)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    async with OffloadingStore.connect(s3_config) as first:
        await first.memory.save_messages([msg(thread, resource, 0, content)])
    async with OffloadingStore.connect(s3_config) as second:
        await second.memory.save_messages([msg(thread, resource, 1, content)])
        assert second.offloader.stats.uploads == 0
        assert second.offloader.stats.dedup_skips == 1


async def test_users_https_url_is_left_untouched(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    content = {
        "format": 2,
        "parts": [{"type": "file", "mimeType": "image/png", "data": "https://example.com/cat.png"}],
    }
    await offloading.memory.save_messages([msg(thread, resource, 0, content)])
    assert json.loads((await stored_row(store, f"{thread}-m0"))["content"]) == content
    assert offloading.offloader.stats.uploads == 0


async def test_upload_failure_writes_nothing(
    s3_config: OffloadConfig, localstack: LocalStack, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    broken = s3_config.model_copy(
        update={"buckets": {**s3_config.buckets, "images": s3_bucket(localstack, "no-such-bucket")}}
    )
    thread, resource = uid("t"), uid("r")
    img = image_bytes("png", 100_000, seed=15)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    async with OffloadingStore.connect(broken) as offloading:
        with pytest.raises(UploadError, match=r"/parts/0/data.*no-such-bucket|NoSuchBucket"):
            await offloading.memory.save_messages([msg(thread, resource, 0, content)])
    assert await store.db.load("mastra_messages", {"id": f"{thread}-m0"}) is None


async def test_corrupted_object_is_an_integrity_error(
    offloading: OffloadingStore, localstack: LocalStack, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    img = image_bytes("webp", 100_000, seed=16)
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "file", "mimeType": "image/webp", "data": b64(img)}]},
    )
    await offloading.memory.save_messages([message])
    ref = offloading.offloader.stats  # keep the offloader warm, but read through a fresh cache below
    s3 = localstack.s3_client()
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket="images", Prefix="chat/")["Contents"]
        if o["Size"] == len(img)
    )
    tampered = bytearray(img)
    tampered[-10] ^= 0xFF
    s3.put_object(Bucket="images", Key=key, Body=bytes(tampered))
    async with OffloadingStore.connect(offloading.config) as fresh:
        with pytest.raises(AttachmentIntegrityError):
            await fresh.memory.list_messages_by_id([message.id])
    assert ref.uploads >= 1


async def test_a_thread_of_50_messages_with_900kb_images_lists_fine(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    await offloading.memory.save_thread(Thread(id=thread, resource_id=resource))
    messages = [
        msg(
            thread,
            resource,
            i,
            {
                "format": 2,
                "parts": [
                    {"type": "text", "text": f"photo {i}"},
                    {
                        "type": "file",
                        "mimeType": "image/png",
                        "data": data_url(image_bytes("png", 900_000, seed=100 + i), "image/png"),
                    },
                ],
            },
        )
        for i in range(50)
    ]
    for start in range(0, 50, 10):
        await offloading.memory.save_messages(messages[start : start + 10])
    plain = await store.memory.list_messages(thread, per_page=False)
    assert plain.total == 50
    assert sum(document_size(m.to_row()) for m in plain.messages) < 200_000
    listed = await offloading.memory.list_messages(thread, per_page=False)
    assert [dumps(m.content) for m in listed.messages] == [dumps(m.content) for m in messages]


async def test_record_still_over_the_limit_fails_before_sending(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "text", "text": "all work and no play " * 52_000}]},
    )
    with pytest.raises(RecordTooLargeError, match="over the 1,048,576-byte limit"):
        await offloading.memory.save_messages([message])
    assert await store.db.load("mastra_messages", {"id": message.id}) is None


async def test_thread_metadata_resources_and_snapshots_are_offloaded(
    offloading: OffloadingStore, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    resource = uid("r")
    img = image_bytes("png", 200_000, seed=17)
    thread = Thread(
        id=uid("t"), resource_id=resource, title="t", metadata={"cover": data_url(img, "image/png")}
    )
    await offloading.memory.save_thread(thread)
    assert (await offloading.memory.get_thread_by_id(thread.id)) == thread
    raw_thread = await store.db.load("mastra_threads", {"id": thread.id})
    assert raw_thread is not None
    assert len(json.dumps(raw_thread)) < 5_000

    res = Resource(
        id=resource,
        working_memory=f"# Me\n![avatar]({data_url(img, 'image/png')})\nlikes cats",
        metadata={"a": 1},
    )
    await offloading.memory.save_resource(res)
    assert await offloading.memory.get_resource_by_id(resource) == res
    updated = await offloading.memory.update_resource(resource, metadata={"b": 2})
    assert updated.working_memory == res.working_memory
    assert updated.metadata == {"a": 1, "b": 2}

    snapshot: dict[str, Any] = {
        "runId": "r1",
        "status": "success",
        "context": {"step": {"output": {"image": b64(img), "mimeType": "image/png"}}},
    }
    wf, run = uid("wf"), uid("run")
    await offloading.workflows.persist_workflow_snapshot(wf, run, snapshot, resource_id=resource)
    assert await offloading.workflows.load_workflow_snapshot(wf, run) == snapshot
    stored = await store.workflows.load_workflow_snapshot(wf, run)
    assert isinstance(stored, dict)
    assert MANIFEST_KEY in stored
    context = await offloading.workflows.update_workflow_results(
        wf, run, "render", {"status": "success", "output": {"png": data_url(img, "image/png")}}, {}
    )
    assert context["render"]["output"]["png"] == data_url(img, "image/png")
    assert context["step"] == snapshot["context"]["step"]


async def test_update_messages_keeps_old_attachments_and_offloads_new_ones(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    first, second = image_bytes("png", 80_000, seed=18), image_bytes("jpeg", 80_000, seed=18)
    original = msg(
        thread,
        resource,
        0,
        {
            "format": 2,
            "parts": [{"type": "file", "mimeType": "image/png", "data": b64(first)}],
            "experimental_attachments": [{"url": data_url(first, "image/png")}],
        },
    )
    await offloading.memory.save_thread(Thread(id=thread, resource_id=resource))
    await offloading.memory.save_messages([original])
    new_parts = [{"type": "file", "mimeType": "image/jpeg", "data": b64(second)}]
    [updated] = await offloading.memory.update_messages(
        [MessageUpdate(id=original.id, content={"parts": new_parts, "metadata": {"edited": True}})]
    )
    expected = {**original.content, "parts": new_parts, "metadata": {"edited": True}}
    assert updated.content == expected
    [listed] = await offloading.memory.list_messages_by_id([original.id])
    assert dumps(listed.content) == dumps(expected)


@pytest.fixture
async def convex_files_store(local_convex: LocalConvex) -> AsyncIterator[OffloadingStore]:
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"files": BucketConfig(provider="convex")},
    )
    async with OffloadingStore.connect(config) as offloading_store:
        yield offloading_store


async def test_convex_file_storage_as_a_bucket(
    convex_files_store: OffloadingStore, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    img = image_bytes("png", 150_000, seed=19)
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )
    await convex_files_store.memory.save_messages([message])
    stored = json.loads((await stored_row(store, message.id))["content"])
    url = stored["parts"][0]["data"]
    assert url.startswith(convex_files_store.config.convex_url or "")
    import httpx

    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.content == img, "the stored URL works without this library"
    async with OffloadingStore.connect(convex_files_store.config) as fresh:
        [restored] = await fresh.memory.list_messages_by_id([message.id])
    assert restored == message


async def test_r2_settings_are_accepted_and_work_against_an_s3_api(
    localstack: LocalStack, local_convex: LocalConvex, uid: Callable[[str], str]
) -> None:
    r2 = BucketConfig(
        provider="r2",
        bucket="r2-images",
        endpoint_url=localstack.endpoint_url,
        access_key_id=localstack.access_key,
        secret_access_key=localstack.secret_key,
        public_base_url="https://pub-example.r2.dev",
    )
    assert r2.region is None
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"r2": r2},
        rules=[RoutingRule(bucket="r2")],
    )
    thread, resource = uid("t"), uid("r")
    img = image_bytes("webp", 120_000, seed=20)
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "file", "mimeType": "image/webp", "data": b64(img)}]},
    )
    async with OffloadingStore.connect(config) as offloading:
        await offloading.memory.save_messages([message])
        stored = await offloading.store.memory.list_messages_by_id([message.id])
        assert stored[0].content["parts"][0]["data"].startswith("https://pub-example.r2.dev/")
        assert (await offloading.memory.list_messages_by_id([message.id])) == [message]
    with pytest.raises(ValueError, match="R2 does not support SSE-KMS"):
        BucketConfig(provider="r2", bucket="b", account_id="acct", sse="aws:kms")


async def test_urls_restore_mode_gives_short_lived_working_urls(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    import httpx

    thread, resource = uid("t"), uid("r")
    img = image_bytes("png", 90_000, seed=21)
    message = msg(
        thread,
        resource,
        0,
        {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )
    await offloading.memory.save_messages([message])
    ui = offloading.with_restore_mode("urls")
    [shown] = await ui.memory.list_messages_by_id([message.id])
    url = shown.content["parts"][0]["data"]
    assert url.startswith("http://127.0.0.1:")
    assert "X-Amz-Expires=900" in url, "bounded by the bucket's presign_ttl"
    assert MANIFEST_KEY not in shown.content.get("metadata", {})
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.content == img
    assert fetched.headers["content-type"] == "image/png"
    [inline] = await offloading.memory.list_messages_by_id([message.id])
    assert inline == message, "the view did not change the store's own mode"
