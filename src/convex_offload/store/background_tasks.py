"""The backgroundTasks domain: durable background tool calls, as @mastra/convex's `BackgroundTasksConvex`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidInputError
from convex_offload.store.db import Filter, StorageDB
from convex_offload.store.models_background_tasks import (
    BackgroundTask,
    TaskFilter,
    TaskListResult,
    TaskUpdate,
    task_date,
)
from convex_offload.store.validation import validated

TABLE_BACKGROUND_TASKS: Final = "mastra_background_tasks"


class BackgroundTaskStore:
    """Background tasks in `mastra_background_tasks` (rows older stores kept in `mastra_documents` too).

    Listings filter, sort and page in memory over at most 10,000 rows, as the TS store does.
    """

    def __init__(self, db: StorageDB) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"BackgroundTaskStore({self.db!r})"

    async def create_task(self, task: BackgroundTask | Mapping[str, Any]) -> None:
        """Store a task; an existing task with the same id is overwritten."""
        row = validated(BackgroundTask, task, "background task").to_row()
        check_value(row, where="background task", top_level_record=True)
        await self.db.insert(TABLE_BACKGROUND_TASKS, row)

    async def update_task(self, task_id: str, update: TaskUpdate | Mapping[str, Any]) -> bool:
        """Change the fields `update` gives; False when no such task exists.

        Unlike @mastra/core's newest contract there is no `expected_status` check: @mastra/convex
        has no conditional patch, so a compare-and-set here would not be atomic.
        """
        patch = validated(TaskUpdate, update, "task update").to_patch(task_id)
        if not patch:
            return await self.get_task(task_id) is not None
        return await self.db.patch(TABLE_BACKGROUND_TASKS, task_id, patch)

    async def get_task(self, task_id: str) -> BackgroundTask | None:
        """A task, or None."""
        row = await self.db.load(TABLE_BACKGROUND_TASKS, {"id": task_id})
        return BackgroundTask.from_row(row) if row is not None else None

    async def list_tasks(
        self, task_filter: TaskFilter | Mapping[str, Any] | None = None, /, **filters: Any
    ) -> TaskListResult:
        """Tasks matching the filter (a `TaskFilter`, a mapping, or its fields as keywords).

        Ordered by `order_by` (default createdAt, ascending); `total` counts every match.
        """
        wanted = task_filter_of(task_filter, filters)
        rows = await self.db.query_table(TABLE_BACKGROUND_TASKS, _query_filters(wanted) or None)
        tasks = [task for task in map(BackgroundTask.from_row, rows) if _matches(task, wanted)]
        sign = -1 if wanted.order_direction == "desc" else 1
        tasks.sort(key=lambda task: sign * _millis(task, wanted))
        total = len(tasks)
        if wanted.per_page is not None:
            start = (wanted.page or 0) * wanted.per_page
            tasks = tasks[start : start + wanted.per_page]
        return TaskListResult(tasks=tasks, total=total)

    async def delete_task(self, task_id: str) -> None:
        """Delete a task (nothing happens when it does not exist)."""
        await self.db.delete_many(TABLE_BACKGROUND_TASKS, [task_id])

    async def delete_tasks(
        self, task_filter: TaskFilter | Mapping[str, Any] | None = None, /, **filters: Any
    ) -> None:
        """Delete the tasks `list_tasks` would answer; a filter that narrows nothing deletes nothing."""
        wanted = task_filter_of(task_filter, filters)
        if wanted.is_empty_for_delete():
            return
        listed = await self.list_tasks(wanted)
        await self.db.delete_many(TABLE_BACKGROUND_TASKS, [task.id for task in listed.tasks])

    async def get_running_count(self) -> int:
        """How many tasks are running, across every agent."""
        return (await self.list_tasks(status="running")).total

    async def get_running_count_by_agent(self, agent_id: str) -> int:
        """How many tasks of one agent are running."""
        return (await self.list_tasks(status="running", agent_id=agent_id)).total

    async def dangerously_clear_all(self) -> None:
        """Delete every task."""
        await self.db.clear_table(TABLE_BACKGROUND_TASKS)


def task_filter_of(
    task_filter: TaskFilter | Mapping[str, Any] | None, keywords: Mapping[str, Any]
) -> TaskFilter:
    """The filter given as one argument or as keywords (`InvalidInputError` for both, or a bad field)."""
    if task_filter is not None and keywords:
        raise InvalidInputError("give the task filter either as one argument or as keywords, not both")
    return validated(TaskFilter, task_filter if task_filter is not None else keywords, "task filter")


def _query_filters(wanted: TaskFilter) -> list[Filter]:
    """The equality filters the TS store sends, so the handler picks the same index."""
    filters: list[Filter] = []
    statuses = wanted.statuses()
    if statuses is not None and (isinstance(wanted.status, str) or len(statuses) == 1):
        filters.append(Filter("status", statuses[0]))
    for field, value in (
        ("agent_id", wanted.agent_id),
        ("thread_id", wanted.thread_id),
        ("resource_id", wanted.resource_id),
        ("tool_name", wanted.tool_name),
        ("tool_call_id", wanted.tool_call_id),
        ("run_id", wanted.run_id),
    ):
        if value:
            filters.append(Filter(field, value))
    return filters


def _matches(task: BackgroundTask, wanted: TaskFilter) -> bool:
    statuses = wanted.statuses()
    if statuses is not None and task.status not in statuses:
        return False
    for value, actual in (
        (wanted.agent_id, task.agent_id),
        (wanted.thread_id, task.thread_id),
        (wanted.resource_id, task.resource_id),
        (wanted.tool_name, task.tool_name),
        (wanted.tool_call_id, task.tool_call_id),
        (wanted.run_id, task.run_id),
    ):
        if value and actual != value:
            return False
    date = task_date(task, wanted.date_filter_by)
    if wanted.from_date is not None and (date is None or date < wanted.from_date):
        return False
    return wanted.to_date is None or (date is not None and date < wanted.to_date)


def _millis(task: BackgroundTask, wanted: TaskFilter) -> int:
    """The sort key TS uses: the order column's epoch milliseconds, 0 when unset."""
    date = task_date(task, wanted.order_by)
    return round(date.timestamp() * 1000) if date is not None else 0
