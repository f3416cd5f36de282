"""A soak of many processes: three writers, one deleter, one collecting garbage in a loop and one
migrating in a loop, all at once on one deployment and one bucket, with faults switched on at
random (seeded) on S3 and on Convex. Afterwards every acknowledged write reads back exactly, no
record references a missing object, and `verify --deep` is clean.

Short in the suite; `CONVEX_OFFLOAD_SOAK_PROCESS_OPS=2500` (× 3 writers + the deleter: 10,000
operations) for the long run. Prints the seeds and the counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import s3_bucket
from convex_offload import OffloadConfig, OffloadingStore
from convex_offload.convex.values import dumps
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.operations import verify
from soak.ops import CONVEX_FAULTS, S3_FAULTS
from testkit.faultproxy import FaultProxy
from waiting import leases_expired

OPS = int(os.environ.get("CONVEX_OFFLOAD_SOAK_PROCESS_OPS", "60"))
SEED = int(os.environ.get("CONVEX_OFFLOAD_SOAK_SEED", "20261201"))
LEASE_SECONDS = 20
TESTS = Path(__file__).parent


def config_file(
    path: Path, convex_url: str, admin_key: str, s3_url: str, localstack: LocalStack, prefix: str
) -> Path:
    path.write_text(
        f'convex_url = "{convex_url}"\n'
        f'convex_admin_key = "{admin_key}"\n'
        "convex_timeout_seconds = 5\n"
        f"lease_seconds = {LEASE_SECONDS}\n"
        "claim_seconds = 5\n"
        "[buckets.images]\n"
        'provider = "s3"\n'
        'bucket = "images"\n'
        f'endpoint_url = "{s3_url}"\n'
        f'region = "{localstack.region}"\n'
        f'access_key_id = "{localstack.access_key}"\n'
        f'secret_access_key = "{localstack.secret_key}"\n'
        f'prefix = "{prefix}"\n'
        "max_attempts = 3\n"
    )
    return path


def start(role: str, config: Path, seed: int, ops: int) -> subprocess.Popen[str]:
    log = config.with_name(f"{role}-{seed}.log").open("w")  # the workers' retry warnings
    return subprocess.Popen(
        [sys.executable, "-m", "soak.worker", role, str(config), str(seed), str(ops)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{TESTS.parent}"},
    )


def finish(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"a soak worker failed (exit {process.returncode}): {process.args!r}"
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


async def test_many_processes_with_faults_lose_nothing(localstack: LocalStack, tmp_path: Path) -> None:
    prefix = f"procs-{uuid.uuid4().hex[:8]}/"
    with LocalConvex() as convex:
        s3_port = int(localstack.endpoint_url.rsplit(":", 1)[1])
        convex_port = int(convex.url.rsplit(":", 1)[1])
        with FaultProxy("127.0.0.1", s3_port) as s3, FaultProxy("127.0.0.1", convex_port) as front:
            s3.randomly(0.08, seed=SEED, faults=S3_FAULTS)
            front.randomly(0.05, seed=SEED + 1, faults=CONVEX_FAULTS)
            config = config_file(
                tmp_path / "soak.toml", front.url, convex.admin_key, s3.url, localstack, prefix
            )
            roles = [("writer", SEED + 10 + i, OPS) for i in range(3)] + [("deleter", SEED + 20, OPS)]
            loops = [("gc", SEED + 30, 0), ("migrator", SEED + 40, 0)]
            started = time.monotonic()
            bounded = {role_seed: start(role, config, role_seed, ops) for role, role_seed, ops in roles}
            looping = {role_seed: start(role, config, role_seed, ops) for role, role_seed, ops in loops}
            budget = 120 + OPS * 2
            reports = [finish(p, budget) for p in bounded.values()]
            # The loops stop when their stdin closes (communicate closes it): once the writers are done.
            reports += [finish(p, 120) for p in looping.values()]
            elapsed = time.monotonic() - started
            s3.clear()
            front.clear()
            injected = s3.stats.injected + front.stats.injected

        direct = OffloadConfig(
            convex_url=convex.url,
            convex_admin_key=convex.admin_key,
            buckets={"images": s3_bucket(localstack, "images", prefix=prefix)},
        )
        possible: dict[str, set[str | None]] = {}
        for report in reports:
            for mid, allowed in report["ledger"].items():
                possible[mid] = set(allowed)
        async with OffloadingStore.connect(direct) as reader:
            found = {
                m.id: dumps(m.content) for m in await reader.memory.list_messages_by_id(sorted(possible))
            }
            wrong = [mid for mid, allowed in possible.items() if found.get(mid) not in allowed]
            during = await verify(reader, deep=True, grace=timedelta(days=1))
            dangling = [p for p in during.problems if p.kind in ("missing", "corrupt", "size")]
            assert not wrong, f"{len(wrong)} messages hold something never written: {wrong[:5]}"
            assert during.ok, during.problems
            await leases_expired(reader, within=LEASE_SECONDS + 60)
            await reader.lifecycle.gc(grace=timedelta(0))
            after = await verify(reader, deep=True, grace=timedelta(0))
            assert after.ok, after.problems

    counts: Counter[str] = Counter()
    for report in reports:
        counts.update(report["counts"])
    operations = sum(v for k, v in counts.items() if k.startswith("op "))
    errors = sum(v for k, v in counts.items() if k.startswith("error "))
    table = [
        ("processes", len(reports)),
        ("operations (writers + deleter)", operations),
        ("gc runs / migrate runs", f"{counts['gc runs']} / {counts['migrate runs']}"),
        ("faults injected (S3 + Convex)", injected),
        ("Convex retries", sum(r["retries"] for r in reports)),
        ("errors surfaced (typed)", errors),
        ("records checked", len(possible)),
        ("references verified", during.references),
        ("acknowledged writes lost", len(wrong)),
        ("dangling references", len(dangling)),
        ("seconds", round(elapsed, 1)),
    ]
    seeds = ", ".join(f"{role} {seed}" for role, seed, _ in roles + loops)
    print(f"\nmany-process soak (seed {SEED}: {seeds})")
    for name, value in table:
        print(f"  {name:34} {value:>10}")
    for name, value in sorted(counts.items()):
        print(f"    {name:32} {value:>10}")
    assert injected > 0, "faults were injected"
    assert counts["gc runs"] >= 1
    assert counts["migrate runs"] >= 1
