"""Background tasks through the offloading store: a tool result holding a 900 KB image is stored
small and restored exactly; updates and deletes keep references right; gc, verify, stats and
migrate know the table. On a Convex server and a folder bucket of their own."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from convex_offload import BackgroundTask, BucketConfig, OffloadConfig, OffloadingStore, TaskUpdate
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.offload.operations import migrate, stats, verify
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes
from ts_mastra import TsMastra

BIG = image_bytes("png", 900_000, seed=61)
SMALL = image_bytes("png", 60_000, seed=62)
PREVIEW = image_bytes("png", 200_000, seed=63)
INLINE = image_bytes("png", 50_000, seed=64)


@pytest.fixture(scope="module")
def convex() -> Iterator[LocalConvex]:
    with LocalConvex() as server:
        yield server


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tasks-bucket")


@pytest.fixture
async def offloading(convex: LocalConvex, folder: Path) -> AsyncIterator[OffloadingStore]:
    config = OffloadConfig(
        convex_url=convex.url,
        convex_admin_key=convex.admin_key,
        buckets={"files": BucketConfig(provider="local", path=folder)},
    )
    async with OffloadingStore.connect(config) as store:
        yield store


@pytest.fixture
async def plain(convex: LocalConvex) -> AsyncIterator[ConvexStore]:
    async with ConvexStore(convex.url, convex.admin_key) as store:
        yield store


def objects(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")}


def mcp_image(img: bytes) -> dict[str, Any]:
    return {"content": [{"type": "image", "data": b64(img), "mimeType": "image/png"}], "isError": False}


def task(**fields: Any) -> BackgroundTask:
    base: dict[str, Any] = {
        "id": f"task-{uuid.uuid4().hex[:10]}",
        "status": "completed",
        "tool_name": "screenshot",
        "tool_call_id": f"call-{uuid.uuid4().hex[:6]}",
        "args": {"url": "https://example.com"},
        "agent_id": "agent-1",
        "thread_id": "thread-1",
        "resource_id": "user-1",
        "run_id": "run-1",
        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
        "timeout_ms": 30_000,
    }
    return BackgroundTask.model_validate({**base, **fields})


async def test_a_tool_result_with_a_900_kb_image_is_stored_small_and_restored_exactly(
    offloading: OffloadingStore, plain: ConvexStore, convex: LocalConvex
) -> None:
    written = task(result=mcp_image(BIG))
    await offloading.background_tasks.create_task(written)

    row = await plain.db.load("mastra_background_tasks", {"id": written.id})
    assert row is not None
    assert len(json.dumps(row)) < 10_000, "the image left the task's row"
    assert await offloading.background_tasks.get_task(written.id) == written
    [listed] = (await offloading.background_tasks.list_tasks(tool_call_id=written.tool_call_id)).tasks
    assert listed == written
    with TsMastra(convex.url, convex.admin_key) as ts:
        seen = ts.call("backgroundTasks", "getTask", written.id)
    assert seen["result"]["content"][0]["data"].startswith("local://files/"), "TS reads the reference"


async def test_updates_replace_a_fields_references_and_deletes_take_the_objects(
    offloading: OffloadingStore, folder: Path
) -> None:
    created = task(
        status="running", args={"image": {"type": "image", "mimeType": "image/png", "image": b64(SMALL)}}
    )
    before = objects(folder)
    await offloading.background_tasks.create_task(created)
    assert len(objects(folder) - before) == 1, "the image in the args"

    suspended = TaskUpdate(status="suspended", suspend_payload={"preview": data_url(PREVIEW, "image/png")})
    assert await offloading.background_tasks.update_task(created.id, suspended)
    after_suspend = objects(folder)
    assert len(after_suspend - before) == 2
    got = await offloading.background_tasks.get_task(created.id)
    assert got is not None
    assert got.suspend_payload == {"preview": data_url(PREVIEW, "image/png")}
    assert got.args == created.args, "the other field's references stay"

    assert await offloading.background_tasks.update_task(created.id, TaskUpdate(suspend_payload=None))
    assert len(objects(folder) - before) == 1, "clearing the payload released its object"

    await offloading.background_tasks.delete_task(created.id)
    assert objects(folder) == before, "deleting the task deleted what it alone referenced"
    assert not await offloading.background_tasks.update_task(created.id, TaskUpdate(status="failed"))


async def test_gc_verify_stats_and_migrate_know_background_tasks(
    offloading: OffloadingStore, plain: ConvexStore, folder: Path
) -> None:
    inline = task(result=mcp_image(INLINE))
    await plain.background_tasks.create_task(inline)  # written by a plain store, image inline
    assert (await stats(offloading)).tables["mastra_background_tasks"].inline_base64 >= 1

    report = await migrate(offloading, tables=["mastra_background_tasks"])
    assert report.failed == 0
    assert report.migrated >= 1
    row = await plain.db.load("mastra_background_tasks", {"id": inline.id})
    assert row is not None
    assert b64(INLINE) not in json.dumps(row)
    assert await offloading.background_tasks.get_task(inline.id) == inline
    checked = await verify(offloading, deep=True)
    assert checked.ok, checked.problems

    # Deleted behind the library's back: gc reconciles its references and takes its object.
    await plain.background_tasks.delete_task(inline.id)
    before = objects(folder)
    collected = await offloading.lifecycle.gc(grace=timedelta(0))
    assert len(collected.deleted) == 1
    assert len(before - objects(folder)) == 1
