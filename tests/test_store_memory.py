"""The Python ConvexStore's memory domain on the local Convex server: threads, messages, resources."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from convex_offload.errors import InvalidInputError, InvalidValueError, NotFoundError, RecordTooLargeError
from convex_offload.store.models import (
    DateRange,
    Message,
    MessageInclude,
    MessageUpdate,
    OrderBy,
    Resource,
    Thread,
)
from convex_offload.store.store import ConvexStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def message(
    mid: str, thread: str, resource: str, minute: int, text: str = "hi", **metadata: object
) -> Message:
    content: dict[str, object] = {"format": 2, "parts": [{"type": "text", "text": text}]}
    if metadata:
        content["metadata"] = dict(metadata)
    return Message(
        id=mid,
        thread_id=thread,
        resource_id=resource,
        role="user" if minute % 2 == 0 else "assistant",
        content=content,
        created_at=T0 + timedelta(minutes=minute),
    )


async def test_thread_round_trip(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread = Thread(
        id=uid("t"), resource_id=uid("r"), title="Hello", metadata={"topic": "cats"}, created_at=T0
    )
    await store.memory.save_thread(thread)
    loaded = await store.memory.get_thread_by_id(thread.id)
    assert loaded == thread


async def test_thread_of_another_resource_is_not_found(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread = Thread(id=uid("t"), resource_id=uid("r"))
    await store.memory.save_thread(thread)
    assert await store.memory.get_thread_by_id(thread.id, resource_id="someone-else") is None


async def test_update_thread_merges_metadata(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread = Thread(id=uid("t"), resource_id=uid("r"), title="a", metadata={"keep": 1, "change": 1})
    await store.memory.save_thread(thread)
    updated = await store.memory.update_thread(thread.id, "b", {"change": 2, "new": True})
    assert updated.title == "b"
    assert updated.metadata == {"keep": 1, "change": 2, "new": True}
    assert updated.updated_at > thread.updated_at


async def test_update_of_unknown_thread_raises_not_found(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    with pytest.raises(NotFoundError):
        await store.memory.update_thread(uid("missing"), "x")


async def test_metadata_key_convex_refuses_fails_before_sending(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread = Thread(id=uid("t"), resource_id=uid("r"), metadata={"nested": {"$where": 1}})
    with pytest.raises(InvalidValueError, match=r"starts with a '\$'"):
        await store.memory.save_thread(thread)
    assert await store.memory.get_thread_by_id(thread.id) is None


async def test_list_threads_pages_newest_first_with_filters(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    resource = uid("r")
    for i in range(5):
        await store.memory.save_thread(
            Thread(
                id=f"{resource}-t{i}",
                resource_id=resource,
                metadata={"even": i % 2 == 0},
                created_at=T0 + timedelta(days=i),
            )
        )
    first = await store.memory.list_threads(resource_id=resource, per_page=2)
    assert [t.id for t in first.threads] == [f"{resource}-t4", f"{resource}-t3"]
    assert (first.total, first.has_more, first.per_page) == (5, True, 2)
    last = await store.memory.list_threads(resource_id=resource, per_page=2, page=2)
    assert [t.id for t in last.threads] == [f"{resource}-t0"]
    assert last.has_more is False
    everything = await store.memory.list_threads(
        resource_id=resource, per_page=False, order_by=OrderBy(field="createdAt", direction="ASC")
    )
    assert [t.id for t in everything.threads] == [f"{resource}-t{i}" for i in range(5)]
    evens = await store.memory.list_threads(resource_id=resource, per_page=False, metadata={"even": True})
    assert {t.id for t in evens.threads} == {f"{resource}-t0", f"{resource}-t2", f"{resource}-t4"}
    with pytest.raises(InvalidInputError, match="Invalid metadata key"):
        await store.memory.list_threads(metadata={"bad-key": 1})
    with pytest.raises(InvalidInputError, match="page must be 0"):
        await store.memory.list_threads(per_page=False, page=1)


async def test_messages_are_listed_in_order_with_paging(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_thread(Thread(id=thread, resource_id=resource))
    saved = await store.memory.save_messages(
        [message(f"{thread}-m{i}", thread, resource, i) for i in (3, 1, 2, 0)]
    )
    assert [m.id for m in saved] == [f"{thread}-m{i}" for i in range(4)]
    page = await store.memory.list_messages(thread, per_page=3)
    assert [m.id for m in page.messages] == [f"{thread}-m{i}" for i in range(3)]
    assert (page.total, page.has_more) == (4, True)
    newest = await store.memory.list_messages(thread, per_page=2, order_by=OrderBy(direction="DESC"))
    assert [m.id for m in newest.messages] == [f"{thread}-m3", f"{thread}-m2"]
    window = await store.memory.list_messages(
        thread,
        per_page=False,
        date_range=DateRange(
            start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=2), end_exclusive=True
        ),
    )
    assert [m.id for m in window.messages] == [f"{thread}-m1"]


async def test_message_round_trip_keeps_v2_content(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread, resource = uid("t"), uid("r")
    original = Message(
        id=uid("m"),
        thread_id=thread,
        resource_id=resource,
        role="assistant",
        created_at=T0,
        content={
            "format": 2,
            "parts": [
                {"type": "text", "text": "héllo ✓"},
                {"type": "reasoning", "reasoning": "…", "details": []},
            ],
            "toolInvocations": [],
            "metadata": {"$weird": "fine inside a JSON string", "n": 1.5},
        },
    )
    await store.memory.save_messages([original])
    [loaded] = await store.memory.list_messages_by_id([original.id])
    assert loaded == original


async def test_include_brings_neighbours_from_other_threads(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    resource = uid("r")
    a, b = uid("ta"), uid("tb")
    await store.memory.save_messages([message(f"{a}-{i}", a, resource, i) for i in range(2)])
    await store.memory.save_messages([message(f"{b}-{i}", b, resource, 10 + i) for i in range(5)])
    page = await store.memory.list_messages(
        a,
        per_page=False,
        include=[MessageInclude(id=f"{b}-2", with_previous_messages=1, with_next_messages=1)],
    )
    assert [m.id for m in page.messages] == [f"{a}-0", f"{a}-1", f"{b}-1", f"{b}-2", f"{b}-3"]


async def test_metadata_filter_on_messages(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_messages(
        [message(f"{thread}-{i}", thread, resource, i, flagged=(i == 1)) for i in range(3)]
    )
    page = await store.memory.list_messages(thread, metadata={"flagged": True})
    assert [m.id for m in page.messages] == [f"{thread}-1"]
    with pytest.raises(InvalidInputError, match="Invalid metadata filter value"):
        await store.memory.list_messages(thread, metadata={"flagged": {"nested": 1}})


async def test_update_messages_merges_content_and_metadata(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_thread(Thread(id=thread, resource_id=resource))
    await store.memory.save_messages([message(f"{thread}-0", thread, resource, 0, a=1, b=1)])
    [updated] = await store.memory.update_messages(
        [MessageUpdate(id=f"{thread}-0", content={"metadata": {"b": 2}, "extra": "x"}, role="assistant")]
    )
    assert updated.role == "assistant"
    assert updated.content["metadata"] == {"a": 1, "b": 2}
    assert updated.content["extra"] == "x"
    assert updated.content["parts"] == [{"type": "text", "text": "hi"}]
    assert await store.memory.update_messages([MessageUpdate(id=uid("nope"), role="user")]) == []


async def test_delete_thread_removes_its_messages(store: ConvexStore, uid: Callable[[str], str]) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_thread(Thread(id=thread, resource_id=resource))
    await store.memory.save_messages([message(f"{thread}-{i}", thread, resource, i) for i in range(3)])
    await store.memory.delete_thread(thread)
    assert await store.memory.get_thread_by_id(thread) is None
    assert (await store.memory.list_messages(thread)).total == 0


async def test_resources_save_get_and_merge(store: ConvexStore, uid: Callable[[str], str]) -> None:
    rid = uid("r")
    await store.memory.save_resource(Resource(id=rid, working_memory="# Notes", metadata={"tier": "free"}))
    updated = await store.memory.update_resource(rid, metadata={"plan": "pro"})
    assert updated.working_memory == "# Notes"
    assert updated.metadata == {"tier": "free", "plan": "pro"}
    created = await store.memory.update_resource(uid("new"), working_memory="fresh")
    assert created.working_memory == "fresh"
    assert created.metadata == {}
    assert await store.memory.get_resource_by_id(uid("absent")) is None


async def test_oversized_message_fails_with_convex_too_large_error(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    big = message(uid("m"), thread, resource, 0, text="x" * 1_200_000)
    with pytest.raises(RecordTooLargeError) as caught:
        await store.memory.save_messages([big])
    assert "Value is too large" in caught.value.convex_message
    assert "maximum size 1 MiB" in caught.value.convex_message
    assert await store.memory.list_messages_by_id([big.id]) == []
