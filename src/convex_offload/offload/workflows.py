"""`OffloadingWorkflows`: the workflows domain with snapshots and step results offloaded.

A run's snapshot is one record of the `workflow run` kind; each step result merged with
`update_workflow_results` is a part of it with a manifest (and an owner) of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from convex_offload.convex.values import dumps
from convex_offload.offload.manifest import MANIFEST_KEY, build_manifest
from convex_offload.offload.merge import Outcome, refs_of
from convex_offload.offload.road import Road
from convex_offload.offload.transaction import Change, Write
from convex_offload.store.db import TABLE_WORKFLOW_SNAPSHOT, insert_request
from convex_offload.store.models import WorkflowRun, WorkflowRunsPage, now, safely_parse_json
from convex_offload.store.paging import PerPage
from convex_offload.store.workflows import (
    WorkflowStore,
    snapshot_record,
    state_request,
    step_result_request,
    workflow_run_id,
)


class OffloadingWorkflows:
    """`WorkflowStore` with snapshots (and step results) offloaded."""

    def __init__(self, inner: WorkflowStore, road: Road) -> None:
        self.inner = inner
        self._road = road
        self._runs = road.kind("workflow run")

    def __repr__(self) -> str:
        return f"OffloadingWorkflows({self.inner!r})"

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
        """Create or replace a run's snapshot, offloading its payloads (step results' too)."""
        kind, record_id = self._runs, workflow_run_id(workflow_name, run_id)
        existing = await self.inner.get_run_row(workflow_name, run_id)

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            record = snapshot_record(
                workflow_name,
                run_id,
                dumps(outcomes[0].tree),
                resource_id=resource_id,
                created_at=created_at,
                updated_at=updated_at,
                existing=existing,
            )
            return [insert_request(TABLE_WORKFLOW_SNAPSHOT, record)]

        change = Change(kind, record_id, snapshot, resource_id, where=_where(workflow_name, run_id))
        # Written whole: the run's old references, its steps' included, all go.
        await self._road.write(Write([change], requests, release=[kind.owner(record_id)]))

    async def load_workflow_snapshot(self, workflow_name: str, run_id: str) -> Any | None:
        """The run's snapshot, restored, or None."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        if row is None:
            return None
        return (await self._restored_run(WorkflowRun.from_row(row))).snapshot

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
        """`WorkflowStore.list_workflow_runs`, with snapshots restored."""
        result = await self.inner.list_workflow_runs(
            workflow_name=workflow_name,
            from_date=from_date,
            to_date=to_date,
            per_page=per_page,
            page=page,
            resource_id=resource_id,
            status=status,
        )
        runs = await asyncio.gather(*(self._restored_run(run) for run in result.runs))
        return result.model_copy(update={"runs": list(runs)})

    async def get_workflow_run_by_id(
        self, run_id: str, workflow_name: str | None = None
    ) -> WorkflowRun | None:
        """A run with its snapshot restored, or None."""
        run = await self.inner.get_workflow_run_by_id(run_id, workflow_name)
        return await self._restored_run(run) if run is not None else None

    async def delete_workflow_run_by_id(self, run_id: str, workflow_name: str) -> None:
        """Delete a run, and every attachment no other record references."""
        await self._road.delete(self._runs, [workflow_run_id(workflow_name, run_id)])

    async def update_workflow_results(
        self, workflow_name: str, run_id: str, step_id: str, result: Any, request_context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge a step's result (its payloads offloaded under a manifest of its own); returns the context."""
        kind, record_id = self._runs, workflow_run_id(workflow_name, run_id)
        row = await self.inner.get_run_row(workflow_name, run_id)
        tenant = kind.tenant_of(row) if row else None
        where = f"{_where(workflow_name, run_id)} step {step_id}"
        change = Change(kind, record_id, result, tenant, part=step_id, where=where)

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            return [
                step_result_request(workflow_name, run_id, step_id, dumps(outcomes[0].tree), request_context)
            ]

        written = await self._road.write(Write([change], requests))
        context: dict[str, Any] = safely_parse_json(written.results[0])
        record = _where(workflow_name, run_id)
        await self._road.restore(kind, {"context": context}, tenant=tenant, record=record)
        # Results persisted with the whole snapshot are under the snapshot's own manifest.
        stored = kind.tree_of(row) if row else None
        in_context = [
            r for r in refs_of(stored, kind.holder, record=record) if r.path.startswith("/context/")
        ]
        if in_context:
            tree = {"context": context, MANIFEST_KEY: build_manifest(in_context)}
            context = (await self._road.restore(kind, tree, tenant=tenant, record=record))["context"]
        return context

    async def update_workflow_state(self, workflow_name: str, run_id: str, opts: Mapping[str, Any]) -> Any:
        """Merge `opts` into the snapshot's top level; returns the restored snapshot."""
        kind, record_id = self._runs, workflow_run_id(workflow_name, run_id)
        row = await self.inner.get_run_row(workflow_name, run_id)
        tenant = kind.tenant_of(row) if row else None
        stored = kind.tree_of(row) if row else None
        change = Change(
            kind,
            record_id,
            dict(opts),
            tenant,
            update=True,
            stored=stored if isinstance(stored, dict) else {},
            owns=row is not None,
            where=_where(workflow_name, run_id),
        )

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            return [state_request(workflow_name, run_id, dumps(outcomes[0].update))]

        written = await self._road.write(Write([change], requests))
        run = WorkflowRun(
            workflow_name=workflow_name,
            run_id=run_id,
            snapshot=safely_parse_json(written.results[0]),
            created_at=now(),
            updated_at=now(),
            resource_id=tenant,
        )
        return (await self._restored_run(run)).snapshot

    async def _restored_run(self, run: WorkflowRun) -> WorkflowRun:
        if not isinstance(run.snapshot, dict):
            return run
        record = _where(run.workflow_name, run.run_id)
        snapshot = await self._road.restore(self._runs, run.snapshot, tenant=run.resource_id, record=record)
        return run.model_copy(update={"snapshot": snapshot})

    async def dangerously_clear_all(self) -> None:
        """Delete every workflow run (their objects are left to `gc`)."""
        await self.inner.dangerously_clear_all()


def _where(workflow_name: str, run_id: str) -> str:
    return f"workflow run {workflow_name}/{run_id}"
