"""`OffloadingStore`: a `ConvexStore` whose records never carry large base64 payloads.

Drop-in: the same domains and methods as `ConvexStore` (`memory`, `workflows`, `scores`,
`background_tasks`, `schedules`, `channels`), the same
models in and out, and callers read exactly what they saved. Every write goes one road, the write
transaction (`offload/transaction.py`): plan → lease and upload → rewrite → size check → the
records and their references written in one Convex transaction (`offload/records:write`, which
runs the @mastra/convex handler itself, so rows are identical to the TypeScript store's). Objects
no record references after a write or a delete are deleted right away; `gc` catches whatever a
crash leaves behind.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.factory import open_buckets
from convex_offload.closing import AsyncClosing
from convex_offload.config import OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import InvalidInputError
from convex_offload.offload.background_tasks import OffloadingBackgroundTasks
from convex_offload.offload.kinds import RecordKinds
from convex_offload.offload.lifecycle import Checkpoint, Lifecycle
from convex_offload.offload.memory import OffloadingMemory
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.records import OffloadedRecords
from convex_offload.offload.registry import ConvexRefRegistry
from convex_offload.offload.restorer import RestoreMode
from convex_offload.offload.road import Road
from convex_offload.offload.transaction import WriteTransaction
from convex_offload.offload.workflows import OffloadingWorkflows
from convex_offload.store.channels import ChannelStore
from convex_offload.store.schedules import ScheduleStore
from convex_offload.store.scores import ScoreStore
from convex_offload.store.store import DOMAIN_ATTRIBUTES, ConvexStore, DomainName

OffloadingDomain = (
    OffloadingMemory
    | OffloadingWorkflows
    | ScoreStore
    | OffloadingBackgroundTasks
    | ScheduleStore
    | ChannelStore
)


class OffloadingStore(AsyncClosing):
    """Wraps a `ConvexStore`: same interface, attachments offloaded to the configured buckets.

    Build it with `OffloadingStore(store, config)` (buckets are opened from the config; Convex file
    buckets use the store's client) or `OffloadingStore.connect(config)`. Close it with `aclose()`
    or `async with`: it closes its buckets and the store. `kinds` adds record kinds beyond
    @mastra/convex's (see `RecordKinds`); `checkpoint` is awaited at each named step of every write.
    """

    def __init__(
        self,
        store: ConvexStore,
        config: OffloadConfig,
        *,
        buckets: dict[str, BlobStore] | None = None,
        offloader: Offloader | None = None,
        kinds: RecordKinds | None = None,
        restore_mode: RestoreMode = "inline",
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.buckets = buckets if buckets is not None else open_buckets(config, convex=store.client)
        self.offloader = offloader or Offloader(config, self.buckets)
        self.kinds = kinds or RecordKinds.default()
        self.registry = ConvexRefRegistry(store.client)
        self.lifecycle = Lifecycle(self.offloader, self.registry, self.kinds, checkpoint=checkpoint)
        self.transaction = WriteTransaction(self.offloader, self.registry, self.lifecycle, self.kinds, config)
        self._road = Road(self.transaction, restore_mode)
        self._domains(self._road)
        self.scores: ScoreStore = store.scores
        self.schedules: ScheduleStore = store.schedules
        """Schedules hold cron targets and small metadata, no attachments: not offloaded."""
        self.channels: ChannelStore = store.channels
        """Channel installations and config hold platform credentials: kept in Convex, not offloaded."""
        self._owns = True

    def _domains(self, road: Road) -> None:
        self.memory = OffloadingMemory(self.store.memory, road)
        self.workflows = OffloadingWorkflows(self.store.workflows, road)
        self.background_tasks = OffloadingBackgroundTasks(self.store.background_tasks, road)

    @classmethod
    def connect(cls, config: OffloadConfig, **kwargs: Any) -> OffloadingStore:
        """Open the store for `config.convex_url` / `config.convex_admin_key`."""
        if config.convex_url is None or config.convex_admin_key is None:
            raise InvalidInputError("convex_url and convex_admin_key are needed to connect")
        client = ConvexClient(
            config.convex_url, config.convex_admin_key, timeout=config.convex_timeout_seconds
        )
        return cls(ConvexStore(client=client, owns_client=True), config, **kwargs)

    def __repr__(self) -> str:
        return f"OffloadingStore({self.store!r}, buckets={sorted(self.buckets)})"

    @property
    def restore_mode(self) -> RestoreMode:
        """How reads put attachments back: `inline` (the bytes) or `urls` (fresh URLs)."""
        return self._road.mode

    def with_restore_mode(self, mode: RestoreMode) -> OffloadingStore:
        """A view of this store that restores as `mode` (`"urls"`: fresh URLs for UIs); closing it
        closes nothing."""
        view = object.__new__(OffloadingStore)
        view.__dict__.update(self.__dict__)
        view._road = self._road.with_mode(mode)
        view._domains(view._road)
        view._owns = False
        return view

    def records(self, kind: str) -> OffloadedRecords:
        """The records of one kind (by name), for kinds without a domain of their own."""
        return OffloadedRecords(self.store.db, self._road, self.kinds.named(kind))

    @overload
    async def get_store(self, name: Literal["memory"]) -> OffloadingMemory: ...
    @overload
    async def get_store(self, name: Literal["workflows"]) -> OffloadingWorkflows: ...
    @overload
    async def get_store(self, name: Literal["scores"]) -> ScoreStore: ...
    @overload
    async def get_store(self, name: Literal["backgroundTasks"]) -> OffloadingBackgroundTasks: ...
    @overload
    async def get_store(self, name: Literal["schedules"]) -> ScheduleStore: ...
    @overload
    async def get_store(self, name: Literal["channels"]) -> ChannelStore: ...
    async def get_store(self, name: DomainName) -> OffloadingDomain:
        """A domain by name, as TypeScript's `storage.getStore(name)`."""
        domain: OffloadingDomain = getattr(self, DOMAIN_ATTRIBUTES[name])
        return domain

    async def aclose(self) -> None:
        """Close the buckets and the wrapped store (not for views)."""
        if not self._owns:
            return
        for bucket in self.buckets.values():
            await bucket.aclose()
        await self.store.aclose()
