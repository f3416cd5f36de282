"""The scores domain: evaluation scores, as @mastra/convex's `ScoresConvex`."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import ValidationError

from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidInputError
from convex_offload.store.db import TABLE_SCORERS, StorageDB
from convex_offload.store.models import Score, ScorePayload, ScoresPage, ScoringSource, iso, now, parse_iso


class ScoreStore:
    """Scores in `mastra_scorers`."""

    def __init__(self, db: StorageDB) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"ScoreStore({self.db!r})"

    async def save_score(self, score: ScorePayload | dict[str, Any]) -> Score:
        """Store a score under a new UUID (as the TS store does, whatever id it came with)."""
        payload = _payload(score)
        stamp = iso(now())
        record = {**payload.to_fields(), "id": str(uuid.uuid4()), "createdAt": stamp, "updatedAt": stamp}
        check_value(record, where="score", top_level_record=True)
        await self.db.insert(TABLE_SCORERS, record)
        return Score.from_row(record)

    async def get_score_by_id(self, score_id: str) -> Score | None:
        """A score, or None."""
        row = await self.db.load(TABLE_SCORERS, {"id": score_id})
        return Score.from_row(row) if row is not None else None

    async def list_scores(
        self,
        *,
        page: int = 0,
        per_page: int | Literal[False] = 10,
        scorer_id: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        run_id: str | None = None,
        source: ScoringSource | None = None,
        organization_id: str | None = None,
        project_id: str | None = None,
    ) -> ScoresPage:
        """Scores matching every filter given, newest first."""
        if page < 0:
            raise InvalidInputError("page must be >= 0")
        wanted = {
            "scorerId": scorer_id,
            "entityId": entity_id,
            "entityType": entity_type,
            "runId": run_id,
            "source": source,
        }
        rows = [
            row
            for row in await self.db.query_table(TABLE_SCORERS)
            if all(not value or row.get(field) == value for field, value in wanted.items())
            and (organization_id is None or row.get("organizationId") == organization_id)
            and (project_id is None or row.get("projectId") == project_id)
        ]
        rows.sort(key=lambda row: parse_iso(row["createdAt"]), reverse=True)
        size = len(rows) if per_page is False else per_page
        start = 0 if per_page is False else page * size
        end = len(rows) if per_page is False else start + size
        return ScoresPage(
            scores=[Score.from_row(row) for row in rows[start:end]],
            total=len(rows),
            page=page,
            per_page=per_page,
            has_more=False if per_page is False else end < len(rows),
        )

    async def list_scores_by_scorer_id(
        self,
        scorer_id: str,
        *,
        page: int = 0,
        per_page: int | Literal[False] = 10,
        entity_id: str | None = None,
        entity_type: str | None = None,
        source: ScoringSource | None = None,
    ) -> ScoresPage:
        """Scores of one scorer."""
        return await self.list_scores(
            page=page,
            per_page=per_page,
            scorer_id=scorer_id,
            entity_id=entity_id,
            entity_type=entity_type,
            source=source,
        )

    async def list_scores_by_run_id(
        self, run_id: str, *, page: int = 0, per_page: int | Literal[False] = 10
    ) -> ScoresPage:
        """Scores of one run."""
        return await self.list_scores(page=page, per_page=per_page, run_id=run_id)

    async def list_scores_by_entity_id(
        self, entity_id: str, entity_type: str, *, page: int = 0, per_page: int | Literal[False] = 10
    ) -> ScoresPage:
        """Scores of one entity (an agent or a workflow)."""
        return await self.list_scores(
            page=page, per_page=per_page, entity_id=entity_id, entity_type=entity_type
        )

    async def dangerously_clear_all(self) -> None:
        """Delete every score."""
        await self.db.clear_table(TABLE_SCORERS)


def _payload(score: ScorePayload | dict[str, Any]) -> ScorePayload:
    if isinstance(score, ScorePayload):
        return ScorePayload.model_validate(score.model_dump(exclude={"id", "created_at", "updated_at"}))
    fields = {k: v for k, v in score.items() if k not in ("id", "createdAt", "updatedAt")}
    try:
        return ScorePayload.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInputError(f"score: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
