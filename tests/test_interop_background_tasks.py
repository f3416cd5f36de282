"""The backgroundTasks domain: the Python store and the real TypeScript one (@mastra/convex) share one
local Convex server; each reads what the other wrote, and both answer the same listings alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convex_offload.errors import InvalidInputError
from convex_offload.store.models import iso
from convex_offload.store.models_background_tasks import BackgroundTask, TaskUpdate
from convex_offload.store.store import ConvexStore
from ts_mastra import TsMastra

T0 = datetime(2025, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)


def task_json(task_id: str, agent_id: str, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    """A task as TypeScript holds it (JSON: dates as ISO strings)."""
    return {
        "id": task_id,
        "status": "pending",
        "toolName": "search",
        "toolCallId": f"call-{task_id}",
        "args": {"q": "cats", "$schema": "reserved in Convex, fine inside JSON text"},
        "agentId": agent_id,
        "runId": f"run-{task_id}",
        "retryCount": 0,
        "maxRetries": 3,
        "timeoutMs": 60_000,
        "createdAt": iso(T0 + timedelta(minutes=minutes)),
        **fields,
    }


def py_task(task_id: str, agent_id: str, minutes: int = 0, **fields: Any) -> BackgroundTask:
    return BackgroundTask.model_validate(task_json(task_id, agent_id, minutes, **fields))


async def test_get_store_names_the_domains_as_typescript(store: ConvexStore) -> None:
    assert await store.get_store("backgroundTasks") is store.background_tasks
    assert await store.get_store("schedules") is store.schedules
    assert await store.get_store("channels") is store.channels


# --- createTask / getTask -------------------------------------------------------------------------


async def test_typescript_reads_a_task_written_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    task = py_task(
        uid("task"),
        uid("agent"),
        status="completed",
        threadId=uid("thread"),
        resourceId=uid("res"),
        result={"hits": [1, 2], "note": None},
        startedAt=iso(T0 + timedelta(seconds=1)),
        completedAt=iso(T0 + timedelta(seconds=9)),
    )
    await store.background_tasks.create_task(task)
    assert ts.call("backgroundTasks", "getTask", task.id) == task.to_json()


async def test_python_reads_a_task_written_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = task_json(
        uid("task"),
        uid("agent"),
        status="suspended",
        suspendPayload={"ask": "confirm?"},
        suspendedAt=iso(T0 + timedelta(seconds=3)),
        error={"message": "boom", "stack": "at x"},
    )
    ts.call("backgroundTasks", "createTask", written)
    loaded = await store.background_tasks.get_task(written["id"])
    assert loaded is not None
    assert loaded.to_json() == written
    assert loaded.to_json() == ts.call("backgroundTasks", "getTask", written["id"])


async def test_both_stores_answer_none_for_a_missing_task(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    missing = uid("task")
    assert await store.background_tasks.get_task(missing) is None
    assert ts.call("backgroundTasks", "getTask", missing) is None


# --- updateTask -----------------------------------------------------------------------------------


async def test_typescript_reads_an_update_made_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = task_json(uid("task"), uid("agent"), status="running", result={"partial": True})
    ts.call("backgroundTasks", "createTask", written)
    applied = await store.background_tasks.update_task(
        written["id"],
        TaskUpdate(status="failed", result=None, error={"message": "timeout"}, retry_count=1),
    )
    assert applied is True
    expected = {k: v for k, v in written.items() if k != "result"}
    assert ts.call("backgroundTasks", "getTask", written["id"]) == {
        **expected,
        "status": "failed",
        "error": {"message": "timeout"},
        "retryCount": 1,
    }


async def test_python_reads_an_update_made_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    task = py_task(uid("task"), uid("agent"), status="suspended", suspendPayload={"x": 1})
    await store.background_tasks.create_task(task)
    done = iso(T0 + timedelta(minutes=2))
    ts.call(
        "backgroundTasks",
        "updateTask",
        task.id,
        {"status": "completed", "suspendPayload": None, "result": [1], "completedAt": done},
    )
    loaded = await store.background_tasks.get_task(task.id)
    assert loaded is not None
    assert loaded.to_json() == {
        **{k: v for k, v in task.to_json().items() if k != "suspendPayload"},
        "status": "completed",
        "result": [1],
        "completedAt": done,
    }
    assert loaded.to_json() == ts.call("backgroundTasks", "getTask", task.id)


async def test_an_update_fields_not_given_stay(store: ConvexStore, uid: Callable[[str], str]) -> None:
    task = py_task(uid("task"), uid("agent"), result={"keep": 1}, startedAt=iso(T0))
    await store.background_tasks.create_task(task)
    await store.background_tasks.update_task(task.id, {"status": "running"})
    loaded = await store.background_tasks.get_task(task.id)
    assert loaded is not None
    assert (loaded.result, loaded.started_at, loaded.status) == ({"keep": 1}, T0, "running")


async def test_update_of_a_missing_task_is_false(store: ConvexStore, uid: Callable[[str], str]) -> None:
    assert await store.background_tasks.update_task(uid("task"), {"status": "running"}) is False
    assert await store.background_tasks.update_task(uid("task"), {}) is False


async def test_bad_task_input_is_refused_before_sending(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    with pytest.raises(InvalidInputError, match="status"):
        await store.background_tasks.create_task(task_json(uid("task"), uid("agent"), status="exploded"))
    with pytest.raises(InvalidInputError, match="result"):
        await store.background_tasks.create_task(py_task(uid("task"), uid("agent"), result=float("nan")))
    with pytest.raises(InvalidInputError, match="retryCount"):
        await store.background_tasks.update_task(uid("task"), {"retryCount": -1})


# --- listTasks ------------------------------------------------------------------------------------


async def seed(ts: TsMastra, store: ConvexStore, agent: str, prefix: str) -> list[str]:
    """Six tasks of one agent, half written by each store, with mixed statuses and dates."""
    statuses = ["pending", "running", "completed", "running", "failed", "completed"]
    ids = []
    for n, status in enumerate(statuses):
        task_id = f"{prefix}-{n}"
        fields: dict[str, Any] = {"status": status, "toolName": "search" if n % 2 else "fetch"}
        if status != "pending":
            fields["startedAt"] = iso(T0 + timedelta(minutes=10 - n))
        written = task_json(task_id, agent, minutes=(n * 7) % 5, **fields)
        if n % 2:
            ts.call("backgroundTasks", "createTask", written)
        else:
            await store.background_tasks.create_task(written)
        ids.append(task_id)
    return ids


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "running"},
    {"status": ["completed", "failed"]},
    {"status": ["completed"]},
    {"status": []},
    {"toolName": "fetch", "orderDirection": "desc"},
    {"orderBy": "startedAt"},
    {"orderBy": "startedAt", "orderDirection": "desc"},
    {
        "dateFilterBy": "startedAt",
        "fromDate": iso(T0 + timedelta(minutes=6)),
        "toDate": iso(T0 + timedelta(minutes=9)),
    },
    {"fromDate": iso(T0 + timedelta(minutes=1)), "toDate": iso(T0 + timedelta(minutes=4))},
    {"perPage": 2},
    {"perPage": 2, "page": 1},
    {"perPage": 4, "page": 1, "orderDirection": "desc"},
    {"page": 3},
]


async def test_list_tasks_answers_like_typescript_for_every_filter(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    agent = uid("agent")
    await seed(ts, store, agent, uid("task"))
    for extra in FILTERS:
        wanted = {"agentId": agent, **extra}
        expected = ts.call("backgroundTasks", "listTasks", wanted)
        listed = await store.background_tasks.list_tasks(wanted)
        answer = {"tasks": [t.to_json() for t in listed.tasks], "total": listed.total}
        assert answer == expected, extra
        assert expected["total"] > 0 or extra.get("status") == [], extra


async def test_list_tasks_by_run_thread_resource_and_tool_call(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("thread"), uid("res")
    task = py_task(uid("task"), uid("agent"), threadId=thread, resourceId=resource)
    await store.background_tasks.create_task(task)
    for wanted in (
        {"threadId": thread},
        {"resourceId": resource},
        {"runId": task.run_id},
        {"toolCallId": task.tool_call_id},
    ):
        expected = ts.call("backgroundTasks", "listTasks", wanted)
        listed = await store.background_tasks.list_tasks(wanted)
        assert expected["total"] == listed.total == 1
        assert [t.to_json() for t in listed.tasks] == expected["tasks"] == [task.to_json()]


async def test_list_tasks_takes_keywords(store: ConvexStore, uid: Callable[[str], str]) -> None:
    agent = uid("agent")
    await store.background_tasks.create_task(py_task(uid("task"), agent, status="running"))
    listed = await store.background_tasks.list_tasks(agent_id=agent, status=["running"])
    assert listed.total == 1
    with pytest.raises(InvalidInputError, match="not both"):
        await store.background_tasks.list_tasks({"agentId": agent}, status="running")
    with pytest.raises(InvalidInputError, match="page"):
        await store.background_tasks.list_tasks(agent_id=agent, page=-1, per_page=2)


# --- running counts -------------------------------------------------------------------------------


async def test_running_counts_agree(ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]) -> None:
    agent = uid("agent")
    await seed(ts, store, agent, uid("task"))
    assert await store.background_tasks.get_running_count_by_agent(agent) == 2
    assert ts.call("backgroundTasks", "getRunningCountByAgent", agent) == 2
    assert await store.background_tasks.get_running_count() == ts.call("backgroundTasks", "getRunningCount")
    assert await store.background_tasks.get_running_count() >= 2


# --- deleteTask / deleteTasks ---------------------------------------------------------------------


async def test_typescript_sees_a_task_python_deleted(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = task_json(uid("task"), uid("agent"))
    ts.call("backgroundTasks", "createTask", written)
    await store.background_tasks.delete_task(written["id"])
    assert ts.call("backgroundTasks", "getTask", written["id"]) is None
    await store.background_tasks.delete_task(written["id"])  # a missing task: nothing happens


async def test_python_sees_a_task_typescript_deleted(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    task = py_task(uid("task"), uid("agent"))
    await store.background_tasks.create_task(task)
    ts.call("backgroundTasks", "deleteTask", task.id)
    assert await store.background_tasks.get_task(task.id) is None


async def test_delete_tasks_by_filter_python_then_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    agent = uid("agent")
    await seed(ts, store, agent, uid("task"))
    await store.background_tasks.delete_tasks(agent_id=agent, status=["completed", "failed"])
    left = ts.call("backgroundTasks", "listTasks", {"agentId": agent})
    assert sorted(t["status"] for t in left["tasks"]) == ["pending", "running", "running"]
    ts.call("backgroundTasks", "deleteTasks", {"agentId": agent, "status": "running"})
    remaining = await store.background_tasks.list_tasks(agent_id=agent)
    assert [t.status for t in remaining.tasks] == ["pending"]


async def test_delete_tasks_without_a_filter_deletes_nothing(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    task = py_task(uid("task"), uid("agent"))
    await store.background_tasks.create_task(task)
    await store.background_tasks.delete_tasks()
    await store.background_tasks.delete_tasks(status=[], order_direction="desc")
    ts.call("backgroundTasks", "deleteTasks", {"orderBy": "createdAt"})
    assert await store.background_tasks.get_task(task.id) is not None


# --- dangerouslyClearAll --------------------------------------------------------------------------


async def test_clear_all_python_then_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    # The table is this domain's alone, and every test here seeds its own tasks first.
    agent = uid("agent")
    await seed(ts, store, agent, uid("task"))
    await store.background_tasks.dangerously_clear_all()
    assert ts.call("backgroundTasks", "listTasks", {}) == {"tasks": [], "total": 0}
    await seed(ts, store, agent, uid("task"))
    ts.call("backgroundTasks", "dangerouslyClearAll")
    assert (await store.background_tasks.list_tasks()).total == 0
