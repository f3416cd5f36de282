"""Observational memory: the Python methods against the real TypeScript `MemoryConvex` on one server.

The same life of a memory (initialize, flags, observe, buffer, activate, reflect, configure,
history, clear) is played twice: once written by Python, once by TypeScript. After every step
each store reads both records, and all four answers must agree (ids and clock times aside).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convex_offload.errors import ConvexFunctionError, InvalidInputError, InvalidValueError, NotFoundError
from convex_offload.store.db import Filter
from convex_offload.store.models import iso
from convex_offload.store.observational_memory import TABLE_OBSERVATIONAL_MEMORY, om_lookup_key
from convex_offload.store.om_models import (
    BufferedObservationChunk,
    BufferedObservationChunkInput,
    ObservationalMemoryRecord,
    truthy,
)
from convex_offload.store.store import ConvexStore
from ts_mastra import TsMastra

T0 = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
CLOCK_FIELDS = {"id", "createdAt", "updatedAt", "threadId", "resourceId"}
ROW_CLOCK_FIELDS = {*CLOCK_FIELDS, "_id", "_creationTime", "lookupKey", "lastReflectionAt"}


def strip_none(value: Any) -> Any:
    """JSON without null members: TS leaves `undefined` out, Python models hold None."""
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


def as_json(record: ObservationalMemoryRecord | None) -> dict[str, Any] | None:
    """A Python record as the TS store returns it over JSON."""
    return None if record is None else strip_none(record.model_dump(mode="json", by_alias=True))


def comparable(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record with its ids, owner and clock times left out (they differ between the two runs)."""
    if record is None:
        return None
    kept = {k: v for k, v in strip_none(record).items() if k not in CLOCK_FIELDS}
    if "bufferedObservationChunks" in kept:
        kept["bufferedObservationChunks"] = [
            {k: v for k, v in chunk.items() if k not in ("id", "createdAt")}
            for chunk in kept["bufferedObservationChunks"]
        ]
    return kept


@dataclass
class Memory:
    """One observational memory and the client that writes it."""

    writer: str  # "py" or "ts"
    thread_id: str | None
    resource_id: str


class Both:
    """Runs each step through the writer of each memory, then reads every memory through both stores."""

    def __init__(self, store: ConvexStore, ts: TsMastra, memories: list[Memory]) -> None:
        self.store = store
        self.ts = ts
        self.memories = memories

    async def py_record(self, memory: Memory) -> ObservationalMemoryRecord:
        record = await self.store.memory.get_observational_memory(memory.thread_id, memory.resource_id)
        assert record is not None
        return record

    def ts_record(self, memory: Memory) -> dict[str, Any]:
        record = self.ts.call("memory", "getObservationalMemory", memory.thread_id, memory.resource_id)
        assert record is not None
        return dict(record)

    async def step(
        self,
        py: Callable[[ObservationalMemoryRecord], Awaitable[Any]],
        ts: Callable[[dict[str, Any]], Any],
    ) -> list[Any]:
        """Apply one step to every memory; return what each call answered (as JSON)."""
        answers = []
        for memory in self.memories:
            if memory.writer == "py":
                answer = await py(await self.py_record(memory))
                if isinstance(answer, ObservationalMemoryRecord):
                    answer = as_json(answer)
                elif hasattr(answer, "model_dump"):
                    answer = strip_none(answer.model_dump(mode="json", by_alias=True))
                answers.append(answer)
            else:
                answers.append(strip_none(ts(self.ts_record(memory))))
        await self.agree()
        return answers

    async def rows(self, memory: Memory) -> list[dict[str, Any]]:
        """The stored rows of a memory, oldest generation first, without ids and clock times."""
        rows = await self.store.db.query_table(
            TABLE_OBSERVATIONAL_MEMORY,
            [Filter("lookupKey", om_lookup_key(memory.thread_id, memory.resource_id))],
        )
        rows.sort(key=lambda row: row["generationCount"])
        for row in rows:
            if row.get("bufferedObservationChunks"):
                chunks = json.loads(row["bufferedObservationChunks"])
                row["bufferedObservationChunks"] = [
                    {k: v for k, v in chunk.items() if k not in ("id", "createdAt")} for chunk in chunks
                ]
        return [{k: v for k, v in row.items() if k not in ROW_CLOCK_FIELDS} for row in rows]

    async def agree(self) -> dict[str, Any] | None:
        """Every memory read through both stores: the same record from both, alike across memories,
        from the same stored rows."""
        rows = [await self.rows(memory) for memory in self.memories]
        assert all(r == rows[0] for r in rows), "the Python and TS writers stored different rows"
        seen = []
        for memory in self.memories:
            py = as_json(
                await self.store.memory.get_observational_memory(memory.thread_id, memory.resource_id)
            )
            ts = self.ts.call("memory", "getObservationalMemory", memory.thread_id, memory.resource_id)
            assert py == strip_none(ts), f"{memory.writer}-written memory reads differently"
            seen.append(comparable(py))
        assert all(s == seen[0] for s in seen), "the Python and TS writers stored different records"
        return seen[0]


def chunk_input(n: int) -> BufferedObservationChunkInput:
    return BufferedObservationChunkInput(
        cycle_id=f"cycle-{n}",
        observations=f"- user likes option {n}",
        token_count=10 * n,
        message_ids=[f"m{n}a", f"m{n}b"],
        message_tokens=400 * n,
        last_observed_at=T0 + timedelta(minutes=n),
        suggested_continuation=f"ask about {n}",
        extracted_values={"colour": "blue", "n": n},
    )


def ts_chunk(chunk: BufferedObservationChunkInput) -> dict[str, Any]:
    result: dict[str, Any] = strip_none(chunk.model_dump(mode="json", by_alias=True))
    return result


def py_on(store: ConvexStore, method: str, *args: Any, **kwargs: Any) -> Callable[[Any], Awaitable[Any]]:
    """A step calling Python `store.memory.<method>(record.id, *args, **kwargs)`."""

    async def run(record: ObservationalMemoryRecord) -> Any:
        return await getattr(store.memory, method)(record.id, *args, **kwargs)

    return run


def ts_on(ts: TsMastra, method: str, *args: Any, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    """A step calling TS `memory.<method>(record.id, *args)`, or `<method>({id, ...fields})`."""

    def run(record: dict[str, Any]) -> Any:
        if fields:
            return ts.call("memory", method, {"id": record["id"], **fields})
        return ts.call("memory", method, record["id"], *args)

    return run


@pytest.fixture
def memories(uid: Callable[[str], str]) -> list[Memory]:
    return [
        Memory("py", uid("thread"), uid("res")),
        Memory("ts", uid("thread"), uid("res")),
    ]


async def test_a_whole_memory_life_is_stored_alike_by_python_and_typescript(
    store: ConvexStore, ts: TsMastra, memories: list[Memory]
) -> None:
    om = store.memory
    for memory in memories:
        config = {"observation": {"messageTokens": 1000, "bufferTokens": 200}, "scope": "thread"}
        if memory.writer == "py":
            made = await om.initialize_observational_memory(
                thread_id=memory.thread_id,
                resource_id=memory.resource_id,
                scope="thread",
                config=config,
                observed_timezone="Europe/Paris",
            )
            assert as_json(made) == as_json(
                await om.get_observational_memory(memory.thread_id, memory.resource_id)
            )
        else:
            ts.call(
                "memory",
                "initializeObservationalMemory",
                {
                    "threadId": memory.thread_id,
                    "resourceId": memory.resource_id,
                    "scope": "thread",
                    "config": config,
                    "observedTimezone": "Europe/Paris",
                },
            )
    both = Both(store, ts, memories)
    first = await both.agree()
    assert first is not None
    assert (first["generationCount"], first["originType"]) == (0, "initial")

    for py_flag, ts_flag in (
        ("set_reflecting_flag", "setReflectingFlag"),
        ("set_observing_flag", "setObservingFlag"),
        ("set_buffering_reflection_flag", "setBufferingReflectionFlag"),
    ):
        for value in (True, False, True):
            await both.step(py_on(store, py_flag, value), ts_on(ts, ts_flag, value))
    await both.step(
        lambda r: om.set_buffering_observation_flag(r.id, True, 350),
        lambda r: ts.call("memory", "setBufferingObservationFlag", r["id"], True, 350),
    )
    await both.step(
        lambda r: om.set_buffering_observation_flag(r.id, False),
        lambda r: ts.call("memory", "setBufferingObservationFlag", r["id"], False),
    )
    await both.step(
        lambda r: om.set_pending_message_tokens(r.id, 1234),
        lambda r: ts.call("memory", "setPendingMessageTokens", r["id"], 1234),
    )
    state = await both.agree()
    assert state is not None
    flags = ("isReflecting", "isObserving", "isBufferingReflection", "isBufferingObservation")
    assert [state[f] for f in flags] == [True, True, True, False]
    assert (state["lastBufferedAtTokens"], state["pendingMessageTokens"]) == (350, 1234)

    await both.step(
        lambda r: om.update_active_observations(
            r.id, observations="- first", token_count=40, last_observed_at=T0, observed_message_ids=["m0"]
        ),
        lambda r: ts.call(
            "memory",
            "updateActiveObservations",
            {
                "id": r["id"],
                "observations": "- first",
                "tokenCount": 40,
                "lastObservedAt": iso(T0),
                "observedMessageIds": ["m0"],
            },
        ),
    )
    state = await both.agree()
    assert state is not None
    assert (state["activeObservations"], state["totalTokensObserved"], state["pendingMessageTokens"]) == (
        "- first",
        40,
        0,
    )

    for n in (1, 2, 3):
        mark = T0 + timedelta(minutes=n, milliseconds=1)
        await both.step(
            py_on(store, "update_buffered_observations", chunk_input(n), last_buffered_at_time=mark),
            ts_on(
                ts, "updateBufferedObservations", chunk=ts_chunk(chunk_input(n)), lastBufferedAtTime=iso(mark)
            ),
        )
    state = await both.agree()
    assert state is not None
    assert [c["cycleId"] for c in state["bufferedObservationChunks"]] == ["cycle-1", "cycle-2", "cycle-3"]

    swapped = await both.step(
        lambda r: om.swap_buffered_to_active(
            r.id, activation_ratio=0.8, message_tokens_threshold=1000, current_pending_tokens=1500
        ),
        lambda r: ts.call(
            "memory",
            "swapBufferedToActive",
            {
                "id": r["id"],
                "activationRatio": 0.8,
                "messageTokensThreshold": 1000,
                "currentPendingTokens": 1500,
            },
        ),
    )
    assert swapped[0] == swapped[1]
    assert swapped[0]["chunksActivated"] >= 1
    assert swapped[0]["activatedCycleIds"][0] == "cycle-1"

    # Refreshed chunks given by the caller decide the boundary instead of the stored ones.
    refreshed = await both.step(
        lambda r: om.swap_buffered_to_active(
            r.id,
            activation_ratio=1,
            message_tokens_threshold=1000,
            current_pending_tokens=5000,
            force_max_activation=True,
            last_observed_at=T0 + timedelta(hours=1),
            buffered_chunks=[
                c.model_copy(update={"message_tokens": 1}) for c in r.buffered_observation_chunks or []
            ],
        ),
        lambda r: ts.call(
            "memory",
            "swapBufferedToActive",
            {
                "id": r["id"],
                "activationRatio": 1,
                "messageTokensThreshold": 1000,
                "currentPendingTokens": 5000,
                "forceMaxActivation": True,
                "lastObservedAt": iso(T0 + timedelta(hours=1)),
                "bufferedChunks": [
                    {**c, "messageTokens": 1} for c in r.get("bufferedObservationChunks") or []
                ],
            },
        ),
    )
    assert refreshed[0] == refreshed[1]

    for text, line_count in (("- reflected A", 1), ("- reflected B", 2)):
        await both.step(
            py_on(
                store,
                "update_buffered_reflection",
                reflection=text,
                token_count=7,
                input_token_count=30,
                reflected_observation_line_count=line_count,
            ),
            ts_on(
                ts,
                "updateBufferedReflection",
                reflection=text,
                tokenCount=7,
                inputTokenCount=30,
                reflectedObservationLineCount=line_count,
            ),
        )
    state = await both.agree()
    assert state is not None
    assert state["bufferedReflection"] == "- reflected A\n\n- reflected B"
    assert (state["bufferedReflectionTokens"], state["bufferedReflectionInputTokens"]) == (14, 60)

    generation = await both.step(
        lambda r: om.swap_buffered_reflection_to_active(r, token_count=21),
        lambda r: ts.call("memory", "swapBufferedReflectionToActive", {"currentRecord": r, "tokenCount": 21}),
    )
    assert comparable(generation[0]) == comparable(generation[1])
    state = await both.agree()
    assert state is not None
    assert (state["generationCount"], state["originType"], state["observationTokenCount"]) == (
        1,
        "reflection",
        21,
    )
    assert state["activeObservations"].startswith("- reflected A\n\n- reflected B")

    created = await both.step(
        lambda r: om.create_reflection_generation(r, reflection="- condensed", token_count=5),
        lambda r: ts.call(
            "memory",
            "createReflectionGeneration",
            {"currentRecord": r, "reflection": "- condensed", "tokenCount": 5},
        ),
    )
    assert comparable(created[0]) == comparable(created[1])
    state = await both.agree()
    assert state is not None
    assert (state["generationCount"], state["activeObservations"]) == (2, "- condensed")

    await both.step(
        lambda r: om.update_observational_memory_config(
            r.id, {"observation": {"bufferTokens": 300}, "new": 1}
        ),
        lambda r: ts.call(
            "memory",
            "updateObservationalMemoryConfig",
            {"id": r["id"], "config": {"observation": {"bufferTokens": 300}, "new": 1}},
        ),
    )
    state = await both.agree()
    assert state is not None
    assert state["config"] == {
        "observation": {"messageTokens": 1000, "bufferTokens": 300},
        "scope": "thread",
        "new": 1,
    }

    for memory in memories:
        py_history = [
            as_json(r)
            for r in await om.get_observational_memory_history(memory.thread_id, memory.resource_id)
        ]
        ts_history = ts.call("memory", "getObservationalMemoryHistory", memory.thread_id, memory.resource_id)
        assert py_history == strip_none(ts_history)
        assert [r["generationCount"] for r in py_history if r] == [2, 1, 0]
        py_page = await om.get_observational_memory_history(memory.thread_id, memory.resource_id, 1, offset=1)
        ts_page = ts.call(
            "memory", "getObservationalMemoryHistory", memory.thread_id, memory.resource_id, 1, {"offset": 1}
        )
        assert [as_json(r) for r in py_page] == strip_none(ts_page)
        assert [r.generation_count for r in py_page] == [1]

    for memory in memories:
        if memory.writer == "py":
            await om.clear_observational_memory(memory.thread_id, memory.resource_id)
        else:
            ts.call("memory", "clearObservationalMemory", memory.thread_id, memory.resource_id)
        assert await om.get_observational_memory(memory.thread_id, memory.resource_id) is None
        assert ts.call("memory", "getObservationalMemory", memory.thread_id, memory.resource_id) is None
        assert await om.get_observational_memory_history(memory.thread_id, memory.resource_id) == []


async def test_history_window_is_read_alike(
    store: ConvexStore, ts: TsMastra, uid: Callable[[str], str]
) -> None:
    resource = uid("res")
    stamps = [T0 + timedelta(days=d) for d in range(4)]
    for generation, stamp in enumerate(stamps):
        await store.memory.insert_observational_memory_record(
            ObservationalMemoryRecord(
                id=uid("om"),
                scope="resource",
                thread_id=None,
                resource_id=resource,
                created_at=stamp,
                updated_at=stamp,
                generation_count=generation,
            )
        )
    window = {"from": iso(stamps[1]), "to": iso(stamps[2])}
    py = await store.memory.get_observational_memory_history(
        None, resource, 10, from_date=stamps[1], to_date=stamps[2]
    )
    assert [r.generation_count for r in py] == [2, 1]
    assert [as_json(r) for r in py] == strip_none(
        ts.call("memory", "getObservationalMemoryHistory", None, resource, 10, window)
    )


def full_record(record_id: str, thread_id: str | None, resource_id: str) -> ObservationalMemoryRecord:
    """A record with every field set, for `insert_observational_memory_record`."""
    return ObservationalMemoryRecord(
        id=record_id,
        scope="thread" if thread_id else "resource",
        thread_id=thread_id,
        resource_id=resource_id,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        last_observed_at=T0 + timedelta(seconds=1),
        origin_type="reflection",
        generation_count=3,
        active_observations="- a\n- b",
        buffered_observation_chunks=[
            BufferedObservationChunk(
                id="ombuf-1",
                created_at=T0,
                thread_title="Planning",
                extraction_failures=[{"slug": "x", "error": "nope"}],
                **{k: v for k, v in chunk_input(1).model_dump().items() if v is not None},
            )
        ],
        buffered_reflection="- pending",
        buffered_reflection_tokens=9,
        buffered_reflection_input_tokens=90,
        reflected_observation_line_count=2,
        observed_message_ids=["m1", "m2"],
        observed_timezone="Asia/Tokyo",
        total_tokens_observed=500,
        observation_token_count=80,
        pending_message_tokens=12,
        is_reflecting=True,
        is_buffering_observation=True,
        last_buffered_at_tokens=44,
        last_buffered_at_time=T0 + timedelta(seconds=2),
        config={"a": {"b": [1, 2]}, "$schema": "ok inside a JSON string"},
        metadata={"app": "demo", "$ref": 1},
    )


@pytest.mark.parametrize("thread", [True, False], ids=["thread-scope", "resource-scope"])
async def test_inserted_records_read_back_alike_both_ways(
    store: ConvexStore, ts: TsMastra, uid: Callable[[str], str], thread: bool
) -> None:
    # Python writes, TypeScript reads.
    py_key = (uid("thread") if thread else None, uid("res"))
    written = full_record(uid("om"), *py_key)
    await store.memory.insert_observational_memory_record(written)
    read = await store.memory.get_observational_memory(*py_key)
    assert read is not None
    assert read.model_dump(exclude={"buffered_observation_chunks"}) == written.model_dump(
        exclude={"buffered_observation_chunks"}
    )
    assert read.buffered_observation_chunks == written.buffered_observation_chunks
    assert strip_none(ts.call("memory", "getObservationalMemory", *py_key)) == as_json(read)
    py_rows = await store.db.query_table(
        TABLE_OBSERVATIONAL_MEMORY, [Filter("lookupKey", om_lookup_key(*py_key))]
    )

    # TypeScript writes the same record, Python reads.
    ts_key = (uid("thread") if thread else None, uid("res"))
    ts.call("memory", "insertObservationalMemoryRecord", as_json(full_record(uid("om"), *ts_key)))
    from_ts = await store.memory.get_observational_memory(*ts_key)
    assert as_json(from_ts) == strip_none(ts.call("memory", "getObservationalMemory", *ts_key))
    assert comparable(as_json(from_ts)) == comparable(as_json(read))
    ts_rows = await store.db.query_table(
        TABLE_OBSERVATIONAL_MEMORY, [Filter("lookupKey", om_lookup_key(*ts_key))]
    )
    assert [{k: v for k, v in row.items() if k not in ROW_CLOCK_FIELDS} for row in py_rows] == [
        {k: v for k, v in row.items() if k not in ROW_CLOCK_FIELDS} for row in ts_rows
    ]


async def test_a_missing_record_is_not_found(store: ConvexStore, uid: Callable[[str], str]) -> None:
    missing = uid("om")
    om = store.memory
    for call in (
        lambda: om.set_reflecting_flag(missing, True),
        lambda: om.set_observing_flag(missing, True),
        lambda: om.set_buffering_observation_flag(missing, True, 1),
        lambda: om.set_buffering_reflection_flag(missing, True),
        lambda: om.set_pending_message_tokens(missing, 1),
        lambda: om.update_active_observations(missing, observations="x", token_count=1, last_observed_at=T0),
        lambda: om.update_buffered_observations(missing, chunk_input(1)),
        lambda: om.swap_buffered_to_active(
            missing, activation_ratio=1, message_tokens_threshold=1, current_pending_tokens=1
        ),
        lambda: om.update_buffered_reflection(
            missing, reflection="x", token_count=1, input_token_count=1, reflected_observation_line_count=1
        ),
        lambda: om.update_observational_memory_config(missing, {"a": 1}),
    ):
        with pytest.raises(NotFoundError, match=f"Observational memory record not found: {missing}"):
            await call()


async def test_bad_input_is_refused_before_anything_is_written(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    om = store.memory
    thread, resource = uid("thread"), uid("res")
    record = await om.initialize_observational_memory(
        thread_id=thread, resource_id=resource, scope="thread", config={}
    )
    for bad in (-1, float("nan"), float("inf"), True):
        with pytest.raises(InvalidInputError, match="finite non-negative"):
            await om.set_pending_message_tokens(record.id, bad)
    with pytest.raises(InvalidInputError, match="scope must be"):
        await om.initialize_observational_memory(
            thread_id=thread,
            resource_id=resource,
            scope="team",  # type: ignore[arg-type]
            config={},
        )
    with pytest.raises(InvalidInputError, match="not JSON-serializable"):
        await om.update_observational_memory_config(record.id, {"when": datetime.now(UTC)})
    bad_chunk = chunk_input(1).model_copy(update={"extracted_values": {"$where": 1}})
    with pytest.raises(InvalidValueError):
        await om.update_buffered_observations(record.id, bad_chunk)
    with pytest.raises(InvalidInputError, match="limit must be"):
        await om.get_observational_memory_history(thread, resource, -1)
    with pytest.raises(ConvexFunctionError, match="No buffered reflection to swap"):
        await om.swap_buffered_reflection_to_active(record, token_count=1)
    after = await om.get_observational_memory(thread, resource)
    assert after is not None
    assert (after.pending_message_tokens, after.config, after.buffered_observation_chunks) == (0, {}, None)
    assert len(await om.get_observational_memory_history(thread, resource)) == 1


def test_javascript_truthiness_decides_what_reads_back_as_absent() -> None:
    falsy: list[Any] = [None, False, 0, 0.0, float("nan"), ""]
    truthy_values: list[Any] = [[], {}, "0", 1, -1.5, True]
    assert not any(truthy(v) for v in falsy)
    assert all(truthy(v) for v in truthy_values)
    row = {
        "id": "x",
        "scope": "thread",
        "threadId": "",
        "resourceId": "r",
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
        "bufferedReflectionTokens": 0,
        "observedMessageIds": [],
        "bufferedObservationChunks": "not json",
        "config": "{broken",
    }
    record = ObservationalMemoryRecord.from_row(row)
    assert record.thread_id is None
    assert record.buffered_reflection_tokens is None
    assert record.observed_message_ids == []
    assert record.buffered_observation_chunks is None
    assert record.config == {}
