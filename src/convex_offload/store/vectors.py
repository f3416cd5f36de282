"""`ConvexVector`: vectors in the @mastra/convex tables, as the TypeScript `ConvexVector` keeps them.

Index metadata lives in `mastra_vector_indexes`, vectors in `mastra_vectors` (table name
`mastra_vector_<index>` on the wire). Similarity is cosine, computed client-side over every
vector of the index (read in pages of 256), exactly as the TS store does.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from convex_offload.convex.client import ConvexClient
from convex_offload.convex.owner import ClientOwner
from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidInputError, NotFoundError, StorageOperationError
from convex_offload.store.db import DEFAULT_STORAGE_FUNCTION, TABLE_VECTOR_INDEXES, StorageDB
from convex_offload.store.models import iso, now
from convex_offload.store.paging import js_equal

PAGE_SIZE = 256
Filter = Mapping[str, Any]


class IndexStats(BaseModel):
    """What `describe_index` answers."""

    model_config = ConfigDict(frozen=True)

    dimension: int
    count: int
    metric: str = "cosine"


class QueryResult(BaseModel):
    """One hit of `query`."""

    model_config = ConfigDict(frozen=True)

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    vector: list[float] | None = None


class ConvexVector(ClientOwner):
    """Python twin of @mastra/convex's `ConvexVector`, sharing its tables."""

    def __init__(
        self,
        url: str | None = None,
        admin_key: str | SecretStr | None = None,
        *,
        client: ConvexClient | None = None,
        storage_function: str = DEFAULT_STORAGE_FUNCTION,
        owns_client: bool = False,
    ) -> None:
        super().__init__(url, admin_key, client, owns_client=owns_client)
        self.db = StorageDB(self.client, storage_function)

    @staticmethod
    def table(index_name: str) -> str:
        """The wire table name of an index's vectors."""
        return f"mastra_vector_{index_name}"

    async def create_index(self, index_name: str, dimension: int) -> None:
        """Create (or replace the record of) an index; the metric is always cosine."""
        if dimension <= 0:
            raise InvalidInputError(f"dimension must be positive, got {dimension}")
        await self.db.call(
            {
                "op": "insert",
                "tableName": TABLE_VECTOR_INDEXES,
                "record": {
                    "id": index_name,
                    "indexName": index_name,
                    "dimension": dimension,
                    "metric": "cosine",
                    "createdAt": iso(now()),
                },
            }
        )

    async def delete_index(self, index_name: str) -> None:
        """Delete an index and all its vectors."""
        await self.db.delete_many(TABLE_VECTOR_INDEXES, [index_name])
        await self.db.call_until_done({"op": "clearTable", "tableName": self.table(index_name)})

    async def truncate_index(self, index_name: str) -> None:
        """Delete every vector of an index, keeping the index."""
        await self.db.call_until_done({"op": "clearTable", "tableName": self.table(index_name)})

    async def list_indexes(self) -> list[str]:
        """Names of every index."""
        return [row["id"] for row in await self.db.query_table(TABLE_VECTOR_INDEXES)]

    async def describe_index(self, index_name: str) -> IndexStats:
        """Dimension and vector count of an index; NotFoundError if it does not exist."""
        row = await self.db.load(TABLE_VECTOR_INDEXES, {"id": index_name})
        if row is None:
            raise NotFoundError(f"Index {index_name} not found")
        return IndexStats(dimension=int(row["dimension"]), count=len(await self._all(index_name)))

    async def upsert(
        self,
        index_name: str,
        vectors: Sequence[Sequence[float]],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Insert or replace vectors; returns their ids (new UUIDs where none were given)."""
        if ids is not None and len(ids) != len(vectors):
            raise InvalidInputError(f"{len(ids)} ids for {len(vectors)} vectors")
        vector_ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in vectors]
        records = []
        for i, vector in enumerate(vectors):
            record: dict[str, Any] = {"id": vector_ids[i], "embedding": [float(x) for x in vector]}
            item = metadata[i] if metadata is not None and i < len(metadata) else None
            if item is not None:
                check_value(dict(item), where=f"vector {vector_ids[i]} metadata")
                record["metadata"] = dict(item)
            records.append(record)
        await self.db.call({"op": "batchInsert", "tableName": self.table(index_name), "records": records})
        return vector_ids

    async def query(
        self,
        index_name: str,
        query_vector: Sequence[float],
        *,
        top_k: int = 10,
        include_vector: bool = False,
        filter: Filter | None = None,
    ) -> list[QueryResult]:
        """The `top_k` most similar vectors (cosine), optionally only those whose metadata matches."""
        rows = await self._all(index_name)
        if filter:
            rows = [row for row in rows if matches_filter(row.get("metadata"), filter)]
        scored = []
        for row in rows:
            score = cosine_similarity(query_vector, row["embedding"])
            if math.isfinite(score):
                scored.append((score, row))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        return [
            QueryResult(
                id=row["id"],
                score=score,
                metadata=row.get("metadata"),
                vector=row["embedding"] if include_vector else None,
            )
            for score, row in scored[:top_k]
        ]

    async def update_vector(
        self,
        index_name: str,
        *,
        id: str | None = None,
        filter: Filter | None = None,
        vector: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the vector and/or merge metadata, of one id or of every vector matching `filter`."""
        if id and filter is not None:
            raise InvalidInputError("ConvexVector.updateVector: id and filter are mutually exclusive")
        if filter is not None:
            if not filter:
                raise InvalidInputError("ConvexVector.updateVector: cannot update with empty filter")
            targets = [
                row for row in await self._all(index_name) if matches_filter(row.get("metadata"), filter)
            ]
        elif id:
            row = await self.db.load(self.table(index_name), {"id": id})
            targets = [row] if row is not None else []
        else:
            raise InvalidInputError("ConvexVector.updateVector: Either id or filter must be provided")
        for existing in targets:
            updated = {k: v for k, v in existing.items() if not k.startswith("_")}
            if vector:
                updated["embedding"] = [float(x) for x in vector]
            if metadata:
                updated["metadata"] = {**(existing.get("metadata") or {}), **metadata}
            await self.db.insert(self.table(index_name), updated)

    async def delete_vector(self, index_name: str, vector_id: str) -> None:
        """Delete one vector."""
        await self.db.delete_many(self.table(index_name), [vector_id])

    async def delete_vectors(
        self,
        index_name: str,
        *,
        ids: Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> None:
        """Delete vectors by ids or by metadata filter (exactly one of them)."""
        if ids is not None and filter is not None:
            raise InvalidInputError("ConvexVector.deleteVectors: ids and filter are mutually exclusive")
        if ids is None and filter is None:
            raise InvalidInputError("ConvexVector.deleteVectors: Either filter or ids must be provided")
        if ids is not None:
            if not ids:
                raise InvalidInputError("ConvexVector.deleteVectors: cannot delete with empty ids array")
            await self.db.delete_many(self.table(index_name), ids)
            return
        assert filter is not None
        if not filter:
            raise InvalidInputError("ConvexVector.deleteVectors: cannot delete with empty filter")
        matching = [
            row["id"] for row in await self._all(index_name) if matches_filter(row.get("metadata"), filter)
        ]
        if matching:
            await self.db.delete_many(self.table(index_name), matching)

    async def _all(self, index_name: str) -> list[dict[str, Any]]:
        """Every vector of an index, a page of 256 at a time."""
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            answer = await self.db.call_raw(
                {
                    "op": "queryTable",
                    "tableName": self.table(index_name),
                    "pageSize": PAGE_SIZE,
                    "cursor": cursor,
                }
            )
            rows.extend(answer.result)
            if not answer.has_more:
                return rows
            if not answer.continuation_cursor or answer.continuation_cursor == cursor:
                raise StorageOperationError(
                    "ConvexVector: paginated vector query did not return a valid continuation cursor",
                    path=self.db.storage_function,
                    convex_message="bad cursor",
                )
            cursor = answer.continuation_cursor


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity as the TS store computes it: -1 for different lengths or a zero vector."""
    if len(a) != len(b):
        return -1.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm_a = sum(x * x for x in a)
    norm_b = sum(y * y for y in b)
    if norm_a == 0 or norm_b == 0:
        return -1.0
    return dot / (math.sqrt(norm_a) * math.sqrt(norm_b))


def matches_filter(metadata: Any, condition: Filter) -> bool:
    """The TS store's metadata filter: equality, `$and`, `$or`, `$in`, `$nin`, `$gt(e)`, `$lt(e)`, `$ne`."""
    if not isinstance(metadata, dict):
        return False
    if not condition:
        return True
    inner = condition.get("metadata")
    return _conditions(metadata, inner if "metadata" in condition and inner else condition)


def _conditions(record: dict[str, Any], conditions: Mapping[str, Any]) -> bool:
    for key, value in conditions.items():
        if key == "$and" and isinstance(value, list):
            if not all(_conditions(record, c) for c in value):
                return False
            continue
        if key == "$or" and isinstance(value, list):
            if not any(_conditions(record, c) for c in value):
                return False
            continue
        actual = record.get(key)
        if isinstance(value, dict) and not _operator(actual, value):
            return False
        if not isinstance(value, dict) and not js_equal(actual, value):
            return False
    return True


def _operator(actual: Any, spec: dict[str, Any]) -> bool:
    """The first operator present decides, in the TS store's order."""
    if "$in" in spec:
        return isinstance(spec["$in"], list) and any(js_equal(actual, v) for v in spec["$in"])
    if "$nin" in spec:
        return not (isinstance(spec["$nin"], list) and any(js_equal(actual, v) for v in spec["$nin"]))
    for op, test in (("$gt", _gt), ("$gte", _ge), ("$lt", _lt), ("$lte", _le)):
        if op in spec:
            return test(actual, spec[op])
    if "$ne" in spec:
        return not js_equal(actual, spec["$ne"])
    return js_equal(actual, spec)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def _gt(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a > b


def _ge(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a >= b


def _lt(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a < b


def _le(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a <= b
