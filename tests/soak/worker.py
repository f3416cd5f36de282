"""One process of the many-process soak: `python -m soak.worker ROLE CONFIG.toml SEED OPS`.

Roles: `writer` (mixed operations on messages of its own), `deleter` (saves and deletes, threads
too), `gc` (collects in a loop) and `migrator` (writes inline messages as the TypeScript app would,
and migrates in a loop). `gc` and `migrator` run until their stdin closes. Each prints one JSON
line at the end: what its messages may hold (its ledger) and what it did.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

from convex_offload import ConvexOffloadError, ConvexStore, Message, OffloadConfig, OffloadingStore
from convex_offload.convex.client import ConvexClient
from convex_offload.convex.values import dumps
from convex_offload.offload.operations import migrate
from soak.ops import OPERATIONS, WEIGHTS, Ledger, content, run

DELETER_WEIGHTS = [35, 5, 5, 35, 10, 5, 5]


async def mixed(store: OffloadingStore, role: str, seed: int, ops: int, counts: Counter[str]) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger()
    threads = [f"{role}-{seed}-t{i}" for i in range(4)]
    messages: dict[str, str] = {}
    weights = DELETER_WEIGHTS if role == "deleter" else WEIGHTS
    for n in range(ops):
        op = rng.choices(OPERATIONS, weights=weights)[0]
        counts[f"op {op}"] += 1
        try:
            await run(op, n, rng, store, threads, messages, ledger)
        except ConvexOffloadError as exc:
            counts[f"error {type(exc).__name__}"] += 1
    return ledger


async def until_stdin_closes(work: Any) -> None:
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    while not stop.done():
        await work()
    await stop


async def main(role: str, config_path: str, seed: int, ops: int) -> None:
    config = OffloadConfig.load(config_path)
    counts: Counter[str] = Counter()
    ledger = Ledger()
    async with OffloadingStore.connect(config) as store:
        if role in ("writer", "deleter"):
            ledger = await mixed(store, role, seed, ops, counts)
        elif role == "gc":

            async def collect() -> None:
                try:
                    report = await store.lifecycle.gc(grace=timedelta(seconds=2))
                    counts["gc runs"] += 1
                    counts["gc deleted"] += len(report.deleted)
                except ConvexOffloadError as exc:
                    counts[f"error {type(exc).__name__}"] += 1

            await until_stdin_closes(collect)
        elif role == "migrator":
            assert config.convex_url is not None
            assert config.convex_admin_key is not None
            rng = random.Random(seed)
            client = ConvexClient(config.convex_url, config.convex_admin_key, timeout=5)
            async with ConvexStore(client=client, owns_client=True) as plain:
                written = 0

                async def write_inline_and_migrate() -> None:
                    nonlocal written
                    message = Message(
                        id=f"migrator-{seed}-{written}",
                        thread_id=f"migrator-{seed}",
                        resource_id="soak-user",
                        role="user",
                        content=content(rng, written),
                    )
                    written += 1
                    try:
                        await plain.memory.save_messages([message])  # inline, as the TS app writes
                        ledger.acknowledged(message.id, dumps(message.content))
                    except ConvexOffloadError as exc:
                        ledger.uncertain(message.id, dumps(message.content))
                        counts[f"error {type(exc).__name__}"] += 1
                    try:
                        report = await migrate(store, tables=["mastra_messages"], page_size=100)
                    except ConvexOffloadError as exc:  # a scan page refused by an injected fault
                        counts[f"error {type(exc).__name__}"] += 1
                        return
                    counts["migrate runs"] += 1
                    counts["migrated"] += report.migrated
                    counts["migrate conflicts"] += report.conflicts
                    counts["migrate failed"] += report.failed

                await until_stdin_closes(write_inline_and_migrate)
        else:
            raise SystemExit(f"unknown role {role}")
        retries = store.store.client.stats.retries
    print(json.dumps({"role": role, "ledger": ledger.to_json(), "counts": dict(counts), "retries": retries}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
