"""The schedules domain: the Python store and the real TypeScript one (@mastra/convex) share one local
Convex server; each reads what the other wrote, both answer listings alike, and the scheduler's
compare-and-set on `nextFireAt` lets exactly one of several racing callers claim a fire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from convex_offload.errors import AlreadyExistsError, InvalidInputError, InvalidRecordError, NotFoundError
from convex_offload.store.models_schedules import (
    AgentScheduleTarget,
    Schedule,
    ScheduleTrigger,
    ScheduleUpdate,
    WorkflowScheduleTarget,
)
from convex_offload.store.store import ConvexStore
from ts_mastra import TsError, TsMastra

T0 = 1_750_000_000_000  # epoch ms: schedules keep JavaScript millisecond times


def schedule_json(schedule_id: str, workflow_id: str, offset: int = 0, **fields: Any) -> dict[str, Any]:
    """A workflow schedule as TypeScript holds it."""
    return {
        "id": schedule_id,
        "target": {"type": "workflow", "workflowId": workflow_id, "inputData": {"$schema": "ok", "n": 1}},
        "cron": "*/5 * * * *",
        "status": "active",
        "nextFireAt": T0 + 300_000 + offset,
        "createdAt": T0 + offset,
        "updatedAt": T0 + offset,
        **fields,
    }


def agent_schedule_json(schedule_id: str, agent_id: str, offset: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "target": {"type": "agent", "agentId": agent_id, "prompt": "check in", "threadId": "t1"},
        "cron": "0 9 * * *",
        "timezone": "Europe/Paris",
        "status": "active",
        "nextFireAt": T0 + 600_000 + offset,
        "createdAt": T0 + offset,
        "updatedAt": T0 + offset,
        "metadata": {"team": "ops", "$ref": "kept"},
        "ownerType": "agent",
        "ownerId": agent_id,
        **fields,
    }


# --- createSchedule / getSchedule -----------------------------------------------------------------


async def test_typescript_reads_a_schedule_written_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    schedule = Schedule(
        id=uid("sched"),
        target=AgentScheduleTarget(agent_id=uid("agent"), prompt="hello", name="morning"),
        cron="0 8 * * 1-5",
        timezone="UTC",
        next_fire_at=T0,
        last_fire_at=T0 - 1,
        last_run_id="run-1",
        created_at=T0 - 10,
        updated_at=T0 - 5,
        metadata={"a": [1, None]},
        owner_type="agent",
        owner_id="a1",
    )
    created = await store.schedules.create_schedule(schedule)
    assert created == schedule
    assert ts.call("schedules", "getSchedule", schedule.id) == schedule.to_json()


async def test_python_reads_a_schedule_written_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    for written in (schedule_json(uid("sched"), uid("wf")), agent_schedule_json(uid("sched"), uid("agent"))):
        assert ts.call("schedules", "createSchedule", written) == written
        loaded = await store.schedules.get_schedule(written["id"])
        assert loaded is not None
        assert loaded.to_json() == written
        assert loaded.to_json() == ts.call("schedules", "getSchedule", written["id"])


async def test_a_missing_schedule_is_none_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    missing = uid("sched")
    assert await store.schedules.get_schedule(missing) is None
    assert ts.call("schedules", "getSchedule", missing) is None


async def test_creating_a_schedule_twice_fails_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(written)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        await store.schedules.create_schedule({**written, "cron": "* * * * *"})
    with pytest.raises(TsError, match="already exists"):
        ts.call("schedules", "createSchedule", written)
    loaded = await store.schedules.get_schedule(written["id"])
    assert loaded is not None
    assert loaded.cron == written["cron"]


async def test_bad_schedule_input_is_refused_before_sending(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    with pytest.raises(InvalidInputError, match="target"):
        await store.schedules.create_schedule(schedule_json(uid("sched"), "wf", target={"type": "rocket"}))
    with pytest.raises(InvalidInputError, match="status"):
        await store.schedules.create_schedule(schedule_json(uid("sched"), "wf", status="sleeping"))
    with pytest.raises(InvalidInputError, match="metadata"):
        await store.schedules.create_schedule(schedule_json(uid("sched"), "wf", metadata={"x": float("inf")}))


async def test_a_legacy_heartbeat_target_reads_as_agent_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = agent_schedule_json(uid("sched"), uid("agent"))
    legacy = {**written, "target": {**written["target"], "type": "heartbeat"}}
    ts.call("schedules", "createSchedule", legacy)
    loaded = await store.schedules.get_schedule(written["id"])
    assert loaded is not None
    assert loaded.to_json() == written == ts.call("schedules", "getSchedule", written["id"])


async def test_a_schedule_whose_target_has_no_type_fails_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    row = Schedule.model_validate(schedule_json(uid("sched"), uid("wf"))).to_row()
    row["target"] = '{"workflowId": "w"}'
    await store.db.insert("mastra_schedules", row)
    try:
        with pytest.raises(InvalidRecordError, match=f"Schedule {row['id']} has invalid target"):
            await store.schedules.get_schedule(row["id"])
        with pytest.raises(TsError, match="has invalid target"):
            ts.call("schedules", "getSchedule", row["id"])
    finally:
        # Every listing of all schedules would fail on it, in both stores.
        await store.schedules.delete_schedule(row["id"])


# --- listSchedules --------------------------------------------------------------------------------


async def test_list_schedules_answers_like_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    workflow, agent = uid("wf"), uid("agent")
    written = [
        schedule_json(uid("sched"), workflow, offset=30),
        schedule_json(uid("sched"), workflow, offset=10, status="paused"),
        schedule_json(uid("sched"), workflow, offset=20, ownerType="tenant", ownerId=agent),
        agent_schedule_json(uid("sched"), agent, offset=5),
        agent_schedule_json(uid("sched"), agent, offset=15, status="paused"),
    ]
    for n, schedule in enumerate(written):
        if n % 2:
            ts.call("schedules", "createSchedule", schedule)
        else:
            await store.schedules.create_schedule(schedule)
    cases: list[dict[str, Any]] = [
        {"workflowId": workflow},
        {"workflowId": workflow, "status": "paused"},
        {"workflowId": workflow, "ownerType": None},
        {"workflowId": workflow, "ownerId": None, "status": "active"},
        {"ownerId": agent},
        {"ownerType": "agent", "ownerId": agent},
        {"ownerType": "agent", "ownerId": agent, "status": "active"},
    ]
    keywords = {
        "workflowId": "workflow_id",
        "ownerType": "owner_type",
        "ownerId": "owner_id",
        "status": "status",
    }
    for case in cases:
        expected = ts.call("schedules", "listSchedules", case)
        listed = await store.schedules.list_schedules(**{keywords[k]: v for k, v in case.items()})
        assert [s.to_json() for s in listed] == expected, case
        assert expected, case
    everything = [s.to_json() for s in await store.schedules.list_schedules()]
    assert everything == ts.call("schedules", "listSchedules")
    assert all(s in everything for s in written)


# --- listDueSchedules -----------------------------------------------------------------------------


async def test_list_due_schedules_answers_like_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    # Times far below every other test's, so only these schedules can be due.
    workflow = uid("wf")
    for n in range(5):
        fields = {"nextFireAt": 1_000 + n, "status": "paused" if n == 1 else "active"}
        written = schedule_json(uid("sched"), workflow, offset=n, **fields)
        if n % 2:
            ts.call("schedules", "createSchedule", written)
        else:
            await store.schedules.create_schedule(written)
    for now, limit in ((1_003, None), (1_004, 2), (999, None), (1_004, 0)):
        args: list[Any] = [now] if limit is None else [now, limit]
        expected = ts.call("schedules", "listDueSchedules", *args)
        due = await store.schedules.list_due_schedules(now, limit)
        assert [s.to_json() for s in due] == expected, (now, limit)
    due = await store.schedules.list_due_schedules(1_003)
    assert [s.next_fire_at for s in due] == [1_000, 1_002, 1_003]


# --- updateSchedule -------------------------------------------------------------------------------


async def test_typescript_reads_an_update_made_by_python(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = agent_schedule_json(uid("sched"), uid("agent"))
    ts.call("schedules", "createSchedule", written)
    new_workflow = uid("wf")
    updated = await store.schedules.update_schedule(
        written["id"],
        ScheduleUpdate(
            cron="*/10 * * * *",
            timezone=None,
            status="paused",
            metadata=None,
            owner_id=None,
            target=WorkflowScheduleTarget(workflow_id=new_workflow),
        ),
    )
    answer = ts.call("schedules", "getSchedule", written["id"])
    assert answer == updated.to_json()
    assert answer["updatedAt"] > written["updatedAt"]
    kept = {k: v for k, v in written.items() if k not in ("timezone", "metadata", "ownerId")}
    assert answer == {
        **kept,
        "cron": "*/10 * * * *",
        "status": "paused",
        "target": {"type": "workflow", "workflowId": new_workflow},
        "updatedAt": answer["updatedAt"],
    }
    # The target's workflow is what workflow filters find.
    listed = await store.schedules.list_schedules(workflow_id=new_workflow)
    assert [s.id for s in listed] == [written["id"]]


async def test_python_reads_an_update_made_by_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(written)
    answer = ts.call(
        "schedules", "updateSchedule", written["id"], {"nextFireAt": T0 + 9, "metadata": {"k": "v"}}
    )
    loaded = await store.schedules.get_schedule(written["id"])
    assert loaded is not None
    assert loaded.to_json() == answer
    assert (loaded.next_fire_at, loaded.metadata) == (T0 + 9, {"k": "v"})


async def test_an_empty_update_returns_the_schedule_unchanged_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(written)
    assert (await store.schedules.update_schedule(written["id"], {})).to_json() == written
    assert ts.call("schedules", "updateSchedule", written["id"], {}) == written


async def test_updating_a_missing_schedule_fails_in_both(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    missing = uid("sched")
    for patch in ({}, {"status": "paused"}):
        with pytest.raises(NotFoundError, match=f"Schedule {missing} not found"):
            await store.schedules.update_schedule(missing, patch)
        with pytest.raises(TsError, match="not found"):
            ts.call("schedules", "updateSchedule", missing, patch)


# --- updateScheduleNextFire (the scheduler's compare-and-set) -------------------------------------


async def test_two_racing_python_claims_exactly_one_wins(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(written)
    expected = written["nextFireAt"]
    won = await asyncio.gather(
        store.schedules.update_schedule_next_fire(
            written["id"], expected, expected + 300_000, expected, "run-a"
        ),
        store.schedules.update_schedule_next_fire(
            written["id"], expected, expected + 300_000, expected, "run-b"
        ),
    )
    assert sorted(won) == [False, True]
    loaded = await store.schedules.get_schedule(written["id"])
    assert loaded is not None
    assert loaded.next_fire_at == expected + 300_000
    assert loaded.last_fire_at == expected
    assert loaded.last_run_id == ("run-a" if won[0] else "run-b")


async def test_a_claim_made_by_one_store_is_lost_by_the_other(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    ts.call("schedules", "createSchedule", written)
    fire = written["nextFireAt"]
    assert await store.schedules.update_schedule_next_fire(written["id"], fire, fire + 1, fire, "py") is True
    assert ts.call("schedules", "updateScheduleNextFire", written["id"], fire, fire + 2, fire, "ts") is False
    assert (
        ts.call("schedules", "updateScheduleNextFire", written["id"], fire + 1, fire + 2, fire, "ts") is True
    )
    assert (
        await store.schedules.update_schedule_next_fire(written["id"], fire + 1, fire + 3, fire, "py")
        is False
    )
    loaded = await store.schedules.get_schedule(written["id"])
    assert loaded is not None
    assert (loaded.next_fire_at, loaded.last_run_id) == (fire + 2, "ts")
    assert loaded.to_json() == ts.call("schedules", "getSchedule", written["id"])


async def test_a_paused_or_missing_schedule_cannot_be_claimed(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"), status="paused")
    await store.schedules.create_schedule(written)
    fire = written["nextFireAt"]
    assert await store.schedules.update_schedule_next_fire(written["id"], fire, fire + 1, fire, "r") is False
    assert await store.schedules.update_schedule_next_fire(uid("sched"), fire, fire + 1, fire, "r") is False


# --- recordTrigger / listTriggers -----------------------------------------------------------------


async def test_triggers_written_by_either_store_list_alike(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    schedule_id = uid("sched")
    await store.schedules.create_schedule(schedule_json(schedule_id, uid("wf")))
    for n in range(6):
        trigger: dict[str, Any] = {
            "scheduleId": schedule_id,
            "runId": f"run-{n}" if n != 2 else None,
            "scheduledFireAt": T0 + n * 1_000,
            "actualFireAt": T0 + n * 1_000 + 7,
            "outcome": "failed" if n == 3 else "published",
        }
        if n == 3:
            trigger |= {"error": "boom", "metadata": {"$why": "reserved key"}}
        if n == 4:
            trigger |= {"id": uid("trigger"), "triggerKind": "queue-drain", "parentTriggerId": "p-1"}
        if n % 2:
            ts.call("schedules", "recordTrigger", trigger)
        else:
            await store.schedules.record_trigger(trigger)
    for opts in (
        {},
        {"limit": 2},
        {"fromActualFireAt": T0 + 2_007},
        {"toActualFireAt": T0 + 2_007},
        {"fromActualFireAt": T0 + 1_007, "toActualFireAt": T0 + 4_007, "limit": 2},
    ):
        expected = ts.call("schedules", "listTriggers", schedule_id, opts)
        listed = await store.schedules.list_triggers(
            schedule_id,
            from_actual_fire_at=opts.get("fromActualFireAt"),
            to_actual_fire_at=opts.get("toActualFireAt"),
            limit=opts.get("limit"),
        )
        assert [t.to_json() for t in listed] == expected, opts
        assert expected, opts
    listed = await store.schedules.list_triggers(schedule_id)
    assert [t.actual_fire_at for t in listed] == [T0 + n * 1_000 + 7 for n in reversed(range(6))]
    newest_first = {6 - 1 - i: trigger for i, trigger in enumerate(listed)}
    assert (newest_first[4].trigger_kind, newest_first[4].parent_trigger_id) == ("queue-drain", "p-1")
    assert (newest_first[3].error, newest_first[3].metadata) == ("boom", {"$why": "reserved key"})
    assert newest_first[2].run_id is None
    assert newest_first[0].trigger_kind == "schedule-fire"


async def test_a_trigger_id_cannot_be_recorded_twice(store: ConvexStore, uid: Callable[[str], str]) -> None:
    trigger = ScheduleTrigger(
        id=uid("trigger"),
        schedule_id=uid("sched"),
        scheduled_fire_at=T0,
        actual_fire_at=T0,
        outcome="published",
    )
    await store.schedules.record_trigger(trigger)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        await store.schedules.record_trigger(trigger)


# --- deleteSchedule -------------------------------------------------------------------------------


async def record_triggers(store: ConvexStore, schedule_id: str, count: int) -> None:
    for n in range(count):
        await store.schedules.record_trigger(
            {
                "scheduleId": schedule_id,
                "runId": None,
                "scheduledFireAt": n,
                "actualFireAt": n,
                "outcome": "published",
            }
        )


async def test_typescript_sees_a_schedule_python_deleted_with_its_triggers(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    ts.call("schedules", "createSchedule", written)
    await record_triggers(store, written["id"], 30)  # more than one 25-row batch
    await store.schedules.delete_schedule(written["id"])
    assert ts.call("schedules", "getSchedule", written["id"]) is None
    assert ts.call("schedules", "listTriggers", written["id"], {"limit": 100}) == []


async def test_python_sees_a_schedule_typescript_deleted_with_its_triggers(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    written = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(written)
    await record_triggers(store, written["id"], 3)
    ts.call("schedules", "deleteSchedule", written["id"])
    assert await store.schedules.get_schedule(written["id"]) is None
    assert await store.schedules.list_triggers(written["id"]) == []


# --- dangerouslyClearAll --------------------------------------------------------------------------


async def test_clear_all_python_then_typescript(
    ts: TsMastra, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    # The tables are this domain's alone, and every test here creates its own schedules first.
    first = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(first)
    await record_triggers(store, first["id"], 2)
    await store.schedules.dangerously_clear_all()
    assert ts.call("schedules", "listSchedules") == []
    assert ts.call("schedules", "listTriggers", first["id"]) == []
    second = schedule_json(uid("sched"), uid("wf"))
    await store.schedules.create_schedule(second)
    ts.call("schedules", "dangerouslyClearAll")
    assert await store.schedules.list_schedules() == []
