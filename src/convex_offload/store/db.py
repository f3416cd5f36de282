"""The @mastra/convex storage protocol: `{op, tableName, ...}` requests to `mastra/storage:handle`.

The same requests the TypeScript `ConvexAdminClient`/`ConvexDB` send, so both stores share one
deployment. The handler answers `{ok, result?, hasMore?, continuationCursor?, error?}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from convex_offload.convex.client import ConvexClient
from convex_offload.errors import StorageOperationError

DEFAULT_STORAGE_FUNCTION: Final = "mastra/storage:handle"
LOAD_MANY_BATCH: Final = 10
"""The handler refuses `loadMany` with more ids than this."""

TABLE_THREADS: Final = "mastra_threads"
TABLE_MESSAGES: Final = "mastra_messages"
TABLE_RESOURCES: Final = "mastra_resources"
TABLE_WORKFLOW_SNAPSHOT: Final = "mastra_workflow_snapshot"
TABLE_SCORERS: Final = "mastra_scorers"
TABLE_VECTOR_INDEXES: Final = "mastra_vector_indexes"


@dataclass(frozen=True)
class Filter:
    """An equality filter of `queryTable`."""

    field: str
    value: Any


@dataclass(frozen=True)
class RawAnswer:
    """The handler's whole answer for operations that page or batch."""

    result: Any
    has_more: bool
    continuation_cursor: str | None


class StorageDB:
    """Sends storage operations to the @mastra/convex handler through a `ConvexClient`."""

    def __init__(self, client: ConvexClient, storage_function: str = DEFAULT_STORAGE_FUNCTION) -> None:
        self.client = client
        self.storage_function = storage_function

    def __repr__(self) -> str:
        return f"StorageDB({self.client!r}, {self.storage_function!r})"

    async def call_raw(self, request: dict[str, Any]) -> RawAnswer:
        """Send one operation; raise `StorageOperationError` when it answers `ok: false`."""
        answer = await self.client.mutation(self.storage_function, request)
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else None
            message = str(error or "Unknown Convex storage error")
            raise StorageOperationError(
                f"{self.storage_function} {request.get('op')} on {request.get('tableName')}: {message}",
                path=self.storage_function,
                convex_message=message,
            )
        return RawAnswer(
            result=answer.get("result"),
            has_more=bool(answer.get("hasMore")),
            continuation_cursor=answer.get("continuationCursor"),
        )

    async def call(self, request: dict[str, Any]) -> Any:
        """Send one operation and return its `result`."""
        return (await self.call_raw(request)).result

    async def call_until_done(self, request: dict[str, Any]) -> None:
        """Repeat a batched operation (clearTable, dropTable) until it reports no more."""
        while (await self.call_raw(request)).has_more:
            pass

    async def insert(self, table: str, record: dict[str, Any]) -> None:
        """Upsert one record by its `id`."""
        await self.call(insert_request(table, record))

    async def batch_insert(self, table: str, records: Sequence[dict[str, Any]]) -> None:
        """Upsert records by `id` in one transaction."""
        if records:
            await self.call(batch_insert_request(table, records))

    async def patch(self, table: str, record_id: str, fields: dict[str, Any]) -> bool:
        """Patch fields of the record `record_id`; False when it does not exist."""
        return bool(await self.call(patch_request(table, record_id, fields)))

    async def load(self, table: str, keys: dict[str, Any]) -> dict[str, Any] | None:
        """The first record matching `keys` (by `id` through the index), or None."""
        result = await self.call({"op": "load", "tableName": table, "keys": keys})
        return result if isinstance(result, dict) else None

    async def load_many(self, table: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Records with these ids (unique, in batches of 10 like the TS client); missing ones skipped."""
        unique = list(dict.fromkeys(ids))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(unique), LOAD_MANY_BATCH):
            batch = unique[start : start + LOAD_MANY_BATCH]
            rows.extend(await self.call({"op": "loadMany", "tableName": table, "ids": batch}))
        return rows

    async def query_table(
        self, table: str, filters: Sequence[Filter] | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows matching equality `filters` (the handler reads at most 10,000)."""
        request: dict[str, Any] = {"op": "queryTable", "tableName": table}
        if filters:
            request["filters"] = [{"field": f.field, "value": f.value} for f in filters]
        if limit is not None:
            request["limit"] = limit
        return list(await self.call(request))

    async def delete_many(self, table: str, ids: Sequence[str]) -> None:
        """Delete records by id; ids that do not exist are ignored."""
        if ids:
            await self.call(delete_many_request(table, ids))

    async def clear_table(self, table: str) -> None:
        """Delete every row of a table, 25 per call."""
        await self.call_until_done({"op": "clearTable", "tableName": table})


def insert_request(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """The `insert` (upsert by id) request of one record."""
    return {"op": "insert", "tableName": table, "record": normalize_record(table, record)}


def batch_insert_request(table: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The `batchInsert` request of records."""
    return {"op": "batchInsert", "tableName": table, "records": [normalize_record(table, r) for r in records]}


def patch_request(table: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The `patch` request of some fields of one record."""
    return {"op": "patch", "tableName": table, "id": record_id, "record": fields}


def delete_many_request(table: str, ids: Sequence[str]) -> dict[str, Any]:
    """The `deleteMany` request of records by id."""
    return {"op": "deleteMany", "tableName": table, "ids": list(ids)}


def normalize_record(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """Give a record its id as the TS client does: `${workflow_name}-${run_id}` or a UUID."""
    normalized = dict(record)
    if table == TABLE_WORKFLOW_SNAPSHOT and not normalized.get("id"):
        run_id = normalized.get("run_id") or normalized.get("runId")
        workflow_name = normalized.get("workflow_name") or normalized.get("workflowName")
        normalized["id"] = f"{workflow_name}-{run_id}" if workflow_name else run_id
    if not normalized.get("id"):
        normalized["id"] = str(uuid.uuid4())
    return normalized
