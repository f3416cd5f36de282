"""`OffloadingMemory`: the memory domain with payloads offloaded (messages, threads, resources).

Each write describes what it stores (`Change`s of the message, thread and resource kinds, and
the storage requests of @mastra/convex's `MemoryConvex`) and hands it to the one write
transaction; each read restores what it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from convex_offload.convex.values import check_value, dumps
from convex_offload.offload.merge import Outcome
from convex_offload.offload.road import Road, has_manifest
from convex_offload.offload.transaction import Change, Write
from convex_offload.store.db import (
    TABLE_MESSAGES,
    TABLE_RESOURCES,
    TABLE_THREADS,
    insert_request,
)
from convex_offload.store.memory import (
    MemoryStore,
    delete_thread_requests,
    merge_message_row,
    require_saveable,
    save_requests,
    thread_updated,
    touch_requests,
    update_resource_request,
    update_thread_request,
)
from convex_offload.store.models import (
    DateRange,
    Message,
    MessageInclude,
    MessagesPage,
    MessageUpdate,
    OrderBy,
    Resource,
    Thread,
    ThreadsPage,
)
from convex_offload.store.observational_memory import ObservationalMemoryStore
from convex_offload.store.paging import PerPage, message_list


class OffloadingMemory(ObservationalMemoryStore):
    """`MemoryStore` with message content, thread metadata and resource working memory offloaded.

    The observational-memory methods are `MemoryStore`'s own: observations are text the model
    writes about messages (never the messages' parts), so there is nothing there to offload.
    """

    def __init__(self, inner: MemoryStore, road: Road) -> None:
        self.inner = inner
        self.db = inner.db
        self._road = road
        self._messages = road.kind("message")
        self._threads = road.kind("thread")
        self._resources = road.kind("resource")
        # Listings read their rows through the restorer's caches: a message read before comes back
        # restored, with neither its JSON parsed nor its manifest walked.
        self._reader = MemoryStore(inner.db, message_of_row=self._message_of_row)

    def __repr__(self) -> str:
        return f"OffloadingMemory({self.inner!r})"

    # --- threads ------------------------------------------------------------------------------

    async def get_thread_by_id(self, thread_id: str, resource_id: str | None = None) -> Thread | None:
        """The thread with its metadata restored, or None."""
        thread = await self.inner.get_thread_by_id(thread_id, resource_id)
        return await self._restored_thread(thread) if thread is not None else None

    async def save_thread(self, thread: Thread) -> Thread:
        """Create or replace a thread, offloading payloads in its metadata."""
        kind, row = self._threads, thread.to_row()

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            stored = kind.with_tree(row, outcomes[0].tree)
            check_value(stored["metadata"], where=f"thread {thread.id!r} metadata")
            return [insert_request(TABLE_THREADS, stored)]

        change = Change(kind, thread.id, kind.tree_of(row), thread.resource_id)
        await self._road.write(Write([change], requests))
        return thread

    async def update_thread(
        self, thread_id: str, title: str, metadata: Mapping[str, Any] | None = None
    ) -> Thread:
        """Set the title and merge metadata; the manifest is merged with the stored one."""
        kind = self._threads
        row = await self.inner.db.load(TABLE_THREADS, {"id": thread_id})
        stored = kind.tree_of(row) if row else None
        change = Change(
            kind,
            thread_id,
            dict(metadata) if metadata is not None else None,
            kind.tenant_of(row) if row else None,
            update=True,
            stored=stored if isinstance(stored, dict) else {},
            owns=row is not None,
        )

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            return [update_thread_request(thread_id, title, outcomes[0].update)]

        result = await self._road.write(Write([change], requests))
        return await self._restored_thread(thread_updated(thread_id, result.results[0]))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and its messages, and every attachment no other record references."""
        message_ids = await self.inner.thread_message_ids(thread_id)
        release = [*(self._messages.owner(mid) for mid in message_ids), self._threads.owner(thread_id)]
        requests = delete_thread_requests(thread_id, message_ids)
        await self._road.write(Write(requests=lambda _: requests, release=release))

    async def list_threads(
        self,
        *,
        page: int = 0,
        per_page: PerPage = None,
        order_by: OrderBy | None = None,
        resource_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ThreadsPage:
        """`MemoryStore.list_threads`, with metadata restored."""
        result = await self.inner.list_threads(
            page=page, per_page=per_page, order_by=order_by, resource_id=resource_id, metadata=metadata
        )
        threads = await asyncio.gather(*(self._restored_thread(t) for t in result.threads))
        return result.model_copy(update={"threads": list(threads)})

    async def _restored_thread(self, thread: Thread) -> Thread:
        if not has_manifest(thread.metadata, ()):
            return thread
        metadata = await self._road.restore(
            self._threads,
            dict(thread.metadata or {}),
            tenant=thread.resource_id,
            record=self._threads.label(thread.id),
        )
        return thread.model_copy(update={"metadata": metadata})

    # --- messages -----------------------------------------------------------------------------

    async def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Offload every message's payloads, then write all the messages in one transaction.

        Nothing is written unless every upload succeeded; the caller gets back its own messages.
        """
        require_saveable(messages)
        if not messages:
            return []
        kind = self._messages
        changes = [Change(kind, m.id, m.content, m.resource_id) for m in messages]

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            rows = [m.to_row_with_content(dumps(o.tree)) for m, o in zip(messages, outcomes, strict=True)]
            return save_requests(rows, [m.thread_id for m in messages if m.thread_id])

        await self._road.write(Write(changes, requests))
        return message_list(messages)

    async def update_messages(self, updates: Sequence[MessageUpdate]) -> list[Message]:
        """`MemoryStore.update_messages`, offloading new payloads and keeping the manifest right."""
        if not updates:
            return []
        kind = self._messages
        current = {
            row["id"]: row for row in await self.inner.db.load_many(TABLE_MESSAGES, [u.id for u in updates])
        }
        known = [update for update in updates if update.id in current]
        changes = [
            Change(
                kind,
                update.id,
                update.content or None,
                update.resource_id
                if update.resource_id is not None
                else current[update.id].get("resourceId"),
                update=True,
                stored=kind.tree_of(current[update.id]),
            )
            for update in known
        ]
        merged_rows: list[dict[str, Any]] = []

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            touched: dict[str, None] = {}
            out = []
            for update, outcome in zip(known, outcomes, strict=True):
                row = current[update.id]
                content = outcome.tree if update.content else None
                merged = merge_message_row(row, update, content=content)
                touched[row["thread_id"]] = None
                touched[merged["thread_id"]] = None
                current[update.id] = merged
                merged_rows.append(merged)
                out.append(insert_request(TABLE_MESSAGES, merged))
            return [*out, *touch_requests(touched)] if out else []

        if not known:
            return []
        await self._road.write(Write(changes, requests))
        return await self._restored_messages([Message.from_row(row) for row in merged_rows])

    async def list_messages(
        self,
        thread_id: str | Sequence[str],
        *,
        resource_id: str | None = None,
        include: Sequence[MessageInclude] | None = None,
        date_range: DateRange | None = None,
        metadata: Mapping[str, Any] | None = None,
        per_page: PerPage = None,
        page: int = 0,
        order_by: OrderBy | None = None,
    ) -> MessagesPage:
        """`MemoryStore.list_messages`, with every message restored."""
        result = await self._reader.list_messages(
            thread_id,
            resource_id=resource_id,
            include=include,
            date_range=date_range,
            metadata=metadata,
            per_page=per_page,
            page=page,
            order_by=order_by,
        )
        await self._restored_messages(result.messages)  # in place: the page holds the same messages
        return result

    async def list_messages_by_resource_id(
        self,
        resource_id: str,
        *,
        date_range: DateRange | None = None,
        metadata: Mapping[str, Any] | None = None,
        per_page: PerPage = None,
        page: int = 0,
        order_by: OrderBy | None = None,
    ) -> MessagesPage:
        """`MemoryStore.list_messages_by_resource_id`, with every message restored."""
        result = await self._reader.list_messages_by_resource_id(
            resource_id,
            date_range=date_range,
            metadata=metadata,
            per_page=per_page,
            page=page,
            order_by=order_by,
        )
        await self._restored_messages(result.messages)  # in place: the page holds the same messages
        return result

    async def list_messages_by_id(self, message_ids: Sequence[str]) -> list[Message]:
        """`MemoryStore.list_messages_by_id`, with every message restored."""
        return await self._restored_messages(await self._reader.list_messages_by_id(message_ids))

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        """Delete messages, and every attachment no other record references."""
        await self._road.delete(self._messages, message_ids)

    def _message_of_row(self, row: dict[str, Any]) -> Message:
        """A listed row as a `Message`, restored already where the caches allow."""
        text = row.get("content")
        if not isinstance(text, str):
            return Message.from_row(row)
        kind = self._messages
        content = self._road.offloader.restorer.restore_text(
            text,
            holder=kind.holder,
            tenant=kind.tenant_of(row),
            record=kind.label(str(row.get("id"))),
            mode=self._road.mode,
        )
        return Message.from_row_with_content(row, content)

    async def _restored_messages(self, messages: list[Message]) -> list[Message]:
        """Restore each message's content in place (the models keep their content objects)."""
        await self._road.restore_all(
            self._messages, [(m.content, m.resource_id, self._messages.label(m.id)) for m in messages]
        )
        return messages

    # --- resources ----------------------------------------------------------------------------

    async def save_resource(self, resource: Resource) -> Resource:
        """Create or replace a resource, offloading payloads in working memory and metadata."""
        kind, row = self._resources, resource.to_row()

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            stored = kind.with_tree(row, outcomes[0].tree)
            if resource.metadata is not None:
                check_value(stored.get("metadata"), where=f"resource {resource.id!r} metadata")
            return [insert_request(TABLE_RESOURCES, stored)]

        await self._road.write(Write([Change(kind, resource.id, kind.tree_of(row), resource.id)], requests))
        return resource

    async def get_resource_by_id(self, resource_id: str) -> Resource | None:
        """The resource with working memory and metadata restored, or None."""
        resource = await self.inner.get_resource_by_id(resource_id)
        return await self._restored_resource(resource) if resource is not None else None

    async def update_resource(
        self,
        resource_id: str,
        *,
        working_memory: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Resource:
        """Set working memory and merge metadata; the manifest is merged with the stored one."""
        kind = self._resources
        row = await self.inner.db.load(TABLE_RESOURCES, {"id": resource_id})
        update: dict[str, Any] = {}
        if working_memory is not None:
            update["workingMemory"] = working_memory
        if metadata is not None:
            update["metadata"] = dict(metadata)
        change = Change(
            kind, resource_id, update, resource_id, update=True, stored=kind.tree_of(row) if row else {}
        )

        def requests(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
            sent = outcomes[0].update or {}
            request = update_resource_request(
                resource_id,
                working_memory=sent.get("workingMemory") if working_memory is not None else None,
                metadata=sent.get("metadata"),
            )
            return [request]

        result = await self._road.write(Write([change], requests))
        return await self._restored_resource(Resource.from_row(result.results[0]))

    async def _restored_resource(self, resource: Resource) -> Resource:
        if not has_manifest(resource.metadata, ()):
            return resource
        kind = self._resources
        tree = kind.tree_of({**resource.to_row(), "metadata": dict(resource.metadata or {})})
        restored = await self._road.restore(kind, tree, tenant=resource.id, record=kind.label(resource.id))
        return resource.model_copy(
            update={"working_memory": restored.get("workingMemory"), "metadata": restored.get("metadata", {})}
        )

    async def dangerously_clear_all(self) -> None:
        """Delete every thread, message and resource row (their objects are left to `gc`)."""
        await self.inner.dangerously_clear_all()
