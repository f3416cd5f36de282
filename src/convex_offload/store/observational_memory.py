"""Observational memory: the ~17 `MemoryConvex` methods of @mastra/convex, in Python.

Rows live in `mastra_observational_memory`, one per generation, keyed by `lookupKey`
(`thread:<id>` or `resource:<id>`); the latest generation has the highest `generationCount`.
Requests are the TS store's, op for op: generic `insert`/`patch`/`queryTable`/`deleteMany`, and
the handler's own `om*` operations, which read and update a record in one transaction.
`ObservationalMemoryStore` is mixed into `MemoryStore`: `store.memory.get_observational_memory(...)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from convex_offload.convex.values import check_value
from convex_offload.errors import ConvexFunctionError, InvalidInputError, NotFoundError
from convex_offload.store.db import Filter, StorageDB
from convex_offload.store.models import iso, now
from convex_offload.store.om_models import (
    BufferedObservationChunk,
    BufferedObservationChunkInput,
    ObservationalMemoryRecord,
    Scope,
    SwapBufferedToActiveResult,
    iso_or_none,
    js_json,
)
from convex_offload.store.validation import is_non_negative_number

TABLE_OBSERVATIONAL_MEMORY: Final = "mastra_observational_memory"
_NOT_FOUND: Final = "Observational memory record not found"


def om_lookup_key(thread_id: str | None, resource_id: str) -> str:
    """The record key: `thread:<id>` when there is a thread, else `resource:<id>`."""
    return f"thread:{thread_id}" if thread_id else f"resource:{resource_id}"


class ObservationalMemoryStore:
    """The observational-memory methods of the memory domain (a mixin over a `StorageDB`)."""

    db: StorageDB
    supports_observational_memory: Final = True

    async def get_observational_memory(
        self, thread_id: str | None, resource_id: str
    ) -> ObservationalMemoryRecord | None:
        """The latest generation for a thread (or, with `thread_id` None, a resource), or None."""
        row = await self._om_call({"op": "omGetLatest", "lookupKey": om_lookup_key(thread_id, resource_id)})
        return ObservationalMemoryRecord.from_row(row) if isinstance(row, dict) else None

    async def get_observational_memory_history(
        self,
        thread_id: str | None,
        resource_id: str,
        limit: int = 10,
        *,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        offset: int | None = None,
    ) -> list[ObservationalMemoryRecord]:
        """Generations newest first, created within [`from_date`, `to_date`], after skipping `offset`."""
        _require_count("limit", limit)
        if offset is not None:
            _require_count("offset", offset)
        request: dict[str, Any] = {
            "op": "omGetHistory",
            "lookupKey": om_lookup_key(thread_id, resource_id),
            "limit": limit,
        }
        if from_date is not None:
            request["from"] = iso(from_date)
        if to_date is not None:
            request["to"] = iso(to_date)
        if offset is not None:
            request["offset"] = offset
        return [ObservationalMemoryRecord.from_row(row) for row in await self._om_call(request)]

    async def initialize_observational_memory(
        self,
        *,
        thread_id: str | None,
        resource_id: str,
        scope: Scope,
        config: Mapping[str, Any],
        observed_timezone: str | None = None,
    ) -> ObservationalMemoryRecord:
        """Create the first generation (a new id, empty observations) and return it."""
        _require_scope(scope)
        config_json = _json_of(config, "config")
        stamp = now()
        record = ObservationalMemoryRecord(
            id=str(uuid.uuid4()),
            scope=scope,
            thread_id=thread_id,
            resource_id=resource_id,
            created_at=stamp,
            updated_at=stamp,
            config=dict(config),
            observed_timezone=observed_timezone,
        )
        await self.db.insert(
            TABLE_OBSERVATIONAL_MEMORY,
            {
                "id": record.id,
                "lookupKey": om_lookup_key(thread_id, resource_id),
                "scope": scope,
                "resourceId": resource_id,
                "threadId": thread_id or None,
                "activeObservations": "",
                "activeObservationsPendingUpdate": None,
                "originType": "initial",
                "config": config_json,
                "generationCount": 0,
                "lastObservedAt": None,
                "lastReflectionAt": None,
                "pendingMessageTokens": 0,
                "totalTokensObserved": 0,
                "observationTokenCount": 0,
                "isObserving": False,
                "isReflecting": False,
                "isBufferingObservation": False,
                "isBufferingReflection": False,
                "lastBufferedAtTokens": 0,
                "lastBufferedAtTime": None,
                "observedTimezone": observed_timezone or None,
                "createdAt": iso(stamp),
                "updatedAt": iso(stamp),
            },
        )
        return record

    async def insert_observational_memory_record(self, record: ObservationalMemoryRecord) -> None:
        """Write a whole record as given (an upsert by id), e.g. one copied from another store."""
        chunks = record.buffered_observation_chunks or []
        await self.db.insert(
            TABLE_OBSERVATIONAL_MEMORY,
            {
                "id": record.id,
                "lookupKey": om_lookup_key(record.thread_id, record.resource_id),
                "scope": record.scope,
                "resourceId": record.resource_id,
                "threadId": record.thread_id or None,
                "activeObservations": record.active_observations or "",
                "activeObservationsPendingUpdate": None,
                "originType": record.origin_type or "initial",
                "config": _json_of(record.config, "config"),
                "generationCount": record.generation_count or 0,
                "lastObservedAt": iso_or_none(record.last_observed_at),
                "lastReflectionAt": None,
                "pendingMessageTokens": record.pending_message_tokens or 0,
                "totalTokensObserved": record.total_tokens_observed or 0,
                "observationTokenCount": record.observation_token_count or 0,
                "observedMessageIds": record.observed_message_ids,
                "bufferedObservationChunks": js_json([chunk.to_wire() for chunk in chunks]),
                "bufferedReflection": record.buffered_reflection or None,
                "bufferedReflectionTokens": record.buffered_reflection_tokens,
                "bufferedReflectionInputTokens": record.buffered_reflection_input_tokens,
                "reflectedObservationLineCount": record.reflected_observation_line_count,
                "isObserving": record.is_observing,
                "isReflecting": record.is_reflecting,
                "isBufferingObservation": record.is_buffering_observation,
                "isBufferingReflection": record.is_buffering_reflection,
                "lastBufferedAtTokens": record.last_buffered_at_tokens or 0,
                "lastBufferedAtTime": iso_or_none(record.last_buffered_at_time),
                "observedTimezone": record.observed_timezone or None,
                "metadata": _json_of(record.metadata, "metadata") if record.metadata is not None else None,
                "createdAt": iso(record.created_at),
                "updatedAt": iso(record.updated_at),
            },
        )

    async def update_active_observations(
        self,
        record_id: str,
        *,
        observations: str,
        token_count: float,
        last_observed_at: datetime,
        observed_message_ids: Sequence[str] | None = None,
    ) -> None:
        """Replace the active observations; pending tokens reset, `token_count` added to the total."""
        await self._om_call(
            {
                "op": "omUpdateActive",
                "id": record_id,
                "observations": observations,
                "tokenCount": token_count,
                "lastObservedAt": iso(last_observed_at),
                "observedMessageIds": list(observed_message_ids)
                if observed_message_ids is not None
                else None,
                "updatedAt": iso(now()),
            }
        )

    async def update_buffered_observations(
        self,
        record_id: str,
        chunk: BufferedObservationChunkInput,
        *,
        last_buffered_at_time: datetime | None = None,
    ) -> None:
        """Append a buffered chunk (given a new `ombuf-` id and createdAt now)."""
        given = {k: v for k, v in chunk.model_dump().items() if v is not None}
        stored = BufferedObservationChunk(id=f"ombuf-{uuid.uuid4()}", created_at=now(), **given).to_wire()
        check_value(stored, where=f"observational memory {record_id!r} buffered chunk")
        request: dict[str, Any] = {"op": "omAppendBufferedChunk", "id": record_id, "chunk": stored}
        if last_buffered_at_time is not None:
            request["lastBufferedAtTime"] = iso(last_buffered_at_time)
        request["updatedAt"] = iso(now())
        await self._om_call(request)

    async def swap_buffered_to_active(
        self,
        record_id: str,
        *,
        activation_ratio: float,
        message_tokens_threshold: float,
        current_pending_tokens: float,
        force_max_activation: bool | None = None,
        last_observed_at: datetime | None = None,
        buffered_chunks: Sequence[BufferedObservationChunk] | None = None,
    ) -> SwapBufferedToActiveResult:
        """Activate buffered chunks up to the boundary the handler picks (see `activation_ratio`).

        `buffered_chunks`, when given, replaces the persisted chunks for choosing the boundary.
        """
        request: dict[str, Any] = {
            "op": "omSwapBuffered",
            "id": record_id,
            "activationRatio": activation_ratio,
            "messageTokensThreshold": message_tokens_threshold,
            "currentPendingTokens": current_pending_tokens,
        }
        if force_max_activation is not None:
            request["forceMaxActivation"] = force_max_activation
        if last_observed_at is not None:
            request["lastObservedAt"] = iso(last_observed_at)
        if buffered_chunks is not None:
            request["bufferedChunks"] = [chunk.to_wire() for chunk in buffered_chunks]
            check_value(request["bufferedChunks"], where=f"observational memory {record_id!r} chunks")
        request["now"] = iso(now())
        return SwapBufferedToActiveResult.model_validate(await self._om_call(request))

    async def create_reflection_generation(
        self, current_record: ObservationalMemoryRecord, *, reflection: str, token_count: float
    ) -> ObservationalMemoryRecord:
        """Start a new generation whose active observations are `reflection`; return it."""
        stamp = now()
        record = ObservationalMemoryRecord(
            id=str(uuid.uuid4()),
            scope=current_record.scope,
            thread_id=current_record.thread_id,
            resource_id=current_record.resource_id,
            created_at=stamp,
            updated_at=stamp,
            last_observed_at=current_record.last_observed_at,
            origin_type="reflection",
            generation_count=current_record.generation_count + 1,
            active_observations=reflection,
            total_tokens_observed=current_record.total_tokens_observed,
            observation_token_count=token_count,
            config=current_record.config,
            metadata=current_record.metadata,
            observed_timezone=current_record.observed_timezone,
        )
        await self.db.insert(
            TABLE_OBSERVATIONAL_MEMORY,
            {
                "id": record.id,
                "lookupKey": om_lookup_key(record.thread_id, record.resource_id),
                "scope": record.scope,
                "resourceId": record.resource_id,
                "threadId": record.thread_id or None,
                "activeObservations": reflection,
                "activeObservationsPendingUpdate": None,
                "originType": "reflection",
                "config": _json_of(record.config, "config"),
                "generationCount": record.generation_count,
                "lastObservedAt": iso_or_none(record.last_observed_at),
                "lastReflectionAt": iso(stamp),
                "pendingMessageTokens": 0,
                "totalTokensObserved": record.total_tokens_observed,
                "observationTokenCount": record.observation_token_count,
                "isObserving": False,
                "isReflecting": False,
                "isBufferingObservation": False,
                "isBufferingReflection": False,
                "lastBufferedAtTokens": 0,
                "lastBufferedAtTime": None,
                "observedTimezone": record.observed_timezone or None,
                "metadata": _json_of(record.metadata, "metadata") if record.metadata is not None else None,
                "createdAt": iso(stamp),
                "updatedAt": iso(stamp),
            },
        )
        return record

    async def update_buffered_reflection(
        self,
        record_id: str,
        *,
        reflection: str,
        token_count: float,
        input_token_count: float,
        reflected_observation_line_count: int,
    ) -> None:
        """Append to the buffered reflection and add up its token counts."""
        await self._om_call(
            {
                "op": "omUpdateBufferedReflection",
                "id": record_id,
                "reflection": reflection,
                "tokenCount": token_count,
                "inputTokenCount": input_token_count,
                "reflectedObservationLineCount": reflected_observation_line_count,
                "updatedAt": iso(now()),
            }
        )

    async def swap_buffered_reflection_to_active(
        self, current_record: ObservationalMemoryRecord, *, token_count: float
    ) -> ObservationalMemoryRecord:
        """Make the buffered reflection (plus unreflected lines) a new generation; return it.

        `ConvexFunctionError` ("No buffered reflection to swap") when nothing is buffered.
        """
        current = current_record
        serialized = {
            "id": current.id,
            "lookupKey": om_lookup_key(current.thread_id, current.resource_id),
            "scope": current.scope,
            "threadId": current.thread_id or None,
            "resourceId": current.resource_id,
            "config": _json_of(current.config, "config"),
            "metadata": _json_of(current.metadata, "metadata") if current.metadata is not None else None,
            "observedTimezone": current.observed_timezone or None,
            "lastObservedAt": iso_or_none(current.last_observed_at),
            "totalTokensObserved": current.total_tokens_observed,
            "generationCount": current.generation_count,
        }
        row = await self._om_call(
            {
                "op": "omSwapBufferedReflection",
                "currentRecord": serialized,
                "newId": str(uuid.uuid4()),
                "tokenCount": token_count,
                "now": iso(now()),
            }
        )
        return ObservationalMemoryRecord.from_row(row)

    async def set_reflecting_flag(self, record_id: str, is_reflecting: bool) -> None:
        """Mark a reflection as running or done; NotFoundError if the record does not exist."""
        await self._om_patch(record_id, {"isReflecting": is_reflecting})

    async def set_observing_flag(self, record_id: str, is_observing: bool) -> None:
        """Mark an observation as running or done; NotFoundError if the record does not exist."""
        await self._om_patch(record_id, {"isObserving": is_observing})

    async def set_buffering_observation_flag(
        self, record_id: str, is_buffering: bool, last_buffered_at_tokens: float | None = None
    ) -> None:
        """Mark observation buffering as running or done, optionally recording its token mark."""
        fields: dict[str, Any] = {"isBufferingObservation": is_buffering}
        if last_buffered_at_tokens is not None:
            fields["lastBufferedAtTokens"] = last_buffered_at_tokens
        await self._om_patch(record_id, fields)

    async def set_buffering_reflection_flag(self, record_id: str, is_buffering: bool) -> None:
        """Mark reflection buffering as running or done; NotFoundError if the record does not exist."""
        await self._om_patch(record_id, {"isBufferingReflection": is_buffering})

    async def set_pending_message_tokens(self, record_id: str, token_count: float) -> None:
        """Set the pending (unobserved) message tokens: a finite number ≥ 0."""
        if not is_non_negative_number(token_count):
            raise InvalidInputError(
                f"Invalid tokenCount: must be a finite non-negative number, got {token_count!r}"
            )
        await self._om_patch(record_id, {"pendingMessageTokens": token_count})

    async def clear_observational_memory(self, thread_id: str | None, resource_id: str) -> None:
        """Delete every generation of a thread's (or resource's) observational memory."""
        rows = await self.db.query_table(
            TABLE_OBSERVATIONAL_MEMORY, [Filter("lookupKey", om_lookup_key(thread_id, resource_id))]
        )
        await self.db.delete_many(TABLE_OBSERVATIONAL_MEMORY, [row["id"] for row in rows])

    async def update_observational_memory_config(self, record_id: str, config: Mapping[str, Any]) -> None:
        """Deep-merge `config` into the record's config (on the server, in one transaction)."""
        await self._om_call(
            {
                "op": "omUpdateConfig",
                "id": record_id,
                "config": _json_of(config, "config"),
                "updatedAt": iso(now()),
            }
        )

    async def _om_patch(self, record_id: str, fields: dict[str, Any]) -> None:
        """Patch a record's fields and its updatedAt; NotFoundError when it does not exist."""
        if not await self.db.patch(
            TABLE_OBSERVATIONAL_MEMORY, record_id, {**fields, "updatedAt": iso(now())}
        ):
            raise NotFoundError(f"{_NOT_FOUND}: {record_id}")

    async def _om_call(self, request: dict[str, Any]) -> Any:
        """Send an `om*` operation; a missing record becomes NotFoundError (nothing was written)."""
        try:
            return await self.db.call(
                {"op": request["op"], "tableName": TABLE_OBSERVATIONAL_MEMORY, **request}
            )
        except ConvexFunctionError as error:
            if _NOT_FOUND in error.convex_message:
                record_id = request.get("id") or request.get("currentRecord", {}).get("id")
                raise NotFoundError(f"{_NOT_FOUND}: {record_id}") from error
            raise


def _require_scope(scope: str) -> None:
    if scope not in ("thread", "resource"):
        raise InvalidInputError(f"scope must be 'thread' or 'resource', got {scope!r}")


def _require_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")


def _json_of(value: Any, what: str) -> str:
    """A JSON string of `value` as the TS store writes it; InvalidInputError when it is not JSON."""
    try:
        return js_json(value if value is not None else {})
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"observational memory {what} is not JSON-serializable: {error}") from None
