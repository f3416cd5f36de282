"""The Python ConvexStore and the real TypeScript one (@mastra/convex, run with Node) share one local
Convex server: each reads what the other wrote, field for field, and both answer listings alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convex_offload.store.models import (
    DateRange,
    Message,
    MessageInclude,
    MessageUpdate,
    OrderBy,
    Resource,
    Score,
    ScorePayload,
    Thread,
    iso,
)
from convex_offload.store.store import ConvexStore
from media import data_url, image_bytes
from ts_mastra import TsMastra

T0 = datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)
SYSTEM_FIELDS = ("_id", "_creationTime")


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """A TS answer without Convex's system fields (the TS store passes them through)."""
    return {k: v for k, v in record.items() if k not in SYSTEM_FIELDS}


def v2_content(text: str) -> dict[str, Any]:
    return {
        "format": 2,
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": text},
            {
                "type": "file",
                "mimeType": "image/png",
                "data": data_url(image_bytes("png", 2_000), "image/png"),
            },
            {
                "type": "tool-invocation",
                "toolInvocation": {
                    "state": "result",
                    "toolCallId": "c1",
                    "toolName": "t",
                    "args": {"x": 1},
                    "result": [1],
                },
            },
        ],
        "content": text,
        "metadata": {"lang": "en", "score": 0.5, "nested": {"ok": True}},
    }


# --- threads ----------------------------------------------------------------------------------


async def test_python_reads_a_thread_written_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread: dict[str, Any] = {
        "id": uid("t"),
        "resourceId": uid("r"),
        "title": "from TS",
        "metadata": {"a": 1, "b": [1, "x"]},
        "createdAt": iso(T0),
        "updatedAt": iso(T0 + timedelta(seconds=5)),
    }
    ts.call("memory", "saveThread", {"thread": thread})
    loaded = await store.memory.get_thread_by_id(thread["id"])
    assert loaded is not None
    assert loaded.model_dump(mode="json", by_alias=True) == thread


async def test_typescript_reads_a_thread_written_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread = Thread(
        id=uid("t"),
        resource_id=uid("r"),
        title="from Python",
        metadata={"k": "v"},
        created_at=T0,
        updated_at=T0,
    )
    await store.memory.save_thread(thread)
    loaded = plain(ts.call("memory", "getThreadById", {"threadId": thread.id}))
    assert loaded == thread.model_dump(mode="json", by_alias=True)


async def test_thread_without_metadata_reads_alike(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread = Thread(id=uid("t"), resource_id=uid("r"), created_at=T0, updated_at=T0)
    await store.memory.save_thread(thread)
    assert plain(ts.call("memory", "getThreadById", {"threadId": thread.id}))["metadata"] == {}
    assert (await store.memory.get_thread_by_id(thread.id)) == thread.model_copy(update={"metadata": {}})


# --- messages ---------------------------------------------------------------------------------


async def test_python_reads_messages_written_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    ts.call(
        "memory",
        "saveThread",
        {
            "thread": {
                "id": thread,
                "resourceId": resource,
                "title": "",
                "createdAt": iso(T0),
                "updatedAt": iso(T0),
            }
        },
    )
    messages = [
        {
            "id": f"{thread}-{i}",
            "threadId": thread,
            "resourceId": resource,
            "role": "user" if i % 2 == 0 else "assistant",
            "type": "v2",
            "createdAt": iso(T0 + timedelta(seconds=i)),
            "content": v2_content(f"message {i}"),
        }
        for i in range(3)
    ]
    ts.call("memory", "saveMessages", {"messages": messages})
    page = await store.memory.list_messages(thread)
    assert [m.model_dump(mode="json", by_alias=True) for m in page.messages] == messages


async def test_typescript_reads_messages_written_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_thread(Thread(id=thread, resource_id=resource))
    messages = [
        Message(
            id=f"{thread}-{i}",
            thread_id=thread,
            resource_id=resource,
            role="assistant",
            content=v2_content(f"py {i}"),
            created_at=T0 + timedelta(milliseconds=i),
        )
        for i in range(3)
    ]
    await store.memory.save_messages(messages)
    answer = ts.call("memory", "listMessages", {"threadId": thread})
    assert answer["messages"] == [m.model_dump(mode="json", by_alias=True) for m in messages]
    assert (answer["total"], answer["hasMore"]) == (3, False)


LISTINGS: list[dict[str, Any]] = [
    {},
    {"perPage": 2},
    {"perPage": 2, "page": 1},
    {"perPage": 2, "orderBy": {"field": "createdAt", "direction": "DESC"}},
    {"perPage": False},
    {"perPage": 0, "include": [{"id": "{thread}-3", "withPreviousMessages": 1}]},
    {"perPage": 1, "include": [{"id": "{thread}-4", "withPreviousMessages": 2, "withNextMessages": 1}]},
    {"filter": {"dateRange": {"start": "{t1}", "end": "{t3}", "endExclusive": True}}},
    {"filter": {"metadata": {"lang": "fr"}}, "perPage": 1},
    {"resourceId": "nobody"},
]


@pytest.mark.parametrize("listing", LISTINGS, ids=[str(i) for i in range(len(LISTINGS))])
async def test_list_messages_answers_like_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str], listing: dict[str, Any]
) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_messages(
        [
            Message(
                id=f"{thread}-{i}",
                thread_id=thread,
                resource_id=resource,
                role="user",
                content={"format": 2, "parts": [], "metadata": {"lang": "fr" if i % 2 else "en"}},
                created_at=T0 + timedelta(minutes=i),
            )
            for i in range(6)
        ]
    )
    fill = {
        "{thread}": thread,
        "{t1}": iso(T0 + timedelta(minutes=1)),
        "{t3}": iso(T0 + timedelta(minutes=3)),
    }
    ts_args = _fill({"threadId": thread, **listing}, fill)
    expected = ts.call("memory", "listMessages", ts_args)
    result = await store.memory.list_messages(thread, **_python_listing(ts_args))
    got = result.model_dump(mode="json", by_alias=True)
    assert [m["id"] for m in got["messages"]] == [m["id"] for m in expected["messages"]]
    assert {k: got[k] for k in ("total", "page", "perPage", "hasMore")} == {
        k: expected[k] for k in ("total", "page", "perPage", "hasMore")
    }


def _fill(value: Any, fill: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, real in fill.items():
            value = value.replace(placeholder, real)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, fill) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, fill) for v in value]
    return value


def _python_listing(ts_args: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "perPage" in ts_args:
        kwargs["per_page"] = ts_args["perPage"]
    if "page" in ts_args:
        kwargs["page"] = ts_args["page"]
    if "orderBy" in ts_args:
        kwargs["order_by"] = OrderBy.model_validate(ts_args["orderBy"])
    if "include" in ts_args:
        kwargs["include"] = [MessageInclude.model_validate(i) for i in ts_args["include"]]
    if "resourceId" in ts_args:
        kwargs["resource_id"] = ts_args["resourceId"]
    window = ts_args.get("filter", {})
    if "dateRange" in window:
        kwargs["date_range"] = DateRange.model_validate(window["dateRange"])
    if "metadata" in window:
        kwargs["metadata"] = window["metadata"]
    return kwargs


async def test_message_updates_from_both_sides_merge_alike(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    await store.memory.save_thread(Thread(id=thread, resource_id=resource))
    base = {"format": 2, "parts": [{"type": "text", "text": "a"}], "metadata": {"x": 1}}
    for mid in ("py", "ts"):
        await store.memory.save_messages(
            [
                Message(
                    id=f"{thread}-{mid}",
                    thread_id=thread,
                    resource_id=resource,
                    role="user",
                    content=base,
                    created_at=T0,
                )
            ]
        )
    update = {"metadata": {"y": 2}, "parts": [{"type": "text", "text": "b"}]}
    [py_result] = await store.memory.update_messages([MessageUpdate(id=f"{thread}-py", content=update)])
    [ts_result] = ts.call(
        "memory", "updateMessages", {"messages": [{"id": f"{thread}-ts", "content": update}]}
    )
    assert (
        py_result.content
        == ts_result["content"]
        == {"format": 2, "parts": [{"type": "text", "text": "b"}], "metadata": {"x": 1, "y": 2}}
    )


# --- resources --------------------------------------------------------------------------------


async def test_resources_cross_both_ways(ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]) -> None:
    from_ts: dict[str, Any] = {
        "id": uid("r"),
        "workingMemory": "# TS notes",
        "metadata": {"plan": "pro"},
        "createdAt": iso(T0),
        "updatedAt": iso(T0),
    }
    ts.call("memory", "saveResource", {"resource": from_ts})
    loaded = await store.memory.get_resource_by_id(from_ts["id"])
    assert loaded is not None
    assert loaded.model_dump(mode="json", by_alias=True) == from_ts

    from_py = Resource(
        id=uid("r"), working_memory="# Py notes", metadata={"n": 3}, created_at=T0, updated_at=T0
    )
    await store.memory.save_resource(from_py)
    assert plain(ts.call("memory", "getResourceById", {"resourceId": from_py.id})) == from_py.model_dump(
        mode="json", by_alias=True
    )
    merged = ts.call("memory", "updateResource", {"resourceId": from_py.id, "metadata": {"m": 1}})
    assert merged["metadata"] == {"n": 3, "m": 1}
    again = await store.memory.get_resource_by_id(from_py.id)
    assert again is not None
    assert again.metadata == {"n": 3, "m": 1}


# --- workflows --------------------------------------------------------------------------------


async def test_workflow_snapshots_cross_both_ways(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    wf, run_ts, run_py = uid("wf"), uid("run"), uid("run")
    snap = {
        "runId": run_ts,
        "status": "suspended",
        "context": {"input": {"$schema": "reserved key, fine in a string"}},
        "value": {},
    }
    ts.call(
        "workflows",
        "persistWorkflowSnapshot",
        {"workflowName": wf, "runId": run_ts, "resourceId": "r1", "snapshot": snap},
    )
    assert await store.workflows.load_workflow_snapshot(wf, run_ts) == snap
    py_run = await store.workflows.get_workflow_run_by_id(run_ts, wf)
    ts_run = ts.call("workflows", "getWorkflowRunById", {"runId": run_ts, "workflowName": wf})
    assert py_run is not None
    assert py_run.model_dump(mode="json", by_alias=True) == ts_run

    snap_py = {**snap, "runId": run_py, "status": "success"}
    await store.workflows.persist_workflow_snapshot(wf, run_py, snap_py, resource_id="r2")
    assert ts.call("workflows", "loadWorkflowSnapshot", {"workflowName": wf, "runId": run_py}) == snap_py
    ts_runs = ts.call("workflows", "listWorkflowRuns", {"workflowName": wf})
    py_runs = await store.workflows.list_workflow_runs(workflow_name=wf)
    assert py_runs.model_dump(mode="json", by_alias=True) == ts_runs


# --- scores -----------------------------------------------------------------------------------


async def test_scores_cross_both_ways(ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]) -> None:
    run = uid("run")
    payload = {
        "scorerId": uid("scorer"),
        "entityId": "agent-1",
        "entityType": "AGENT",
        "runId": run,
        "score": 0.75,
        "scorer": {"name": "relevance"},
        "source": "TEST",
        "entity": {"id": "agent-1"},
        "input": [{"role": "user", "content": "q"}],
        "output": {"text": "a"},
        "reason": "close",
        "metadata": {"k": 1},
    }
    ts_saved = ts.call("scores", "saveScore", payload)["score"]
    py_loaded = await store.scores.get_score_by_id(ts_saved["id"])
    assert py_loaded is not None
    assert py_loaded.model_dump(mode="json", by_alias=True, exclude_none=True) == plain(ts_saved)

    py_saved = await store.scores.save_score(ScorePayload.model_validate({**payload, "runId": uid("run")}))
    ts_loaded = plain(ts.call("scores", "getScoreById", {"id": py_saved.id}))
    assert Score.model_validate(ts_loaded) == py_saved
    listed = ts.call("scores", "listScoresByRunId", {"runId": run, "pagination": {"page": 0, "perPage": 10}})
    assert [s["id"] for s in listed["scores"]] == [ts_saved["id"]]
