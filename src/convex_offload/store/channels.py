"""The channels domain: platform installations and configs, as @mastra/convex's `ChannelsConvex`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidRecordError
from convex_offload.store.db import Filter, StorageDB
from convex_offload.store.models import iso, now
from convex_offload.store.models_channels import STATUS_PRIORITY, ChannelConfig, ChannelInstallation
from convex_offload.store.validation import first_error, validated

TABLE_CHANNEL_INSTALLATIONS: Final = "mastra_channel_installations"
TABLE_CHANNEL_CONFIG: Final = "mastra_channel_config"


class ChannelStore:
    """Installations in `mastra_channel_installations`, platform configs in `mastra_channel_config`."""

    def __init__(self, db: StorageDB) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"ChannelStore({self.db!r})"

    async def save_installation(self, installation: ChannelInstallation | Mapping[str, Any]) -> None:
        """Create or replace an installation; it keeps its first createdAt, updatedAt becomes now."""
        model = validated(ChannelInstallation, installation, "channel installation")
        existing = await self.db.load(TABLE_CHANNEL_INSTALLATIONS, {"id": model.id})
        saved_at = now()
        created_at = (existing or {}).get("createdAt") or iso(model.created_at)
        row = model.to_row(created_at=created_at, updated_at=saved_at)
        check_value(row, where="channel installation", top_level_record=True)
        await self.db.insert(TABLE_CHANNEL_INSTALLATIONS, row)

    async def get_installation(self, installation_id: str) -> ChannelInstallation | None:
        """An installation, or None."""
        row = await self.db.load(TABLE_CHANNEL_INSTALLATIONS, {"id": installation_id})
        return _installation(row) if row is not None else None

    async def get_installation_by_agent(self, platform: str, agent_id: str) -> ChannelInstallation | None:
        """An agent's installation on a platform: an active one first, then pending, then errored;
        the most recently updated among equals."""
        rows = await self.db.query_table(
            TABLE_CHANNEL_INSTALLATIONS, [Filter("platform", platform), Filter("agentId", agent_id)]
        )
        found = sorted(
            map(_installation, rows),
            key=lambda i: (STATUS_PRIORITY[i.status], -i.updated_at.timestamp()),
        )
        return found[0] if found else None

    async def get_installation_by_webhook_id(self, webhook_id: str) -> ChannelInstallation | None:
        """The most recently updated installation with this webhook id, or None."""
        rows = await self.db.query_table(TABLE_CHANNEL_INSTALLATIONS, [Filter("webhookId", webhook_id)])
        found = sorted(map(_installation, rows), key=lambda i: -i.updated_at.timestamp())
        return found[0] if found else None

    async def list_installations(self, platform: str) -> list[ChannelInstallation]:
        """A platform's installations, newest first."""
        rows = await self.db.query_table(TABLE_CHANNEL_INSTALLATIONS, [Filter("platform", platform)])
        return sorted(map(_installation, rows), key=lambda i: -i.created_at.timestamp())

    async def delete_installation(self, installation_id: str) -> None:
        """Delete an installation (nothing happens when it does not exist)."""
        await self.db.delete_many(TABLE_CHANNEL_INSTALLATIONS, [installation_id])

    async def save_config(self, config: ChannelConfig | Mapping[str, Any]) -> None:
        """Create or replace a platform's config."""
        row = validated(ChannelConfig, config, "channel config").to_row()
        check_value(row, where="channel config", top_level_record=True)
        await self.db.insert(TABLE_CHANNEL_CONFIG, row)

    async def get_config(self, platform: str) -> ChannelConfig | None:
        """A platform's config, or None."""
        row = await self.db.load(TABLE_CHANNEL_CONFIG, {"id": platform})
        return _config(row) if row is not None else None

    async def delete_config(self, platform: str) -> None:
        """Delete a platform's config (nothing happens when there is none)."""
        await self.db.delete_many(TABLE_CHANNEL_CONFIG, [platform])

    async def dangerously_clear_all(self) -> None:
        """Delete every installation and every config."""
        await self.db.clear_table(TABLE_CHANNEL_INSTALLATIONS)
        await self.db.clear_table(TABLE_CHANNEL_CONFIG)


def _installation(row: dict[str, Any]) -> ChannelInstallation:
    try:
        return ChannelInstallation.from_row(row)
    except ValidationError as exc:
        raise InvalidRecordError(f"channel installation {row.get('id')!r}: {first_error(exc)}") from None


def _config(row: dict[str, Any]) -> ChannelConfig:
    try:
        return ChannelConfig.from_row(row)
    except ValidationError as exc:
        raise InvalidRecordError(f"channel config {row.get('platform')!r}: {first_error(exc)}") from None
