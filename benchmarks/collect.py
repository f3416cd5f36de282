"""Case 8G: `gc` and `verify` over N bucket objects stay under 200 MB RSS and grow linearly.

Per N, a fresh local Convex server (so nothing of other cases, or of the other N, is in the
deployment) and a local-folder bucket in a temp dir (LocalStack's ~4 ms per PUT is too slow for
100k objects). Seeding: 90% of the objects are saved through the library (messages of
`PER_MESSAGE` small distinct PNGs each, `BATCH` messages per `save_messages`, a few saves in
flight); 10% are orphans written straight into the folder the way the local backend lays objects
out (file plus `.meta.json` sidecar, keys this library would write), dated two days back: uploads
whose records were never written.

Then each operation runs in a fresh process (`python -m benchmarks.collect`): `verify` (not deep;
it must report exactly the orphans as unreferenced), then `gc` (grace 0; it must delete exactly
the orphans), then `verify` again in the parent (it must report nothing). Measured: wall time, and
peak RSS above the baseline taken once the store is connected (`VmHWM` reset through
`/proc/self/clear_refs`, as `benchmarks.memory` does), and the process's own CPU time (what the
library does; the wall time also holds the local Convex stand-in's, whose every indexed query
walks all the deployment's documents and sorts the table's: `convex-test`'s `_iterateDocs`). The
child prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import cases  # a module, not names: cases.py imports this file at its top
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.offload import operations
from convex_offload.offload.lifecycle import GcReport
from convex_offload.offload.store import OffloadingStore

BUCKET = "local"
TENANT = "bench-user"
PER_MESSAGE = 10
BATCH = 10
IN_FLIGHT = 4
ORPHAN_SHARE = 0.10
ORPHAN_AGE_SECONDS = 2 * 24 * 3600
RSS_TARGET_MB = 200.0


def collect_config(convex_url: str, folder: Path, admin_key: str | None = None) -> OffloadConfig:
    """The store config of seeding and of the measuring process (the same keys and bucket)."""
    extra: dict[str, Any] = {"convex_admin_key": admin_key} if admin_key is not None else {}
    return OffloadConfig(
        convex_url=convex_url,
        buckets={BUCKET: BucketConfig(provider="local", path=folder)},
        inline_threshold=0,
        record_inline_budget=0,
        **extra,
    )


@dataclass
class Seeded:
    """What seeding made."""

    records: int
    referenced: int
    orphans: set[str]
    seconds: float


async def seed(store: OffloadingStore, folder: Path, total: int, images: cases.Images) -> Seeded:
    """`total` objects: ~90% referenced by saved messages, the rest orphans (see the module docstring)."""
    start = time.perf_counter()
    orphan_count = round(total * ORPHAN_SHARE)
    referenced = total - orphan_count
    thread = f"bench-collect-{total}"
    sizes = [PER_MESSAGE] * (referenced // PER_MESSAGE)
    if referenced % PER_MESSAGE:
        sizes.append(referenced % PER_MESSAGE)
    batches = [list(enumerate(sizes))[first : first + BATCH] for first in range(0, len(sizes), BATCH)]
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def save(batch: list[tuple[int, int]]) -> None:
        async with limit:
            messages = [cases.message(thread, i, [images.png(100) for _ in range(k)]) for i, k in batch]
            await store.memory.save_messages(messages)

    await asyncio.gather(*(save(batch) for batch in batches))
    orphans = set()
    old = time.time() - ORPHAN_AGE_SECONDS
    for _ in range(orphan_count):
        data = images.png(100)
        sha256 = hashlib.sha256(data).hexdigest()
        key = store.offloader.keys.key_for(BUCKET, TENANT, sha256)
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        meta = path.with_name(path.name + ".meta.json")
        content = {"content_type": "image/png", "sha256": sha256, "disposition": None, "size": len(data)}
        meta.write_text(json.dumps(content))
        for written in (path, meta):
            os.utime(written, (old, old))
        orphans.add(key)
    return Seeded(len(sizes), referenced, orphans, time.perf_counter() - start)


# --- the fresh process ----------------------------------------------------------------------


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


async def measure(operation: str, convex_url: str, folder: Path) -> dict[str, Any]:
    """Run one operation once; its wall time, peak RSS above baseline and outcome."""
    config = collect_config(convex_url, folder)
    async with OffloadingStore.connect(config) as store:
        waits = time_convex_calls(store)
        gc.collect()
        baseline = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        run = store.lifecycle.gc(grace=timedelta(0)) if operation == "gc" else operations.verify(store)
        start, cpu_start = time.perf_counter(), time.process_time()
        done = await run
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        peak = rss_kib("VmHWM")
    if isinstance(done, GcReport):
        outcome: dict[str, Any] = {
            "records": done.records_scanned,
            "objects": done.objects_scanned,
            "referenced": done.referenced,
            "young": done.young,
            "deleted": sorted(key for _bucket, key in done.deleted),
            "kept": len(done.kept),
            "failed": len(done.failed),
            "reconciled_rows": done.reconciled_rows,
        }
    else:
        outcome = {
            "records": done.records,
            "references": done.references,
            "objects": done.objects,
            "problems": sorted([p.kind, p.key] for p in done.problems),
        }
    return {
        "operation": operation,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "convex_seconds": sum(seconds for seconds, _calls in waits.values()),
        "convex_calls": {path: {"seconds": t, "calls": n} for path, (t, n) in sorted(waits.items())},
        "baseline_rss": baseline * 1024,
        "peak_rss": peak * 1024,
        "above": (peak - baseline) * 1024,
        **outcome,
    }


def time_convex_calls(store: OffloadingStore) -> dict[str, tuple[float, int]]:
    """Seconds spent waiting on each Convex function, and calls made (filled in as they happen):
    where the wall time goes, this process or the Convex server."""
    waits: dict[str, tuple[float, int]] = {}
    client = store.lifecycle.client
    call = client.call

    async def timed_call(kind: Any, path: str, args: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return await call(kind, path, args)
        finally:
            seconds, calls = waits.get(path, (0.0, 0))
            waits[path] = (seconds + time.perf_counter() - start, calls + 1)

    setattr(client, "call", timed_call)  # noqa: B010 (an instance attribute over the method)
    return waits


def run_fresh(operation: str, convex: LocalConvex, folder: Path) -> dict[str, Any]:
    """`measure` in a fresh Python process; its JSON line."""
    args = [sys.executable, "-m", "benchmarks.collect", operation, "--convex-url", convex.url]
    args += ["--path", str(folder)]
    env = {**os.environ, "CONVEX_OFFLOAD_CONVEX_ADMIN_KEY": convex.admin_key}
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.collect {operation} failed:\n{done.stderr[-4000:]}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


# --- the case -------------------------------------------------------------------------------


async def one_size(total: int, images: cases.Images, progress: Callable[[str], None]) -> dict[str, Any]:
    """Seed `total` objects in a new deployment; measure verify, then gc; check both outcomes."""
    folder = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    try:
        with LocalConvex() as convex:
            config = collect_config(convex.url, folder, convex.admin_key)
            async with OffloadingStore.connect(config) as store:
                progress(f"gc/verify: seeding {total:,} objects")
                seeded = await seed(store, folder, total, images)
                progress(f"gc/verify: verify over {total:,} objects (fresh process)")
                verified = await asyncio.to_thread(run_fresh, "verify", convex, folder)
                expected_problems = sorted(["unreferenced", key] for key in seeded.orphans)
                assert verified["problems"] == expected_problems, "verify must report exactly the orphans"
                assert verified["records"] == seeded.records, verified["records"]
                assert verified["objects"] == seeded.referenced, verified["objects"]
                progress(f"gc/verify: gc over {total:,} objects (fresh process)")
                collected = await asyncio.to_thread(run_fresh, "gc", convex, folder)
                assert collected["deleted"] == sorted(seeded.orphans), "gc must delete exactly the orphans"
                assert collected["objects"] == total, collected["objects"]
                assert collected["referenced"] == seeded.referenced, collected["referenced"]
                assert collected["records"] == seeded.records, collected["records"]
                assert (collected["kept"], collected["failed"], collected["young"]) == (0, 0, 0)
                after = await operations.verify(store)
                assert after.ok, after.problems[:5]
                left = [info.key async for _name, info in store.lifecycle.objects()]
                assert len(left) == seeded.referenced
                assert not seeded.orphans & set(left)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "objects": total,
        "records": seeded.records,
        "referenced": seeded.referenced,
        "orphans": len(seeded.orphans),
        "seed_seconds": seeded.seconds,
        "gc": {k: v for k, v in collected.items() if k != "deleted"},
        "verify": {k: v for k, v in verified.items() if k != "problems"},
    }


async def case_collect(
    suite: cases.Suite, images: cases.Images, results: list[cases.Result], progress: Callable[[str], None]
) -> None:
    """8G. Peak RSS of gc and verify at the large N (< 200 MB); wall and CPU per object, large vs small N."""
    counts = [10_000, 100_000] if not suite.quick else [200, 800]
    sizes = {total: await one_size(total, images, progress) for total in counts}
    small, large = counts
    for operation in ("gc", "verify"):
        facts = {
            str(total): {
                "objects_scanned": size["objects"],
                "records": size["records"],
                "orphans": size["orphans"],
                "seconds": size[operation]["seconds"],
                "seconds_per_object": size[operation]["seconds"] / total,
                "cpu_seconds": size[operation]["cpu_seconds"],
                "cpu_seconds_per_object": size[operation]["cpu_seconds"] / total,
                "convex_wait_seconds": size[operation]["convex_seconds"],
                "peak_above_baseline_mb": size[operation]["above"] / cases.MB,
                "baseline_rss_mb": size[operation]["baseline_rss"] / cases.MB,
                "peak_rss_mb": size[operation]["peak_rss"] / cases.MB,
                "seed_seconds": size["seed_seconds"],
            }
            for total, size in sizes.items()
        }
        notes = {"per_n": facts, "outcome": {str(t): s[operation] for t, s in sizes.items()}}
        results.append(
            cases.Result(
                f"8G {operation}: peak RSS",
                f"N={large:,} objects, above baseline",
                [sizes[large][operation]["above"] / cases.MB],
                [RSS_TARGET_MB],
                "< 200 MB RSS",
                1.0,
                unit="MB",
                notes=notes,
            )
        )
        for what, measured in (("wall", "seconds"), ("CPU", "cpu_seconds")):
            results.append(
                cases.Result(
                    f"8G {operation}: {what} per object",
                    f"N={small:,} vs N={large:,}" + (", this library's process" if what == "CPU" else ""),
                    [sizes[large][operation][measured] / large],
                    [sizes[small][operation][measured] / small],
                    "≤ 1.5× (linear)",
                    1.5,
                    notes=notes,
                )
            )


def main() -> None:
    """Measure one operation in this (fresh) process; print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collect")
    parser.add_argument("operation", choices=["gc", "verify"])
    parser.add_argument("--convex-url", required=True)
    parser.add_argument("--path", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.operation, args.convex_url, args.path))))


if __name__ == "__main__":
    main()
