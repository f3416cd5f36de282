"""The write transaction: the one road every write of `OffloadingStore` takes.

A write is described as data (`Write`: the records it changes, the storage requests that store
them, the owners it releases, the guards it checks) and run here, in one order:

    plan every tree (find, decode, check, route; no I/O)
    → lease the new objects (so gc cannot take them) → upload them, bounded and concurrent
    → rewrite each tree (URLs in place of payloads) → settle each manifest (merging with the stored
      one for updates) → check every record's size as Convex will count it
    → write the records and their references in ONE Convex transaction (`offload/records:write`)
    → delete whatever the write left unreferenced.

If anything fails after the lease, the lease is abandoned and objects nobody references are
deleted: nothing is half-written. If the record write finds a referenced object gone (deleted by
gc meanwhile), it writes nothing; the object is leased and uploaded again and the write retried.
Deletes are writes too: they release owners, in the same transaction as the rows they delete.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from convex_offload.config import OffloadConfig
from convex_offload.convex.values import document_size
from convex_offload.errors import AttachmentMissingError, ConvexOffloadError, RecordTooLargeError, UploadError
from convex_offload.offload.kinds import RecordKind, RecordKinds
from convex_offload.offload.lifecycle import Lifecycle
from convex_offload.offload.manifest import Ref
from convex_offload.offload.merge import Outcome, merged, unchanged, whole
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.policy import PlannedObject, PlannedTree
from convex_offload.offload.registry import ConvexRefRegistry, Guard, ObjectKey, ObjectRef, WriteAnswer
from convex_offload.offload.rewriter import Rewritten

logger = logging.getLogger(__name__)

WRITE_ATTEMPTS: Final = 3
BUSY_RETRIES: Final = 8


@dataclass(frozen=True, slots=True)
class Change:
    """One record, or one part of a record, that a write stores.

    `tree` is what is offloaded: the whole tree of a new record, or an update (`update=True`)
    merged into `stored`, the tree the record holds now (None when there is nothing new; the
    stored refs then stay). `part` names a part with its own owner and its manifest at its root
    (a workflow step). `owns` is False when the record does not exist, so no reference is kept.
    """

    kind: RecordKind
    record_id: str
    tree: Any
    tenant: str | None
    update: bool = False
    stored: Any = None
    part: str | None = None
    owns: bool = True
    where: str | None = None

    @property
    def owner(self) -> str:
        """The owner of this change's references in the registry."""
        if self.part is not None:
            return self.kind.part_owner(self.record_id, self.part)
        return self.kind.owner(self.record_id)

    @property
    def holder(self) -> tuple[str, ...]:
        """Where the manifest lives in this change's tree."""
        return () if self.part is not None else self.kind.holder

    @property
    def label(self) -> str:
        """How errors name the record."""
        return self.where or self.kind.label(self.record_id)


def whole_record(
    kind: RecordKind, record_id: str, row: Mapping[str, Any], *, where: str | None = None
) -> list[Change]:
    """The changes that store a whole row of `kind`: its tree, or each scanned field as a part."""
    tenant = kind.tenant_of(row)
    if kind.per_field:
        return [
            Change(kind, record_id, kind.field_tree(row, field), tenant, part=field, where=where)
            for field in kind.fields
            if field in row
        ]
    return [Change(kind, record_id, kind.tree_of(row), tenant, where=where)]


def stored_row(
    kind: RecordKind, row: Mapping[str, Any], changes: Sequence[Change], outcomes: Sequence[Outcome]
) -> dict[str, Any]:
    """`row` holding what `whole_record`'s changes store."""
    if kind.per_field:
        return kind.with_fields(
            row, {c.part: o.tree for c, o in zip(changes, outcomes, strict=True) if c.part}
        )
    return kind.with_tree(row, outcomes[0].tree)


RequestsFor = Callable[[Sequence[Outcome]], Sequence[dict[str, Any]]]
"""Builds the storage requests of a write from what each change stores (in the changes' order)."""


def _no_requests(_outcomes: Sequence[Outcome]) -> Sequence[dict[str, Any]]:
    return ()


@dataclass(frozen=True, slots=True)
class Write:
    """A write described as data: see the module docstring."""

    changes: Sequence[Change] = ()
    requests: RequestsFor = _no_requests
    release: Sequence[str] = ()
    """Owners whose references go (and, as prefixes, their parts'): deletes and whole rewrites."""
    guards: Sequence[Guard] = ()
    """Compare-and-swap preconditions: nothing is written if a stored field changed."""
    only_if_offloading: bool = False
    """Write nothing unless some payload moves to a bucket (migrate)."""


@dataclass(slots=True)
class WriteResult:
    """What a write did."""

    written: bool
    results: list[Any] = field(default_factory=list)
    """Each storage request's result, in order."""
    conflicts: list[str] = field(default_factory=list)
    """Records whose guard failed (nothing was written)."""
    outcomes: list[Outcome] = field(default_factory=list)
    payloads: int = 0
    """Payloads moved to buckets by this write."""
    payload_bytes: int = 0


@dataclass(slots=True)
class _Lease:
    """One write's lease token, and whether any object was leased under it."""

    token: str
    taken: bool = False


class WriteTransaction:
    """Runs writes for one store (see the module docstring)."""

    def __init__(
        self,
        offloader: Offloader,
        registry: ConvexRefRegistry,
        lifecycle: Lifecycle,
        kinds: RecordKinds,
        config: OffloadConfig,
    ) -> None:
        self.offloader = offloader
        self.registry = registry
        self.lifecycle = lifecycle
        self.kinds = kinds
        self.config = config

    def __repr__(self) -> str:
        return f"WriteTransaction({self.registry!r})"

    async def run(self, write: Write) -> WriteResult:
        """Run one write; raises the first typed error, with nothing written."""
        plans: list[PlannedTree | None] = list(
            await asyncio.gather(*(self._plan(change) for change in write.changes))
        )
        offloaded = [p for plan in plans if plan is not None for p in plan.offloaded()]
        objects: dict[ObjectKey, PlannedObject] = {}
        for p in offloaded:
            objects.setdefault(p.ident, p)
        if write.only_if_offloading and not objects:
            return WriteResult(written=False)
        lease = _Lease(uuid.uuid4().hex)
        try:
            await self._step("write:planned")
            todo = [p for ident, p in objects.items() if not self.offloader.uploader.is_known(ident)]
            if todo:
                await self._lease_and_upload(todo, lease, repair=False)
            await self._step("write:uploaded")
            outcomes = [
                self._settle(change, await self._rewrite(change, plan))
                for change, plan in zip(write.changes, plans, strict=True)
            ]
            requests = list(write.requests(outcomes))
            self._check_sizes(requests, write.changes)
            owners = {
                change.owner: self._object_refs(outcome.refs, change.tenant)
                for change, outcome in zip(write.changes, outcomes, strict=True)
                if change.owns
            }
            answer = await self._commit(write, requests, owners, objects, lease)
            if answer.conflicts:
                await self._abandon(lease)
                return WriteResult(written=False, conflicts=list(answer.conflicts))
        except BaseException:
            await self._abandon(lease)
            raise
        for refs in owners.values():
            for ref in refs:
                self.offloader.uploader.remember(ref.ident)
        self._remember_values(offloaded)
        await self._step("write:written")
        await self.lifecycle.delete_unreferenced(answer.released)
        return WriteResult(
            written=True,
            results=list(answer.results),
            outcomes=outcomes,
            payloads=len(offloaded),
            payload_bytes=sum(p.prepared.size for p in offloaded),
        )

    # --- the steps ----------------------------------------------------------------------------

    async def _plan(self, change: Change) -> PlannedTree | None:
        if not isinstance(change.tree, dict):
            return None
        return await self.offloader.plan_async(
            change.tree, holder=change.holder, tenant=change.tenant, where=change.label
        )

    async def _rewrite(self, change: Change, plan: PlannedTree | None) -> Rewritten:
        if plan is None:
            return Rewritten(root=change.tree)
        return await self.offloader.rewrite(plan)

    def _settle(self, change: Change, rewritten: Rewritten) -> Outcome:
        if change.tree is None and change.update:
            return unchanged(change.stored, change.holder, record=change.label)
        if not change.update:
            return whole(rewritten)

        def check(ref: Ref) -> None:
            self.offloader.check_ref(ref, change.tenant, record=change.label)

        return merged(change.stored, change.tree, rewritten, change.holder, record=change.label, check=check)

    async def _lease_and_upload(self, todo: Sequence[PlannedObject], lease: _Lease, *, repair: bool) -> None:
        lease.taken = True  # before asking: a reservation whose answer is lost still holds rows
        present = await self._lease(todo, lease.token)
        await self._step("write:leased")
        uploads = []
        for p in todo:
            if p.ident in present and not repair:
                self.offloader.stats.dedup_skips += 1
            else:
                uploads.append(p)
        await self.offloader.uploader.upload(uploads, check_bucket=False, each=self._uploaded)

    async def _lease(self, todo: Sequence[PlannedObject], token: str) -> frozenset[ObjectKey]:
        refs = [p.object_ref() for p in todo]
        owner = f"lease:{todo[0].place}"
        delay = 0.05
        present: frozenset[ObjectKey] = frozenset()
        for _attempt in range(BUSY_RETRIES):
            reservation = await self.registry.reserve(token, owner, refs, self.config.lease_seconds)
            present |= reservation.present
            if not reservation.busy:
                return present
            # The collector is deleting some of these right now; it finishes in moments.
            refs = [r for r in refs if r.ident in reservation.busy]
            await asyncio.sleep(delay)
            delay *= 2
        p = todo[0]
        raise UploadError(
            "the garbage collector kept this object claimed", path=p.place, bucket=p.bucket, key=p.key
        )

    def _check_sizes(self, requests: Sequence[dict[str, Any]], changes: Sequence[Change]) -> None:
        """Refuse a record whose Convex document would exceed `max_record_bytes`, before sending."""
        labels = {(c.kind.table, c.record_id): c.label for c in changes}
        for request in requests:
            rows = {"insert": [request.get("record")], "batchInsert": request.get("records") or []}.get(
                str(request.get("op")), []
            )
            for row in rows:
                if not isinstance(row, dict):
                    continue
                size = document_size(row)
                if size > self.config.max_record_bytes:
                    what = labels.get(
                        (str(request.get("tableName")), str(row.get("id"))),
                        f"{request.get('tableName')} {row.get('id')}",
                    )
                    mib = size / (1 << 20)
                    raise RecordTooLargeError(
                        f"{what} would be a {size:,}-byte Convex document, over the "
                        f"{self.config.max_record_bytes:,}-byte limit even after offloading (too much "
                        "inline text?)",
                        path="(not sent)",
                        convex_message=f"Value is too large ({mib:.2f} MiB > maximum size 1 MiB)",
                    )

    async def _commit(
        self,
        write: Write,
        requests: Sequence[dict[str, Any]],
        owners: Mapping[str, Sequence[ObjectRef]],
        objects: Mapping[ObjectKey, PlannedObject],
        lease: _Lease,
    ) -> WriteAnswer:
        for _attempt in range(WRITE_ATTEMPTS):
            answer = await self.registry.write(
                requests,
                owners,
                release=write.release,
                token=lease.token if lease.taken else None,
                guards=write.guards,
                kinds=self.kinds,
            )
            if answer.ok or answer.conflicts:
                return answer
            await self._repair(answer.missing, objects, lease)
        raise UploadError("referenced objects kept disappearing", path="(write)", bucket="", key="")

    async def _repair(
        self, missing: Sequence[ObjectKey], objects: Mapping[ObjectKey, PlannedObject], lease: _Lease
    ) -> None:
        """Objects the write found gone: lease and upload them again from this write's plans."""
        for bucket, key in missing:
            self.offloader.forget(bucket, key)
        lost = [ident for ident in missing if ident not in objects]
        if lost:
            bucket, key = lost[0]
            raise AttachmentMissingError(bucket=bucket, key=key, path="a reference this write keeps")
        await self._lease_and_upload([objects[ident] for ident in missing], lease, repair=True)

    async def _abandon(self, lease: _Lease) -> None:
        """Best effort: release a failed write's leases and delete objects nobody references."""
        if not lease.taken:
            return
        try:
            orphans = await self.registry.abandon(lease.token)
            await self.lifecycle.delete_unreferenced(orphans)
        except ConvexOffloadError as exc:
            logger.warning("could not release the leases of a failed write (gc will): %s", exc)

    def _remember_values(self, offloaded: Sequence[PlannedObject]) -> None:
        """The payloads just written are the values a read of them restores: cache them, so a read
        right after the write (the caller's own, or one racing another writer) fetches nothing."""
        values = self.offloader.restorer.values
        for p in offloaded:
            c = p.candidate
            text = c.text[c.span[0] : c.span[1]] if c.span is not None else c.text
            values.put(p.bucket, p.key, c.header, text)

    def _object_refs(self, refs: Sequence[Ref], tenant: str | None) -> list[ObjectRef]:
        scope = self.offloader.tenant_scope(tenant)
        unique = {(r.bucket, r.key): ObjectRef(r.bucket, r.key, scope, r.size, r.sha256) for r in refs}
        return list(unique.values())

    async def _uploaded(self, done: int, total: int) -> None:
        await self._step(f"write:uploaded {done}/{total}")

    async def _step(self, name: str) -> None:
        await self.lifecycle.reached(name)
