"""`ConvexServerCache` in Python against the real TypeScript one, on one local Convex server.

Each test has its own key prefix, so `clear()` only ever touches its own rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.errors import InvalidInputError, InvalidValueError, StorageOperationError
from convex_offload.store.cache import ConvexServerCache
from ts_mastra import TsError, TsMastra

VALUES: list[Any] = [
    {"answer": 42, "nested": {"list": [1, "two", None, True], "price": "$5"}},
    ["a", 1, 2.5, False],
    "plain text",
    7,
    3.25,
    True,
    None,
    {"unicode": "héllo ✓", "empty": {}, "deep": [[[1]]]},
]
ROW_FIELDS = ("key", "keyPrefix", "kind", "value", "counter")


@pytest.fixture
def prefix(uid: Callable[[str], str]) -> str:
    return f"{uid('test')}:"


@pytest.fixture
async def cache(local_convex: LocalConvex, prefix: str) -> AsyncIterator[ConvexServerCache]:
    async with ConvexServerCache(local_convex.url, local_convex.admin_key, key_prefix=prefix) as c:
        yield c


class TsCache:
    """The TypeScript ConvexServerCache with the same prefix (and a TTL, if given)."""

    def __init__(self, ts: TsMastra, prefix: str, ttl_ms: int | None = None) -> None:
        self.ts = ts
        self.config: dict[str, Any] = {"keyPrefix": prefix}
        if ttl_ms is not None:
            self.config["ttlMs"] = ttl_ms

    def __call__(self, method: str, *args: Any) -> Any:
        return self.ts.call("cache", method, *args, config=self.config)


@pytest.fixture
def ts_cache(ts: TsMastra, prefix: str) -> TsCache:
    return TsCache(ts, prefix)


async def rows(cache: ConvexServerCache, key: str) -> dict[str, Any]:
    """The stored rows of a key (test-only query), without system fields and expiry."""
    found = await cache.client.query("test_fixtures/rows:cacheRows", {"key": cache.key(key)})
    entry = found["entry"]
    return {
        "entry": None if entry is None else {k: entry.get(k) for k in ROW_FIELDS},
        "items": [(item["index"], item["value"], item["keyPrefix"]) for item in found["items"]],
    }


def inclusive_range(items: list[Any], start: int, end: int) -> list[Any]:
    """Items `start`..`end` inclusive, negative indexes from the end (Redis LRANGE rules)."""
    first = max(len(items) + start, 0) if start < 0 else start
    last = len(items) + end if end < 0 else end
    return [] if last < first or first >= len(items) else items[first : last + 1]


async def test_values_set_by_python_are_read_by_typescript(
    cache: ConvexServerCache, ts_cache: TsCache
) -> None:
    for i, value in enumerate(VALUES):
        await cache.set(f"k{i}", value)
        assert ts_cache("get", f"k{i}") == value
    assert ts_cache("get", "never-set") is None


async def test_values_set_by_typescript_are_read_by_python(
    cache: ConvexServerCache, ts_cache: TsCache
) -> None:
    for i, value in enumerate(VALUES):
        ts_cache("set", f"k{i}", value)
        assert await cache.get(f"k{i}") == value
    ts_cache("set", "k0", "replaced")
    assert await cache.get("k0") == "replaced"


async def test_both_write_the_same_rows(cache: ConvexServerCache, ts_cache: TsCache) -> None:
    await cache.set("py-value", {"a": [1, 2]})
    ts_cache("set", "ts-value", {"a": [1, 2]})
    await cache.list_push("py-list", "x")
    await cache.list_push("py-list", {"y": 1})
    ts_cache("listPush", "ts-list", "x")
    ts_cache("listPush", "ts-list", {"y": 1})
    await cache.increment("py-counter")
    ts_cache("increment", "ts-counter")
    for kind in ("value", "list", "counter"):
        py, ts = await rows(cache, f"py-{kind}"), await rows(cache, f"ts-{kind}")
        assert py["entry"] is not None
        assert py["entry"]["key"] == cache.key(f"py-{kind}")
        assert {**py["entry"], "key": None} == {**ts["entry"], "key": None}
        assert py["items"] == ts["items"]
    assert (await rows(cache, "py-list"))["items"] == [
        (0, '"x"', cache.key_prefix),
        (1, '{"y":1}', cache.key_prefix),
    ]


async def test_expiry_is_written_as_typescript_writes_it(
    cache: ConvexServerCache, ts: TsMastra, prefix: str
) -> None:
    ts_forever, ts_default = TsCache(ts, prefix, ttl_ms=0), TsCache(ts, prefix)
    before = int(time.time() * 1000)
    await cache.set("default-ttl", 1)
    ts_default("set", "ts-default-ttl", 1)
    ts_default("set", "ts-one-minute", 1, 60_000)
    await cache.set("one-minute", 1, ttl_ms=60_000)
    ts_forever("set", "ts-forever", 1)
    forever = ConvexServerCache(client=cache.client, key_prefix=prefix, ttl_ms=0)
    await forever.set("py-forever", 1)
    after = int(time.time() * 1000) + 1

    async def expires_at(key: str) -> Any:
        found = await cache.client.query("test_fixtures/rows:cacheRows", {"key": cache.key(key)})
        return found["entry"]["expiresAt"]

    for key, ttl in (("default-ttl", 300_000), ("ts-default-ttl", 300_000), ("one-minute", 60_000)):
        assert before + ttl <= await expires_at(key) <= after + ttl
    assert before + 60_000 <= await expires_at("ts-one-minute") <= after + 60_000
    assert await expires_at("ts-forever") is None
    assert await expires_at("py-forever") is None


async def test_an_expired_value_is_gone_for_both(cache: ConvexServerCache, ts_cache: TsCache) -> None:
    await cache.set("short", "soon gone", ttl_ms=1)
    await cache.set("long", "stays")
    deadline = time.monotonic() + 10
    while await cache.get("short") is not None:  # the condition: the server's clock passed expiresAt
        assert time.monotonic() < deadline, "a 1 ms value never expired"
        await asyncio.sleep(0.01)
    assert ts_cache("get", "short") is None
    assert (await rows(cache, "short"))["entry"] is None  # the read that found it expired deleted it
    assert ts_cache("get", "long") == "stays"


async def test_lists_pushed_by_either_are_one_list(cache: ConvexServerCache, ts_cache: TsCache) -> None:
    for i in range(6):
        if i % 2:
            ts_cache("listPush", "events", {"i": i})
        else:
            await cache.list_push("events", {"i": i})
    expected = [{"i": i} for i in range(6)]
    assert await cache.list_length("events") == ts_cache("listLength", "events") == 6
    for start, end in ((0, -1), (1, 3), (-2, -1), (4, 100), (5, 2), (10, 12), (-100, 1)):
        py = await cache.list_from_to("events", start, end)
        assert py == ts_cache("listFromTo", "events", start, end)
        assert py == inclusive_range(expected, start, end)
    assert await cache.list_from_to("events", 2) == ts_cache("listFromTo", "events", 2) == expected[2:]
    assert await cache.list_length("no-list") == 0
    assert await cache.list_from_to("no-list", 0) == []


async def test_counters_incremented_by_either_count_together(
    cache: ConvexServerCache, ts_cache: TsCache
) -> None:
    seen = []
    for i in range(6):
        seen.append(ts_cache("increment", "hits") if i % 2 else await cache.increment("hits"))
    assert seen == [1, 2, 3, 4, 5, 6]
    assert await cache.get("hits") is None  # a counter is not a value, for TS either
    assert ts_cache("get", "hits") is None


async def test_delete_by_either_removes_what_the_other_wrote(
    cache: ConvexServerCache, ts_cache: TsCache
) -> None:
    ts_cache("set", "v", 1)
    await cache.delete("v")
    assert ts_cache("get", "v") is None
    await cache.set("w", 2)
    ts_cache("delete", "w")
    assert await cache.get("w") is None
    # A list longer than one transaction's 25 rows: deleted over several calls, all of it.
    for i in range(60):
        await cache.list_push("long", i)
    ts_cache("listPush", "long2", 0)
    await cache.delete("long")
    assert ts_cache("listLength", "long") == 0
    assert await rows(cache, "long") == {"entry": None, "items": []}
    await cache.delete("never-there")


async def test_clear_removes_exactly_its_prefix(
    local_convex: LocalConvex, cache: ConvexServerCache, ts: TsMastra, prefix: str
) -> None:
    other_prefix = f"{prefix}other:"
    ts_here, ts_other = TsCache(ts, prefix), TsCache(ts, other_prefix)
    for i in range(30):
        ts_here("listPush", "big-list", i)
    ts_here("set", "a", 1)
    ts_here("increment", "c")
    await cache.set("b", 2)
    ts_other("set", "a", "other")
    await cache.clear()
    assert [ts_here("get", "a"), await cache.get("b"), ts_here("listLength", "big-list")] == [None, None, 0]
    assert ts_here("increment", "c") == 1
    assert ts_other("get", "a") == "other"
    ts_here("set", "a", 1)
    ts_here("clear")
    assert await cache.get("a") is None
    async with ConvexServerCache(local_convex.url, local_convex.admin_key, key_prefix=other_prefix) as other:
        assert await other.get("a") == "other"


async def test_a_key_of_another_kind_is_refused_alike(cache: ConvexServerCache, ts_cache: TsCache) -> None:
    await cache.set("value", 1)
    await cache.list_push("list", 1)
    key = cache.key
    for py_call, ts_args, message in (
        (
            lambda: cache.list_push("value", 2),
            ("listPush", "value", 2),
            f"{key('value')} exists but is not an array",
        ),
        (
            lambda: cache.list_length("value"),
            ("listLength", "value"),
            f"{key('value')} exists but is not an array",
        ),
        (lambda: cache.increment("list"), ("increment", "list"), f"{key('list')} exists but is not a number"),
    ):
        with pytest.raises(StorageOperationError, match=message):
            await py_call()
        with pytest.raises(TsError, match=message):
            ts_cache(*ts_args)
    # `set` replaces whatever kind was there, in both.
    await cache.set("list", "now a value")
    assert ts_cache("get", "list") == "now a value"
    with pytest.raises(StorageOperationError, match="is not an array"):
        await cache.list_length("list")
    assert (await rows(cache, "list"))["items"] == []


async def test_bad_input_is_refused_before_sending(cache: ConvexServerCache, ts_cache: TsCache) -> None:
    with pytest.raises(InvalidValueError, match=r"\$where"):
        await cache.set("k", {"$where": 1})
    with pytest.raises(TsError):  # Convex refuses the argument itself, after the TS client sent it
        ts_cache("set", "k", {"$where": 1})
    with pytest.raises(InvalidValueError):
        await cache.list_push("k", float("nan"))
    with pytest.raises(InvalidInputError, match="ttl_ms"):
        await cache.set("k", 1, ttl_ms=-5)
    with pytest.raises(InvalidInputError, match="ttl_ms"):
        ConvexServerCache(client=cache.client, ttl_ms=float("inf"))
    with pytest.raises(InvalidInputError, match="from_index"):
        await cache.list_from_to("k", 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cache key"):
        await cache.get(3)  # type: ignore[arg-type]
    assert ts_cache("get", "k") is None


async def test_the_repr_shows_no_secret(local_convex: LocalConvex) -> None:
    async with ConvexServerCache(local_convex.url, local_convex.admin_key, key_prefix="p:") as cache:
        assert local_convex.admin_key not in repr(cache)
        assert "p:" in repr(cache)
