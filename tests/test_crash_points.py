"""Every crash point: a real process SIGKILLed exactly at each named step of save, update, delete,
gc and migrate, then a fresh process runs gc and `verify --deep`.

The child (`tests/crash/child.py`) stops at its step through the store's checkpoint hook and says
so; the test kills it there. Afterwards: every write acknowledged before the kill reads back
exactly, no record references a missing object, and whatever the kill left behind is gone after
one gc (verify finds no object that no record references). README "Guarantees" has the table.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from convex_offload import Message, MessageUpdate, OffloadConfig, OffloadingStore
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.store.memory import merge_content
from convex_offload.store.store import ConvexStore
from media import b64, image_bytes
from waiting import leases_expired

CLI = str(Path(sys.executable).with_name("convex-offload"))
LEASE_SECONDS = 3.0
CLAIM_SECONDS = 2.0
TESTS = Path(__file__).parent


@dataclass
class World:
    """A Convex server and a folder bucket of their own (gc and verify look at everything)."""

    convex: LocalConvex
    folder: Path
    config_path: Path
    acknowledged: list[Message] = field(default_factory=list)

    def config(self) -> OffloadConfig:
        return OffloadConfig.load(self.config_path)

    def objects(self) -> set[str]:
        return {
            str(p.relative_to(self.folder))
            for p in self.folder.rglob("*")
            if p.is_file() and not p.name.endswith(".meta.json") and not p.name.startswith(".tmp-")
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("crash")
    folder = root / "bucket"
    with LocalConvex() as convex:
        config_path = root / "convex-offload.toml"
        config_path.write_text(
            f'convex_url = "{convex.url}"\n'
            f'convex_admin_key = "{convex.admin_key}"\n'
            f"lease_seconds = {LEASE_SECONDS}\n"
            f"claim_seconds = {CLAIM_SECONDS}\n"
            "[buckets.files]\n"
            'provider = "local"\n'
            f'path = "{folder}"\n'
        )
        yield World(convex=convex, folder=folder, config_path=config_path)


@pytest.fixture
async def store(world: World) -> AsyncIterator[OffloadingStore]:
    async with OffloadingStore.connect(world.config()) as offloading:
        if not world.acknowledged:
            # Acknowledged before any kill: every test checks these still read back exactly.
            first = message("acked", images=2, seed=1)
            await offloading.memory.save_messages([first])
            world.acknowledged.append(first)
        yield offloading


@pytest.fixture
async def plain(world: World) -> AsyncIterator[ConvexStore]:
    async with ConvexStore(world.convex.url, world.convex.admin_key) as convex_store:
        yield convex_store


def message(tag: str, *, images: int, seed: int) -> Message:
    parts: list[dict[str, Any]] = [{"type": "text", "text": tag}]
    parts += [
        {"type": "file", "mimeType": "image/png", "data": b64(image_bytes("png", 40_000, seed=seed * 10 + i))}
        for i in range(images)
    ]
    return Message(
        id=f"{tag}-{uuid.uuid4().hex[:8]}",
        thread_id="crash-thread",
        resource_id="crash-user",
        role="user",
        content={"format": 2, "parts": parts},
    )


def kill_at(world: World, operation: str, step: str, args: dict[str, Any]) -> None:
    """Run the child until it reports `step`, then SIGKILL it there."""
    child = subprocess.Popen(
        [sys.executable, "-m", "crash.child", str(world.config_path), operation, step],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(json.dumps(args))
    child.stdin.close()
    try:
        line = child.stdout.readline().strip()
        assert line == f"AT {step}", f"the child never stopped at {step!r} (said {line!r})"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def cli(world: World, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [CLI, *args, "-c", str(world.config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def fresh_gc_and_verify(world: World, store: OffloadingStore) -> dict[str, Any]:
    """What a fresh process finds: gc after the grace period, then `verify --deep`."""
    await leases_expired(store, within=30)
    collected = cli(world, "gc", "--grace", "0s")
    checked = cli(world, "verify", "--deep", "--grace", "0s")
    assert checked["ok"], checked["problems"]
    return collected


async def acknowledged_read_back(world: World, store: OffloadingStore) -> None:
    async with OffloadingStore.connect(world.config()) as reader:
        for acked in world.acknowledged:
            assert await reader.memory.list_messages_by_id([acked.id]) == [acked]


async def orphans_by_hand(store: OffloadingStore, count: int, seed: int) -> None:
    """What writers that died after their uploads leave: objects under leases that run out."""
    for i in range(count):
        plan = store.offloader.plan(
            message("orphan", images=1, seed=seed + i).content,
            holder=("metadata",),
            tenant="crash-user",
            where="x",
        )
        await store.registry.reserve(
            uuid.uuid4().hex, "lease:orphan", [p.object_ref() for p in plan.offloaded()], LEASE_SECONDS
        )
        await store.offloader.uploader.upload(plan.offloaded(), check_bucket=False)


SAVE_STEPS = ["write:leased", "write:uploaded 1/3", "write:uploaded", "write:written"]


@pytest.mark.parametrize("step", SAVE_STEPS)
async def test_save_killed_at(world: World, store: OffloadingStore, step: str) -> None:
    saved = message("save", images=3, seed=100 + SAVE_STEPS.index(step))
    before = world.objects()
    kill_at(world, "save", step, {"messages": [saved.model_dump(mode="json")]})
    left = world.objects() - before

    await fresh_gc_and_verify(world, store)
    found = await store.memory.list_messages_by_id([saved.id])
    if step == "write:written":
        assert found == [saved], "the record write committed before the kill: it is there, whole"
        assert left <= world.objects(), "its objects stay"
    else:
        assert found == [], "the kill came before the record write: nothing was written"
        assert not left & world.objects(), "what the kill left behind is gone after one gc"
    await acknowledged_read_back(world, store)


@pytest.mark.parametrize("step", ["write:uploaded 1/1", "write:written"])
async def test_update_killed_at(world: World, store: OffloadingStore, step: str) -> None:
    original = message("update", images=1, seed=200 + len(step))
    await store.memory.save_messages([original])
    world.acknowledged.append(original)
    new_image = b64(image_bytes("png", 40_000, seed=250 + len(step)))
    update = MessageUpdate(
        id=original.id, content={"parts": [{"type": "file", "mimeType": "image/png", "data": new_image}]}
    )
    kill_at(world, "update", step, {"updates": [update.model_dump(mode="json", exclude_none=True)]})

    await fresh_gc_and_verify(world, store)
    [found] = await store.memory.list_messages_by_id([original.id])
    if step == "write:written":
        assert update.content is not None
        merged = original.model_copy(
            update={"content": merge_content(copy.deepcopy(original.content), update.content)}
        )
        assert found == merged, "the update committed: it reads back merged"
        world.acknowledged.remove(original)
        world.acknowledged.append(merged)
    else:
        assert found == original, "the update never committed: the message is as it was"
    await acknowledged_read_back(world, store)


@pytest.mark.parametrize("step", ["write:written", "delete:object 1/2"])
async def test_delete_killed_at(world: World, store: OffloadingStore, step: str) -> None:
    doomed = message("delete", images=2, seed=300 + len(step))
    await store.memory.save_messages([doomed])
    keys = {
        store.offloader.key_for(
            "files", "crash-user", hashlib.sha256(base64.b64decode(part["data"])).hexdigest()
        )
        for part in doomed.content["parts"][1:]
    }
    before = world.objects()
    assert keys <= before
    kill_at(world, "delete", step, {"ids": [doomed.id]})
    assert await store.memory.list_messages_by_id([doomed.id]) == [], "the record delete committed"
    assert len(keys & world.objects()) == (2 if step == "write:written" else 1), "killed mid-deletion"

    await fresh_gc_and_verify(world, store)
    assert not keys & world.objects(), "its objects are gone after one gc"
    assert before - keys <= world.objects(), "and nothing else"
    await acknowledged_read_back(world, store)


@pytest.mark.parametrize("step", ["gc:marked", "gc:swept 1"])
async def test_gc_killed_at(world: World, store: OffloadingStore, step: str) -> None:
    await orphans_by_hand(store, 2, seed=400 + len(step))
    await leases_expired(store, within=30)
    before = world.objects()
    kill_at(world, "gc", step, {})
    swept = len(before - world.objects())
    assert swept == (1 if step == "gc:swept 1" else 0)

    collected = await fresh_gc_and_verify(world, store)
    assert len(collected["deleted"]) == 2 - swept, "the next gc finishes the job"
    await acknowledged_read_back(world, store)


async def test_migrate_killed_mid_page(world: World, store: OffloadingStore, plain: ConvexStore) -> None:
    inline = [message("migrate", images=1, seed=500 + i) for i in range(3)]
    await plain.memory.save_messages(inline)  # written inline, as before this library
    world.acknowledged.extend(inline)
    kill_at(world, "migrate", "migrate:record 1/3", {"page_size": 500})

    stored = {m.id: m for m in await plain.memory.list_messages_by_id([m.id for m in inline])}
    moved = [mid for mid, m in stored.items() if "convex_offload" in json.dumps(m.content)]
    assert len(moved) == 1, "one record migrated before the kill, the others still inline"
    await fresh_gc_and_verify(world, store)
    await acknowledged_read_back(world, store)
    again = cli(world, "migrate")
    assert again["migrated"] == 2, "a second run migrates the rest"
    await acknowledged_read_back(world, store)
