"""A soak: thousands of mixed operations with faults switched on at random (seeded), then every
acknowledged write is read back exactly and `verify` finds nothing wrong. Short in the suite;
`CONVEX_OFFLOAD_SOAK_OPS=3000` for the long run. Prints the counts."""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from datetime import timedelta

from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.convex.values import dumps
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.operations import verify
from convex_offload.offload.store import OffloadingStore
from soak.ops import CONVEX_FAULTS, S3_FAULTS, WEIGHTS, Ledger, run
from soak.ops import OPERATIONS as OPERATIONS_KINDS
from testkit.faultproxy import FaultProxy

OPERATIONS = int(os.environ.get("CONVEX_OFFLOAD_SOAK_OPS", "400"))
SEED = int(os.environ.get("CONVEX_OFFLOAD_SOAK_SEED", "20261124"))


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
            s3.randomly(0.12, seed=SEED, faults=S3_FAULTS)
            front.randomly(0.08, seed=SEED + 1, faults=CONVEX_FAULTS)
            threads = [f"soak-{uuid.uuid4().hex[:6]}" for _ in range(6)]
            messages: dict[str, str] = {}  # id → thread
            async with OffloadingStore.connect(faulty) as store:
                retries_before = store.store.client.stats.retries
                for n in range(OPERATIONS):
                    op = rng.choices(OPERATIONS_KINDS, weights=WEIGHTS)[0]
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
