"""Deletion, garbage collection, verification and migration, on a Convex server and a bucket prefix of
their own (gc and verify look at everything there is)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.operations import migrate, verify
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, Thread
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes
from ts_mastra import TsMastra

T0 = datetime(2025, 8, 1, tzinfo=UTC)


@dataclass
class World:
    """A Convex server and a bucket prefix nobody else uses."""

    convex: LocalConvex
    localstack: LocalStack
    prefix: str

    def config(self, **overrides: Any) -> OffloadConfig:
        return OffloadConfig(
            convex_url=self.convex.url,
            convex_admin_key=self.convex.admin_key,
            buckets={"images": s3_bucket(self.localstack, "images", prefix=self.prefix)},
            **overrides,
        )

    def object_keys(self) -> set[str]:
        s3 = self.localstack.s3_client()
        listed = s3.list_objects_v2(Bucket="images", Prefix=self.prefix)
        return {item["Key"] for item in listed.get("Contents", [])}


@pytest.fixture(scope="module")
def world(localstack: LocalStack) -> Iterator[World]:
    with LocalConvex() as convex:
        yield World(convex=convex, localstack=localstack, prefix=f"lifecycle-{uuid.uuid4().hex[:8]}/")


@pytest.fixture
async def offloading(world: World) -> AsyncIterator[OffloadingStore]:
    async with OffloadingStore.connect(world.config()) as store:
        yield store


@pytest.fixture
async def plain(world: World) -> AsyncIterator[ConvexStore]:
    async with ConvexStore(world.convex.url, world.convex.admin_key) as store:
        yield store


def image_message(thread: str, resource: str, index: int, *images: bytes) -> Message:
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"message {index}"}]
    parts += [{"type": "file", "mimeType": "image/png", "data": b64(img)} for img in images]
    return Message(
        id=f"{thread}-m{index}",
        thread_id=thread,
        resource_id=resource,
        role="user",
        content={"format": 2, "parts": parts},
        created_at=T0 + timedelta(seconds=index),
    )


def key_of(offloading: OffloadingStore, resource: str, img: bytes) -> str:
    import hashlib

    return offloading.offloader.key_for("images", resource, hashlib.sha256(img).hexdigest())


# --- deletion ---------------------------------------------------------------------------------


async def test_deleting_a_thread_removes_exactly_its_unshared_objects(
    offloading: OffloadingStore, world: World, uid: Callable[[str], str]
) -> None:
    resource = uid("r")
    a, b = uid("ta"), uid("tb")
    own, shared, other = (image_bytes("png", 60_000, seed=s) for s in (201, 202, 203))
    for thread in (a, b):
        await offloading.memory.save_thread(Thread(id=thread, resource_id=resource))
    await offloading.memory.save_messages(
        [image_message(a, resource, 0, own), image_message(a, resource, 1, shared)]
    )
    await offloading.memory.save_messages([image_message(b, resource, 0, shared, other)])
    keys = {
        name: key_of(offloading, resource, img)
        for name, img in (("own", own), ("shared", shared), ("other", other))
    }
    assert set(keys.values()) <= world.object_keys()

    await offloading.memory.delete_thread(a)

    remaining = world.object_keys()
    assert keys["own"] not in remaining, "the deleted thread's own image is gone (erasure)"
    assert keys["shared"] in remaining, "an image another thread still references stays"
    assert keys["other"] in remaining
    [kept] = await offloading.memory.list_messages_by_id([f"{b}-m0"])
    assert kept == image_message(b, resource, 0, shared, other)
    assert (await verify(offloading)).ok


async def test_deleting_messages_and_runs_releases_their_objects(
    offloading: OffloadingStore, world: World, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    img, snap_img = image_bytes("png", 50_000, seed=204), image_bytes("png", 50_000, seed=205)
    await offloading.memory.save_messages([image_message(thread, resource, 0, img)])
    await offloading.memory.delete_messages([f"{thread}-m0"])
    assert key_of(offloading, resource, img) not in world.object_keys()

    wf, run = uid("wf"), uid("run")
    await offloading.workflows.persist_workflow_snapshot(
        wf, run, {"context": {"s": {"output": data_url(snap_img, "image/png")}}}, resource_id=resource
    )
    assert key_of(offloading, resource, snap_img) in world.object_keys()
    await offloading.workflows.delete_workflow_run_by_id(run, wf)
    assert key_of(offloading, resource, snap_img) not in world.object_keys()


# --- garbage collection -----------------------------------------------------------------------


async def crashed_upload(world: World, resource: str, img: bytes) -> str:
    """What a writer that died between upload and record write leaves: an object and a lease."""
    config = world.config(lease_seconds=0.001)
    async with OffloadingStore.connect(config) as writer:
        # The first steps of a write, done by hand, and then nothing: the writer is gone.
        plan = writer.offloader.plan(
            {"parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
            holder=("metadata",),
            tenant=resource,
            where="crashed",
        )
        objects = plan.offloaded()
        await writer.registry.reserve(
            uuid.uuid4().hex, "lease:crashed", [p.object_ref() for p in objects], config.lease_seconds
        )
        await writer.offloader.uploader.upload(objects, check_bucket=False)
        return key_of(writer, resource, img)


async def test_gc_removes_an_old_orphan_and_keeps_referenced_objects(
    offloading: OffloadingStore, world: World, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    orphan_img, kept_img = image_bytes("png", 40_000, seed=206), image_bytes("png", 40_000, seed=207)
    orphan = await crashed_upload(world, resource, orphan_img)
    await offloading.memory.save_messages([image_message(thread, resource, 0, kept_img)])
    kept = key_of(offloading, resource, kept_img)
    assert {orphan, kept} <= world.object_keys()

    young = await offloading.lifecycle.gc(grace=timedelta(hours=1))
    assert orphan in world.object_keys(), "younger than the grace period: kept"
    assert young.expired_leases >= 1

    report = await offloading.lifecycle.gc(grace=timedelta(0))
    assert ("images", orphan) in report.deleted
    assert orphan not in world.object_keys()
    assert kept in world.object_keys()
    [message] = await offloading.memory.list_messages_by_id([f"{thread}-m0"])
    assert message == image_message(thread, resource, 0, kept_img)


async def test_gc_keeps_an_object_whose_record_is_written_during_the_run(
    offloading: OffloadingStore, world: World, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    img = image_bytes("png", 40_000, seed=208)
    candidate = await crashed_upload(world, resource, img)
    written: list[str] = []

    async def interleave(phase: str) -> None:
        # After gc has marked (without this record), before it sweeps: a writer references the object.
        if phase == "sweep":
            async with OffloadingStore.connect(world.config()) as writer:
                await writer.memory.save_messages([image_message(thread, resource, 0, img)])
            written.append(phase)

    report = await offloading.lifecycle.gc(grace=timedelta(0), on_phase=interleave)
    assert written == ["sweep"]
    assert ("images", candidate) not in report.deleted
    assert candidate in world.object_keys()
    async with OffloadingStore.connect(world.config()) as reader:
        [message] = await reader.memory.list_messages_by_id([f"{thread}-m0"])
    assert message == image_message(thread, resource, 0, img)


async def test_gc_dry_run_deletes_nothing(
    offloading: OffloadingStore, world: World, uid: Callable[[str], str]
) -> None:
    orphan = await crashed_upload(world, uid("r"), image_bytes("png", 30_000, seed=209))
    await offloading.registry.expire_pending()
    report = await offloading.lifecycle.gc(grace=timedelta(0), dry_run=True)
    assert ("images", orphan) in report.orphans
    assert orphan in world.object_keys()


# --- verify -----------------------------------------------------------------------------------


async def test_verify_catches_a_deleted_object_a_corrupted_object_and_an_over_limit_record(
    world: World, plain: ConvexStore, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    gone, bad = image_bytes("png", 30_000, seed=210), image_bytes("png", 30_000, seed=211)
    async with OffloadingStore.connect(world.config(max_record_bytes=400_000)) as offloading:
        await offloading.memory.save_messages(
            [image_message(thread, resource, 0, gone), image_message(thread, resource, 1, bad)]
        )
        await plain.memory.save_messages(
            [
                Message(
                    id=f"{thread}-big",
                    thread_id=thread,
                    resource_id=resource,
                    role="user",
                    content={"format": 2, "parts": [{"type": "text", "text": "words " * 80_000}]},
                )
            ]
        )
        s3 = world.localstack.s3_client()
        s3.delete_object(Bucket="images", Key=key_of(offloading, resource, gone))
        corrupted = bytearray(bad)
        corrupted[200] ^= 0x55
        s3.put_object(Bucket="images", Key=key_of(offloading, resource, bad), Body=bytes(corrupted))

        shallow = await verify(offloading)
        deep = await verify(offloading, deep=True)
    kinds = {(p.kind, p.key or p.record) for p in deep.problems}
    assert ("missing", key_of(offloading, resource, gone)) in kinds
    assert ("corrupt", key_of(offloading, resource, bad)) in kinds
    assert ("over_limit", f"mastra_messages:{thread}-big") in kinds
    assert {p.kind for p in shallow.problems} >= {"missing", "over_limit"}
    # Clean up for the other tests of this module: they verify the whole deployment.
    await plain.memory.delete_thread(thread)
    s3.delete_object(Bucket="images", Key=key_of(offloading, resource, bad))


# --- migration --------------------------------------------------------------------------------


async def test_migrate_offloads_inline_attachments_written_by_typescript(
    world: World, plain: ConvexStore, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    images = [image_bytes("png", 70_000, seed=300 + i) for i in range(6)]
    originals = [
        {
            "id": f"{thread}-{i}",
            "threadId": thread,
            "resourceId": resource,
            "role": "user",
            "type": "v2",
            "createdAt": (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", ".000Z"),
            "content": {
                "format": 2,
                "parts": [
                    {"type": "text", "text": f"#{i}"},
                    {"type": "file", "mimeType": "image/png", "data": data_url(img, "image/png")},
                ],
            },
        }
        for i, img in enumerate(images)
    ]
    with TsMastra(world.convex.url, world.convex.admin_key) as ts:
        ts.call(
            "memory",
            "saveThread",
            {
                "thread": {
                    "id": thread,
                    "resourceId": resource,
                    "title": "",
                    "createdAt": "2025-08-01T00:00:00.000Z",
                    "updatedAt": "2025-08-01T00:00:00.000Z",
                }
            },
        )
        ts.call("memory", "saveMessages", {"messages": originals})
    before = {m.id: m.content for m in (await plain.memory.list_messages(thread, per_page=False)).messages}

    async with OffloadingStore.connect(world.config()) as offloading:
        dry = await migrate(offloading, dry_run=True, tables=["mastra_messages"], page_size=2)
        assert dry.migrated >= 6
        assert dry.bytes_offloaded >= sum(len(i) for i in images)
        raw = await plain.db.load("mastra_messages", {"id": f"{thread}-0"})
        assert raw is not None
        assert b64(images[0])[:200] in raw["content"], "a dry run changes nothing"

        class Killed(Exception):
            pass

        def kill_after_two_pages(_table: str, pages: int) -> None:
            if pages == 2:
                raise Killed

        state = (
            world.localstack.log_path.parent / f"migrate-{uuid.uuid4().hex}.json"
            if world.localstack.log_path
            else None
        )
        with pytest.raises(Killed):
            await migrate(
                offloading,
                state_path=state,
                tables=["mastra_messages"],
                page_size=2,
                on_page=kill_after_two_pages,
            )
        assert state is not None
        assert json.loads(state.read_text())["cursors"]["mastra_messages"]
        resumed = await migrate(offloading, state_path=state, tables=["mastra_messages"], page_size=2)
        again = await migrate(offloading, tables=["mastra_messages"], page_size=2)
        assert again.migrated == 0, "idempotent: nothing left to move"
        assert resumed.failed == 0

        after = {
            m.id: m.content for m in (await offloading.memory.list_messages(thread, per_page=False)).messages
        }
    assert after == before
    stored = await plain.memory.list_messages(thread, per_page=False)
    stored_text = json.dumps([m.content for m in stored.messages])
    assert all(b64(img)[:200] not in stored_text for img in images), "no payload is left inline"
    with TsMastra(world.convex.url, world.convex.admin_key) as ts:
        listed = ts.call("memory", "listMessages", {"threadId": thread})
    assert len(listed["messages"]) == 6, "the TypeScript store still reads the migrated thread"


async def test_gc_never_touches_objects_it_did_not_write(offloading: OffloadingStore, world: World) -> None:
    foreign = f"{world.prefix}someone-else/notes.txt"
    world.localstack.s3_client().put_object(Bucket="images", Key=foreign, Body=b"not ours")
    report = await offloading.lifecycle.gc(grace=timedelta(0))
    assert foreign in world.object_keys()
    assert ("images", foreign) not in report.orphans


async def test_verify_reports_objects_left_behind_by_a_delete_elsewhere_and_gc_erases_them(
    offloading: OffloadingStore, plain: ConvexStore, world: World, uid: Callable[[str], str]
) -> None:
    resource, thread = uid("r"), uid("t")
    img = image_bytes("png", 30_000, seed=212)
    await offloading.memory.save_messages([image_message(thread, resource, 0, img)])
    key = key_of(offloading, resource, img)
    await plain.memory.delete_messages([f"{thread}-m0"])  # as the TypeScript app would: no cleanup
    report = await verify(offloading, grace=timedelta(0))
    assert ("unreferenced", key) in {(p.kind, p.key) for p in report.problems}
    await offloading.lifecycle.gc(grace=timedelta(0))
    assert key not in world.object_keys()
    after = await verify(offloading, grace=timedelta(0))
    assert key not in {p.key for p in after.problems}
