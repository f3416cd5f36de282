"""The blocking API: the same stores and methods as the async one, on the same real servers, safe
from several threads at once."""

from __future__ import annotations

import inspect
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from convex_offload import (
    BackgroundTaskStore,
    ChannelStore,
    ConvexNativeVector,
    ConvexServerCache,
    ConvexVector,
    InvalidInputError,
    MemoryStore,
    Message,
    OffloadConfig,
    OffloadedRecords,
    OffloadingMemory,
    OffloadingWorkflows,
    ScheduleStore,
    ScoreStore,
    Thread,
    WorkflowStore,
)
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.offload.background_tasks import OffloadingBackgroundTasks
from convex_offload.sync import (
    SyncBackgroundTasks,
    SyncChannels,
    SyncConvexNativeVector,
    SyncConvexServerCache,
    SyncConvexStore,
    SyncConvexVector,
    SyncMemory,
    SyncOffloadingStore,
    SyncRecords,
    SyncSchedules,
    SyncScores,
    SyncWorkflows,
)
from media import b64, image_bytes

PAIRS: list[tuple[type, type]] = [
    (MemoryStore, SyncMemory),
    (OffloadingMemory, SyncMemory),
    (WorkflowStore, SyncWorkflows),
    (OffloadingWorkflows, SyncWorkflows),
    (ScoreStore, SyncScores),
    (BackgroundTaskStore, SyncBackgroundTasks),
    (OffloadingBackgroundTasks, SyncBackgroundTasks),
    (ScheduleStore, SyncSchedules),
    (ChannelStore, SyncChannels),
    (OffloadedRecords, SyncRecords),
    (ConvexVector, SyncConvexVector),
    (ConvexServerCache, SyncConvexServerCache),
    (ConvexNativeVector, SyncConvexNativeVector),
]
INTERNAL = {"get_run_row", "thread_message_ids", "aclose"}


def public_coroutines(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in INTERNAL
    }


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[f"{a.__name__}" for a, _ in PAIRS])
def test_every_async_method_has_its_blocking_twin_with_the_same_signature(
    async_cls: type, sync_cls: type
) -> None:
    wanted = public_coroutines(async_cls)
    missing = [name for name in wanted if not hasattr(sync_cls, name)]
    assert not missing, f"{sync_cls.__name__} lacks {missing}"
    for name, method in wanted.items():
        twin = getattr(sync_cls, name).method  # the sync method's signature is this one's
        assert (
            inspect.signature(twin) == inspect.signature(method) or twin.__qualname__.split(".")[-1] == name
        ), name
        ours = list(inspect.signature(method).parameters)
        theirs = list(inspect.signature(twin).parameters)
        assert ours == theirs, f"{sync_cls.__name__}.{name}: {ours} != {theirs}"


@pytest.fixture
def sync_offloading(s3_config: OffloadConfig) -> Iterator[SyncOffloadingStore]:
    with SyncOffloadingStore.connect(s3_config) as store:
        yield store


def image_message(tag: str, seed: int) -> Message:
    return Message(
        id=f"sync-{tag}-{uuid.uuid4().hex[:8]}",
        thread_id="sync-thread",
        resource_id="sync-user",
        role="user",
        content={
            "format": 2,
            "parts": [
                {"type": "text", "text": tag},
                {"type": "file", "mimeType": "image/png", "data": b64(image_bytes("png", 60_000, seed=seed))},
            ],
        },
    )


def test_the_blocking_offloading_store_offloads_and_restores(
    sync_offloading: SyncOffloadingStore, local_convex: LocalConvex
) -> None:
    message = image_message("one", 1)
    sync_offloading.memory.save_messages([message])
    assert sync_offloading.memory.list_messages_by_id([message.id]) == [message]
    with SyncConvexStore(local_convex.url, local_convex.admin_key) as plain:
        [stored] = plain.memory.list_messages_by_id([message.id])
        assert len(json.dumps(stored.content)) < 5_000, "the image went to the bucket"
        assert plain.get_store("memory").list_messages_by_id([message.id]) == [stored]
    [shown] = sync_offloading.with_restore_mode("urls").memory.list_messages_by_id([message.id])
    assert "X-Amz-Signature=" in shown.content["parts"][1]["data"]


def test_the_blocking_store_is_safe_from_several_threads(sync_offloading: SyncOffloadingStore) -> None:
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            message = image_message(f"thread{number}", 100 + number)
            sync_offloading.memory.save_messages([message])
            results[number] = sync_offloading.memory.list_messages_by_id([message.id]) == [message]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert results == dict.fromkeys(range(8), True)


def test_errors_keep_their_types_and_a_closed_store_refuses_calls(local_convex: LocalConvex) -> None:
    store = SyncConvexStore(local_convex.url, local_convex.admin_key)
    thread = Thread(
        id=f"sync-{uuid.uuid4().hex[:8]}", resource_id="sync-user", title="hello", metadata={"a": 1}
    )
    store.memory.save_thread(thread)
    assert store.memory.get_thread_by_id(thread.id) == thread
    with pytest.raises(InvalidInputError, match="Thread ID is required"):
        store.memory.save_messages([Message(id="m", role="user", content={}, resource_id="u")])
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(InvalidInputError, match="closed"):
        store.memory.get_thread_by_id(thread.id)


def test_the_blocking_vector_store_and_cache_work_on_the_real_server(local_convex: LocalConvex) -> None:
    index = f"sync_{uuid.uuid4().hex[:8]}"
    with SyncConvexVector(local_convex.url, local_convex.admin_key) as vectors:
        vectors.create_index(index, 3)
        ids = vectors.upsert(index, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["a", "b"])
        assert ids == ["a", "b"]
        [best] = vectors.query(index, [0.9, 0.1, 0.0], top_k=1)
        assert best.id == "a"
    with SyncConvexServerCache(
        local_convex.url, local_convex.admin_key, key_prefix=f"sync-{index}:"
    ) as cache:
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
