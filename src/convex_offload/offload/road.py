"""The road both ways for one store: writes through the write transaction, reads restored by kind.

Every offloading domain (memory, workflows, records of any kind) holds one `Road`: it describes
a write and hands it to `write`, and gives each record it reads to `restore` with its kind, which
knows where the manifests are (the record's, and each part's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from convex_offload.offload.kinds import RecordKind, RecordKinds
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.merge import Outcome
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.restorer import RestoreMode
from convex_offload.offload.transaction import Write, WriteResult, WriteTransaction, stored_row, whole_record
from convex_offload.offload.tree import get_at
from convex_offload.store.db import delete_many_request, insert_request


class Road:
    """Writes and restores for one store, in one restore mode."""

    def __init__(self, transaction: WriteTransaction, mode: RestoreMode = "inline") -> None:
        self.transaction = transaction
        self.mode: RestoreMode = mode

    def __repr__(self) -> str:
        return f"Road({self.transaction!r}, mode={self.mode!r})"

    @property
    def offloader(self) -> Offloader:
        """The offloader the transaction uses."""
        return self.transaction.offloader

    @property
    def kinds(self) -> RecordKinds:
        """The record kinds this store offloads."""
        return self.transaction.kinds

    def kind(self, name: str) -> RecordKind:
        """One record kind by name."""
        return self.kinds.named(name)

    def with_mode(self, mode: RestoreMode) -> Road:
        """The same road, restoring as `mode`."""
        return Road(self.transaction, mode)

    async def write(self, write: Write) -> WriteResult:
        """Run a write through the one write transaction."""
        return await self.transaction.run(write)

    async def replace(
        self,
        kind: RecordKind,
        record_id: str,
        row: Mapping[str, Any],
        *,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Create or replace a whole row of `kind`, offloading its payloads; the references it held
        before (its parts' too) go. `check` sees the row as it will be stored."""
        changes = whole_record(kind, record_id, row)

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            stored = stored_row(kind, row, changes, outcomes)
            if check is not None:
                check(stored)
            return [insert_request(kind.table, stored)]

        await self.write(Write(changes, requests, release=[kind.owner(record_id)]))

    async def delete(self, kind: RecordKind, record_ids: Sequence[str]) -> None:
        """Delete records of `kind`, and every attachment no other record references."""
        if not record_ids:
            return
        requests = [delete_many_request(kind.table, record_ids)]
        release = [kind.owner(record_id) for record_id in record_ids]
        await self.write(Write(requests=lambda _: requests, release=release))

    async def restore(self, kind: RecordKind, tree: Any, *, tenant: str | None, record: str) -> Any:
        """Restore a record's tree in place (its parts, then its own manifest); returns the tree."""
        parts = kind.part_trees(tree)
        if parts:
            assert kind.parts is not None
            await asyncio.gather(
                *(
                    self.offloader.restore(
                        part,
                        holder=(),
                        tenant=tenant,
                        mode=self.mode,
                        record=f"{record} {kind.parts.name} {key}",
                    )
                    for key, part in parts.items()
                )
            )
        if kind.manifest is not None and has_manifest(tree, kind.holder):
            tree = await self.offloader.restore(
                tree, holder=kind.holder, tenant=tenant, mode=self.mode, record=record
            )
        return tree

    async def restore_row(self, kind: RecordKind, row: Mapping[str, Any], *, record: str) -> dict[str, Any]:
        """A stored row of `kind` with its scanned fields restored."""
        tenant = kind.tenant_of(row)
        if kind.per_field:
            trees = {
                field: kind.field_tree(row, field) for field in kind.fields if row.get(field) is not None
            }
            await self.restore(kind, trees, tenant=tenant, record=record)
            return kind.with_fields(row, trees)
        tree = await self.restore(kind, kind.tree_of(row), tenant=tenant, record=record)
        return kind.with_tree(row, tree)

    async def restore_all(self, kind: RecordKind, items: Sequence[tuple[Any, str | None, str]]) -> None:
        """Restore many trees `(tree, tenant, record)` in place: from the caches without waiting where
        possible, the rest concurrently."""
        pending: list[Awaitable[Any]] = []
        for tree, tenant, record in items:
            if kind.parts:
                pending.append(self.restore(kind, tree, tenant=tenant, record=record))
                continue
            later = self.offloader.restore_now(
                tree, holder=kind.holder, tenant=tenant, record=record, mode=self.mode
            )
            if later is not None:
                pending.append(later)
        await asyncio.gather(*pending)


def has_manifest(tree: Any, holder: Sequence[str]) -> bool:
    """Whether the holder of `tree` carries a manifest."""
    node = get_at(tree, holder)
    return isinstance(node, dict) and MANIFEST_KEY in node
