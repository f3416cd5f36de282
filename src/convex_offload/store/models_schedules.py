"""Pydantic models of Mastra's schedules and schedule triggers (`@mastra/core/storage`) and their rows.

Times are JavaScript epoch milliseconds (ints), as Mastra's scheduler keeps them. In the rows
(`mastra_schedules`, `mastra_schedule_triggers`) the target and metadata are JSON strings and
absent optional values are null, as @mastra/convex's `scheduleToRecord`/`triggerToRecord` write them.
"""

from __future__ import annotations

import enum
import time
import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from convex_offload.errors import InvalidRecordError
from convex_offload.store.json_text import encode, encode_nullable, parse_lenient
from convex_offload.store.models import MastraModel

ScheduleStatus = Literal["active", "paused"]
DEFAULT_TRIGGER_KIND: Final = "schedule-fire"


def now_ms() -> int:
    """`Date.now()`: the current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Unset(enum.Enum):
    """Marks a filter not given, where None means "matches a null value"."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET


class _Target(BaseModel):
    """Targets keep fields this library does not know (newer Mastra versions), as TS keeps them."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class WorkflowScheduleTarget(_Target):
    """Fire a workflow run (`WorkflowScheduleTarget`)."""

    type: Literal["workflow"] = "workflow"
    workflow_id: str = Field(min_length=1)
    input_data: Any = None
    initial_state: Any = None
    request_context: dict[str, Any] | None = None
    resource_id: str | None = None
    definition_hash: str | None = None


class AgentScheduleTarget(_Target):
    """Fire an agent run or a signal into a thread (`AgentScheduleTarget`)."""

    type: Literal["agent"] = "agent"
    agent_id: str = Field(min_length=1)
    prompt: str
    name: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    signal_type: str | None = None
    tag_name: str | None = None
    attributes: dict[str, Any] | None = None
    provider_options: dict[str, Any] | None = None
    if_active: Any = None
    if_idle: Any = None
    metadata: dict[str, Any] | None = None
    request_context: dict[str, Any] | None = None


ScheduleTarget = Annotated[WorkflowScheduleTarget | AgentScheduleTarget, Field(discriminator="type")]


def target_json(target: WorkflowScheduleTarget | AgentScheduleTarget) -> dict[str, Any]:
    """The target as TS holds it: camelCase, only the fields that were given (explicit nulls kept)."""
    dumped: dict[str, Any] = target.model_dump(mode="json", by_alias=True, exclude_unset=True)
    dumped["type"] = target.type
    return dumped


class Schedule(MastraModel):
    """A persisted schedule (`Schedule`); `next_fire_at` is what the scheduler's CAS advances."""

    id: str = Field(min_length=1)
    target: ScheduleTarget
    cron: str = Field(min_length=1)
    timezone: str | None = None
    status: ScheduleStatus = "active"
    next_fire_at: int
    last_fire_at: int | None = None
    last_run_id: str | None = None
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    metadata: dict[str, Any] | None = None
    owner_type: str | None = None
    owner_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The schedule as the TS store answers it (camelCase; absent fields omitted)."""
        answer = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"target"})
        answer["target"] = target_json(self.target)
        return answer

    def to_row(self) -> dict[str, Any]:
        """The `mastra_schedules` row, as `scheduleToRecord` writes it."""
        where = f"schedule {self.id!r}"
        return {
            "id": self.id,
            "target": encode(target_json(self.target), where=f"{where} target"),
            "cron": self.cron,
            "timezone": self.timezone,
            "status": self.status,
            "next_fire_at": self.next_fire_at,
            "last_fire_at": self.last_fire_at,
            "last_run_id": self.last_run_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": encode_nullable(self.metadata, where=f"{where} metadata"),
            "owner_type": self.owner_type,
            "owner_id": self.owner_id,
            "workflow_id": workflow_id_of(self.target),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        """Build from a row; a legacy `heartbeat` target reads as `agent` (`normalizeScheduleTarget`)."""
        target = parse_lenient(row.get("target"))
        if not isinstance(target, dict) or not isinstance(target.get("type"), str):
            raise InvalidRecordError(f"Schedule {row.get('id')} has invalid target")
        if target["type"] == "heartbeat":
            target = {**target, "type": "agent"}
        metadata = parse_lenient(row.get("metadata"))
        return cls(
            id=str(row["id"]),
            target=target,
            cron=str(row["cron"]),
            timezone=row.get("timezone"),
            status=row["status"],
            next_fire_at=row["next_fire_at"],
            last_fire_at=row.get("last_fire_at"),
            last_run_id=row.get("last_run_id"),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            metadata=metadata,
            owner_type=row.get("owner_type"),
            owner_id=row.get("owner_id"),
        )


def workflow_id_of(target: WorkflowScheduleTarget | AgentScheduleTarget) -> str | None:
    """The denormalised `workflow_id` column: the workflow a workflow target fires, else null."""
    return target.workflow_id if isinstance(target, WorkflowScheduleTarget) else None


class ScheduleUpdate(MastraModel):
    """A partial update of a schedule (`ScheduleUpdate`): only the fields given change.

    `timezone`, `metadata`, `owner_type` and `owner_id` given as None are cleared; `cron`,
    `status`, `next_fire_at` and `target` given as None are left alone, as in TypeScript.
    """

    cron: str | None = Field(default=None, min_length=1)
    timezone: str | None = None
    status: ScheduleStatus | None = None
    next_fire_at: int | None = None
    target: ScheduleTarget | None = None
    metadata: dict[str, Any] | None = None
    owner_type: str | None = None
    owner_id: str | None = None

    def to_patch(self, schedule_id: str) -> dict[str, Any]:
        """The row fields to patch (without `updated_at`), as `updateSchedule` builds them."""
        given = self.model_fields_set
        patch: dict[str, Any] = {}
        if self.cron is not None:
            patch["cron"] = self.cron
        if "timezone" in given:
            patch["timezone"] = self.timezone
        if self.status is not None:
            patch["status"] = self.status
        if self.next_fire_at is not None:
            patch["next_fire_at"] = self.next_fire_at
        if self.target is not None:
            patch["target"] = encode(target_json(self.target), where=f"schedule {schedule_id!r} target")
            patch["workflow_id"] = workflow_id_of(self.target)
        if "metadata" in given:
            patch["metadata"] = encode_nullable(self.metadata, where=f"schedule {schedule_id!r} metadata")
        if "owner_type" in given:
            patch["owner_type"] = self.owner_type
        if "owner_id" in given:
            patch["owner_id"] = self.owner_id
        return patch


class ScheduleTrigger(MastraModel):
    """One fire of a schedule, in its history (`ScheduleTrigger`); a missing id is generated on write.

    `outcome` and `trigger_kind` are open strings: Mastra keeps legacy values readable.
    """

    id: str | None = None
    schedule_id: str = Field(min_length=1)
    run_id: str | None = None
    scheduled_fire_at: int
    actual_fire_at: int
    outcome: str = Field(min_length=1)
    error: str | None = None
    trigger_kind: str = DEFAULT_TRIGGER_KIND
    parent_trigger_id: str | None = None
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The trigger as the TS store answers it (`runId` is null when unset; others omitted)."""
        answer: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        answer["runId"] = self.run_id
        return answer

    def to_row(self) -> dict[str, Any]:
        """The `mastra_schedule_triggers` row, as `triggerToRecord` writes it."""
        trigger_id = self.id or str(uuid.uuid4())
        return {
            "id": trigger_id,
            "schedule_id": self.schedule_id,
            "run_id": self.run_id,
            "scheduled_fire_at": self.scheduled_fire_at,
            "actual_fire_at": self.actual_fire_at,
            "outcome": self.outcome,
            "error": self.error,
            "trigger_kind": self.trigger_kind,
            "parent_trigger_id": self.parent_trigger_id,
            "metadata": encode_nullable(self.metadata, where=f"schedule trigger {trigger_id!r} metadata"),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleTrigger:
        """Build from a `mastra_schedule_triggers` row."""
        return cls(
            id=str(row["id"]) if row.get("id") is not None else None,
            schedule_id=str(row["schedule_id"]),
            run_id=str(row["run_id"]) if row.get("run_id") is not None else None,
            scheduled_fire_at=row["scheduled_fire_at"],
            actual_fire_at=row["actual_fire_at"],
            outcome=str(row["outcome"]),
            error=str(row["error"]) if row.get("error") is not None else None,
            trigger_kind=str(row.get("trigger_kind") or DEFAULT_TRIGGER_KIND),
            parent_trigger_id=row.get("parent_trigger_id"),
            metadata=parse_lenient(row.get("metadata")),
        )
