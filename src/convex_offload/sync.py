"""Blocking twins of the async stores, as httpx has `Client` beside `AsyncClient`.

    from convex_offload.sync import SyncOffloadingStore

    with SyncOffloadingStore.connect(config) as store:       # a Flask view, a script, a notebook
        store.memory.save_messages([message])
        [back] = store.memory.list_messages_by_id([message.id])

There is one implementation of the logic: each sync object holds the async one and a `Portal`,
an event loop running on a thread of its own, and each method hands the async method's coroutine
to that loop and waits for its result. So the sync API is exactly the async one, method for
method (a test holds them to that), and it is safe to call from several threads at once: their
calls run concurrently on the portal's loop, as coroutines of one async store would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, overload

from pydantic import SecretStr

from convex_offload.config import OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import InvalidInputError
from convex_offload.offload.records import OffloadedRecords
from convex_offload.offload.restorer import RestoreMode
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.background_tasks import BackgroundTaskStore
from convex_offload.store.cache import ConvexServerCache
from convex_offload.store.channels import ChannelStore
from convex_offload.store.memory import MemoryStore
from convex_offload.store.native_vector import ConvexNativeVector
from convex_offload.store.schedules import ScheduleStore
from convex_offload.store.scores import ScoreStore
from convex_offload.store.store import DOMAIN_ATTRIBUTES, ConvexStore, DomainName
from convex_offload.store.vectors import ConvexVector
from convex_offload.store.workflows import WorkflowStore

P = ParamSpec("P")
R = TypeVar("R")


class Portal:
    """An event loop on a daemon thread of its own; blocking callers hand it coroutines."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="convex-offload-portal", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"Portal(running={self._thread.is_alive()})"

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def check_open(self) -> None:
        """`InvalidInputError` when the portal is closed, or when called from its own loop's thread."""
        if self._closed:
            raise InvalidInputError("this sync store is closed")
        if threading.get_ident() == self._thread.ident:
            raise InvalidInputError("a blocking call from the portal's own loop would wait forever")

    def run(self, awaitable: Awaitable[R]) -> R:
        """Run `awaitable` on the portal's loop and wait for its result (its exception is raised here)."""
        self.check_open()
        future: Future[R] = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self._loop)
        return future.result()

    def close(self) -> None:
        """Stop the loop and its thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _as_coroutine(awaitable: Awaitable[R]) -> R:
    return await awaitable


class Blocking:
    """A sync object: an async one and the portal that runs it."""

    def __init__(self, portal: Portal, inner: Any) -> None:
        self._portal = portal
        self._inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"


class blocking(Generic[P, R]):  # lower case, as `property` is: it reads as a decorator
    """A method of a `Blocking` object that runs its inner object's async method of the same name.

    `method` gives the name, the signature and the docstring; the call goes to the inner object's
    own method (an `OffloadingMemory`'s `save_messages` offloads, a `MemoryStore`'s does not).
    """

    def __init__(self, method: Callable[Concatenate[Any, P], Awaitable[R]]) -> None:
        self.method = method
        self.__doc__ = method.__doc__
        self.__name__ = getattr(method, "__name__", "method")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Blocking, owner: type[Any]) -> Callable[P, R]: ...
    def __get__(self, obj: Blocking | None, owner: type[Any]) -> Self | Callable[P, R]:
        if obj is None:
            return self
        portal, bound = obj._portal, getattr(obj._inner, self.__name__)

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            portal.check_open()
            result: Awaitable[R] = bound(*args, **kwargs)
            return portal.run(result)

        call.__doc__ = self.method.__doc__
        call.__name__ = self.__name__
        return call


# --- the domains ------------------------------------------------------------------------------


class SyncMemory(Blocking):
    """`MemoryStore` (or `OffloadingMemory`), blocking."""

    get_thread_by_id = blocking(MemoryStore.get_thread_by_id)
    save_thread = blocking(MemoryStore.save_thread)
    update_thread = blocking(MemoryStore.update_thread)
    delete_thread = blocking(MemoryStore.delete_thread)
    list_threads = blocking(MemoryStore.list_threads)
    list_messages = blocking(MemoryStore.list_messages)
    list_messages_by_resource_id = blocking(MemoryStore.list_messages_by_resource_id)
    list_messages_by_id = blocking(MemoryStore.list_messages_by_id)
    save_messages = blocking(MemoryStore.save_messages)
    update_messages = blocking(MemoryStore.update_messages)
    delete_messages = blocking(MemoryStore.delete_messages)
    save_resource = blocking(MemoryStore.save_resource)
    get_resource_by_id = blocking(MemoryStore.get_resource_by_id)
    update_resource = blocking(MemoryStore.update_resource)
    dangerously_clear_all = blocking(MemoryStore.dangerously_clear_all)
    get_observational_memory = blocking(MemoryStore.get_observational_memory)
    get_observational_memory_history = blocking(MemoryStore.get_observational_memory_history)
    initialize_observational_memory = blocking(MemoryStore.initialize_observational_memory)
    insert_observational_memory_record = blocking(MemoryStore.insert_observational_memory_record)
    update_active_observations = blocking(MemoryStore.update_active_observations)
    update_buffered_observations = blocking(MemoryStore.update_buffered_observations)
    swap_buffered_to_active = blocking(MemoryStore.swap_buffered_to_active)
    create_reflection_generation = blocking(MemoryStore.create_reflection_generation)
    update_buffered_reflection = blocking(MemoryStore.update_buffered_reflection)
    swap_buffered_reflection_to_active = blocking(MemoryStore.swap_buffered_reflection_to_active)
    set_reflecting_flag = blocking(MemoryStore.set_reflecting_flag)
    set_observing_flag = blocking(MemoryStore.set_observing_flag)
    set_buffering_observation_flag = blocking(MemoryStore.set_buffering_observation_flag)
    set_buffering_reflection_flag = blocking(MemoryStore.set_buffering_reflection_flag)
    set_pending_message_tokens = blocking(MemoryStore.set_pending_message_tokens)
    clear_observational_memory = blocking(MemoryStore.clear_observational_memory)
    update_observational_memory_config = blocking(MemoryStore.update_observational_memory_config)


class SyncWorkflows(Blocking):
    """`WorkflowStore` (or `OffloadingWorkflows`), blocking."""

    persist_workflow_snapshot = blocking(WorkflowStore.persist_workflow_snapshot)
    load_workflow_snapshot = blocking(WorkflowStore.load_workflow_snapshot)
    list_workflow_runs = blocking(WorkflowStore.list_workflow_runs)
    get_workflow_run_by_id = blocking(WorkflowStore.get_workflow_run_by_id)
    delete_workflow_run_by_id = blocking(WorkflowStore.delete_workflow_run_by_id)
    update_workflow_results = blocking(WorkflowStore.update_workflow_results)
    update_workflow_state = blocking(WorkflowStore.update_workflow_state)
    dangerously_clear_all = blocking(WorkflowStore.dangerously_clear_all)


class SyncScores(Blocking):
    """`ScoreStore`, blocking."""

    save_score = blocking(ScoreStore.save_score)
    get_score_by_id = blocking(ScoreStore.get_score_by_id)
    list_scores = blocking(ScoreStore.list_scores)
    list_scores_by_scorer_id = blocking(ScoreStore.list_scores_by_scorer_id)
    list_scores_by_run_id = blocking(ScoreStore.list_scores_by_run_id)
    list_scores_by_entity_id = blocking(ScoreStore.list_scores_by_entity_id)
    dangerously_clear_all = blocking(ScoreStore.dangerously_clear_all)


class SyncBackgroundTasks(Blocking):
    """`BackgroundTaskStore` (or `OffloadingBackgroundTasks`), blocking."""

    create_task = blocking(BackgroundTaskStore.create_task)
    update_task = blocking(BackgroundTaskStore.update_task)
    get_task = blocking(BackgroundTaskStore.get_task)
    list_tasks = blocking(BackgroundTaskStore.list_tasks)
    delete_task = blocking(BackgroundTaskStore.delete_task)
    delete_tasks = blocking(BackgroundTaskStore.delete_tasks)
    get_running_count = blocking(BackgroundTaskStore.get_running_count)
    get_running_count_by_agent = blocking(BackgroundTaskStore.get_running_count_by_agent)
    dangerously_clear_all = blocking(BackgroundTaskStore.dangerously_clear_all)


class SyncSchedules(Blocking):
    """`ScheduleStore`, blocking."""

    create_schedule = blocking(ScheduleStore.create_schedule)
    get_schedule = blocking(ScheduleStore.get_schedule)
    list_schedules = blocking(ScheduleStore.list_schedules)
    list_due_schedules = blocking(ScheduleStore.list_due_schedules)
    update_schedule = blocking(ScheduleStore.update_schedule)
    update_schedule_next_fire = blocking(ScheduleStore.update_schedule_next_fire)
    delete_schedule = blocking(ScheduleStore.delete_schedule)
    record_trigger = blocking(ScheduleStore.record_trigger)
    list_triggers = blocking(ScheduleStore.list_triggers)
    dangerously_clear_all = blocking(ScheduleStore.dangerously_clear_all)


class SyncChannels(Blocking):
    """`ChannelStore`, blocking."""

    save_installation = blocking(ChannelStore.save_installation)
    get_installation = blocking(ChannelStore.get_installation)
    get_installation_by_agent = blocking(ChannelStore.get_installation_by_agent)
    get_installation_by_webhook_id = blocking(ChannelStore.get_installation_by_webhook_id)
    list_installations = blocking(ChannelStore.list_installations)
    delete_installation = blocking(ChannelStore.delete_installation)
    save_config = blocking(ChannelStore.save_config)
    get_config = blocking(ChannelStore.get_config)
    delete_config = blocking(ChannelStore.delete_config)
    dangerously_clear_all = blocking(ChannelStore.dangerously_clear_all)


class SyncRecords(Blocking):
    """`OffloadedRecords` (the records of one kind), blocking."""

    save = blocking(OffloadedRecords.save)
    get = blocking(OffloadedRecords.get)
    delete = blocking(OffloadedRecords.delete)


SyncDomain = SyncMemory | SyncWorkflows | SyncScores | SyncBackgroundTasks | SyncSchedules | SyncChannels


class _SyncStoreBase:
    """What both sync stores share: the portal, the domains, closing."""

    def __init__(self, portal: Portal, inner: ConvexStore | OffloadingStore, *, owns: bool) -> None:
        self._portal = portal
        self._owns = owns
        self._store = inner
        self.memory = SyncMemory(portal, inner.memory)
        self.workflows = SyncWorkflows(portal, inner.workflows)
        self.scores = SyncScores(portal, inner.scores)
        self.background_tasks = SyncBackgroundTasks(portal, inner.background_tasks)
        self.schedules = SyncSchedules(portal, inner.schedules)
        self.channels = SyncChannels(portal, inner.channels)

    @overload
    def get_store(self, name: Literal["memory"]) -> SyncMemory: ...
    @overload
    def get_store(self, name: Literal["workflows"]) -> SyncWorkflows: ...
    @overload
    def get_store(self, name: Literal["scores"]) -> SyncScores: ...
    @overload
    def get_store(self, name: Literal["backgroundTasks"]) -> SyncBackgroundTasks: ...
    @overload
    def get_store(self, name: Literal["schedules"]) -> SyncSchedules: ...
    @overload
    def get_store(self, name: Literal["channels"]) -> SyncChannels: ...
    def get_store(self, name: DomainName) -> SyncDomain:
        """A domain by name, as TypeScript's `storage.getStore(name)`."""
        domain: SyncDomain = getattr(self, DOMAIN_ATTRIBUTES[name])
        return domain

    def close(self) -> None:
        """Close the store's connections (and buckets) and stop the portal's thread (not for views)."""
        if not self._owns:
            return
        _close_owner(self._portal, self._store)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SyncConvexStore(_SyncStoreBase):
    """`ConvexStore`, blocking: the same domains and methods (`with SyncConvexStore(url, key) as store:`)."""

    def __init__(
        self,
        url: str | None = None,
        admin_key: str | SecretStr | None = None,
        *,
        client: ConvexClient | None = None,
    ) -> None:
        portal, store = _on_new_portal(lambda: ConvexStore(url, admin_key, client=client))
        self.store: ConvexStore = store
        super().__init__(portal, store, owns=True)

    def __repr__(self) -> str:
        return f"SyncConvexStore({self.store!r})"


class SyncOffloadingStore(_SyncStoreBase):
    """`OffloadingStore`, blocking: the same domains and methods, attachments offloaded.

    Build it with `SyncOffloadingStore.connect(config)` (keyword arguments as `OffloadingStore`'s).
    """

    def __init__(self, store: OffloadingStore, portal: Portal, *, owns: bool = True) -> None:
        self.store = store
        super().__init__(portal, store, owns=owns)

    @classmethod
    def connect(cls, config: OffloadConfig, **kwargs: Any) -> SyncOffloadingStore:
        """Open the store for `config.convex_url` / `config.convex_admin_key`."""
        portal, store = _on_new_portal(lambda: OffloadingStore.connect(config, **kwargs))
        return cls(store, portal)

    def __repr__(self) -> str:
        return f"SyncOffloadingStore({self.store!r})"

    def with_restore_mode(self, mode: RestoreMode) -> SyncOffloadingStore:
        """A view restoring as `mode` (`"urls"`: fresh URLs for UIs); closing it closes nothing."""
        return SyncOffloadingStore(self.store.with_restore_mode(mode), self._portal, owns=False)

    def records(self, kind: str) -> SyncRecords:
        """The records of one kind (by name), blocking."""
        return SyncRecords(self._portal, self.store.records(kind))


class _SyncClient(Blocking):
    """A blocking twin of one of the client owners (`ConvexVector`, the caches): made with the async
    class's own arguments, closed with `close()` or `with`."""

    _builds: Callable[..., Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        build = type(self)._builds
        super().__init__(*_on_new_portal(lambda: build(*args, **kwargs)))

    def close(self) -> None:
        """Close the client and stop the portal's thread."""
        _close_owner(self._portal, self._inner)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncConvexVector(_SyncClient):
    """`ConvexVector`, blocking (`SyncConvexVector(url, admin_key)`; close it with `close()`)."""

    create_index = blocking(ConvexVector.create_index)
    delete_index = blocking(ConvexVector.delete_index)
    truncate_index = blocking(ConvexVector.truncate_index)
    list_indexes = blocking(ConvexVector.list_indexes)
    describe_index = blocking(ConvexVector.describe_index)
    upsert = blocking(ConvexVector.upsert)
    query = blocking(ConvexVector.query)
    update_vector = blocking(ConvexVector.update_vector)
    delete_vector = blocking(ConvexVector.delete_vector)
    delete_vectors = blocking(ConvexVector.delete_vectors)

    _builds = ConvexVector


class SyncConvexServerCache(_SyncClient):
    """`ConvexServerCache`, blocking (same arguments; close it with `close()`)."""

    get = blocking(ConvexServerCache.get)
    set = blocking(ConvexServerCache.set)
    delete = blocking(ConvexServerCache.delete)
    clear = blocking(ConvexServerCache.clear)
    increment = blocking(ConvexServerCache.increment)
    list_length = blocking(ConvexServerCache.list_length)
    list_push = blocking(ConvexServerCache.list_push)
    list_from_to = blocking(ConvexServerCache.list_from_to)

    _builds = ConvexServerCache


class SyncConvexNativeVector(_SyncClient):
    """`ConvexNativeVector`, blocking (same arguments; close it with `close()`)."""

    create_index = blocking(ConvexNativeVector.create_index)
    list_indexes = blocking(ConvexNativeVector.list_indexes)
    describe_index = blocking(ConvexNativeVector.describe_index)
    upsert = blocking(ConvexNativeVector.upsert)
    query = blocking(ConvexNativeVector.query)
    update_vector = blocking(ConvexNativeVector.update_vector)
    delete_vector = blocking(ConvexNativeVector.delete_vector)
    delete_vectors = blocking(ConvexNativeVector.delete_vectors)
    delete_index = blocking(ConvexNativeVector.delete_index)

    _builds = ConvexNativeVector


def _on_new_portal(build: Callable[[], R]) -> tuple[Portal, R]:
    """A new portal and an async object built on its loop (its locks and clients belong to that
    loop); the portal is closed again if building fails."""

    async def made() -> R:
        return build()

    portal = Portal()
    try:
        return portal, portal.run(made())
    except BaseException:
        portal.close()
        raise


def _close_owner(portal: Portal, inner: Any) -> None:
    if portal.closed:
        return
    try:
        closing: Coroutine[Any, Any, None] = inner.aclose()
        portal.run(closing)
    finally:
        portal.close()
