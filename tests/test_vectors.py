"""The Python ConvexVector against the TypeScript one on the same local Convex server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.errors import InvalidInputError, NotFoundError
from convex_offload.store.vectors import ConvexVector, cosine_similarity, matches_filter
from ts_mastra import TsMastra

VECTORS = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]
METADATA: list[dict[str, Any]] = [
    {"kind": "a", "n": 1},
    {"kind": "a", "n": 2},
    {"kind": "b", "n": 3},
    {"kind": "b", "n": 4, "tag": "x"},
    {"kind": "c", "n": 5},
]


@pytest.fixture
async def vectors(local_convex: LocalConvex) -> AsyncIterator[ConvexVector]:
    async with ConvexVector(local_convex.url, local_convex.admin_key) as store:
        yield store


async def test_python_reads_vectors_written_by_typescript(
    ts: TsMastra, vectors: ConvexVector, uid: Callable[[str], str]
) -> None:
    index = uid("idx").replace("-", "_")
    ids = [f"v{i}" for i in range(len(VECTORS))]
    ts.call("vector", "createIndex", {"indexName": index, "dimension": 3})
    ts.call("vector", "upsert", {"indexName": index, "vectors": VECTORS, "ids": ids, "metadata": METADATA})
    stats = await vectors.describe_index(index)
    assert (stats.dimension, stats.count, stats.metric) == (3, 5, "cosine")
    assert index in await vectors.list_indexes()
    for flt in (
        None,
        {"kind": "a"},
        {"n": {"$gt": 2}},
        {"$or": [{"kind": "c"}, {"tag": "x"}]},
        {"kind": {"$in": ["b", "c"]}},
    ):
        ts_hits = ts.call(
            "vector", "query", {"indexName": index, "queryVector": [1, 0.2, 0], "topK": 3, "filter": flt}
        )
        py_hits = await vectors.query(index, [1, 0.2, 0], top_k=3, filter=flt)
        assert [(h.id, pytest.approx(h.score)) for h in py_hits] == [(h["id"], h["score"]) for h in ts_hits]
        assert [h.metadata for h in py_hits] == [h["metadata"] for h in ts_hits]


async def test_typescript_reads_vectors_written_by_python(
    ts: TsMastra, vectors: ConvexVector, uid: Callable[[str], str]
) -> None:
    index = uid("idx").replace("-", "_")
    await vectors.create_index(index, 3)
    ids = await vectors.upsert(index, VECTORS, metadata=METADATA)
    assert len(ids) == 5
    described = ts.call("vector", "describeIndex", {"indexName": index})
    assert described == {"dimension": 3, "count": 5, "metric": "cosine"}
    ts_hits = ts.call(
        "vector", "query", {"indexName": index, "queryVector": [0, 1, 0], "topK": 2, "includeVector": True}
    )
    py_hits = await vectors.query(index, [0, 1, 0], top_k=2, include_vector=True)
    assert [h["id"] for h in ts_hits] == [h.id for h in py_hits]
    assert ts_hits[0]["vector"] == py_hits[0].vector == VECTORS[2]

    await vectors.update_vector(index, id=ids[0], metadata={"n": 100})
    ts_after = ts.call("vector", "query", {"indexName": index, "queryVector": [1, 0, 0], "topK": 1})
    assert ts_after[0]["metadata"] == {"kind": "a", "n": 100}
    await vectors.delete_vectors(index, filter={"kind": "b"})
    assert ts.call("vector", "describeIndex", {"indexName": index})["count"] == 3
    await vectors.delete_vector(index, ids[0])
    await vectors.truncate_index(index)
    assert (await vectors.describe_index(index)).count == 0
    await vectors.delete_index(index)
    assert index not in ts.call("vector", "listIndexes")
    with pytest.raises(NotFoundError):
        await vectors.describe_index(index)


async def test_vector_argument_errors(vectors: ConvexVector) -> None:
    with pytest.raises(InvalidInputError, match="mutually exclusive"):
        await vectors.delete_vectors("i", ids=["a"], filter={"k": 1})
    with pytest.raises(InvalidInputError, match="empty ids"):
        await vectors.delete_vectors("i", ids=[])
    with pytest.raises(InvalidInputError, match="Either id or filter"):
        await vectors.update_vector("i", metadata={"a": 1})


def test_cosine_and_filters_follow_the_typescript_rules() -> None:
    assert cosine_similarity([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [1, 0, 0]) == -1.0
    assert cosine_similarity([0, 0], [1, 0]) == -1.0
    assert matches_filter({"a": 1}, {"a": {"$ne": 2}})
    assert not matches_filter({"a": 1}, {"a": {"$nin": [1]}})
    assert not matches_filter(None, {"a": 1})
    assert matches_filter({"a": 1, "b": 2}, {"metadata": {"$and": [{"a": 1}, {"b": {"$lte": 2}}]}})
