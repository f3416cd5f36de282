"""Record kinds as data: a new table is one entry, and Python and convex/ read the same description.

On a Convex server and a local-folder bucket of their own, since gc, verify and stats look at
everything there is.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from convex_offload import (
    ForbiddenReferenceError,
    OffloadingStore,
    RecordKindError,
    RecordKinds,
    UnsupportedManifestError,
)
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.operations import migrate, stats, verify
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes

WIDGET: dict[str, Any] = {
    "name": "widget",
    "table": "app_widgets",
    "storage": {"table": "mastra_documents", "layout": "documents"},
    "id": "id",
    "tenant": "owner",
    "fields": {"body": "json", "meta": "value"},
    "manifest": ["meta"],
    "guard": "body",
}
"""The one entry a new table needs: records in the `mastra_documents` fallback table."""


@pytest.fixture(scope="module")
def convex() -> Iterator[LocalConvex]:
    with LocalConvex() as server:
        yield server


@pytest.fixture(scope="module")
def bucket_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kinds-bucket")


@pytest.fixture
def config(convex: LocalConvex, bucket_dir: Path) -> OffloadConfig:
    return OffloadConfig(
        convex_url=convex.url,
        convex_admin_key=convex.admin_key,
        buckets={"files": BucketConfig(provider="local", path=bucket_dir)},
    )


@pytest.fixture
async def offloading(config: OffloadConfig) -> AsyncIterator[OffloadingStore]:
    async with OffloadingStore.connect(config, kinds=RecordKinds.default().with_kind(WIDGET)) as store:
        yield store


@pytest.fixture
async def plain(convex: LocalConvex) -> AsyncIterator[ConvexStore]:
    async with ConvexStore(convex.url, convex.admin_key) as store:
        yield store


def objects(bucket_dir: Path) -> set[str]:
    return {p.name for p in bucket_dir.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")}


def widget(seed: int) -> dict[str, Any]:
    img = image_bytes("png", 120_000, seed=seed)
    return {
        "id": f"w-{uuid.uuid4().hex[:10]}",
        "owner": "user-7",
        "title": "a widget",
        # A JSON string field, encoded as JavaScript's JSON.stringify writes it (as Mastra's are).
        "body": json.dumps(
            {"parts": [{"type": "text", "text": "see"}, {"type": "file", "url": data_url(img, "image/png")}]},
            separators=(",", ":"),
        ),
        "meta": {"thumbnail": {"type": "image", "mimeType": "image/png", "data": b64(img)}, "tags": ["x"]},
    }


async def test_a_new_kind_is_one_entry_and_is_offloaded_restored_and_deleted(
    offloading: OffloadingStore, plain: ConvexStore, bucket_dir: Path
) -> None:
    record = widget(seed=11)
    before = objects(bucket_dir)

    await offloading.records("widget").save(copy.deepcopy(record))

    stored = await plain.db.load("app_widgets", {"id": record["id"]})
    assert stored is not None
    assert len(json.dumps(stored)) < 10_000, "the payloads left the record"
    assert MANIFEST_KEY in stored["meta"], "the manifest lives where the entry says"
    assert len(objects(bucket_dir) - before) == 1, "one object for the same bytes in two places"
    assert await offloading.records("widget").get(record["id"]) == record

    await offloading.records("widget").delete([record["id"]])
    assert await offloading.records("widget").get(record["id"]) is None
    assert objects(bucket_dir) == before, "deleting the record deleted its object"


async def test_gc_verify_stats_and_migrate_know_the_new_kind(
    offloading: OffloadingStore, plain: ConvexStore, bucket_dir: Path
) -> None:
    record = widget(seed=12)
    await plain.db.insert("app_widgets", copy.deepcopy(record))  # written inline, as before this library

    found = await stats(offloading)
    assert found.tables["app_widgets"].inline_base64 >= 1, "the server-side scan read the entry's fields"

    report = await migrate(offloading, tables=["app_widgets"])
    assert report.failed == 0
    assert report.migrated == 1
    assert report.payloads == 2
    stored = await plain.db.load("app_widgets", {"id": record["id"]})
    assert stored is not None
    assert len(json.dumps(stored)) < 10_000
    assert await offloading.records("widget").get(record["id"]) == record

    checked = await verify(offloading)
    assert checked.ok, checked.problems
    [key] = [r["key"] for r in stored["meta"][MANIFEST_KEY]["refs"]][:1]
    (bucket_dir / key).unlink()
    broken = await verify(offloading)
    assert [(p.kind, p.record) for p in broken.problems] == [("missing", f"app_widgets:{record['id']}")]

    # The record is deleted behind the library's back: gc reconciles its references and takes the
    # object it no longer needs.
    again = widget(seed=13)
    await offloading.records("widget").save(copy.deepcopy(again))
    await plain.db.delete_many("app_widgets", [record["id"], again["id"]])
    before = objects(bucket_dir)
    collected = await offloading.lifecycle.gc(grace=timedelta(0))
    assert len(collected.deleted) == 1
    assert len(before) - len(objects(bucket_dir)) == 1


async def test_python_and_convex_read_the_same_description(
    offloading: OffloadingStore, plain: ConvexStore
) -> None:
    """A `b64_json` payload (a field the Python scanner knows) left inline is seen by the
    server-side scan (stats, migrate's candidates) and moved by migrate."""
    img = image_bytes("png", 30_000, seed=14)
    content = {
        "format": 2,
        "parts": [
            {
                "type": "tool-invocation",
                "toolInvocation": {
                    "state": "result",
                    "toolCallId": "c1",
                    "toolName": "draw",
                    "args": {},
                    "result": {"images": [{"type": "image", "mimeType": "image/png", "b64_json": b64(img)}]},
                },
            }
        ],
    }
    message = Message(
        id=f"m-{uuid.uuid4().hex[:10]}",
        thread_id="t-kinds",
        resource_id="u-kinds",
        role="tool",
        content=content,
    )
    await plain.memory.save_messages([message])

    found = await stats(offloading)
    assert found.tables["mastra_messages"].inline_base64 >= 1

    report = await migrate(offloading, tables=["mastra_messages"])
    assert report.migrated >= 1
    [stored] = await plain.memory.list_messages_by_id([message.id])
    assert b64(img) not in json.dumps(stored.content)
    assert await offloading.memory.list_messages_by_id([message.id]) == [message]
    assert (await stats(offloading)).tables["mastra_messages"].inline_base64 == 0


async def tampered(offloading: OffloadingStore, plain: ConvexStore, change: Any) -> Message:
    img = image_bytes("png", 40_000, seed=15)
    message = Message(
        id=f"m-{uuid.uuid4().hex[:10]}",
        thread_id="t-forged",
        resource_id="u-forged",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )
    await offloading.memory.save_messages([message])
    [stored] = await plain.memory.list_messages_by_id([message.id])
    change(stored.content)
    await plain.memory.save_messages([stored])
    return message


async def test_an_unknown_manifest_version_is_a_typed_error_naming_the_record(
    offloading: OffloadingStore, plain: ConvexStore
) -> None:
    def newer(content: dict[str, Any]) -> None:
        content["metadata"][MANIFEST_KEY]["v"] = 2

    message = await tampered(offloading, plain, newer)
    with pytest.raises(UnsupportedManifestError, match=f"message {message.id}.*version 2") as caught:
        await offloading.memory.list_messages_by_id([message.id])
    assert caught.value.record == f"message {message.id}"
    assert caught.value.version == 2


async def test_a_forged_url_in_a_manifest_is_refused(offloading: OffloadingStore, plain: ConvexStore) -> None:
    forged = "https://attacker.example/steal.png"

    def forge(content: dict[str, Any]) -> None:
        content["metadata"][MANIFEST_KEY]["refs"][0]["url"] = forged
        content["parts"][0]["data"] = forged

    message = await tampered(offloading, plain, forge)
    with pytest.raises(ForbiddenReferenceError, match=f"message {message.id}.*url 'https://attacker"):
        await offloading.memory.list_messages_by_id([message.id])


async def test_a_forged_pointer_in_a_manifest_is_refused(
    offloading: OffloadingStore, plain: ConvexStore
) -> None:
    def forge(content: dict[str, Any]) -> None:
        content["metadata"][MANIFEST_KEY]["refs"][0]["path"] = "parts/0/data"

    message = await tampered(offloading, plain, forge)
    with pytest.raises(ForbiddenReferenceError, match="must start with '/'"):
        await offloading.memory.list_messages_by_id([message.id])


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"fields": {}}, r"record kind 'widget': fields: .*at least 1"),
        (
            {"manifest": ["nowhere"]},
            r"record kind 'widget': .*`manifest` must start with one of \['body', 'meta'\]",
        ),
        ({"storage": {"table": "mastra_threads", "layout": "documents"}}, r"`documents` layout"),
        (
            {"fields": {"body": "xml"}},
            r"record kind 'widget': fields.body: Input should be 'json' or 'value'",
        ),
        ({"merge": "deep"}, r"record kind 'widget': merge"),
        ({"table": "no spaces"}, r"record kind 'widget': table"),
    ],
)
def test_a_bad_kind_entry_is_a_typed_error_naming_the_kind_and_field(
    change: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(RecordKindError, match=pattern):
        RecordKinds.default().with_kind({**WIDGET, **change})


def test_two_kinds_cannot_share_a_name_or_a_table() -> None:
    kinds = RecordKinds.default().with_kind(WIDGET)
    with pytest.raises(RecordKindError, match="two record kinds are named 'widget'"):
        kinds.with_kind({**WIDGET, "table": "other_widgets"})
    with pytest.raises(RecordKindError, match="two record kinds describe table 'mastra_messages'"):
        kinds.with_kind({**WIDGET, "name": "copy", "table": "mastra_messages"})
    with pytest.raises(RecordKindError, match="no record kind named 'gadget'"):
        kinds.named("gadget")


def test_the_default_kinds_are_the_mastra_tables_that_can_hold_attachments() -> None:
    kinds = RecordKinds.default()
    assert [(k.name, k.table, k.storage.table) for k in kinds] == [
        ("message", "mastra_messages", "mastra_messages"),
        ("thread", "mastra_threads", "mastra_threads"),
        ("resource", "mastra_resources", "mastra_resources"),
        ("workflow run", "mastra_workflow_snapshot", "mastra_workflow_snapshots"),
        ("background task", "mastra_background_tasks", "mastra_background_tasks"),
    ]
    assert "b64_json" in kinds.wire()["bytesFields"]
