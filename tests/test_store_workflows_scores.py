"""The Python ConvexStore's workflows and scores domains on the local Convex server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convex_offload.errors import InvalidInputError, StorageOperationError
from convex_offload.store.models import ScorePayload
from convex_offload.store.store import ConvexStore

T0 = datetime(2025, 5, 1, tzinfo=UTC)


def snapshot(run_id: str, status: str = "running") -> dict[str, Any]:
    return {
        "runId": run_id,
        "status": status,
        "value": {},
        "context": {"input": {"q": "x"}, "step1": {"status": "success", "output": {"a": 1}}},
        "activePaths": [],
        "serializedStepGraph": [],
        "suspendedPaths": {},
        "waitingPaths": {},
        "timestamp": 1_700_000_000_000,
    }


async def test_snapshot_round_trip_keeps_first_created_at(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    wf, run = uid("wf"), uid("run")
    await store.workflows.persist_workflow_snapshot(wf, run, snapshot(run), resource_id="r1", created_at=T0)
    await store.workflows.persist_workflow_snapshot(
        wf, run, snapshot(run, "success"), created_at=T0 + timedelta(days=1)
    )
    assert await store.workflows.load_workflow_snapshot(wf, run) == snapshot(run, "success")
    found = await store.workflows.get_workflow_run_by_id(run, wf)
    assert found is not None
    assert found.created_at == T0
    assert found.snapshot["status"] == "success"
    assert await store.workflows.get_workflow_run_by_id(run) == found


async def test_list_runs_filters_and_pages(store: ConvexStore, uid: Callable[[str], str]) -> None:
    wf = uid("wf")
    for i in range(4):
        await store.workflows.persist_workflow_snapshot(
            wf,
            f"{wf}-{i}",
            snapshot(f"{wf}-{i}", "success" if i % 2 else "failed"),
            created_at=T0 + timedelta(hours=i),
        )
    runs = await store.workflows.list_workflow_runs(workflow_name=wf)
    assert [r.run_id for r in runs.runs] == [f"{wf}-{i}" for i in (3, 2, 1, 0)]
    paged = await store.workflows.list_workflow_runs(workflow_name=wf, per_page=2, page=1)
    assert ([r.run_id for r in paged.runs], paged.total) == ([f"{wf}-1", f"{wf}-0"], 4)
    ok = await store.workflows.list_workflow_runs(workflow_name=wf, status="success")
    assert {r.run_id for r in ok.runs} == {f"{wf}-1", f"{wf}-3"}
    window = await store.workflows.list_workflow_runs(
        workflow_name=wf, from_date=T0 + timedelta(hours=1), to_date=T0 + timedelta(hours=2)
    )
    assert {r.run_id for r in window.runs} == {f"{wf}-1", f"{wf}-2"}


async def test_step_results_and_state_merge_on_the_server(
    store: ConvexStore, uid: Callable[[str], str]
) -> None:
    wf, run = uid("wf"), uid("run")
    await store.workflows.persist_workflow_snapshot(wf, run, snapshot(run))
    context = await store.workflows.update_workflow_results(
        wf, run, "step2", {"status": "success", "output": {"b": 2}}, {"user": "u1"}
    )
    assert context["step2"] == {"status": "success", "output": {"b": 2}}
    assert context["step1"]["output"] == {"a": 1}
    state = await store.workflows.update_workflow_state(
        wf, run, {"status": "success", "result": {"ok": True}}
    )
    assert state["status"] == "success"
    assert state["result"] == {"ok": True}
    assert state["requestContext"] == {"user": "u1"}
    with pytest.raises(StorageOperationError, match="not found"):
        await store.workflows.update_workflow_state(wf, uid("missing"), {"status": "x"})


async def test_delete_run(store: ConvexStore, uid: Callable[[str], str]) -> None:
    wf, run = uid("wf"), uid("run")
    await store.workflows.persist_workflow_snapshot(wf, run, snapshot(run))
    await store.workflows.delete_workflow_run_by_id(run, wf)
    assert await store.workflows.load_workflow_snapshot(wf, run) is None


def score(scorer: str, run: str, entity: str, value: float) -> ScorePayload:
    return ScorePayload(
        scorer_id=scorer,
        entity_id=entity,
        entity_type="AGENT",
        run_id=run,
        score=value,
        scorer={"name": scorer},
        source="LIVE",
        entity={"id": entity},
        input=[{"role": "user", "content": "q"}],
        output={"text": "a"},
        reason="because",
    )


async def test_scores_save_get_and_list(store: ConvexStore, uid: Callable[[str], str]) -> None:
    scorer, entity = uid("scorer"), uid("agent")
    runs = [uid("run") for _ in range(3)]
    saved = [await store.scores.save_score(score(scorer, run, entity, i / 10)) for i, run in enumerate(runs)]
    assert await store.scores.get_score_by_id(saved[0].id) == saved[0]
    by_scorer = await store.scores.list_scores_by_scorer_id(scorer, per_page=2)
    assert (by_scorer.total, by_scorer.has_more, len(by_scorer.scores)) == (3, True, 2)
    assert [s.id for s in by_scorer.scores] == [saved[2].id, saved[1].id]
    by_run = await store.scores.list_scores_by_run_id(runs[1])
    assert [s.score for s in by_run.scores] == [0.1]
    by_entity = await store.scores.list_scores_by_entity_id(entity, "AGENT", per_page=False)
    assert by_entity.total == 3


async def test_score_with_unknown_field_is_refused(store: ConvexStore) -> None:
    payload = score("s", "r", "e", 1).model_dump(by_alias=True)
    payload["structuredOutput"] = True
    with pytest.raises(InvalidInputError, match="structuredOutput"):
        await store.scores.save_score(payload)
