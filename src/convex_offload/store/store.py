"""`ConvexStore`: the memory, workflows and scores domains on one Convex deployment."""

from __future__ import annotations

from typing import Literal, overload

from pydantic import SecretStr

from convex_offload.convex.client import ConvexClient
from convex_offload.convex.owner import ClientOwner
from convex_offload.store.db import DEFAULT_STORAGE_FUNCTION, StorageDB
from convex_offload.store.memory import MemoryStore
from convex_offload.store.scores import ScoreStore
from convex_offload.store.workflows import WorkflowStore

DomainName = Literal["memory", "workflows", "scores"]


class ConvexStore(ClientOwner):
    """Python twin of @mastra/convex's `ConvexStore`, sharing its deployment and its records.

    Create it with a deployment URL and admin key (or an existing `ConvexClient`), then use its
    domains: `store.memory`, `store.workflows`, `store.scores` (or `await store.get_store("memory")`,
    as in TypeScript). Close it with `aclose()` or `async with`.
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

    @overload
    async def get_store(self, name: Literal["memory"]) -> MemoryStore: ...
    @overload
    async def get_store(self, name: Literal["workflows"]) -> WorkflowStore: ...
    @overload
    async def get_store(self, name: Literal["scores"]) -> ScoreStore: ...
    async def get_store(self, name: DomainName) -> MemoryStore | WorkflowStore | ScoreStore:
        """A domain by name, as TypeScript's `storage.getStore(name)`."""
        domains: dict[str, MemoryStore | WorkflowStore | ScoreStore] = {
            "memory": self.memory,
            "workflows": self.workflows,
            "scores": self.scores,
        }
        return domains[name]
