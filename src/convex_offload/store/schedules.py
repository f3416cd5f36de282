"""The schedules domain: cron schedules and their trigger history, as @mastra/convex's `SchedulesConvex`."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from convex_offload.convex.values import check_value
from convex_offload.errors import AlreadyExistsError, ConvexFunctionError, InvalidRecordError, NotFoundError
from convex_offload.store.db import Filter, StorageDB
from convex_offload.store.models_schedules import (
    UNSET,
    Schedule,
    ScheduleStatus,
    ScheduleTrigger,
    ScheduleUpdate,
    Unset,
    now_ms,
)
from convex_offload.store.validation import first_error, validated

TABLE_SCHEDULES: Final = "mastra_schedules"
TABLE_SCHEDULE_TRIGGERS: Final = "mastra_schedule_triggers"
SCHEDULE_LIST_LIMIT: Final = 8000
"""The most schedules one listing reads (the TS store's limit; it warns when reached)."""

_log = logging.getLogger(__name__)
# The TS store's `isMissingSchedulesSchemaError`: a deployment without the schedule tables lists none.
_MISSING_TABLE = re.compile(
    r"(?:Table|table)\s+(?:[\"'`])?(?:mastra_schedules|mastra_schedule_triggers)(?:[\"'`])?\s+"
    r"(?:is\s+)?(?:not\s+in\s+the\s+schema|not\s+found\s+in\s+schema|not\s+found|does\s+not\s+exist)",
    re.IGNORECASE,
)
_EXISTS = re.compile(r"Schedule(?: trigger)? with id \"[^\n]*\" already exists")
_NOT_FOUND = re.compile(r"Schedule [^\n]* not found")


class ScheduleStore:
    """Schedules in `mastra_schedules`, trigger history in `mastra_schedule_triggers`."""

    def __init__(self, db: StorageDB) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"ScheduleStore({self.db!r})"

    async def create_schedule(self, schedule: Schedule | Mapping[str, Any]) -> Schedule:
        """Store a new schedule and return it; `AlreadyExistsError` if its id is taken."""
        model = validated(Schedule, schedule, "schedule")
        row = model.to_row()
        check_value(row, where="schedule", top_level_record=True)
        await self._call({"op": "createSchedule", "tableName": TABLE_SCHEDULES, "record": row})
        return model

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        """A schedule, or None."""
        row = await self.db.load(TABLE_SCHEDULES, {"id": schedule_id})
        return _schedule(row) if row is not None else None

    async def list_schedules(
        self,
        *,
        status: ScheduleStatus | None = None,
        workflow_id: str | None = None,
        owner_type: str | Unset | None = UNSET,
        owner_id: str | Unset | None = UNSET,
    ) -> list[Schedule]:
        """Schedules matching every filter given, oldest first (at most 8,000 are read).

        `owner_type=None` / `owner_id=None` ask for schedules without an owner; leave them out
        for any owner.
        """
        filters: list[Filter] = []
        if status:
            filters.append(Filter("status", status))
        if owner_type is not UNSET:
            filters.append(Filter("owner_type", owner_type))
        if owner_id is not UNSET:
            filters.append(Filter("owner_id", owner_id))
        if workflow_id:
            filters.append(Filter("workflow_id", workflow_id))
        try:
            rows = await self.db.query_table(TABLE_SCHEDULES, filters or None, limit=SCHEDULE_LIST_LIMIT)
        except ConvexFunctionError as exc:
            if not _MISSING_TABLE.search(exc.convex_message):
                raise
            _log.warning("Convex schedules schema is not available; returning no schedules")
            return []
        if len(rows) >= SCHEDULE_LIST_LIMIT:
            _log.warning(
                "Convex schedules list reached the adapter limit (%d); results may be truncated",
                SCHEDULE_LIST_LIMIT,
            )
        schedules = [_schedule(row) for row in rows]
        if workflow_id:
            schedules = [s for s in schedules if getattr(s.target, "workflow_id", None) == workflow_id]
        if owner_type is None:
            schedules = [s for s in schedules if s.owner_type is None]
        if owner_id is None:
            schedules = [s for s in schedules if s.owner_id is None]
        schedules.sort(key=lambda s: s.created_at)
        return schedules

    async def list_due_schedules(self, now: int, limit: int | None = None) -> list[Schedule]:
        """Active schedules whose `next_fire_at <= now` (epoch ms), soonest first; 100 unless `limit`."""
        request: dict[str, Any] = {"op": "listDueSchedules", "tableName": TABLE_SCHEDULES, "now": now}
        if limit is not None:
            request["limit"] = limit
        try:
            rows = await self._call(request)
        except ConvexFunctionError as exc:
            if not _MISSING_TABLE.search(exc.convex_message):
                raise
            _log.warning("Convex schedules schema is not available; returning no due schedules")
            return []
        return [_schedule(row) for row in rows]

    async def update_schedule(self, schedule_id: str, patch: ScheduleUpdate | Mapping[str, Any]) -> Schedule:
        """Change the fields `patch` gives and return the schedule; `NotFoundError` if there is none."""
        updates = validated(ScheduleUpdate, patch, "schedule update").to_patch(schedule_id)
        if not updates:
            existing = await self.get_schedule(schedule_id)
            if existing is None:
                raise NotFoundError(f"Schedule {schedule_id} not found")
            return existing
        updates["updated_at"] = now_ms()
        row = await self._call(
            {"op": "updateSchedule", "tableName": TABLE_SCHEDULES, "id": schedule_id, "patch": updates}
        )
        return _schedule(row)

    async def update_schedule_next_fire(
        self,
        schedule_id: str,
        expected_next_fire_at: int,
        new_next_fire_at: int,
        last_fire_at: int,
        last_run_id: str,
    ) -> bool:
        """Claim a fire: advance `next_fire_at` only if it still is `expected_next_fire_at`.

        One Convex mutation compares and sets, so of several callers racing for the same fire
        exactly one gets True; a paused or missing schedule gives False.
        """
        result = await self._call(
            {
                "op": "updateScheduleNextFire",
                "tableName": TABLE_SCHEDULES,
                "id": schedule_id,
                "expectedNextFireAt": expected_next_fire_at,
                "newNextFireAt": new_next_fire_at,
                "lastFireAt": last_fire_at,
                "lastRunId": last_run_id,
            }
        )
        return result is True

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule and its trigger history (25 triggers per call, then the schedule)."""
        await self.db.call_until_done(
            {"op": "deleteScheduleTriggers", "tableName": TABLE_SCHEDULE_TRIGGERS, "scheduleId": schedule_id}
        )
        await self.db.delete_many(TABLE_SCHEDULES, [schedule_id])

    async def record_trigger(self, trigger: ScheduleTrigger | Mapping[str, Any]) -> None:
        """Append a fire to a schedule's history; `AlreadyExistsError` if its id is taken."""
        row = validated(ScheduleTrigger, trigger, "schedule trigger").to_row()
        check_value(row, where="schedule trigger", top_level_record=True)
        await self._call({"op": "recordScheduleTrigger", "tableName": TABLE_SCHEDULE_TRIGGERS, "record": row})

    async def list_triggers(
        self,
        schedule_id: str,
        *,
        from_actual_fire_at: int | None = None,
        to_actual_fire_at: int | None = None,
        limit: int | None = None,
    ) -> list[ScheduleTrigger]:
        """A schedule's history, newest first: `from_` inclusive, `to_` exclusive; 100 unless `limit`."""
        request: dict[str, Any] = {
            "op": "listScheduleTriggers",
            "tableName": TABLE_SCHEDULE_TRIGGERS,
            "scheduleId": schedule_id,
        }
        for key, value in (
            ("fromActualFireAt", from_actual_fire_at),
            ("toActualFireAt", to_actual_fire_at),
            ("limit", limit),
        ):
            if value is not None:
                request[key] = value
        return [_trigger(row) for row in await self._call(request)]

    async def dangerously_clear_all(self) -> None:
        """Delete every trigger, then every schedule."""
        await self.db.clear_table(TABLE_SCHEDULE_TRIGGERS)
        await self.db.clear_table(TABLE_SCHEDULES)

    async def _call(self, request: dict[str, Any]) -> Any:
        """One schedule operation; the handler's thrown errors become typed ones."""
        try:
            return await self.db.call(request)
        except ConvexFunctionError as exc:
            if type(exc) is not ConvexFunctionError:
                raise
            if _EXISTS.search(exc.convex_message):
                raise AlreadyExistsError(
                    str(exc), path=exc.path, convex_message=exc.convex_message, data=exc.data
                ) from None
            if request["op"] == "updateSchedule" and _NOT_FOUND.search(exc.convex_message):
                raise NotFoundError(f"Schedule {request['id']} not found") from None
            raise


def _schedule(row: dict[str, Any]) -> Schedule:
    try:
        return Schedule.from_row(row)
    except ValidationError as exc:
        raise InvalidRecordError(f"schedule {row.get('id')!r}: {first_error(exc)}") from None


def _trigger(row: dict[str, Any]) -> ScheduleTrigger:
    try:
        return ScheduleTrigger.from_row(row)
    except ValidationError as exc:
        raise InvalidRecordError(f"schedule trigger {row.get('id')!r}: {first_error(exc)}") from None
