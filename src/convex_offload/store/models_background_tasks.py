"""Pydantic models of Mastra's background tasks (`@mastra/core/background-tasks`) and their rows.

A `mastra_background_tasks` row is what @mastra/convex's `toStored` writes: snake_case columns,
`args`/`result`/`error`/`suspend_payload` as JSON strings, dates as ISO strings, and absent optional
values as null (not omitted), so a partial patch can clear them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, NonNegativeInt

from convex_offload.store.json_text import encode, encode_nullable, parse_lenient
from convex_offload.store.models import JsTime, MastraModel, iso, parse_iso

BackgroundTaskStatus = Literal[
    "pending", "running", "suspended", "completed", "failed", "cancelled", "timed_out"
]
TaskDateColumn = Literal["createdAt", "startedAt", "suspendedAt", "completedAt"]


class BackgroundTask(MastraModel):
    """A background tool call (`BackgroundTask`); `error` is `{message, stack?}` in Mastra."""

    id: str = Field(min_length=1)
    status: BackgroundTaskStatus
    tool_name: str
    tool_call_id: str
    args: dict[str, Any] = Field(default_factory=dict)
    agent_id: str
    thread_id: str | None = None
    resource_id: str | None = None
    run_id: str
    result: Any = None
    error: Any = None
    created_at: JsTime
    started_at: JsTime | None = None
    suspended_at: JsTime | None = None
    completed_at: JsTime | None = None
    retry_count: NonNegativeInt = 0
    max_retries: NonNegativeInt = 0
    timeout_ms: NonNegativeInt
    suspend_payload: Any = None

    def to_json(self) -> dict[str, Any]:
        """The task as the TS store answers it (camelCase, ISO dates, absent fields omitted)."""
        answer: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return answer

    def to_row(self) -> dict[str, Any]:
        """The `mastra_background_tasks` row, as `toStored` writes it."""
        where = f"background task {self.id!r}"
        return {
            "id": self.id,
            "status": self.status,
            "tool_call_id": self.tool_call_id,
            "tool_name": self.tool_name,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "resource_id": self.resource_id,
            "args": encode(self.args, where=f"{where} args"),
            "result": encode_nullable(self.result, where=f"{where} result"),
            "error": encode_nullable(self.error, where=f"{where} error"),
            "suspend_payload": encode_nullable(self.suspend_payload, where=f"{where} suspendPayload"),
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "timeout_ms": self.timeout_ms,
            "createdAt": iso(self.created_at),
            "startedAt": _iso_or_none(self.started_at),
            "suspendedAt": _iso_or_none(self.suspended_at),
            "completedAt": _iso_or_none(self.completed_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BackgroundTask:
        """Build from a row, also one kept in `mastra_documents` with camelCase keys (older stores)."""

        def column(current: str, legacy: str) -> Any:
            return row[current] if current in row else row.get(legacy)

        args = parse_lenient(row.get("args"))
        return cls(
            id=row["id"],
            status=row["status"],
            tool_name=column("tool_name", "toolName"),
            tool_call_id=column("tool_call_id", "toolCallId"),
            args=args if args is not None else {},
            agent_id=column("agent_id", "agentId"),
            thread_id=column("thread_id", "threadId"),
            resource_id=column("resource_id", "resourceId"),
            run_id=column("run_id", "runId"),
            result=parse_lenient(row.get("result")),
            error=parse_lenient(row.get("error")),
            suspend_payload=parse_lenient(column("suspend_payload", "suspendPayload")),
            retry_count=column("retry_count", "retryCount"),
            max_retries=column("max_retries", "maxRetries"),
            timeout_ms=column("timeout_ms", "timeoutMs"),
            created_at=parse_iso(row["createdAt"]),
            started_at=_parse_or_none(row.get("startedAt")),
            suspended_at=_parse_or_none(row.get("suspendedAt")),
            completed_at=_parse_or_none(row.get("completedAt")),
        )


class TaskUpdate(MastraModel):
    """A partial update of a task (`UpdateBackgroundTask`): only the fields given change.

    Giving `result`, `error`, `suspend_payload` or a date as None clears it; `status` and the
    counters given as None are left alone, as in TypeScript.
    """

    status: BackgroundTaskStatus | None = None
    result: Any = None
    error: Any = None
    suspend_payload: Any = None
    retry_count: NonNegativeInt | None = None
    max_retries: NonNegativeInt | None = None
    timeout_ms: NonNegativeInt | None = None
    started_at: JsTime | None = None
    suspended_at: JsTime | None = None
    completed_at: JsTime | None = None

    def to_patch(self, task_id: str) -> dict[str, Any]:
        """The row fields to patch, as `toStoredPatch` builds them."""
        given = self.model_fields_set
        where = f"background task {task_id!r}"
        patch: dict[str, Any] = {}
        if self.status is not None:
            patch["status"] = self.status
        if "result" in given:
            patch["result"] = encode_nullable(self.result, where=f"{where} result")
        if "error" in given:
            patch["error"] = encode_nullable(self.error, where=f"{where} error")
        if "suspend_payload" in given:
            patch["suspend_payload"] = encode_nullable(self.suspend_payload, where=f"{where} suspendPayload")
        if self.retry_count is not None:
            patch["retry_count"] = self.retry_count
        if self.max_retries is not None:
            patch["max_retries"] = self.max_retries
        if self.timeout_ms is not None:
            patch["timeout_ms"] = self.timeout_ms
        for name, column in (
            ("started_at", "startedAt"),
            ("suspended_at", "suspendedAt"),
            ("completed_at", "completedAt"),
        ):
            if name in given:
                patch[column] = _iso_or_none(getattr(self, name))
        return patch


class TaskFilter(MastraModel):
    """Which tasks `list_tasks`/`delete_tasks` take (`TaskFilter`); every filter given must match.

    `status` is one status or a list of them (an empty list matches nothing, as in TypeScript);
    `from_date` is inclusive and `to_date` exclusive, on the `date_filter_by` column; `page`
    (0-based) applies only together with `per_page`.
    """

    status: BackgroundTaskStatus | list[BackgroundTaskStatus] | None = None
    agent_id: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    run_id: str | None = None
    from_date: JsTime | None = None
    to_date: JsTime | None = None
    date_filter_by: TaskDateColumn = "createdAt"
    order_by: TaskDateColumn = "createdAt"
    order_direction: Literal["asc", "desc"] = "asc"
    page: NonNegativeInt | None = None
    per_page: NonNegativeInt | None = None

    def statuses(self) -> list[BackgroundTaskStatus] | None:
        """The statuses asked for, or None for any."""
        if self.status is None:
            return None
        return self.status if isinstance(self.status, list) else [self.status]

    def is_empty_for_delete(self) -> bool:
        """True when nothing narrows the tasks (`delete_tasks` then deletes nothing, as in TS)."""
        statuses = self.statuses()
        return not (
            statuses
            or self.agent_id
            or self.thread_id
            or self.resource_id
            or self.tool_name
            or self.tool_call_id
            or self.run_id
            or self.from_date
            or self.to_date
        )


class TaskListResult(MastraModel):
    """The tasks of one page of `list_tasks`, and how many matched in all."""

    tasks: list[BackgroundTask]
    total: int


def task_date(task: BackgroundTask, column: TaskDateColumn) -> datetime | None:
    """A task's date column by its TypeScript name."""
    match column:
        case "createdAt":
            return task.created_at
        case "startedAt":
            return task.started_at
        case "suspendedAt":
            return task.suspended_at
        case "completedAt":
            return task.completed_at


def _iso_or_none(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _parse_or_none(value: Any) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) and value else None
