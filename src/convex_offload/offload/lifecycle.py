"""After day one: deleting what nothing references, garbage collection, verification, statistics.

Deletion: an object is deleted only under a claim the registry grants when no record references
it and no writer leases it; while the claim holds, no writer can reference it. So deleting never
races a write.

Garbage collection, in three passes:
1. expire leases of writers that never came back;
2. mark: read every record's manifests and make each owner's reference rows match them exactly
   (read and fixed in one transaction per batch of owners, so a concurrent write is never undone);
3. sweep: in every bucket, delete each object older than the grace period that no record marks and
   no row keeps alive (under a claim, as above; claimed `DELETE_BATCH` at a time).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from convex_offload.blobs.base import ObjectInfo
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.kinds import RecordKind, RecordKinds
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.registry import ConvexRefRegistry, ObjectKey

logger = logging.getLogger(__name__)

RECONCILE_BATCH = 50
DELETE_BATCH = 100
"""Objects claimed together (one Convex call to claim, one to release); deleted one by one."""
Outcome = Literal["deleted", "kept", "failed"]
Checkpoint = Callable[[str], Awaitable[None]]
"""Awaited at each named step (`write:leased`, `delete:object 1/2`, `gc:marked`, ...): a hook for
tests that stop a process at an exact point (README "Guarantees" lists every step)."""
Phase = Callable[[str], Awaitable[None]]
"""Called between the passes of `gc` with the name of the pass about to run (tests interleave writes)."""


@dataclass
class DeletionReport:
    """What `delete_unreferenced` did."""

    deleted: list[ObjectKey] = field(default_factory=list)
    kept: list[ObjectKey] = field(default_factory=list)
    """Objects a record or a lease took back before the claim (they stay)."""
    failed: list[ObjectKey] = field(default_factory=list)
    """Objects whose deletion failed; the garbage collector retries them."""


@dataclass(frozen=True)
class RecordInfo:
    """One stored record as the scan sees it."""

    table: str
    """Its Convex table (for the `documents` layout: its Mastra table name)."""
    id: str
    size: int
    inline: bool
    owners: dict[str, list[dict[str, Any]]]


@dataclass
class GcReport:
    """What a garbage collection found and did (or would do, in a dry run)."""

    expired_leases: int = 0
    reconciled_rows: int = 0
    records_scanned: int = 0
    objects_scanned: int = 0
    referenced: int = 0
    young: int = 0
    orphans: list[ObjectKey] = field(default_factory=list)
    deleted: list[ObjectKey] = field(default_factory=list)
    kept: list[ObjectKey] = field(default_factory=list)
    failed: list[ObjectKey] = field(default_factory=list)
    bytes_freed: int = 0


class Lifecycle:
    """Deletion, garbage collection and scans over one deployment's records and buckets."""

    def __init__(
        self,
        offloader: Offloader,
        registry: ConvexRefRegistry,
        kinds: RecordKinds,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.offloader = offloader
        self.registry = registry
        self.kinds = kinds
        self.checkpoint = checkpoint
        self.claim_seconds = offloader.config.claim_seconds

    def __repr__(self) -> str:
        return f"Lifecycle({self.registry!r})"

    @property
    def client(self) -> ConvexClient:
        """The Convex client the registry uses."""
        return self.registry.client

    async def delete_unreferenced(self, objects: Sequence[ObjectKey]) -> DeletionReport:
        """Claim, delete and release each object; one object's failure never stops the others."""
        report = DeletionReport()

        settled = 0

        async def done(ident: ObjectKey, outcome: Outcome) -> None:
            nonlocal settled
            getattr(report, outcome).append(ident)
            settled += 1
            await self.reached(f"delete:object {settled}/{len(objects)}")

        for start in range(0, len(objects), DELETE_BATCH):
            await self._delete_batch(objects[start : start + DELETE_BATCH], done)
        return report

    async def reached(self, name: str) -> None:
        """A named step was reached: await the checkpoint hook, if any."""
        if self.checkpoint is not None:
            await self.checkpoint(name)

    async def _delete_batch(
        self, objects: Sequence[ObjectKey], done: Callable[[ObjectKey, Outcome], Awaitable[None]]
    ) -> None:
        """Claim a batch under one token (one Convex call), delete each object granted, one after
        another, then end the claims (one call). An object the claim was refused for is kept."""
        configured = [ident for ident in objects if ident[0] in self.offloader.buckets]
        for bucket, key in objects:
            if bucket not in self.offloader.buckets:
                logger.warning("object %s in unconfigured bucket %s left in place", key, bucket)
                await done((bucket, key), "failed")
        if not configured:
            return
        token = uuid.uuid4().hex
        try:
            granted = await self.registry.claim_many(configured, token, self.claim_seconds)
        except ConvexOffloadError as exc:
            logger.warning("could not claim %d objects now (gc will retry): %s", len(configured), exc)
            for ident in configured:
                await done(ident, "failed")
            return
        try:
            for bucket, key in configured:
                if (bucket, key) not in granted:
                    await done((bucket, key), "kept")
                    continue
                try:
                    await self.offloader.buckets[bucket].delete(key)
                except ConvexOffloadError as exc:
                    logger.warning("could not delete %s/%s now (gc will retry): %s", bucket, key, exc)
                    await done((bucket, key), "failed")
                    continue
                self.offloader.forget(bucket, key)
                await done((bucket, key), "deleted")
        finally:
            if granted:
                try:
                    await self.registry.finalize_many(sorted(granted), token)
                except ConvexOffloadError as exc:
                    logger.warning("could not release %d claims (they expire): %s", len(granted), exc)

    # --- scanning -----------------------------------------------------------------------------

    async def scan_page(self, kind: RecordKind, cursor: str | None, page_size: int) -> dict[str, Any]:
        """One page of a kind's records, as `offload/scan:records` answers it (sizes, hints, refs)."""
        page: dict[str, Any] = await self.client.query(
            "offload/scan:records",
            {"kind": kind.name, "catalog": self.kinds.wire(), "cursor": cursor, "pageSize": page_size},
        )
        return page

    async def records(self, kind: RecordKind, page_size: int = 100) -> AsyncIterator[RecordInfo]:
        """Every record of a kind: size, whether base64 seems inline, and its manifests' refs."""
        cursor: str | None = None
        while True:
            page = await self.scan_page(kind, cursor, page_size)
            for item in page["page"]:
                yield RecordInfo(
                    table=kind.scanned_table,
                    id=item["id"],
                    size=int(item["size"]),
                    inline=bool(item["inline"]),
                    owners={o["owner"]: o["refs"] for o in item["owners"]},
                )
            if page["isDone"]:
                return
            cursor = page["continueCursor"]

    async def objects(self) -> AsyncIterator[tuple[str, ObjectInfo]]:
        """Every object of every bucket whose key this library wrote (never others, even in a
        shared bucket), with its bucket's name."""
        for name, bucket in self.offloader.buckets.items():
            async for info in bucket.list_objects(self.offloader.keys.prefixes[name]):
                if self.offloader.is_our_key(name, info.key):
                    yield name, info

    async def all_records(self) -> AsyncIterator[RecordInfo]:
        """Every record of every kind."""
        for kind in self.kinds:
            async for record in self.records(kind):
                yield record

    # --- garbage collection -------------------------------------------------------------------

    async def gc(
        self,
        *,
        grace: timedelta = timedelta(hours=1),
        dry_run: bool = False,
        on_phase: Phase | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> GcReport:
        """Collect objects whose records were never written or are gone (see the module docstring)."""
        report = GcReport()

        async def phase(name: str) -> None:
            if on_phase is not None:
                await on_phase(name)

        await phase("expire")
        if not dry_run:
            while True:
                expired, _unreferenced = await self.registry.expire_pending()
                report.expired_leases += expired
                if expired == 0:
                    break

        await phase("mark")
        marked: set[ObjectKey] = set()
        manifests: dict[str, set[ObjectKey]] = {}
        async for record in self.all_records():
            report.records_scanned += 1
            for owner, refs in record.owners.items():
                objects = {(ref["bucket"], ref["key"]) for ref in refs}
                manifests[owner] = objects
                marked.update(objects)
            if progress is not None:
                progress("records", report.records_scanned)
        rows_by_owner: dict[str, set[ObjectKey]] = defaultdict(set)
        alive_rows: set[ObjectKey] = set()
        async for row in self.registry.rows():
            if row.state == "committed":
                rows_by_owner[row.owner].add((row.bucket, row.key))
            if row.state != "deleting":
                alive_rows.add((row.bucket, row.key))
        # Owners whose rows disagree with their record: rows of deleted records, and records
        # whose manifests reference objects without rows (copied by a writer that is not us).
        owners = set(rows_by_owner) | {o for o, objects in manifests.items() if objects}
        drifted = sorted(o for o in owners if rows_by_owner.get(o, set()) != manifests.get(o, set()))
        if not dry_run:
            for start in range(0, len(drifted), RECONCILE_BATCH):
                changed, _free = await self.registry.reconcile(
                    drifted[start : start + RECONCILE_BATCH], self.kinds
                )
                report.reconciled_rows += changed

        await self.reached("gc:marked")
        await phase("sweep")
        cutoff = datetime.now(UTC) - grace
        batch: dict[ObjectKey, int] = {}
        """Orphans found and not yet deleted, with their sizes."""

        settled = 0

        async def swept(ident: ObjectKey, outcome: Outcome) -> None:
            nonlocal settled
            getattr(report, outcome).append(ident)
            if outcome == "deleted":
                report.bytes_freed += batch[ident]
            settled += 1
            await self.reached(f"gc:swept {settled}")

        async for name, info in self.objects():
            report.objects_scanned += 1
            ident = (name, info.key)
            if ident in marked:
                report.referenced += 1
                continue
            if info.last_modified is not None and info.last_modified > cutoff:
                report.young += 1
                continue
            if dry_run and ident in alive_rows:
                continue  # a lease holds it; the claim would refuse
            report.orphans.append(ident)
            if progress is not None:
                progress("objects", report.objects_scanned)
            if dry_run:
                continue
            batch[ident] = info.size
            if len(batch) >= DELETE_BATCH:
                await self._delete_batch(list(batch), swept)
                batch.clear()
        if batch:
            await self._delete_batch(list(batch), swept)
        await phase("done")
        return report

    async def gather_sizes(self, objects: Sequence[ObjectKey]) -> dict[ObjectKey, int]:
        """Sizes of objects (HEAD), for reports."""
        heads = await asyncio.gather(*(self.offloader.buckets[b].head(k) for b, k in objects))
        return {obj: head.size for obj, head in zip(objects, heads, strict=True) if head is not None}
