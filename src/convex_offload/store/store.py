"""`ConvexStore`: the memory, workflows, scores, backgroundTasks, schedules and channels domains on one
Convex deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, overload

from pydantic import SecretStr

from convex_offload.convex.client import ConvexClient
from convex_offload.convex.owner import ClientOwner
from convex_offload.store.background_tasks import BackgroundTaskStore
from convex_offload.store.channels import ChannelStore
from convex_offload.store.db import DEFAULT_STORAGE_FUNCTION, StorageDB
from convex_offload.store.memory import MemoryStore
from convex_offload.store.schedules import ScheduleStore
from convex_offload.store.scores import ScoreStore
from convex_offload.store.workflows import WorkflowStore

DomainName = Literal["memory", "workflows", "scores", "backgroundTasks", "schedules", "channels"]
Domain = MemoryStore | WorkflowStore | ScoreStore | BackgroundTaskStore | ScheduleStore | ChannelStore
DOMAIN_ATTRIBUTES: Final[Mapping[DomainName, str]] = {
    "memory": "memory",
    "workflows": "workflows",
    "scores": "scores",
    "backgroundTasks": "background_tasks",
    "schedules": "schedules",
    "channels": "channels",
}
"""Each domain's TypeScript name (`getStore(name)`) and the attribute that holds it, in every store."""


class ConvexStore(ClientOwner):
    """Python twin of @mastra/convex's `ConvexStore`, sharing its deployment and its records.

    Create it with a deployment URL and admin key (or an existing `ConvexClient`), then use its
    domains: `store.memory`, `store.workflows`, `store.scores`, `store.background_tasks`,
    `store.schedules`, `store.channels` (or `await store.get_store("backgroundTasks")`, by the
    names TypeScript gives them). Close it with `aclose()` or `async with`.
    """

    def __init__(
        self,
        url: str | None = None,
        admin_key: str | SecretStr | None = None,
        *,
        client: ConvexClient | None = None,
        storage_function: str = DEFAULT_STORAGE_FUNCTION,
        owns_client: bool = False,
    ) -> None:
        super().__init__(url, admin_key, client, owns_client=owns_client)
        self.db = StorageDB(self.client, storage_function)
        self.memory = MemoryStore(self.db)
        self.workflows = WorkflowStore(self.db)
        self.scores = ScoreStore(self.db)
        self.background_tasks = BackgroundTaskStore(self.db)
        self.schedules = ScheduleStore(self.db)
        self.channels = ChannelStore(self.db)

    @overload
    async def get_store(self, name: Literal["memory"]) -> MemoryStore: ...
    @overload
    async def get_store(self, name: Literal["workflows"]) -> WorkflowStore: ...
    @overload
    async def get_store(self, name: Literal["scores"]) -> ScoreStore: ...
    @overload
    async def get_store(self, name: Literal["backgroundTasks"]) -> BackgroundTaskStore: ...
    @overload
    async def get_store(self, name: Literal["schedules"]) -> ScheduleStore: ...
    @overload
    async def get_store(self, name: Literal["channels"]) -> ChannelStore: ...
    async def get_store(self, name: DomainName) -> Domain:
        """A domain by name, as TypeScript's `storage.getStore(name)`."""
        domain: Domain = getattr(self, DOMAIN_ATTRIBUTES[name])
        return domain
