"""A soak: thousands of mixed operations with faults switched on at random (seeded), then every
acknowledged write is read back exactly and `verify` finds nothing wrong. Short in the suite;
`CONVEX_OFFLOAD_SOAK_OPS=3000` for the long run. Prints the counts."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.convex.values import dumps
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.operations import verify
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, MessageUpdate, Thread
from media import b64, data_url, image_bytes
from testkit.faultproxy import INTERNAL_ERROR, SLOW_DOWN, Fault, FaultProxy

OPERATIONS = int(os.environ.get("CONVEX_OFFLOAD_SOAK_OPS", "400"))
SEED = int(os.environ.get("CONVEX_OFFLOAD_SOAK_SEED", "20261124"))
POOL = [image_bytes("png", 20_000 + 7_000 * (i % 5), seed=1000 + i) for i in range(12)]


@dataclass
class Ledger:
    """What the soak knows each message must hold (or may hold, after a write that failed)."""

    possible: dict[str, set[str | None]] = field(default_factory=dict)
    """message id → contents it may hold (None: absent)."""

    def acknowledged(self, mid: str, content: str | None) -> None:
        self.possible[mid] = {content}

    def uncertain(self, mid: str, content: str | None) -> None:
        self.possible.setdefault(mid, {None}).add(content)


def content(rng: random.Random, n: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"turn {n} " + "lorem " * rng.randrange(1, 40)}]
    for _ in range(rng.choice([0, 1, 1, 2])):
        img = rng.choice(POOL)
        if rng.random() < 0.5:
            parts.append({"type": "file", "mimeType": "image/png", "data": b64(img)})
        else:
            parts.append({"type": "file", "url": data_url(img, "image/png"), "mediaType": "image/png"})
    return {"format": 2, "parts": parts}


async def test_soak_with_random_faults(localstack: LocalStack) -> None:
    rng = random.Random(SEED)
    prefix = f"soak-{uuid.uuid4().hex[:8]}/"
    counts: Counter[str] = Counter()
    ledger = Ledger()
    with LocalConvex() as convex:
        s3_port = int(localstack.endpoint_url.rsplit(":", 1)[1])
        convex_port = int(convex.url.rsplit(":", 1)[1])
        with FaultProxy("127.0.0.1", s3_port) as s3, FaultProxy("127.0.0.1", convex_port) as front:
            faulty = OffloadConfig(
                convex_url=front.url,
                convex_admin_key=convex.admin_key,
                convex_timeout_seconds=5,
                lease_seconds=30,
                buckets={
                    "images": s3_bucket(
                        localstack, "images", prefix=prefix, endpoint_url=s3.url, max_attempts=3
                    )
                },
            )
            s3.randomly(
                0.12,
                seed=SEED,
                faults=[
                    Fault("status", status=503, body=SLOW_DOWN),
                    Fault("status", status=500, body=INTERNAL_ERROR),
                    Fault("reset", after_bytes=0),
                    Fault("reset", after_bytes=4096),
                ],
            )
            refused = (
                b'{"status":"error","errorMessage":"Server Error\\nUncaught Error: injected by the soak"}'
            )
            front.randomly(
                0.08,
                seed=SEED + 1,
                faults=[
                    Fault("status", status=503, body=b"", content_type="text/plain"),
                    Fault("reset", after_bytes=0),
                    Fault("drop"),
                    Fault("status", status=560, body=refused, content_type="application/json"),
                ],
            )
            threads = [f"soak-{uuid.uuid4().hex[:6]}" for _ in range(6)]
            messages: dict[str, str] = {}  # id → thread
            async with OffloadingStore.connect(faulty) as store:
                retries_before = store.store.client.stats.retries
                for n in range(OPERATIONS):
                    op = rng.choices(
                        ["save", "resave", "update", "delete", "delete_thread", "list", "thread"],
                        weights=[40, 15, 12, 8, 2, 18, 5],
                    )[0]
                    counts[f"op {op}"] += 1
                    try:
                        await run(op, n, rng, store, threads, messages, ledger)
                    except ConvexOffloadError as exc:
                        counts[f"error {type(exc).__name__}"] += 1
                retries = store.store.client.stats.retries - retries_before
            s3.clear()
            front.clear()
            injected = s3.stats.injected + front.stats.injected

            direct = OffloadConfig(
                convex_url=convex.url,
                convex_admin_key=convex.admin_key,
                buckets={"images": s3_bucket(localstack, "images", prefix=prefix)},
            )
            async with OffloadingStore.connect(direct) as reader:
                found = {
                    m.id: dumps(m.content)
                    for m in await reader.memory.list_messages_by_id(sorted(ledger.possible))
                }
                for mid, allowed in ledger.possible.items():
                    assert found.get(mid) in allowed, f"{mid}: holds something never written"
                report = await verify(reader, deep=True, grace=timedelta(days=1))
                lost = [p for p in report.problems if p.kind in ("missing", "corrupt", "size")]
                assert report.ok, report.problems

    errors = sum(v for k, v in counts.items() if k.startswith("error"))
    table = [
        ("operations", OPERATIONS),
        ("faults injected (S3 + Convex)", injected),
        ("Convex retries", retries),
        ("errors surfaced (typed)", errors),
        ("records checked", len(ledger.possible)),
        ("references verified", report.references),
        ("objects lost", len(lost)),
    ]
    print(f"\nsoak (seed {SEED})")
    for name, value in table:
        print(f"  {name:32} {value:>8}")
    for name, value in sorted(counts.items()):
        print(f"    {name:30} {value:>8}")
    assert injected > 0, "faults were injected"
    assert not lost


async def run(
    op: str,
    n: int,
    rng: random.Random,
    store: OffloadingStore,
    threads: list[str],
    messages: dict[str, str],
    ledger: Ledger,
) -> None:
    """One operation; the ledger learns what it acknowledged (or may have done, if it raised)."""
    if op in ("save", "resave", "update", "delete") and not messages:
        op = "save"
    if op == "save":
        thread = rng.choice(threads)
        mid = f"{thread}-{n}"
        message = Message(
            id=mid, thread_id=thread, resource_id="soak-user", role="user", content=content(rng, n)
        )
        await attempt(ledger, mid, dumps(message.content), store.memory.save_messages([message]))
        messages[mid] = thread
    elif op == "resave":
        mid = rng.choice(sorted(messages))
        known = [c for c in ledger.possible.get(mid, set()) if c is not None]
        if len(known) == 1:
            message = Message(
                id=mid,
                thread_id=messages[mid],
                resource_id="soak-user",
                role="user",
                content=json.loads(known[0]),
            )
            await attempt(ledger, mid, known[0], store.memory.save_messages([message]))
    elif op == "update":
        mid = rng.choice(sorted(messages))
        update = {"parts": content(rng, n)["parts"]}
        known = [c for c in ledger.possible.get(mid, set()) if c is not None]
        if len(known) == 1:
            merged = dumps({**json.loads(known[0]), **update})
            updated = await attempt(
                ledger, mid, merged, store.memory.update_messages([MessageUpdate(id=mid, content=update)])
            )
            assert updated, "the message existed, so the update returned it"
    elif op == "delete":
        mid = rng.choice(sorted(messages))
        await attempt(ledger, mid, None, store.memory.delete_messages([mid]))
    elif op == "delete_thread":
        thread = rng.choice(threads)
        doomed = [mid for mid, t in messages.items() if t == thread]
        try:
            await store.memory.delete_thread(thread)
        except ConvexOffloadError:
            for mid in doomed:
                ledger.uncertain(mid, None)
            raise
        for mid in doomed:
            ledger.acknowledged(mid, None)
    elif op == "list":
        await store.memory.list_messages(rng.choice(threads), per_page=False)
    elif op == "thread":
        thread = rng.choice(threads)
        await store.memory.save_thread(Thread(id=thread, resource_id="soak-user", metadata={"n": n}))


async def attempt(ledger: Ledger, mid: str, content: str | None, work: Any) -> Any:
    """Await `work`; acknowledged if it returns, uncertain (old or new) if it raises."""
    try:
        result = await work
    except ConvexOffloadError:
        ledger.uncertain(mid, content)
        raise
    ledger.acknowledged(mid, content)
    return result
