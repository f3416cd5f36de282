"""`ConvexNativeVector`: Convex's own vector search, as @mastra/convex's `ConvexNativeVector`.

Each Mastra index is a dedicated Convex table with a schema-defined `vectorIndex` (see README,
"Native vector search"). Calls go to the three deployed handlers, with the TS client's arguments:
`mastra/nativeVector:query` (an action: `ctx.vectorSearch`, ids and scores), `:read` (a query:
documents by Convex id, counts) and `:write` (a mutation: upsert, update and delete by id).
Filters are Convex's: one equality on a declared filter field. (`$or` of equalities is what the
TS client would send, but Convex refuses any argument field name starting with `$`, so the
deployed handler can never receive it; this client refuses it before sending.)
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from convex_offload.convex.client import ConvexClient
from convex_offload.convex.owner import ClientOwner
from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidInputError
from convex_offload.store.vectors import IndexStats, QueryResult

logger = logging.getLogger(__name__)

DEFAULT_NATIVE_ACTION: Final = "mastra/nativeVector:query"
DEFAULT_NATIVE_QUERY: Final = "mastra/nativeVector:read"
DEFAULT_NATIVE_MUTATION: Final = "mastra/nativeVector:write"
MAX_CONVEX_VECTOR_RESULTS: Final = 256
UPSERT_BATCH_SIZE: Final = 100
NativeFilter = Mapping[str, Any]
"""`{field: value}`, `{field: {"$eq": value}}` or `{"metadata": {field: value}}`."""


class NativeVectorIndex(BaseModel):
    """Where one Mastra index lives in Convex (`ConvexNativeVectorIndexConfig`).

    `filter_fields` are metadata keys copied to top-level fields of each document on write, so
    the Convex vector index can filter on them; declare them in the table and its `filterFields`.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    table_name: str = Field(min_length=1)
    vector_index_name: str = "by_embedding"
    dimension: int = Field(ge=2, le=4096)
    id_field: str = "id"
    id_index_name: str = "by_record_id"
    vector_field: str = "embedding"
    metadata_field: str = "metadata"
    filter_fields: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The `config` argument every handler takes, defaults filled in as the TS client sends it."""
        wire = self.model_dump(by_alias=True)
        wire["filterFields"] = list(self.filter_fields)
        return wire


class ConvexNativeVector(ClientOwner):
    """Python twin of @mastra/convex's `ConvexNativeVector`, sharing its tables.

    `indexes` maps each Mastra index name to its `NativeVectorIndex` (or the same as a dict, in
    snake_case or camelCase). Indexes are declared in `convex/schema.ts`, so `create_index` only
    checks the declaration and `delete_index` is refused.
    """

    def __init__(
        self,
        url: str | None = None,
        admin_key: str | SecretStr | None = None,
        *,
        indexes: Mapping[str, NativeVectorIndex | Mapping[str, Any]],
        client: ConvexClient | None = None,
        native_vector_action: str = DEFAULT_NATIVE_ACTION,
        native_vector_query: str = DEFAULT_NATIVE_QUERY,
        native_vector_mutation: str = DEFAULT_NATIVE_MUTATION,
        describe_count_limit: int = 10_000,
        owns_client: bool = False,
    ) -> None:
        self.indexes = {
            name: index if isinstance(index, NativeVectorIndex) else NativeVectorIndex.model_validate(index)
            for name, index in indexes.items()
        }
        super().__init__(url, admin_key, client, owns_client=owns_client)
        self.native_vector_action = native_vector_action
        self.native_vector_query = native_vector_query
        self.native_vector_mutation = native_vector_mutation
        self.describe_count_limit = describe_count_limit

    def index(self, index_name: str) -> NativeVectorIndex:
        """The configuration of an index; InvalidInputError if it is not configured."""
        found = self.indexes.get(index_name)
        if found is None:
            raise InvalidInputError(f'ConvexNativeVector: index "{index_name}" is not configured')
        return found

    async def create_index(self, index_name: str, dimension: int, metric: str = "cosine") -> None:
        """Check that the deployed index has `dimension` dimensions and cosine metric (nothing is created)."""
        index = self.index(index_name)
        if index.dimension != dimension:
            raise InvalidInputError(
                f'ConvexNativeVector.createIndex: deployed Convex index "{index_name}" has {index.dimension} '
                f"dimensions, but {dimension} were requested"
            )
        if metric != "cosine":
            raise InvalidInputError(
                "ConvexNativeVector.createIndex: Convex native vector search currently supports cosine only"
            )

    async def list_indexes(self) -> list[str]:
        """The configured index names."""
        return list(self.indexes)

    async def describe_index(self, index_name: str) -> IndexStats:
        """Dimension and vector count (counted up to `describe_count_limit` documents)."""
        index = self.index(index_name)
        result = await self.client.query(
            self.native_vector_query,
            {"op": "describe", "config": index.to_wire(), "countLimit": self.describe_count_limit},
        )
        if result.get("countIsLimited"):
            logger.warning(
                'ConvexNativeVector.describe_index: count for "%s" reached %d; reported count is capped.',
                index_name,
                self.describe_count_limit,
            )
        return IndexStats(dimension=index.dimension, count=int(result["count"]), metric="cosine")

    async def upsert(
        self,
        index_name: str,
        vectors: Sequence[Sequence[float]],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Insert or replace vectors by id (new UUIDs where none are given), 100 per mutation."""
        index = self.index(index_name)
        if ids is not None and len(ids) != len(vectors):
            raise InvalidInputError(
                f"ConvexNativeVector.upsert: ids length ({len(ids)}) must match vectors length "
                f"({len(vectors)})"
            )
        if metadata is not None:
            if len(metadata) != len(vectors):
                raise InvalidInputError(
                    f"ConvexNativeVector.upsert: metadata length ({len(metadata)}) must match vectors "
                    f"length ({len(vectors)})"
                )
            if not all(isinstance(item, Mapping) for item in metadata):
                raise InvalidInputError(
                    "ConvexNativeVector.upsert: metadata entries must be objects when provided"
                )
        vector_ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in vectors]
        if len(set(vector_ids)) != len(vector_ids):
            raise InvalidInputError("ConvexNativeVector.upsert: ids must be unique")
        rows = [_vector(index, vector, f"vector {vector_ids[i]!r}") for i, vector in enumerate(vectors)]
        items = [dict(item) for item in metadata] if metadata is not None else None
        if items is not None:
            check_value(items, where="ConvexNativeVector.upsert metadata")
        for start in range(0, len(vectors), UPSERT_BATCH_SIZE):
            end = start + UPSERT_BATCH_SIZE
            args: dict[str, Any] = {
                "op": "upsert",
                "config": index.to_wire(),
                "ids": vector_ids[start:end],
                "vectors": rows[start:end],
            }
            if items is not None:
                args["metadata"] = items[start:end]
            await self.client.mutation(self.native_vector_mutation, args)
        return vector_ids

    async def query(
        self,
        index_name: str,
        query_vector: Sequence[float],
        *,
        top_k: int = 10,
        include_vector: bool = False,
        filter: NativeFilter | None = None,
    ) -> list[QueryResult]:
        """The `top_k` (1 to 256) most similar vectors by Convex's vector search, best first."""
        if (
            isinstance(top_k, bool)
            or not isinstance(top_k, int)
            or not 1 <= top_k <= MAX_CONVEX_VECTOR_RESULTS
        ):
            raise InvalidInputError(
                f"ConvexNativeVector.query: topK must be an integer between 1 and {MAX_CONVEX_VECTOR_RESULTS}"
            )
        index = self.index(index_name)
        args: dict[str, Any] = {
            "config": index.to_wire(),
            "vector": _vector(index, query_vector, "query vector"),
            "limit": top_k,
        }
        native = native_filter(filter, index)
        if native is not None:
            args["filter"] = native
        hits = await self.client.action(self.native_vector_action, args)
        if not hits:
            return []
        docs = await self.client.query(
            self.native_vector_query,
            {
                "op": "getByConvexIds",
                "config": index.to_wire(),
                "ids": [hit["id"] for hit in hits],
                "includeVector": include_vector,
            },
        )
        scores = {hit["id"]: hit["score"] for hit in hits}
        return [
            QueryResult(
                id=str(doc[index.id_field]),
                score=scores.get(str(doc["_id"]), 0),
                metadata=doc.get(index.metadata_field),
                vector=doc.get(index.vector_field) if include_vector else None,
            )
            for doc in docs
            if doc and doc.get("_id")
        ]

    async def update_vector(
        self,
        index_name: str,
        *,
        id: str,
        vector: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the vector and/or shallow-merge metadata of one vector; an unknown id is ignored."""
        index = self.index(index_name)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(
                "ConvexNativeVector.updateVector: metadata must be an object when provided"
            )
        args: dict[str, Any] = {"op": "updateById", "config": index.to_wire(), "id": id}
        if vector is not None:
            args["vector"] = _vector(index, vector, f"vector {id!r}")
        if metadata is not None:
            check_value(dict(metadata), where=f"ConvexNativeVector.updateVector {id!r} metadata")
            args["metadata"] = dict(metadata)
        await self.client.mutation(self.native_vector_mutation, args)

    async def delete_vector(self, index_name: str, vector_id: str) -> None:
        """Delete one vector by id (nothing happens if it does not exist)."""
        await self.delete_vectors(index_name, [vector_id])

    async def delete_vectors(self, index_name: str, ids: Sequence[str]) -> None:
        """Delete vectors by id; filter-based deletes are not supported by native indexes."""
        if not ids:
            raise InvalidInputError("ConvexNativeVector.deleteVectors: ids are required")
        index = self.index(index_name)
        await self.client.mutation(
            self.native_vector_mutation, {"op": "deleteByIds", "config": index.to_wire(), "ids": list(ids)}
        )

    async def delete_index(self, index_name: str) -> None:
        """Always refused: native vector indexes are managed in `convex/schema.ts`."""
        self.index(index_name)
        raise InvalidInputError(
            "ConvexNativeVector.deleteIndex: Convex native vector indexes are managed in convex/schema.ts."
        )


def native_filter(condition: NativeFilter | None, index: NativeVectorIndex) -> dict[str, Any] | None:
    """The TS client's `toNativeFilter`: `{field, value}`, or None for no filter.

    An `$or` filter is refused: the TS client sends `{"$or": [...]}` as an argument, which Convex
    rejects ("Field name $or starts with a '$', which is reserved") before the handler runs.
    """
    if not condition:
        return None
    if isinstance(condition.get("$or"), list):
        for branch in condition["$or"]:
            _clause(branch, index)
        raise InvalidInputError(
            "ConvexNativeVector.query: $or filters cannot reach the handler: Convex refuses argument "
            "field names starting with '$'; run one query per equality instead"
        )
    inner = condition.get("metadata")
    return _clause(inner if isinstance(inner, Mapping) else condition, index)


def _clause(condition: Any, index: NativeVectorIndex) -> dict[str, Any]:
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise InvalidInputError(
            "ConvexNativeVector.query: native Convex filters support one equality field "
            "or $or of equality fields"
        )
    [(field, raw)] = condition.items()
    if field not in index.filter_fields:
        raise InvalidInputError(
            f'ConvexNativeVector.query: field "{field}" is not configured as a Convex vector filter field'
        )
    value = raw["$eq"] if isinstance(raw, Mapping) and "$eq" in raw else raw
    if not (value is None or isinstance(value, str | bool | int | float)) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise InvalidInputError(
            "ConvexNativeVector.query: native Convex filters support string, number, boolean, and null values"
        )
    return {"field": field, "value": value}


def _vector(index: NativeVectorIndex, vector: Sequence[float], what: str) -> list[float]:
    """`vector` as floats; InvalidInputError unless it has the index's dimensions and finite numbers.

    (Convex would answer a query vector of other dimensions with an error, and silently leave a
    stored vector of other dimensions out of its index.)
    """
    if isinstance(vector, str | bytes) or len(vector) != index.dimension:
        raise InvalidInputError(
            f"ConvexNativeVector: {what} must have {index.dimension} dimensions, got "
            f"{len(vector) if not isinstance(vector, str | bytes) else type(vector).__name__}"
        )
    values = [float(x) for x in vector]
    if not all(math.isfinite(x) for x in values):
        raise InvalidInputError(f"ConvexNativeVector: {what} has a number that is not finite")
    return values
