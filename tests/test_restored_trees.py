"""A listing read again comes from the restored-tree cache: same messages, nothing parsed or walked,
never shared with the caller, and retired as soon as a value it took leaves the value cache."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from convex_offload import BucketConfig, Message, OffloadConfig, OffloadingStore
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.offload.caches import RestoredTree, RestoredTrees, ValueCache
from media import b64, image_bytes


def picture(seed: int) -> bytes:
    return image_bytes("png", 40_000, seed=seed)


def chat(thread: str, count: int, *, seed: int) -> list[Message]:
    return [
        Message(
            id=f"{thread}-{i}",
            thread_id=thread,
            resource_id="tree-user",
            role="user",
            content={
                "format": 2,
                "parts": [
                    {"type": "text", "text": f"picture {i}"},
                    {"type": "file", "mimeType": "image/png", "data": b64(picture(seed + i))},
                ],
            },
        )
        for i in range(count)
    ]


def config_for(local_convex: LocalConvex, **overrides: object) -> OffloadConfig:
    return OffloadConfig.model_validate(
        {
            "convex_url": local_convex.url,
            "convex_admin_key": local_convex.admin_key,
            "buckets": {"mem": BucketConfig(provider="memory")},
            **overrides,
        }
    )


@pytest.fixture
async def store(local_convex: LocalConvex) -> AsyncIterator[OffloadingStore]:
    async with OffloadingStore.connect(config_for(local_convex)) as opened:
        yield opened


async def test_a_listing_read_again_comes_from_the_cache_never_shared(store: OffloadingStore) -> None:
    thread = f"trees-{uuid.uuid4().hex[:6]}"
    saved = chat(thread, 3, seed=10)
    await store.memory.save_messages(saved)
    trees = store.offloader.restorer.trees["inline"]
    first = (await store.memory.list_messages(thread, per_page=False)).messages
    assert first == saved
    assert len(trees) == 3, "each restored text is remembered"
    first[0].content["parts"][1]["data"] = "changed by the app"
    first[1].content["parts"].append({"type": "text", "text": "added by the app"})
    restored = store.offloader.stats.restored
    again = (await store.memory.list_messages(thread, per_page=False)).messages
    assert again == saved, "what the caller did to the first listing does not reach the next"
    assert store.offloader.stats.restored == restored + 3, "every place still counts as restored"
    again[2].content["parts"][0]["text"] = "edited"
    assert await store.memory.list_messages_by_id([saved[2].id]) == [saved[2]]


async def test_a_value_that_leaves_the_cache_retires_the_tree(store: OffloadingStore) -> None:
    thread = f"trees-{uuid.uuid4().hex[:6]}"
    saved = chat(thread, 2, seed=20)
    await store.memory.save_messages(saved)
    assert (await store.memory.list_messages(thread, per_page=False)).messages == saved
    trees = store.offloader.restorer.trees["inline"]
    [entry] = [e for text, _tenant, e in trees.entries() if "picture 0" in text]
    [((bucket, key, _header), _value)] = entry.values
    fetches = store.offloader.stats.fetches
    store.offloader.forget(bucket, key)  # what deleting the object does
    assert (await store.memory.list_messages(thread, per_page=False)).messages == saved
    assert store.offloader.stats.fetches == fetches + 1, "the object is fetched again, not served stale"


async def test_urls_mode_keeps_trees_of_its_own_while_their_urls_live(store: OffloadingStore) -> None:
    thread = f"trees-{uuid.uuid4().hex[:6]}"
    saved = chat(thread, 1, seed=30)
    await store.memory.save_messages(saved)
    for _ in range(2):
        assert (await store.memory.list_messages(thread, per_page=False)).messages == saved
    ui = store.with_restore_mode("urls")
    listings = [(await ui.memory.list_messages(thread, per_page=False)).messages for _ in range(3)]
    url = listings[0][0].content["parts"][1]["data"]
    assert url.startswith("memory://"), url
    assert all(listing[0].content == listings[0][0].content for listing in listings)
    assert len(store.offloader.restorer.trees["urls"]) == 1
    restorer = store.offloader.restorer
    [(obj, (signed, _expiry))] = list(restorer._urls.items())
    restorer._urls[obj] = (signed, 0.0)  # the URL is past half its life: sign again, not serve stale
    again = (await ui.memory.list_messages(thread, per_page=False)).messages
    assert again[0].content == listings[0][0].content
    assert restorer._urls[obj][1] > 0.0, "a fresh URL was signed"


async def test_a_small_value_cache_keeps_listings_exact(local_convex: LocalConvex) -> None:
    async with OffloadingStore.connect(config_for(local_convex, cache_bytes=60_000)) as small:
        thread = f"trees-{uuid.uuid4().hex[:6]}"
        saved = chat(thread, 4, seed=40)
        await small.memory.save_messages(saved)
        for _ in range(3):
            assert (await small.memory.list_messages(thread, per_page=False)).messages == saved
        trees = small.offloader.restorer.trees["inline"]
        assert trees.held <= trees.limit


def test_the_tree_cache_is_bounded_in_entries_and_in_what_it_holds() -> None:
    values = ValueCache(1000)
    trees = RestoredTrees(lambda key, value: values.find(key) is value, entries=2, limit=100)
    for i in range(3):
        value = "v" * 40
        values.put("b", f"k{i}", "", value)
        trees.put(f"text {i}", None, RestoredTree({"i": i}, ((("b", f"k{i}", ""), value),), 1))
    assert trees.get("text 0", None) is None, "the oldest entry went: two at most"
    assert trees.get("text 2", None) is not None
    assert trees.held == 80
    big = "w" * 101
    values.put("b", "big", "", big)
    trees.put("big", None, RestoredTree({}, ((("b", "big", ""), big),), 1))
    assert trees.get("big", None) is None, "an entry holding more than the limit is not kept"
    values.drop("b", "k2")
    assert trees.get("text 2", None) is None, "a value gone from the value cache retires its trees"
    assert trees.held == 40
