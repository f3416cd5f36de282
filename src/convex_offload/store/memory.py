"""The memory domain: threads, messages and resources, as @mastra/convex's `MemoryConvex`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from convex_offload.convex.values import check_value, dumps
from convex_offload.errors import InvalidInputError, NotFoundError
from convex_offload.store.db import (
    TABLE_MESSAGES,
    TABLE_RESOURCES,
    TABLE_THREADS,
    Filter,
    StorageDB,
    batch_insert_request,
    delete_many_request,
    patch_request,
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
    iso,
    now,
    parse_iso,
    safely_parse_json,
)
from convex_offload.store.observational_memory import ObservationalMemoryStore
from convex_offload.store.paging import (
    PerPage,
    check_thread_metadata_keys,
    in_date_range,
    message_field,
    message_list,
    message_metadata_filter,
    metadata_matches,
    normalize_per_page,
    order_of,
    pagination,
    row_field,
    row_matches_metadata,
    sort_rows,
    validate_pagination_input,
)

MESSAGES_PER_PAGE = 40
THREADS_PER_PAGE = 100


class MemoryStore(ObservationalMemoryStore):
    """Threads, messages, resources and observational memory in the @mastra/convex tables."""

    def __init__(
        self, db: StorageDB, *, message_of_row: Callable[[dict[str, Any]], Message] | None = None
    ) -> None:
        self.db = db
        self.message_of_row = message_of_row or Message.from_row
        """How a listed row becomes a `Message` (the offloading store restores there)."""

    def __repr__(self) -> str:
        return f"MemoryStore({self.db!r})"

    # --- threads ------------------------------------------------------------------------------

    async def get_thread_by_id(self, thread_id: str, resource_id: str | None = None) -> Thread | None:
        """The thread, or None (also when it belongs to another `resource_id`)."""
        row = await self.db.load(TABLE_THREADS, {"id": thread_id})
        if row is None or (resource_id is not None and row.get("resourceId") != resource_id):
            return None
        return Thread.from_row(row)

    async def save_thread(self, thread: Thread) -> Thread:
        """Create or replace a thread."""
        row = thread.to_row()
        check_value(row["metadata"], where=f"thread {thread.id!r} metadata")
        await self.db.insert(TABLE_THREADS, row)
        return thread

    async def update_thread(
        self, thread_id: str, title: str, metadata: Mapping[str, Any] | None = None
    ) -> Thread:
        """Set the title and shallow-merge `metadata` into the thread's; NotFoundError if absent."""
        return thread_updated(
            thread_id, await self.db.call(update_thread_request(thread_id, title, metadata))
        )

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and all its messages."""
        for request in delete_thread_requests(thread_id, await self.thread_message_ids(thread_id)):
            await self.db.call(request)

    async def thread_message_ids(self, thread_id: str) -> list[str]:
        """Ids of every message of a thread."""
        return [
            row["id"] for row in await self.db.query_table(TABLE_MESSAGES, [Filter("thread_id", thread_id)])
        ]

    async def list_threads(
        self,
        *,
        page: int = 0,
        per_page: PerPage = None,
        order_by: OrderBy | None = None,
        resource_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ThreadsPage:
        """Threads, optionally of one resource and with metadata equal to `metadata`; newest first."""
        validate_pagination_input(page, per_page, THREADS_PER_PAGE)
        size = normalize_per_page(per_page, THREADS_PER_PAGE)
        check_thread_metadata_keys(metadata)
        field, descending = order_of(order_by, "DESC")
        offset, reported = pagination(page, per_page, size)
        filters = [Filter("resourceId", resource_id)] if resource_id else []
        threads = [Thread.from_row(row) for row in await self.db.query_table(TABLE_THREADS, filters)]
        if metadata:
            threads = [
                t for t in threads if t.metadata is not None and metadata_matches(t.metadata, metadata)
            ]
        threads = sort_rows(threads, field, descending, _thread_field)
        total = len(threads)
        return ThreadsPage(
            threads=threads if per_page is False else threads[offset : offset + size],
            total=total,
            page=page,
            per_page=reported,
            has_more=False if per_page is False else offset + size < total,
        )

    # --- messages -----------------------------------------------------------------------------

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
        """Messages of one or more threads, oldest first, with optional neighbours of `include`."""
        expected = message_metadata_filter(metadata)
        thread_ids = [thread_id] if isinstance(thread_id, str) else list(thread_id)
        if not thread_ids or any(not tid.strip() for tid in thread_ids):
            raise InvalidInputError("threadId must be a non-empty string or array of non-empty strings")
        size = normalize_per_page(per_page, MESSAGES_PER_PAGE)
        offset, reported = pagination(page, per_page, size)
        field, descending = order_of(order_by, "ASC")
        include = list(include or [])

        if size == 0:
            found = message_list(await self._included(include, {})) if include else []
            return MessagesPage(
                messages=sort_rows(found, field, descending, message_field),
                total=0,
                page=page,
                per_page=reported,
                has_more=False,
            )

        rows: list[dict[str, Any]] = []
        for tid in thread_ids:
            rows.extend(await self.db.query_table(TABLE_MESSAGES, [Filter("thread_id", tid)]))
        if resource_id:
            rows = [row for row in rows if row.get("resourceId") == resource_id]
        rows = filtered_rows(rows, date_range, expected, field, descending)
        total = len(rows)
        messages = [
            self.message_of_row(row) for row in (rows if per_page is False else rows[offset : offset + size])
        ]

        if include:
            seen = {message.id for message in messages}
            preloaded: dict[str, list[dict[str, Any]]] = {}
            if not resource_id and date_range is None and expected is None:
                preloaded = {tid: [row for row in rows if row["thread_id"] == tid] for tid in thread_ids}
            for message in await self._included(include, preloaded):
                if message.id not in seen:
                    messages.append(message)
                    seen.add(message.id)

        messages = sort_rows(messages, field, descending, message_field)
        if expected is not None:
            has_more = per_page is not False and offset + size < total
        elif include:
            # The TS store compares each message's threadId with the argument itself, so a list
            # of thread ids never matches; kept as is for identical answers.
            in_thread = {m.id for m in messages if isinstance(thread_id, str) and m.thread_id == thread_id}
            has_more = len(in_thread) < total
        else:
            has_more = per_page is not False and offset + size < total
        return MessagesPage(messages=messages, total=total, page=page, per_page=reported, has_more=has_more)

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
        """Messages of every thread of a resource."""
        expected = message_metadata_filter(metadata)
        field, descending = order_of(order_by, "ASC")
        size = normalize_per_page(per_page, MESSAGES_PER_PAGE)
        if page < 0:
            raise InvalidInputError("page must be >= 0")
        if page * size > (2**53 - 1) / 2:
            raise InvalidInputError("page value too large")
        offset, reported = pagination(page, per_page, size)
        rows = await self.db.query_table(TABLE_MESSAGES, [Filter("resourceId", resource_id)])
        rows = filtered_rows(rows, date_range, expected, field, descending)
        total = len(rows)
        chosen = rows[offset : offset + size]
        # The TS store passes the page through MessageList, which re-orders it by createdAt.
        return MessagesPage(
            messages=message_list(self.message_of_row(row) for row in chosen),
            total=total,
            page=page,
            per_page=reported,
            has_more=offset + len(chosen) < total,
        )

    async def list_messages_by_id(self, message_ids: Sequence[str]) -> list[Message]:
        """The messages with these ids that exist, oldest first."""
        if not message_ids:
            return []
        rows = await self.db.load_many(TABLE_MESSAGES, message_ids)
        return message_list(self.message_of_row(row) for row in rows)

    async def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Create or replace messages in one transaction, then touch their threads' updatedAt."""
        require_saveable(messages)
        if not messages:
            return []
        rows = [m.to_row() for m in messages]
        for request in save_requests(rows, [m.thread_id for m in messages if m.thread_id]):
            await self.db.call(request)
        return message_list(messages)

    async def update_messages(self, updates: Sequence[MessageUpdate]) -> list[Message]:
        """Apply partial updates; content and content.metadata are shallow-merged. Unknown ids are skipped."""
        if not updates:
            return []
        rows = await self.db.load_many(TABLE_MESSAGES, [u.id for u in updates])
        existing = {row["id"]: row for row in rows}
        updated: list[Message] = []
        touched: dict[str, None] = {}
        for update in updates:
            current = existing.get(update.id)
            if current is None:
                continue
            merged = merge_message_row(current, update)
            touched[current["thread_id"]] = None
            touched[merged["thread_id"]] = None
            await self.db.insert(TABLE_MESSAGES, merged)
            existing[update.id] = merged
            updated.append(Message.from_row(merged))
        for request in touch_requests(touched):
            await self.db.call(request)
        return updated

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        """Delete messages by id."""
        await self.db.delete_many(TABLE_MESSAGES, message_ids)

    # --- resources ----------------------------------------------------------------------------

    async def save_resource(self, resource: Resource) -> Resource:
        """Create or replace a resource."""
        row = resource.to_row()
        if resource.metadata is not None:
            check_value(resource.metadata, where=f"resource {resource.id!r} metadata")
        await self.db.insert(TABLE_RESOURCES, row)
        return resource

    async def get_resource_by_id(self, resource_id: str) -> Resource | None:
        """The resource, or None."""
        row = await self.db.load(TABLE_RESOURCES, {"id": resource_id})
        return Resource.from_row(row) if row is not None else None

    async def update_resource(
        self,
        resource_id: str,
        *,
        working_memory: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Resource:
        """Set working memory and shallow-merge metadata; creates the resource if absent."""
        request = update_resource_request(resource_id, working_memory=working_memory, metadata=metadata)
        return Resource.from_row(await self.db.call(request))

    async def dangerously_clear_all(self) -> None:
        """Delete every thread, message and resource (and observational memory) row."""
        for table in (TABLE_THREADS, TABLE_MESSAGES, TABLE_RESOURCES, "mastra_observational_memory"):
            await self.db.clear_table(table)

    # --- include context ----------------------------------------------------------------------

    async def _included(
        self, include: Sequence[MessageInclude], preloaded: dict[str, list[dict[str, Any]]]
    ) -> list[Message]:
        """Each included message and its neighbours in its own thread (`_getIncludedMessages`)."""
        threads: dict[str, list[dict[str, Any]]] = dict(preloaded)
        located: dict[str, tuple[str, dict[str, Any]]] = {
            row["id"]: (tid, row) for tid, rows in threads.items() for row in rows
        }
        found: list[Message] = []
        seen: set[str] = set()
        for item in include:
            hit = located.get(item.id)
            if hit is None:
                candidates = await self.db.query_table(TABLE_MESSAGES, [Filter("id", item.id)])
                if candidates:
                    target = candidates[0]
                    tid = target.get("thread_id")
                    if tid and tid not in threads:
                        threads[tid] = await self.db.query_table(TABLE_MESSAGES, [Filter("thread_id", tid)])
                        located.update({row["id"]: (tid, row) for row in threads[tid]})
                    hit = (tid, target) if tid else None
            if hit is None:
                continue
            tid, target = hit
            if target["id"] not in seen:
                found.append(self.message_of_row(target))
                seen.add(target["id"])
            ordered = sort_rows(
                [r for r in threads.get(tid, []) if r["thread_id"] == tid], "createdAt", False, row_field
            )
            index = next((i for i, row in enumerate(ordered) if row["id"] == item.id), -1)
            if index < 0:
                continue
            neighbours = (
                ordered[max(0, index - item.with_previous_messages) : index]
                if item.with_previous_messages
                else []
            )
            if item.with_next_messages:
                neighbours += ordered[index + 1 : index + 1 + item.with_next_messages]
            for row in neighbours:
                if row["id"] not in seen:
                    found.append(self.message_of_row(row))
                    seen.add(row["id"])
        return found


def filtered_rows(
    rows: list[dict[str, Any]],
    date_range: DateRange | None,
    metadata: dict[str, Any] | None,
    field: str,
    descending: bool,
) -> list[dict[str, Any]]:
    """Message rows inside `date_range`, whose content metadata matches, sorted as TS sorts them."""
    kept = [
        row
        for row in rows
        if in_date_range(parse_iso(row["createdAt"]), date_range)
        and row_matches_metadata(row.get("content"), metadata)
    ]
    return sort_rows(kept, field, descending, row_field)


def save_requests(rows: Sequence[dict[str, Any]], thread_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Requests that save message rows and touch their threads, as `saveMessages` sends them."""
    return [batch_insert_request(TABLE_MESSAGES, rows), *touch_requests(thread_ids)]


def touch_requests(thread_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Requests that set each thread's updatedAt to now."""
    stamp = iso(now())
    return [patch_request(TABLE_THREADS, tid, {"updatedAt": stamp}) for tid in dict.fromkeys(thread_ids)]


def delete_thread_requests(thread_id: str, message_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Requests that delete a thread's messages, then the thread."""
    requests = [delete_many_request(TABLE_MESSAGES, message_ids)] if message_ids else []
    return [*requests, delete_many_request(TABLE_THREADS, [thread_id])]


def update_thread_request(thread_id: str, title: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `updateThread` request (metadata is shallow-merged on the server)."""
    if metadata is not None:
        check_value(dict(metadata), where=f"thread {thread_id!r} metadata")
    request: dict[str, Any] = {
        "op": "updateThread",
        "tableName": TABLE_THREADS,
        "id": thread_id,
        "title": title,
        "updatedAt": iso(now()),
    }
    if metadata is not None:
        request["metadata"] = dict(metadata)
    return request


def thread_updated(thread_id: str, answer: Any) -> Thread:
    """The thread `updateThread` answered; NotFoundError when it answered nothing."""
    if not answer:
        raise NotFoundError(f"Thread {thread_id} not found")
    return Thread.from_row(answer)


def update_resource_request(
    resource_id: str, *, working_memory: str | None, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The `updateResource` request (an upsert; metadata shallow-merged on the server)."""
    if metadata is not None:
        check_value(dict(metadata), where=f"resource {resource_id!r} metadata")
    stamp = iso(now())
    request: dict[str, Any] = {
        "op": "updateResource",
        "tableName": TABLE_RESOURCES,
        "resourceId": resource_id,
    }
    if working_memory is not None:
        request["workingMemory"] = working_memory
    if metadata is not None:
        request["metadata"] = dict(metadata)
    request["createdAt"] = stamp
    request["updatedAt"] = stamp
    return request


def merge_message_row(
    current: dict[str, Any], update: MessageUpdate, *, content: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored row after `update`, merged as the TS `updateMessages` merges it.

    `content`, when given, is the merged content to store (the offloader merges it itself).
    """
    merged = {k: v for k, v in current.items() if not k.startswith("_")}
    if update.thread_id:
        merged["thread_id"] = update.thread_id
    if update.resource_id is not None:
        merged["resourceId"] = update.resource_id
    if update.role:
        merged["role"] = update.role
    if update.type:
        merged["type"] = update.type
    if content is not None:
        merged["content"] = dumps(content)
    elif update.content:
        merged["content"] = dumps(merge_content(safely_parse_json(merged.get("content")), update.content))
    return merged


def merge_content(existing: Any, update: dict[str, Any]) -> dict[str, Any]:
    """`{...existing, ...update}` with `metadata` merged one level deeper when both have it."""
    base = existing if isinstance(existing, dict) else {}
    content = {**base, **update}
    if isinstance(base.get("metadata"), dict) and isinstance(update.get("metadata"), dict):
        content["metadata"] = {**base["metadata"], **update["metadata"]}
    return content


def require_saveable(messages: Sequence[Message]) -> None:
    """Refuse messages without a thread or resource id (`InvalidInputError`), as TS does."""
    for message in messages:
        if not message.thread_id:
            raise InvalidInputError(f"message {message.id!r}: Thread ID is required")
        if not message.resource_id:
            raise InvalidInputError(f"message {message.id!r}: Resource ID is required")


def _thread_field(thread: Thread, field: str) -> Any:
    return thread.created_at if field == "createdAt" else thread.updated_at
