"""`OffloadedRecords`: the records of any kind, offloaded, through the same road as the domains.

For a table this library has no domain for (a new Mastra table, or the app's own records in the
`mastra_documents` fallback), one `RecordKind` entry is enough: `store.records("widget")` saves,
reads and deletes its records with payloads offloaded, and gc, verify, stats and migrate know it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convex_offload.errors import InvalidInputError
from convex_offload.offload.kinds import RecordKind
from convex_offload.offload.road import Road
from convex_offload.store.db import StorageDB


class OffloadedRecords:
    """Records of one kind: `save` (create or replace), `get`, `delete`."""

    def __init__(self, db: StorageDB, road: Road, kind: RecordKind) -> None:
        self.db = db
        self.kind = kind
        self._road = road

    def __repr__(self) -> str:
        return f"OffloadedRecords({self.kind.name!r}, table={self.kind.table!r})"

    async def save(self, record: Mapping[str, Any]) -> None:
        """Create or replace a record (by its id field), offloading the payloads of its fields."""
        kind = self.kind
        record_id = record.get(kind.id_field)
        if not isinstance(record_id, str) or not record_id:
            raise InvalidInputError(f"{kind.name} record: `{kind.id_field}` must be a non-empty string")
        await self._road.replace(kind, record_id, dict(record))

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """The record with its payloads restored, or None."""
        row = await self.db.load(self.kind.table, {"id": record_id})
        if row is None:
            return None
        return await self._road.restore_row(self.kind, row, record=self.kind.label(record_id))

    async def delete(self, record_ids: Sequence[str]) -> None:
        """Delete records, and every attachment no other record references."""
        await self._road.delete(self.kind, record_ids)
