"""`ConvexNativeVector` in Python against the real TypeScript one, on one local Convex server.

The vector tables are test-only (`tests/fixtures/convex/schema.ts`, added to the schema by the
local server): `test_native_vectors` as `defineMastraNativeVectorTable` makes it, and
`test_native_vectors_filtered` with the filter fields `tenantId` and `kind`. Filtered tests use
a fresh tenant, so they only ever see their own vectors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.errors import ConvexFunctionError, InvalidInputError, InvalidValueError
from convex_offload.store.native_vector import ConvexNativeVector, NativeVectorIndex
from convex_offload.store.vectors import QueryResult
from ts_mastra import TsError, TsMastra

INDEXES: dict[str, Any] = {
    "plain": {"tableName": "test_native_vectors", "dimension": 3},
    "filtered": {
        "tableName": "test_native_vectors_filtered",
        "vectorIndexName": "by_embedding",
        "dimension": 3,
        "filterFields": ["tenantId", "kind"],
    },
}
VECTORS = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]
SYSTEM_FIELDS = ("_id", "_creationTime")


@pytest.fixture
async def native(local_convex: LocalConvex) -> AsyncIterator[ConvexNativeVector]:
    async with ConvexNativeVector(local_convex.url, local_convex.admin_key, indexes=INDEXES) as store:
        yield store


class TsNative:
    """The TypeScript ConvexNativeVector with the same indexes."""

    def __init__(self, ts: TsMastra) -> None:
        self.ts = ts

    def __call__(self, method: str, *args: Any) -> Any:
        return self.ts.call("nativeVector", method, *args, config={"indexes": INDEXES})


@pytest.fixture
def ts_native(ts: TsMastra) -> TsNative:
    return TsNative(ts)


def hits(results: list[QueryResult]) -> list[tuple[str, Any, Any]]:
    return [(r.id, pytest.approx(r.score), r.metadata) for r in results]


def ts_hits(results: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [(r["id"], r["score"], r.get("metadata")) for r in results]


async def stored_docs(
    native: ConvexNativeVector, index_name: str, ids: list[str]
) -> list[dict[str, Any] | None]:
    """The stored documents by Mastra id, without system fields (the `read` handler's `listByIds`)."""
    docs = await native.client.query(
        native.native_vector_query,
        {"op": "listByIds", "config": native.index(index_name).to_wire(), "ids": ids},
    )
    return [None if doc is None else {k: v for k, v in doc.items() if k not in SYSTEM_FIELDS} for doc in docs]


async def test_python_writes_and_typescript_reads_then_the_other_way(
    native: ConvexNativeVector, ts_native: TsNative, uid: Callable[[str], str]
) -> None:
    # Python writes, TypeScript reads.
    before = (await native.describe_index("plain")).count
    ids = [uid("py") for _ in VECTORS]
    metadata = [{"n": i, "text": f"chunk {i}"} for i in range(len(VECTORS))]
    assert await native.upsert("plain", VECTORS, ids=ids, metadata=metadata) == ids
    assert ts_native("describeIndex", {"indexName": "plain"}) == {
        "dimension": 3,
        "count": before + 5,
        "metric": "cosine",
    }
    query = {"indexName": "plain", "queryVector": [1, 0.2, 0], "topK": 3, "includeVector": True}
    from_ts = ts_native("query", query)
    from_py = await native.query("plain", [1, 0.2, 0], top_k=3, include_vector=True)
    assert hits(from_py) == ts_hits(from_ts)
    assert [r.id for r in from_py] == [ids[1], ids[0], ids[4]]
    assert (
        [r.vector for r in from_py] == [r["vector"] for r in from_ts] == [VECTORS[1], VECTORS[0], VECTORS[4]]
    )

    await native.update_vector("plain", id=ids[3], vector=[1.0, 0.2, 0.0], metadata={"n": 30, "new": True})
    top = ts_native("query", {"indexName": "plain", "queryVector": [1, 0.2, 0], "topK": 1})
    assert top[0]["id"] == ids[3]
    assert top[0]["metadata"] == {"n": 30, "text": "chunk 3", "new": True}
    assert top[0]["score"] == pytest.approx(1.0)
    await native.update_vector("plain", id=uid("missing"), metadata={"n": 1})  # ignored, as in TS

    await native.delete_vector("plain", ids[3])
    await native.delete_vectors("plain", ids[:2])
    assert ts_native("describeIndex", {"indexName": "plain"})["count"] == before + 2
    await native.delete_vectors("plain", ids)

    # TypeScript writes, Python reads.
    ts_ids = [uid("ts") for _ in VECTORS]
    assert (
        ts_native("upsert", {"indexName": "plain", "vectors": VECTORS, "ids": ts_ids, "metadata": metadata})
        == ts_ids
    )
    assert (await native.describe_index("plain")).count == before + 5
    from_py = await native.query("plain", [0, 1, 0.1], top_k=2)
    assert hits(from_py) == ts_hits(
        ts_native("query", {"indexName": "plain", "queryVector": [0, 1, 0.1], "topK": 2})
    )
    assert from_py[0].id == ts_ids[2]
    assert from_py[0].vector is None
    ts_native("updateVector", {"indexName": "plain", "id": ts_ids[2], "update": {"metadata": {"n": 200}}})
    assert (await native.query("plain", [0, 1, 0], top_k=1))[0].metadata == {"n": 200, "text": "chunk 2"}
    ts_native("deleteVector", {"indexName": "plain", "id": ts_ids[2]})
    ts_native("deleteVectors", {"indexName": "plain", "ids": ts_ids[:2]})
    assert (await native.describe_index("plain")).count == before + 2
    ts_native("deleteVectors", {"indexName": "plain", "ids": ts_ids})
    assert (await native.describe_index("plain")).count == before


async def test_both_store_the_same_documents(
    native: ConvexNativeVector, ts_native: TsNative, uid: Callable[[str], str]
) -> None:
    tenant = uid("tenant")
    meta = {"tenantId": tenant, "kind": "guide", "text": "setup", "nested": {"a": [1, 2]}}
    py_id, ts_id = uid("py"), uid("ts")
    await native.upsert("filtered", [[0.1, 0.2, 0.3]], ids=[py_id], metadata=[meta])
    ts_native(
        "upsert", {"indexName": "filtered", "vectors": [[0.1, 0.2, 0.3]], "ids": [ts_id], "metadata": [meta]}
    )
    py_doc, ts_doc = await stored_docs(native, "filtered", [py_id, ts_id])
    assert py_doc is not None
    assert ts_doc is not None
    assert py_doc == {**ts_doc, "id": py_id}
    assert (py_doc["tenantId"], py_doc["kind"]) == (tenant, "guide")  # filter fields copied to the top

    # Re-upserting without a filter field clears the copied field, in both.
    await native.upsert("filtered", [[0.1, 0.2, 0.3]], ids=[py_id], metadata=[{"tenantId": tenant}])
    ts_native(
        "upsert",
        {
            "indexName": "filtered",
            "vectors": [[0.1, 0.2, 0.3]],
            "ids": [ts_id],
            "metadata": [{"tenantId": tenant}],
        },
    )
    py_doc, ts_doc = await stored_docs(native, "filtered", [py_id, ts_id])
    assert py_doc == {**(ts_doc or {}), "id": py_id}
    assert py_doc is not None
    assert "kind" not in py_doc

    # Updating metadata merges it and refreshes the copied filter fields, in both.
    await native.update_vector("filtered", id=py_id, metadata={"kind": "faq"})
    ts_native("updateVector", {"indexName": "filtered", "id": ts_id, "update": {"metadata": {"kind": "faq"}}})
    py_doc, ts_doc = await stored_docs(native, "filtered", [py_id, ts_id])
    assert py_doc == {**(ts_doc or {}), "id": py_id}
    assert py_doc is not None
    assert (py_doc["kind"], py_doc["metadata"]) == ("faq", {"tenantId": tenant, "kind": "faq"})
    assert await stored_docs(native, "filtered", [uid("missing")]) == [None]


async def test_filters_select_alike_in_both(
    native: ConvexNativeVector, ts_native: TsNative, uid: Callable[[str], str]
) -> None:
    tenant, other = uid("tenant"), uid("tenant")
    kinds = [f"{tenant}-a", f"{tenant}-a", f"{tenant}-b", f"{tenant}-c", f"{tenant}-b"]
    ids = await native.upsert(
        "filtered", VECTORS, metadata=[{"tenantId": tenant, "kind": kind} for kind in kinds]
    )
    ts_native(
        "upsert",
        {
            "indexName": "filtered",
            "vectors": VECTORS,
            "metadata": [{"tenantId": other, "kind": "x"} for _ in VECTORS],
        },
    )
    for condition, expected in (
        ({"tenantId": tenant}, {0, 1, 2, 3, 4}),
        ({"metadata": {"tenantId": tenant}}, {0, 1, 2, 3, 4}),
        ({"tenantId": {"$eq": tenant}}, {0, 1, 2, 3, 4}),
        ({"kind": kinds[0]}, {0, 1}),
        ({"kind": {"$eq": kinds[2]}}, {2, 4}),
    ):
        from_py = await native.query("filtered", [0.2, 0.9, 0.1], top_k=10, filter=condition)
        from_ts = ts_native(
            "query",
            {"indexName": "filtered", "queryVector": [0.2, 0.9, 0.1], "topK": 10, "filter": condition},
        )
        assert hits(from_py) == ts_hits(from_ts)
        assert {r.id for r in from_py} == {ids[i] for i in expected}
        scores = [r.score for r in from_py]
        assert scores == sorted(scores, reverse=True)
    other_hits = await native.query("filtered", [1, 0, 0], filter={"tenantId": other})
    assert [r.metadata for r in other_hits] == [{"tenantId": other, "kind": "x"}] * 5

    # `$or`: the TS client sends it and Convex refuses the argument; Python refuses it first.
    either = {"$or": [{"kind": kinds[2]}, {"kind": kinds[3]}]}
    with pytest.raises(TsError, match="Field name \\$or starts with a '\\$', which is reserved"):
        ts_native("query", {"indexName": "filtered", "queryVector": [1, 0, 0], "filter": either})
    with pytest.raises(InvalidInputError, match="\\$or filters cannot reach the handler"):
        await native.query("filtered", [1, 0, 0], filter=either)
    with pytest.raises(InvalidInputError, match='field "text" is not configured'):
        await native.query("filtered", [1, 0, 0], filter={"$or": [{"text": "x"}]})


async def test_bad_calls_are_refused_as_typescript_refuses_them(
    native: ConvexNativeVector, ts_native: TsNative, uid: Callable[[str], str]
) -> None:
    cases: list[tuple[Callable[[], Any], tuple[Any, ...], str]] = [
        (
            lambda: native.query("plain", [1, 0, 0], top_k=0),
            ("query", {"indexName": "plain", "queryVector": [1, 0, 0], "topK": 0}),
            "topK must be an integer between 1 and 256",
        ),
        (
            lambda: native.query("plain", [1, 0, 0], top_k=257),
            ("query", {"indexName": "plain", "queryVector": [1, 0, 0], "topK": 257}),
            "topK must be an integer between 1 and 256",
        ),
        (
            lambda: native.query("filtered", [1, 0, 0], filter={"text": "x"}),
            ("query", {"indexName": "filtered", "queryVector": [1, 0, 0], "filter": {"text": "x"}}),
            'field "text" is not configured',
        ),
        (
            lambda: native.query("filtered", [1, 0, 0], filter={"tenantId": "t", "kind": "k"}),
            (
                "query",
                {"indexName": "filtered", "queryVector": [1, 0, 0], "filter": {"tenantId": "t", "kind": "k"}},
            ),
            "one equality field",
        ),
        (
            lambda: native.query("filtered", [1, 0, 0], filter={"kind": {"$in": ["a"]}}),
            (
                "query",
                {"indexName": "filtered", "queryVector": [1, 0, 0], "filter": {"kind": {"$in": ["a"]}}},
            ),
            "string, number, boolean, and null",
        ),
        (
            lambda: native.query("nowhere", [1, 0, 0]),
            ("query", {"indexName": "nowhere", "queryVector": [1, 0, 0]}),
            'index "nowhere" is not configured',
        ),
        (
            lambda: native.create_index("plain", 4),
            ("createIndex", {"indexName": "plain", "dimension": 4}),
            "has 3 dimensions, but 4 were requested",
        ),
        (
            lambda: native.create_index("plain", 3, "euclidean"),
            ("createIndex", {"indexName": "plain", "dimension": 3, "metric": "euclidean"}),
            "supports cosine only",
        ),
        (
            lambda: native.delete_index("plain"),
            ("deleteIndex", {"indexName": "plain"}),
            "managed in convex/schema.ts",
        ),
        (
            lambda: native.delete_vectors("plain", []),
            ("deleteVectors", {"indexName": "plain", "ids": []}),
            "ids are required",
        ),
        (
            lambda: native.upsert("plain", VECTORS[:2], ids=["a"]),
            ("upsert", {"indexName": "plain", "vectors": VECTORS[:2], "ids": ["a"]}),
            r"ids length \(1\) must match vectors length \(2\)",
        ),
        (
            lambda: native.upsert("plain", VECTORS[:2], ids=["a", "a"]),
            ("upsert", {"indexName": "plain", "vectors": VECTORS[:2], "ids": ["a", "a"]}),
            "ids must be unique",
        ),
        (
            lambda: native.upsert("plain", VECTORS[:2], metadata=[{}]),
            ("upsert", {"indexName": "plain", "vectors": VECTORS[:2], "metadata": [{}]}),
            r"metadata length \(1\) must match",
        ),
    ]
    for py_call, ts_args, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            await py_call()
        with pytest.raises(TsError, match=message):
            ts_native(*ts_args)
    await native.create_index("plain", 3)  # matches the declaration: nothing to do
    ts_native("createIndex", {"indexName": "plain", "dimension": 3})
    assert await native.list_indexes() == ts_native("listIndexes") == ["plain", "filtered"]

    # A query vector of other dimensions: TS sends it and Convex refuses it; Python refuses it first.
    with pytest.raises(InvalidInputError, match="must have 3 dimensions, got 2"):
        await native.query("plain", [1, 0])
    with pytest.raises(TsError, match="Expected a vector with dimensions 3, received 2"):
        ts_native("query", {"indexName": "plain", "queryVector": [1, 0]})
    with pytest.raises(InvalidInputError, match="must have 3 dimensions"):
        await native.upsert("plain", [[1, 0]])
    with pytest.raises(InvalidValueError, match=r"\$bad"):
        await native.upsert("plain", [[1, 0, 0]], metadata=[{"$bad": 1}])
    with pytest.raises(InvalidInputError, match="not finite"):
        await native.query("plain", [1, float("nan"), 0])


def test_index_config_is_sent_whole_with_its_defaults() -> None:
    wire = NativeVectorIndex.model_validate({"tableName": "docs", "dimension": 1536}).to_wire()
    assert wire == {
        "tableName": "docs",
        "vectorIndexName": "by_embedding",
        "dimension": 1536,
        "idField": "id",
        "idIndexName": "by_record_id",
        "vectorField": "embedding",
        "metadataField": "metadata",
        "filterFields": [],
    }
    with pytest.raises(ValueError, match="dimension"):
        NativeVectorIndex(table_name="docs", dimension=1)


async def test_the_local_server_searches_vectors_as_convex_does(
    native: ConvexNativeVector, uid: Callable[[str], str]
) -> None:
    """convex-test's own vector search differs from Convex's; the local server's must not."""
    tenant, other = uid("tenant"), uid("tenant")
    many = [[1.0, i / 20, 0.0] for i in range(12)]
    await native.upsert("filtered", many, metadata=[{"tenantId": tenant} for _ in many])
    await native.upsert("filtered", [[0.0, 1.0, 0.0]], metadata=[{"tenantId": other}])
    # A document whose vector has other dimensions (written around the Python checks) is not indexed.
    await native.client.mutation(
        native.native_vector_mutation,
        {
            "op": "upsert",
            "config": native.index("filtered").to_wire(),
            "ids": [uid("odd")],
            "vectors": [[1.0, 0.0]],
            "metadata": [{"tenantId": tenant}],
        },
    )

    async def search(**args: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await native.client.action("test_fixtures/vectors:search", args)
        return found

    unlimited = await search(vector=[1.0, 0.0, 0.0], values=[tenant])  # no limit: Convex's default of 10
    assert len(unlimited) == 10
    scores = [hit["_score"] for hit in unlimited]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0)
    assert len(await search(vector=[1.0, 0.0, 0.0], values=[tenant], limit=256)) == 12  # not the odd one
    either = await search(vector=[0.0, 1.0, 0.0], values=[tenant, other], limit=256)  # q.or of q.eq
    assert len(either) == 13
    assert either[0]["_score"] == pytest.approx(1.0)
    with pytest.raises(ConvexFunctionError, match="Expected a vector with dimensions 3, received 2"):
        await search(vector=[1.0, 0.0], values=[tenant])
    with pytest.raises(ConvexFunctionError, match="isn't indexed for filtering in `filterFields`"):
        await search(vector=[1.0, 0.0, 0.0], field="metadata", values=[tenant])
    with pytest.raises(
        ConvexFunctionError, match="Vector queries can fetch at most 256 results, requested 300"
    ):
        await search(vector=[1.0, 0.0, 0.0], limit=300)
    with pytest.raises(ConvexFunctionError, match=r"too many conditions\. Max: 64 Actual: 65"):
        await search(vector=[1.0, 0.0, 0.0], values=[f"t{i}" for i in range(65)])
