"""Pydantic models of Mastra's observational memory, and how a stored row becomes one.

The row encoding is @mastra/convex's (`mastra_observational_memory`): ISO date strings, `config`,
`metadata` and `bufferedObservationChunks` as JSON strings, nullable fields as explicit nulls.
Reading follows the TS store's `parseStoredOMRecord`, JavaScript truthiness included (a stored
`0` token count reads back as None, an empty array stays an empty array).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field

from convex_offload.convex.values import dumps
from convex_offload.store.models import JsTime, MastraModel, iso, parse_iso, safely_parse_json

Scope = Literal["thread", "resource"]
OriginType = Literal["initial", "reflection"]
Number = int | float
"""A JavaScript number: ints stay ints, so JSON strings encode `5`, never `5.0`."""


class BufferedObservationChunk(MastraModel):
    """One observation cycle's buffered observations, waiting to be activated.

    Keys this library does not know are kept (and written back) as they are.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    cycle_id: str
    observations: str
    token_count: Number
    message_ids: list[str]
    message_tokens: Number
    last_observed_at: JsTime
    created_at: JsTime
    suggested_continuation: str | None = None
    current_task: str | None = None
    thread_title: str | None = None
    extracted_values: dict[str, Any] | None = None
    extraction_failures: list[dict[str, Any]] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The chunk as the TS store serializes it: ISO dates, absent fields omitted."""
        dumped = self.model_dump(mode="json", by_alias=True)
        declared = {field.alias or name for name, field in type(self).model_fields.items()}
        return {k: v for k, v in dumped.items() if v is not None or k not in declared}


class BufferedObservationChunkInput(MastraModel):
    """A new chunk for `update_buffered_observations` (the store gives it its id and createdAt)."""

    cycle_id: str
    observations: str
    token_count: Number
    message_ids: list[str]
    message_tokens: Number
    last_observed_at: JsTime
    suggested_continuation: str | None = None
    current_task: str | None = None
    thread_title: str | None = None
    extracted_values: dict[str, Any] | None = None
    extraction_failures: list[dict[str, Any]] | None = None


class ObservationalMemoryRecord(MastraModel):
    """One generation of a thread's or resource's observational memory (`ObservationalMemoryRecord`)."""

    id: str = Field(min_length=1)
    scope: Scope
    thread_id: str | None
    resource_id: str
    created_at: JsTime
    updated_at: JsTime
    last_observed_at: JsTime | None = None
    origin_type: OriginType = "initial"
    generation_count: int = 0
    active_observations: str = ""
    buffered_observation_chunks: list[BufferedObservationChunk] | None = None
    buffered_observations: str | None = None
    buffered_observation_tokens: Number | None = None
    buffered_message_ids: list[str] | None = None
    buffered_reflection: str | None = None
    buffered_reflection_tokens: Number | None = None
    buffered_reflection_input_tokens: Number | None = None
    reflected_observation_line_count: int | None = None
    observed_message_ids: list[str] | None = None
    observed_timezone: str | None = None
    total_tokens_observed: Number = 0
    observation_token_count: Number = 0
    pending_message_tokens: Number = 0
    is_reflecting: bool = False
    is_observing: bool = False
    is_buffering_observation: bool = False
    is_buffering_reflection: bool = False
    last_buffered_at_tokens: Number = 0
    last_buffered_at_time: JsTime | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ObservationalMemoryRecord:
        """Build from a `mastra_observational_memory` row, as `parseStoredOMRecord` reads it."""
        config = safely_parse_json(row.get("config"))
        metadata = safely_parse_json(row["metadata"]) if truthy(row.get("metadata")) else None
        return cls(
            id=row["id"],
            scope=row["scope"],
            thread_id=row.get("threadId") or None,
            resource_id=row["resourceId"],
            created_at=parse_iso(row["createdAt"]),
            updated_at=parse_iso(row["updatedAt"]),
            last_observed_at=_date_or_none(row.get("lastObservedAt")),
            origin_type=row.get("originType") or "initial",
            generation_count=int(row.get("generationCount") or 0),
            active_observations=row.get("activeObservations") or "",
            buffered_observation_chunks=parse_stored_chunks(row.get("bufferedObservationChunks")),
            buffered_observations=row.get("activeObservationsPendingUpdate") or None,
            buffered_observation_tokens=_number_or_none(row.get("bufferedObservationTokens")),
            buffered_message_ids=None,
            buffered_reflection=row.get("bufferedReflection") or None,
            buffered_reflection_tokens=_number_or_none(row.get("bufferedReflectionTokens")),
            buffered_reflection_input_tokens=_number_or_none(row.get("bufferedReflectionInputTokens")),
            reflected_observation_line_count=_number_or_none(row.get("reflectedObservationLineCount")),
            total_tokens_observed=row.get("totalTokensObserved") or 0,
            observation_token_count=row.get("observationTokenCount") or 0,
            pending_message_tokens=row.get("pendingMessageTokens") or 0,
            is_reflecting=bool(row.get("isReflecting")),
            is_observing=bool(row.get("isObserving")),
            is_buffering_observation=bool(row.get("isBufferingObservation")),
            is_buffering_reflection=bool(row.get("isBufferingReflection")),
            last_buffered_at_tokens=row.get("lastBufferedAtTokens") or 0,
            last_buffered_at_time=_date_or_none(row.get("lastBufferedAtTime")),
            config=config if isinstance(config, dict) else {},
            metadata=metadata if isinstance(metadata, dict) else None,
            observed_message_ids=row.get("observedMessageIds")
            if truthy(row.get("observedMessageIds"))
            else None,
            observed_timezone=row.get("observedTimezone") or None,
        )


class ActivatedChunk(MastraModel):
    """One activated chunk in a `SwapBufferedToActiveResult`."""

    cycle_id: str
    message_tokens: Number
    observation_tokens: Number
    message_count: int
    observations: str


class SwapBufferedToActiveResult(MastraModel):
    """What `swap_buffered_to_active` activated (all zero when nothing was buffered)."""

    chunks_activated: int
    message_tokens_activated: Number
    observation_tokens_activated: Number
    messages_activated: int
    activated_cycle_ids: list[str]
    activated_message_ids: list[str]
    observations: str | None = None
    per_chunk: list[ActivatedChunk] | None = None
    suggested_continuation: str | None = None
    current_task: str | None = None


def truthy(value: Any) -> bool:
    """JavaScript truthiness: null, false, 0, NaN and "" are falsy; every list and object is truthy."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def parse_stored_chunks(value: Any) -> list[BufferedObservationChunk] | None:
    """`parseStoredOMChunks`: the JSON string of chunks, or None when absent or not a list."""
    if not truthy(value):
        return None
    parsed = safely_parse_json(value)
    if not isinstance(parsed, list):
        return None
    return [BufferedObservationChunk.model_validate(chunk) for chunk in parsed]


def js_json(value: Any) -> str:
    """`JSON.stringify` of a JSON value: integral floats written as JavaScript writes them (`5`)."""
    return dumps(_js_numbers(value))


def _js_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def iso_or_none(value: Any) -> str | None:
    """An ISO string of a datetime, or None."""
    return iso(value) if value is not None else None


def _date_or_none(value: Any) -> Any:
    return parse_iso(value) if truthy(value) else None


def _number_or_none(value: Any) -> Any:
    return value if truthy(value) else None
