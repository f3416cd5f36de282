"""Pydantic models of Mastra's channel installations and platform configs (`@mastra/core/storage`).

Rows (`mastra_channel_installations`, `mastra_channel_config`) keep `data` as a JSON string and
absent optional values as null; a config row's id is its platform, as @mastra/convex writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from convex_offload.errors import InvalidRecordError
from convex_offload.store.json_text import encode, parse_strict
from convex_offload.store.models import JsTime, MastraModel, iso, now, parse_iso

InstallationStatus = Literal["pending", "active", "error"]
STATUS_PRIORITY: dict[str, int] = {"active": 0, "pending": 1, "error": 2}
"""How `get_installation_by_agent` ranks an agent's installations on one platform."""


class ChannelInstallation(MastraModel):
    """An agent's app installation on a platform such as Slack (`ChannelInstallation`).

    `data` holds the platform's tokens and team info: encrypt secrets before storing them.
    """

    id: str = Field(min_length=1)
    platform: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    status: InstallationStatus
    webhook_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    config_hash: str | None = None
    error: str | None = None
    created_at: JsTime = Field(default_factory=now)
    updated_at: JsTime = Field(default_factory=now)

    def __repr__(self) -> str:
        # `data` carries platform credentials: never in reprs or logs.
        return (
            f"ChannelInstallation(id={self.id!r}, platform={self.platform!r}, agent_id={self.agent_id!r}, "
            f"status={self.status!r}, webhook_id={self.webhook_id!r}, data=<{len(self.data)} keys>)"
        )

    __str__ = __repr__

    def to_json(self) -> dict[str, Any]:
        """The installation as the TS store answers it (camelCase, ISO dates, absent fields omitted)."""
        answer: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return answer

    def to_row(self, *, created_at: str, updated_at: datetime) -> dict[str, Any]:
        """The row `installationToRecord` writes: the first createdAt kept, updatedAt the save time."""
        return {
            "id": self.id,
            "platform": self.platform,
            "agentId": self.agent_id,
            "status": self.status,
            "webhookId": self.webhook_id,
            "data": encode(self.data, where=f"installation {self.id!r} data"),
            "configHash": self.config_hash,
            "error": self.error,
            "createdAt": created_at,
            "updatedAt": iso(updated_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ChannelInstallation:
        """Build from a row; data that is not JSON raises `InvalidRecordError`, as in TS."""
        return cls(
            id=row["id"],
            platform=row["platform"],
            agent_id=row["agentId"],
            status=row["status"],
            webhook_id=row.get("webhookId"),
            data=_data(row, f"installation {row['id']}"),
            config_hash=row.get("configHash"),
            error=row.get("error"),
            created_at=parse_iso(row["createdAt"]),
            updated_at=parse_iso(row["updatedAt"]),
        )


class ChannelConfig(MastraModel):
    """A platform's admin configuration (`ChannelConfig`), one per platform.

    `data` holds admin credentials (app configuration tokens): encrypt them before storing.
    """

    platform: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    updated_at: JsTime = Field(default_factory=now)

    def __repr__(self) -> str:
        return f"ChannelConfig(platform={self.platform!r}, data=<{len(self.data)} keys>)"

    __str__ = __repr__

    def to_json(self) -> dict[str, Any]:
        """The config as the TS store answers it (camelCase, ISO date)."""
        answer: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return answer

    def to_row(self) -> dict[str, Any]:
        """The `mastra_channel_config` row, keyed by platform."""
        return {
            "id": self.platform,
            "platform": self.platform,
            "data": encode(self.data, where=f"config {self.platform!r} data"),
            "updatedAt": iso(self.updated_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ChannelConfig:
        """Build from a row; data that is not JSON raises `InvalidRecordError`, as in TS."""
        return cls(
            platform=row["platform"],
            data=_data(row, f"config {row['platform']}"),
            updated_at=parse_iso(row["updatedAt"]),
        )


def _data(row: dict[str, Any], context: str) -> Any:
    try:
        return parse_strict(str(row["data"]))
    except ValueError:
        raise InvalidRecordError(f"Invalid channel data JSON for {context}") from None
