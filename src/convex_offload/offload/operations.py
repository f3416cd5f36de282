"""Operations over a whole deployment: migrate existing inline base64, verify, statistics.

`migrate` offloads records written before this library (or by the TypeScript store) in place:
page by page through each table, resumable from a state file, idempotent (an offloaded record has
nothing left to move), and safe against the app writing at the same time: each record is
rewritten only if it still holds what was read (a compare-and-swap in the same transaction).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from convex_offload.convex.values import document_size
from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.kinds import RecordKind
from convex_offload.offload.merge import Outcome
from convex_offload.offload.registry import Guard
from convex_offload.offload.store import OffloadingStore
from convex_offload.offload.transaction import Write, stored_row, whole_record
from convex_offload.store.db import insert_request

Progress = Callable[[str, int, int], None]
"""progress(what, count, bytes): called as work advances (the CLI draws bars with it)."""


# --- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing `verify` found wrong."""

    kind: str
    """`missing`, `size`, `corrupt`, `over_limit`, `foreign_bucket`, `unreferenced`"""
    record: str
    detail: str
    bucket: str = ""
    key: str = ""


@dataclass
class VerifyReport:
    """What `verify` checked and found."""

    records: int = 0
    references: int = 0
    objects: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing wrong."""
        return not self.problems


async def verify(
    store: OffloadingStore,
    *,
    deep: bool = False,
    grace: timedelta = timedelta(minutes=15),
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every reference resolves (size, and sha256 when `deep`), no record is over the limit,
    and no object older than `grace` is left that no record references (what erasure promises)."""
    report = VerifyReport()
    wanted: dict[tuple[str, str], tuple[int, str, str]] = {}
    async for record in store.lifecycle.all_records():
        report.records += 1
        label = f"{record.table}:{record.id}"
        if record.size > store.config.max_record_bytes:
            report.problems.append(
                Problem("over_limit", label, f"{record.size:,} bytes > {store.config.max_record_bytes:,}")
            )
        for refs in record.owners.values():
            for ref in refs:
                report.references += 1
                wanted.setdefault((ref["bucket"], ref["key"]), (int(ref["size"]), ref["sha256"], label))
        if progress is not None:
            progress("records", report.records, 0)

    async def check(ident: tuple[str, str], size: int, sha256: str, label: str) -> Problem | None:
        bucket_name, key = ident
        bucket = store.buckets.get(bucket_name)
        if bucket is None:
            return Problem("foreign_bucket", label, "bucket is not configured", bucket_name, key)
        if deep:
            read = await bucket.read_with(key, functools.partial(digest_of, limit=size))
            if read is None:
                return Problem("missing", label, "object does not exist", bucket_name, key)
            seen, digest = read
            if seen != size:
                return Problem("size", label, f"{seen} bytes, manifest says {size}", bucket_name, key)
            if digest != sha256:
                return Problem("corrupt", label, "sha256 does not match the manifest", bucket_name, key)
            return None
        head = await bucket.head(key)
        if head is None:
            return Problem("missing", label, "object does not exist", bucket_name, key)
        if head.size != size:
            return Problem("size", label, f"{head.size} bytes, manifest says {size}", bucket_name, key)
        if head.sha256 is not None and head.sha256 != sha256:
            return Problem("corrupt", label, "stored sha256 does not match the manifest", bucket_name, key)
        return None

    # A few workers take the references one by one: a task per reference, all at once, held
    # ~1 KB each in memory (over 200 MB for 100,000 objects).
    report.objects = len(wanted)
    pending = enumerate(wanted.items())
    found: list[tuple[int, Problem]] = []

    async def worker() -> None:
        for index, (ident, facts) in pending:
            problem = await check(ident, *facts)
            if problem is not None:
                found.append((index, problem))

    await asyncio.gather(*(worker() for _ in range(store.config.restore_concurrency)))
    report.problems.extend(problem for _index, problem in sorted(found, key=lambda item: item[0]))
    cutoff = datetime.now(UTC) - grace
    async for name, info in store.lifecycle.objects():
        if (name, info.key) in wanted:
            continue
        if info.last_modified is not None and info.last_modified > cutoff:
            continue  # possibly an upload whose record is being written right now
        report.problems.append(
            Problem("unreferenced", f"{name}:{info.key}", "no record references this object", name, info.key)
        )
    return report


# --- stats -----------------------------------------------------------------------------------


@dataclass
class TableStats:
    """Records of one table."""

    records: int = 0
    bytes: int = 0
    with_attachments: int = 0
    inline_base64: int = 0
    references: int = 0


@dataclass
class BucketStats:
    """Objects of one bucket."""

    objects: int = 0
    bytes: int = 0


@dataclass
class StatsReport:
    """Records, objects and bytes, per table and per bucket, and the largest records."""

    tables: dict[str, TableStats] = field(default_factory=dict)
    buckets: dict[str, BucketStats] = field(default_factory=dict)
    reference_rows: dict[str, int] = field(default_factory=dict)
    largest: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the CLI prints it with --json."""
        return {
            "tables": {k: asdict(v) for k, v in self.tables.items()},
            "buckets": {k: asdict(v) for k, v in self.buckets.items()},
            "reference_rows": self.reference_rows,
            "largest_records": [{"record": r, "bytes": b} for r, b in self.largest],
        }


def digest_of(chunks: Iterator[bytes], *, limit: int) -> tuple[int, str]:
    """How many bytes `chunks` yields (reading stops one chunk past `limit`) and their sha256:
    a deep check streams each object instead of holding it whole."""
    hasher = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            break
        hasher.update(chunk)
    return seen, hasher.hexdigest()


async def stats(store: OffloadingStore, *, top: int = 10, progress: Progress | None = None) -> StatsReport:
    """Count records, attachments and bytes."""
    report = StatsReport()
    largest: list[tuple[int, str]] = []
    count = 0
    async for record in store.lifecycle.all_records():
        table = report.tables.setdefault(record.table, TableStats())
        table.records += 1
        table.bytes += record.size
        refs = sum(len(r) for r in record.owners.values())
        table.references += refs
        table.with_attachments += 1 if refs else 0
        table.inline_base64 += 1 if record.inline else 0
        largest.append((record.size, f"{record.table}:{record.id}"))
        largest = sorted(largest, reverse=True)[:top]
        count += 1
        if progress is not None:
            progress("records", count, record.size)
    report.largest = [(label, size) for size, label in largest]
    for name in store.buckets:
        report.buckets[name] = BucketStats()
    async for name, info in store.lifecycle.objects():
        report.buckets[name].objects += 1
        report.buckets[name].bytes += info.size
    states: Counter[str] = Counter()
    async for row in store.registry.rows():
        states[row.state] += 1
    report.reference_rows = dict(states)
    return report


# --- migrate ---------------------------------------------------------------------------------


@dataclass
class MigrateReport:
    """What `migrate` moved (or would move, in a dry run)."""

    scanned: int = 0
    candidates: int = 0
    migrated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    failed: int = 0
    payloads: int = 0
    bytes_offloaded: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    errors: list[str] = field(default_factory=list)


class MigrationState:
    """Where a migration got to, in a JSON file rewritten atomically after every page."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.cursors: dict[str, str | None] = {}
        self.done: set[str] = set()
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            self.cursors = dict(saved.get("cursors", {}))
            self.done = set(saved.get("done", []))

    def save(self) -> None:
        """Persist (temp file + rename, so a kill never leaves it half-written)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".migrate-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"cursors": self.cursors, "done": sorted(self.done)}, handle)
        os.replace(tmp, self.path)


async def migrate(
    store: OffloadingStore,
    *,
    dry_run: bool = False,
    state_path: Path | None = None,
    tables: Sequence[str] | None = None,
    page_size: int = 50,
    progress: Progress | None = None,
    on_page: Callable[[str, int], None] | None = None,
) -> MigrateReport:
    """Offload inline base64 of existing records in place (see the module docstring).

    `tables` names the kinds to migrate by their Convex (or Mastra) table; all kinds by default.
    """
    report = MigrateReport()
    state = MigrationState(state_path)
    kinds = [store.kinds.for_table(t) for t in tables] if tables is not None else list(store.kinds)
    for kind in kinds:
        table = kind.scanned_table
        if table in state.done:
            continue
        cursor = state.cursors.get(table)
        pages = 0
        while True:
            page = await store.lifecycle.scan_page(kind, cursor, page_size)
            candidates = []
            for item in page["page"]:
                report.scanned += 1
                if item["inline"] or item["size"] > store.config.max_record_bytes // 4:
                    candidates.append(item["id"])
            report.candidates += len(candidates)
            for index, record_id in enumerate(candidates, start=1):
                await _migrate_record(store, kind, record_id, dry_run=dry_run, report=report)
                if progress is not None:
                    progress("records", report.migrated, report.bytes_offloaded)
                await store.lifecycle.reached(f"migrate:record {index}/{len(candidates)}")
            pages += 1
            cursor = page["continueCursor"]
            if not dry_run:
                state.cursors[table] = cursor
                if page["isDone"]:
                    state.done.add(table)
                state.save()
            if on_page is not None:
                on_page(table, pages)
            if page["isDone"]:
                break
    return report


async def _migrate_record(
    store: OffloadingStore, kind: RecordKind, record_id: str, *, dry_run: bool, report: MigrateReport
) -> None:
    where = f"{kind.scanned_table}:{record_id}"
    try:
        row = await store.store.db.load(kind.table, {"id": record_id})
        if row is None:
            return
        plain = {k: v for k, v in row.items() if not k.startswith("_")}
        changes = [c for c in whole_record(kind, record_id, plain, where=where) if isinstance(c.tree, dict)]
        if not changes:
            report.unchanged += 1
            return
        before = document_size(plain)
        if dry_run:
            offloaded = [
                p
                for c in changes
                for p in store.offloader.plan(
                    c.tree, holder=c.holder, tenant=c.tenant, where=where
                ).offloaded()
            ]
            if not offloaded:
                report.unchanged += 1
                return
            report.migrated += 1
            report.payloads += len(offloaded)
            report.bytes_offloaded += sum(p.prepared.size for p in offloaded)
            report.bytes_before += before
            return
        written_rows: list[dict[str, Any]] = []

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            written_rows.append(stored_row(kind, plain, changes, outcomes))
            return [insert_request(kind.table, written_rows[0])]

        guards = [Guard(kind.table, record_id, field, row.get(field)) for field in kind.guards]
        result = await store.transaction.run(Write(changes, requests, guards=guards, only_if_offloading=True))
        if result.conflicts:
            report.conflicts += 1
            return
        if not result.written:
            report.unchanged += 1
            return
        report.migrated += 1
        report.payloads += result.payloads
        report.bytes_offloaded += result.payload_bytes
        report.bytes_before += before
        report.bytes_after += document_size(written_rows[0])
    except ConvexOffloadError as exc:
        report.failed += 1
        report.errors.append(f"{where}: {type(exc).__name__}: {exc}")
