"""Pydantic models of Mastra's stored records, and how each becomes a Convex row.

Attributes are snake_case; each also accepts its camelCase name (as @mastra/convex writes it).
Dates are timezone-aware UTC with millisecond precision, as JavaScript's `Date` keeps them;
naive datetimes are taken as UTC. Rows follow the TypeScript store exactly: dates as ISO strings
(`2025-01-01T00:00:00.000Z`), message content as a JSON string, optional fields omitted, not null.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from convex_offload.convex.values import dumps
from convex_offload.errors import InvalidInputError


def _to_js_time(value: datetime) -> datetime:
    """UTC, truncated to milliseconds: what survives a round trip through a JS `Date`."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def iso(value: datetime) -> str:
    """`Date.prototype.toISOString()` of a datetime: `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    utc = _to_js_time(value)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


JsTime = Annotated[datetime, AfterValidator(_to_js_time), PlainSerializer(iso, when_used="json")]
"""A datetime as JavaScript keeps it: UTC, millisecond precision; JSON as `toISOString()` writes it."""


def parse_iso(value: str) -> datetime:
    """Parse an ISO string as `new Date(...)` would (a `Z` suffix or an offset)."""
    return _to_js_time(datetime.fromisoformat(value.replace("Z", "+00:00")))


def now() -> datetime:
    """The current time as JavaScript would record it."""
    return _to_js_time(datetime.now(UTC))


class MastraModel(BaseModel):
    """Base: snake_case attributes with camelCase aliases; unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class Thread(MastraModel):
    """A conversation thread (`StorageThreadType`)."""

    id: str = Field(min_length=1)
    resource_id: str = Field(min_length=1)
    title: str = ""
    metadata: dict[str, Any] | None = None
    created_at: JsTime = Field(default_factory=now)
    updated_at: JsTime = Field(default_factory=now)

    def to_row(self) -> dict[str, Any]:
        """The `mastra_threads` row; metadata defaults to `{}` as the TS store writes it."""
        return {
            "id": self.id,
            "resourceId": self.resource_id,
            "title": self.title,
            "metadata": self.metadata if self.metadata is not None else {},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Thread:
        """Build from a `mastra_threads` row (system fields ignored)."""
        metadata = row.get("metadata")
        if isinstance(metadata, str):
            metadata = safely_parse_json(metadata)
        return cls(
            id=row["id"],
            resource_id=row["resourceId"],
            title=row.get("title", ""),
            metadata=metadata if isinstance(metadata, dict) else None,
            created_at=parse_iso(row["createdAt"]),
            updated_at=parse_iso(row["updatedAt"]),
        )


class Message(MastraModel):
    """A stored message (`MastraDBMessage`); `content` is Mastra's v2 content, kept as a dict."""

    id: str = Field(min_length=1)
    role: str
    content: Any
    created_at: JsTime = Field(default_factory=now)
    thread_id: str | None = None
    resource_id: str | None = None
    type: str | None = "v2"

    def to_row(self) -> dict[str, Any]:
        """The `mastra_messages` row: content as a JSON string, `type` defaulting to `v2`."""
        return self.to_row_with_content(dumps(self.content))

    def to_row_with_content(self, content_json: str) -> dict[str, Any]:
        """The row with `content_json` (already encoded) as its content."""
        if not self.thread_id:
            raise InvalidInputError(f"message {self.id!r}: thread_id is required to save it")
        if not self.resource_id:
            raise InvalidInputError(f"message {self.id!r}: resource_id is required to save it")
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "content": content_json,
            "role": self.role,
            "type": self.type or "v2",
            "createdAt": iso(self.created_at),
            "resourceId": self.resource_id,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        """Build from a `mastra_messages` row; content is parsed as the TS store parses it."""
        return cls.from_row_with_content(row, safely_parse_json(row.get("content")))

    @classmethod
    def from_row_with_content(cls, row: dict[str, Any], content: Any) -> Message:
        """Build from a `mastra_messages` row whose content is already parsed."""
        return cls(
            id=row["id"],
            thread_id=row.get("thread_id"),
            content=content,
            role=row["role"],
            type=row.get("type"),
            created_at=parse_iso(row["createdAt"]),
            resource_id=row.get("resourceId"),
        )


class MessageUpdate(MastraModel):
    """A partial update of a message: only the fields given change; content is merged."""

    id: str = Field(min_length=1)
    thread_id: str | None = None
    resource_id: str | None = None
    role: str | None = None
    type: str | None = None
    content: dict[str, Any] | None = None


class Resource(MastraModel):
    """A resource (usually a user) with its working memory (`StorageResourceType`)."""

    id: str = Field(min_length=1)
    working_memory: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: JsTime = Field(default_factory=now)
    updated_at: JsTime = Field(default_factory=now)

    def to_row(self) -> dict[str, Any]:
        """The `mastra_resources` row; absent working memory and metadata are omitted."""
        row: dict[str, Any] = {"id": self.id}
        if self.working_memory is not None:
            row["workingMemory"] = self.working_memory
        if self.metadata is not None:
            row["metadata"] = self.metadata
        row["createdAt"] = iso(self.created_at)
        row["updatedAt"] = iso(self.updated_at)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Resource:
        """Build from a `mastra_resources` row; metadata defaults to `{}` as in TS."""
        metadata = row.get("metadata")
        if isinstance(metadata, str):
            metadata = safely_parse_json(metadata)
        return cls(
            id=row["id"],
            working_memory=row.get("workingMemory"),
            metadata=metadata if isinstance(metadata, dict) else {},
            created_at=parse_iso(row["createdAt"]),
            updated_at=parse_iso(row["updatedAt"]),
        )


class WorkflowRun(MastraModel):
    """A workflow run with its snapshot (`WorkflowRun`)."""

    workflow_name: str
    run_id: str
    snapshot: Any
    created_at: JsTime
    updated_at: JsTime
    resource_id: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkflowRun:
        """Build from a `mastra_workflow_snapshots` row."""
        return cls(
            workflow_name=row["workflow_name"],
            run_id=row["run_id"],
            snapshot=snapshot_of(row),
            created_at=parse_iso(row["createdAt"]),
            updated_at=parse_iso(row["updatedAt"]),
            resource_id=row.get("resourceId"),
        )


ScoringSource = Literal["LIVE", "TEST"]


class ScorePayload(MastraModel):
    """What `save_score` takes (`SaveScorePayload`); fields match the `mastra_scorers` table."""

    scorer_id: str
    entity_id: str
    run_id: str
    score: float
    scorer: dict[str, Any]
    source: ScoringSource
    entity: dict[str, Any]
    output: Any = None
    input: Any = None
    additional_context: dict[str, Any] | None = None
    request_context: dict[str, Any] | None = None
    extract_step_result: dict[str, Any] | None = None
    extract_prompt: str | None = None
    analyze_step_result: dict[str, Any] | None = None
    analyze_prompt: str | None = None
    preprocess_step_result: dict[str, Any] | None = None
    preprocess_prompt: str | None = None
    generate_score_prompt: str | None = None
    generate_reason_prompt: str | None = None
    reason: str | None = None
    reason_prompt: str | None = None
    metadata: dict[str, Any] | None = None
    entity_type: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    resource_id: str | None = None
    thread_id: str | None = None
    organization_id: str | None = None
    project_id: str | None = None
    batch_id: str | None = None
    dataset_id: str | None = None
    dataset_item_id: str | None = None

    def to_fields(self) -> dict[str, Any]:
        """The row's fields in camelCase, with absent optional fields omitted."""
        fields = self.model_dump(by_alias=True, exclude_none=True)
        # `input` and `output` are required columns in the Convex schema even when empty.
        fields.setdefault("input", None)
        fields.setdefault("output", None)
        return fields


class Score(ScorePayload):
    """A stored score (`ScoreRowData`)."""

    id: str
    created_at: JsTime
    updated_at: JsTime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Score:
        """Build from a `mastra_scorers` row (system fields ignored)."""
        fields = {k: v for k, v in row.items() if not k.startswith("_")}
        fields["createdAt"] = parse_iso(fields["createdAt"])
        fields["updatedAt"] = parse_iso(fields["updatedAt"])
        return cls.model_validate(fields)


class Page(MastraModel):
    total: int
    page: int
    per_page: int | Literal[False]
    has_more: bool


class ThreadsPage(Page):
    """One page of `list_threads`."""

    threads: list[Thread]


class MessagesPage(Page):
    """One page of `list_messages` / `list_messages_by_resource_id`."""

    messages: list[Message]


class ScoresPage(Page):
    """One page of `list_scores*`."""

    scores: list[Score]


class WorkflowRunsPage(MastraModel):
    """The runs of `list_workflow_runs` and how many matched in all."""

    runs: list[WorkflowRun]
    total: int


class MessageInclude(MastraModel):
    """Ask for a message and its neighbours in its own thread (`include` of `list_messages`)."""

    id: str
    thread_id: str | None = None
    with_previous_messages: int = 0
    with_next_messages: int = 0


class DateRange(MastraModel):
    """A created-at window; `start`/`end` are inclusive unless marked exclusive."""

    start: JsTime | None = None
    end: JsTime | None = None
    start_exclusive: bool = False
    end_exclusive: bool = False


SortField = Literal["createdAt", "updatedAt"]
SortDirection = Literal["ASC", "DESC"]


class OrderBy(MastraModel):
    """Sort order of a listing."""

    field: SortField = "createdAt"
    direction: SortDirection | None = None


def safely_parse_json(value: Any) -> Any:
    """@mastra/core's `safelyParseJSON`: objects pass, null becomes {}, bad JSON stays a string."""
    if isinstance(value, dict | list):
        return value
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {}


def snapshot_of(row: dict[str, Any]) -> Any:
    """A run's snapshot: parsed from its JSON string, or the empty snapshot TS returns."""
    snapshot = row.get("snapshot")
    if not snapshot:
        return {
            "context": {},
            "activePaths": [],
            "activeStepsPath": {},
            "timestamp": int(now().timestamp() * 1000),
            "suspendedPaths": {},
            "resumeLabels": {},
            "serializedStepGraph": [],
            "value": {},
            "waitingPaths": {},
            "status": "pending",
            "runId": "",
        }
    if isinstance(snapshot, str):
        return json.loads(snapshot)
    return snapshot
