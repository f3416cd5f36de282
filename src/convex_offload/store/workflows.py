"""The workflows domain: run snapshots, as @mastra/convex's `WorkflowsConvex`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from convex_offload.convex.values import dumps
from convex_offload.errors import ConvexFunctionError
from convex_offload.store.db import TABLE_WORKFLOW_SNAPSHOT, Filter, StorageDB
from convex_offload.store.models import WorkflowRun, WorkflowRunsPage, iso, now, parse_iso, snapshot_of
from convex_offload.store.paging import MAX_SAFE_INTEGER, PerPage, normalize_per_page


def workflow_run_id(workflow_name: str, run_id: str) -> str:
    """The record id both stores give a run: `${workflow_name}-${run_id}`."""
    return f"{workflow_name}-{run_id}"


class WorkflowStore:
    """Workflow run snapshots in `mastra_workflow_snapshots`."""

    def __init__(self, db: StorageDB) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"WorkflowStore({self.db!r})"

    async def persist_workflow_snapshot(
        self,
        workflow_name: str,
        run_id: str,
        snapshot: Any,
        *,
        resource_id: str | None = None,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """Create or replace a run's snapshot, keeping the run's original createdAt."""
        existing = await self.get_run_row(workflow_name, run_id)
        record = snapshot_record(
            workflow_name,
            run_id,
            dumps(snapshot),
            resource_id=resource_id,
            created_at=created_at,
            updated_at=updated_at,
            existing=existing,
        )
        await self.db.insert(TABLE_WORKFLOW_SNAPSHOT, record)

    async def load_workflow_snapshot(self, workflow_name: str, run_id: str) -> Any | None:
        """The run's snapshot, or None."""
        row = await self.get_run_row(workflow_name, run_id)
        if row is None:
            return None
        snapshot = row.get("snapshot")
        return json.loads(snapshot) if isinstance(snapshot, str) else snapshot

    async def list_workflow_runs(
        self,
        *,
        workflow_name: str | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        per_page: PerPage = None,
        page: int | None = None,
        resource_id: str | None = None,
        status: str | None = None,
    ) -> WorkflowRunsPage:
        """Runs, newest first; paged only when both `per_page` and `page` are given."""
        filters = []
        if workflow_name:
            filters.append(Filter("workflow_name", workflow_name))
        if resource_id:
            filters.append(Filter("resourceId", resource_id))
        rows = await self.db.query_table(TABLE_WORKFLOW_SNAPSHOT, filters)
        if from_date is not None:
            rows = [r for r in rows if parse_iso(r["createdAt"]) >= from_date]
        if to_date is not None:
            rows = [r for r in rows if parse_iso(r["createdAt"]) <= to_date]
        if status:
            rows = [r for r in rows if _status(r) == status]
        total = len(rows)
        rows.sort(key=lambda r: parse_iso(r["createdAt"]), reverse=True)
        if per_page is not None and page is not None:
            size = normalize_per_page(per_page, MAX_SAFE_INTEGER)
            rows = rows[page * size : page * size + size]
        return WorkflowRunsPage(runs=[WorkflowRun.from_row(r) for r in rows], total=total)

    async def get_workflow_run_by_id(
        self, run_id: str, workflow_name: str | None = None
    ) -> WorkflowRun | None:
        """A run by id (and workflow name when given), or None."""
        if workflow_name:
            row = await self.get_run_row(workflow_name, run_id)
        else:
            rows = await self.db.query_table(TABLE_WORKFLOW_SNAPSHOT, [Filter("run_id", run_id)])
            row = rows[0] if rows else None
        return WorkflowRun.from_row(row) if row is not None else None

    async def delete_workflow_run_by_id(self, run_id: str, workflow_name: str) -> None:
        """Delete a run."""
        await self.db.delete_many(TABLE_WORKFLOW_SNAPSHOT, [workflow_run_id(workflow_name, run_id)])

    async def update_workflow_results(
        self,
        workflow_name: str,
        run_id: str,
        step_id: str,
        result: Any,
        request_context: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Merge one step's result into the stored snapshot, atomically; returns the new context."""
        context = await self.db.call(
            step_result_request(workflow_name, run_id, step_id, dumps(result), request_context)
        )
        if not context:
            raise ConvexFunctionError(
                f"Convex workflow step merge returned no context for runId {run_id}",
                path=self.db.storage_function,
                convex_message="no context",
            )
        merged: dict[str, Any] = json.loads(context)
        return merged

    async def update_workflow_state(self, workflow_name: str, run_id: str, opts: Mapping[str, Any]) -> Any:
        """Merge `opts` into the stored snapshot's top level, atomically; returns the snapshot."""
        snapshot = await self.db.call(state_request(workflow_name, run_id, dumps(dict(opts))))
        if not snapshot:
            raise ConvexFunctionError(
                f"Convex workflow state merge returned no snapshot for runId {run_id}",
                path=self.db.storage_function,
                convex_message="no snapshot",
            )
        return json.loads(snapshot)

    async def get_run_row(self, workflow_name: str, run_id: str) -> dict[str, Any] | None:
        """The stored row of a run, or None."""
        return await self.db.load(TABLE_WORKFLOW_SNAPSHOT, {"workflow_name": workflow_name, "run_id": run_id})

    async def dangerously_clear_all(self) -> None:
        """Delete every workflow run."""
        await self.db.clear_table(TABLE_WORKFLOW_SNAPSHOT)


def snapshot_record(
    workflow_name: str,
    run_id: str,
    snapshot_json: str,
    *,
    resource_id: str | None,
    created_at: datetime | None,
    updated_at: datetime | None,
    existing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `mastra_workflow_snapshots` record of a persisted snapshot (the stored run's createdAt kept)."""
    stamp = iso(now())
    record: dict[str, Any] = {"workflow_name": workflow_name, "run_id": run_id}
    if resource_id is not None:
        record["resourceId"] = resource_id
    record["snapshot"] = snapshot_json
    record["createdAt"] = (existing or {}).get("createdAt") or (iso(created_at) if created_at else stamp)
    record["updatedAt"] = iso(updated_at) if updated_at else stamp
    return record


def step_result_request(
    workflow_name: str, run_id: str, step_id: str, result_json: str, request_context: Mapping[str, Any]
) -> dict[str, Any]:
    """The `mergeWorkflowStepResult` request (the server merges the step into the snapshot)."""
    return {
        "op": "mergeWorkflowStepResult",
        "tableName": TABLE_WORKFLOW_SNAPSHOT,
        "workflowName": workflow_name,
        "runId": run_id,
        "stepId": step_id,
        "result": result_json,
        "requestContext": dumps(dict(request_context)),
    }


def state_request(workflow_name: str, run_id: str, opts_json: str) -> dict[str, Any]:
    """The `mergeWorkflowState` request (the server shallow-merges `opts` into the snapshot)."""
    return {
        "op": "mergeWorkflowState",
        "tableName": TABLE_WORKFLOW_SNAPSHOT,
        "workflowName": workflow_name,
        "runId": run_id,
        "opts": opts_json,
    }


def _status(row: dict[str, Any]) -> Any:
    snapshot = snapshot_of(row)
    return snapshot.get("status") if isinstance(snapshot, dict) else None
