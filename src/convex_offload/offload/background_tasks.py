"""`OffloadingBackgroundTasks`: background tool calls with payloads in their args and results offloaded.

A tool that returns an image (an MCP image result, a generated picture) leaves it in the task's
`result`; its `args` and `suspend_payload` may carry files too. Each of the three JSON fields is
a part of the `background task` record kind with a manifest (and references) of its own, so an
update that replaces one field replaces only that field's references.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from convex_offload.convex.values import check_value
from convex_offload.offload.merge import Outcome
from convex_offload.offload.road import Road
from convex_offload.offload.transaction import Change, Write
from convex_offload.store.background_tasks import TABLE_BACKGROUND_TASKS, BackgroundTaskStore, task_filter_of
from convex_offload.store.db import patch_request
from convex_offload.store.models_background_tasks import (
    BackgroundTask,
    TaskFilter,
    TaskListResult,
    TaskUpdate,
)
from convex_offload.store.validation import validated


class OffloadingBackgroundTasks:
    """`BackgroundTaskStore` with payloads in task args, results and suspend payloads offloaded."""

    def __init__(self, inner: BackgroundTaskStore, road: Road) -> None:
        self.inner = inner
        self._road = road
        self._tasks = road.kind("background task")

    def __repr__(self) -> str:
        return f"OffloadingBackgroundTasks({self.inner!r})"

    async def create_task(self, task: BackgroundTask | Mapping[str, Any]) -> None:
        """Store a task (an existing one with the same id is overwritten), offloading its payloads."""
        row = validated(BackgroundTask, task, "background task").to_row()

        def check(stored: dict[str, Any]) -> None:
            check_value(stored, where="background task", top_level_record=True)

        await self._road.replace(self._tasks, row["id"], row, check=check)

    async def update_task(self, task_id: str, update: TaskUpdate | Mapping[str, Any]) -> bool:
        """Change the fields `update` gives, offloading new payloads; False when no such task exists."""
        kind = self._tasks
        patch = validated(TaskUpdate, update, "task update").to_patch(task_id)
        fields = [field for field in kind.fields if field in patch]
        if not fields:
            return await self.inner.update_task(task_id, update)
        row = await self.inner.db.load(TABLE_BACKGROUND_TASKS, {"id": task_id})
        tenant = kind.tenant_of(row) if row else None
        changes = [
            Change(kind, task_id, kind.field_tree(patch, field), tenant, part=field, owns=row is not None)
            for field in fields
        ]

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            written = kind.with_fields(
                patch, {c.part: o.tree for c, o in zip(changes, outcomes, strict=True) if c.part}
            )
            return [patch_request(TABLE_BACKGROUND_TASKS, task_id, written)]

        result = await self._road.write(Write(changes, requests))
        return bool(result.results[0])

    async def get_task(self, task_id: str) -> BackgroundTask | None:
        """A task with its payloads restored, or None."""
        row = await self.inner.db.load(TABLE_BACKGROUND_TASKS, {"id": task_id})
        if row is None:
            return None
        return BackgroundTask.from_row(
            await self._road.restore_row(self._tasks, row, record=self._label(task_id))
        )

    async def list_tasks(
        self, task_filter: TaskFilter | Mapping[str, Any] | None = None, /, **filters: Any
    ) -> TaskListResult:
        """`BackgroundTaskStore.list_tasks`, with every task's payloads restored."""
        listed = await self.inner.list_tasks(task_filter, **filters)
        tasks = await asyncio.gather(*(self._restored(task) for task in listed.tasks))
        return listed.model_copy(update={"tasks": list(tasks)})

    async def delete_task(self, task_id: str) -> None:
        """Delete a task, and every attachment no other record references."""
        await self._road.delete(self._tasks, [task_id])

    async def delete_tasks(
        self, task_filter: TaskFilter | Mapping[str, Any] | None = None, /, **filters: Any
    ) -> None:
        """Delete the tasks `list_tasks` would answer (a filter that narrows nothing deletes nothing)."""
        wanted = task_filter_of(task_filter, filters)
        if wanted.is_empty_for_delete():
            return
        listed = await self.inner.list_tasks(wanted)
        await self._road.delete(self._tasks, [task.id for task in listed.tasks])

    async def get_running_count(self) -> int:
        """How many tasks are running, across every agent."""
        return await self.inner.get_running_count()

    async def get_running_count_by_agent(self, agent_id: str) -> int:
        """How many tasks of one agent are running."""
        return await self.inner.get_running_count_by_agent(agent_id)

    async def dangerously_clear_all(self) -> None:
        """Delete every task (their objects are left to `gc`)."""
        await self.inner.dangerously_clear_all()

    async def _restored(self, task: BackgroundTask) -> BackgroundTask:
        trees = {"args": task.args, "result": task.result, "suspend_payload": task.suspend_payload}
        if not self._tasks.part_trees(trees):
            return task
        await self._road.restore(self._tasks, trees, tenant=task.resource_id, record=self._label(task.id))
        return task.model_copy(
            update={
                "args": trees["args"],
                "result": trees["result"],
                "suspend_payload": trees["suspend_payload"],
            }
        )

    def _label(self, task_id: str) -> str:
        return self._tasks.label(task_id)
