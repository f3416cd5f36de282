"""`OffloadingStore`: a `ConvexStore` whose records never carry large base64 payloads.

Drop-in: it has the same domains and methods as `ConvexStore` (`memory`, `workflows`, `scores`),
takes and returns the same models, and callers see exactly what they saved. Writes offload first
and write the record only when every upload it references has succeeded; reads restore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, overload

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.factory import open_buckets
from convex_offload.config import OffloadConfig
from convex_offload.convex.values import document_size, dumps
from convex_offload.errors import InvalidInputError, RecordTooLargeError
from convex_offload.offload.engine import Offloader, RestoreMode, ref_holds
from convex_offload.offload.manifest import MANIFEST_KEY, Manifest, Ref, read_manifest
from convex_offload.offload.scan import Token
from convex_offload.store.db import TABLE_RESOURCES, TABLE_THREADS
from convex_offload.store.memory import MemoryStore, merge_content
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
    WorkflowRun,
    WorkflowRunsPage,
    safely_parse_json,
)
from convex_offload.store.paging import PerPage, message_list
from convex_offload.store.scores import ScoreStore
from convex_offload.store.store import ConvexStore, DomainName
from convex_offload.store.workflows import WorkflowStore

MESSAGE_HOLDER: tuple[Token, ...] = ("metadata",)
"""A message's manifest lives in `content.metadata`."""
RESOURCE_HOLDER: tuple[Token, ...] = ("metadata",)
"""A resource is offloaded as `{"workingMemory": ..., "metadata": ...}`; the manifest goes in its metadata."""
ROOT_HOLDER: tuple[Token, ...] = ()
"""Thread metadata and workflow snapshots hold their manifest at their own top level."""


class OffloadingStore:
    """Wraps a `ConvexStore`: same interface, attachments offloaded to the configured buckets.

    Build it with `OffloadingStore(store, config)` (buckets are opened from the config, Convex file
    buckets through the store's client) or `OffloadingStore.connect(config)`. Close it with
    `aclose()` or `async with`; it closes the buckets it opened and the store it was given.
    """

    def __init__(
        self,
        store: ConvexStore,
        config: OffloadConfig,
        *,
        buckets: dict[str, BlobStore] | None = None,
        offloader: Offloader | None = None,
        restore_mode: RestoreMode = "inline",
    ) -> None:
        self.store = store
        self.config = config
        self.buckets = buckets if buckets is not None else open_buckets(config, convex=store.client)
        self.offloader = offloader or Offloader(config, self.buckets)
        self.restore_mode: RestoreMode = restore_mode
        self.memory = OffloadingMemory(store.memory, self)
        self.workflows = OffloadingWorkflows(store.workflows, self)
        self.scores: ScoreStore = store.scores

    @classmethod
    def connect(cls, config: OffloadConfig, **kwargs: Any) -> OffloadingStore:
        """Open the store for `config.convex_url` / `config.convex_admin_key`."""
        if config.convex_url is None or config.convex_admin_key is None:
            raise InvalidInputError("convex_url and convex_admin_key are needed to connect")
        return cls(ConvexStore(config.convex_url, config.convex_admin_key), config, **kwargs)

    def __repr__(self) -> str:
        return f"OffloadingStore({self.store!r}, buckets={sorted(self.buckets)})"

    def with_restore_mode(self, mode: RestoreMode) -> OffloadingStore:
        """A view of this store that restores as `mode` (`"urls"`: fresh URLs for UIs)."""
        return OffloadingStore(
            self.store, self.config, buckets=self.buckets, offloader=self.offloader, restore_mode=mode
        )

    @overload
    async def get_store(self, name: Literal["memory"]) -> OffloadingMemory: ...
    @overload
    async def get_store(self, name: Literal["workflows"]) -> OffloadingWorkflows: ...
    @overload
    async def get_store(self, name: Literal["scores"]) -> ScoreStore: ...
    async def get_store(self, name: DomainName) -> OffloadingMemory | OffloadingWorkflows | ScoreStore:
        """A domain by name, as TypeScript's `storage.getStore(name)`."""
        domains: dict[str, OffloadingMemory | OffloadingWorkflows | ScoreStore] = {
            "memory": self.memory,
            "workflows": self.workflows,
            "scores": self.scores,
        }
        return domains[name]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the buckets and the wrapped store."""
        for bucket in self.buckets.values():
            await bucket.aclose()
        await self.store.aclose()

    # --- shared steps -------------------------------------------------------------------------

    def check_size(self, row: dict[str, Any], what: str) -> None:
        """Refuse a row whose Convex document would exceed `max_record_bytes`, before sending it."""
        size = document_size(row)
        if size > self.config.max_record_bytes:
            raise RecordTooLargeError(
                f"{what} would be a {size:,}-byte Convex document, over the "
                f"{self.config.max_record_bytes:,}-byte limit even after offloading (too much inline text?)",
                path="(not sent)",
                convex_message=f"Value is too large ({size / (1 << 20):.2f} MiB > maximum size 1 MiB)",
            )

    async def restore_tree(self, root: Any, holder: tuple[Token, ...], tenant: str | None) -> Any:
        """Restore `root` in place (see `Offloader.restore`) in this store's restore mode."""
        return await self.offloader.restore(root, holder=holder, tenant=tenant, mode=self.restore_mode)


class OffloadingMemory:
    """`MemoryStore` with message content, thread metadata and resource working memory offloaded."""

    def __init__(self, inner: MemoryStore, owner: OffloadingStore) -> None:
        self.inner = inner
        self.owner = owner
        self.offloader = owner.offloader

    def __repr__(self) -> str:
        return f"OffloadingMemory({self.inner!r})"

    # --- threads ------------------------------------------------------------------------------

    async def get_thread_by_id(self, thread_id: str, resource_id: str | None = None) -> Thread | None:
        """The thread with its metadata restored, or None."""
        thread = await self.inner.get_thread_by_id(thread_id, resource_id)
        return await self._restored_thread(thread) if thread is not None else None

    async def save_thread(self, thread: Thread) -> Thread:
        """Create or replace a thread, offloading payloads in its metadata."""
        if thread.metadata:
            rewritten = await self.offloader.offload(
                thread.metadata, holder=ROOT_HOLDER, tenant=thread.resource_id, where=f"thread {thread.id}"
            )
            if rewritten.root is not thread.metadata:
                stored = thread.model_copy(update={"metadata": rewritten.root})
                self.owner.check_size(stored.to_row(), f"thread {thread.id}")
                await self.inner.save_thread(stored)
                return thread
        await self.inner.save_thread(thread)
        return thread

    async def update_thread(
        self, thread_id: str, title: str, metadata: Mapping[str, Any] | None = None
    ) -> Thread:
        """Set the title and merge metadata; the manifest is merged with the stored one."""
        if metadata is None:
            return await self._restored_thread(await self.inner.update_thread(thread_id, title))
        row = await self.inner.db.load(TABLE_THREADS, {"id": thread_id})
        tenant = row.get("resourceId") if row else None
        stored = (_as_dict(row.get("metadata")) if row else None) or {}
        update = await _top_level_update(
            self.offloader, stored, dict(metadata), tenant=tenant, where=f"thread {thread_id}"
        )
        return await self._restored_thread(await self.inner.update_thread(thread_id, title, update))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and its messages."""
        await self.inner.delete_thread(thread_id)

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
        if not thread.metadata or MANIFEST_KEY not in thread.metadata:
            return thread
        metadata = await self.owner.restore_tree(dict(thread.metadata), ROOT_HOLDER, thread.resource_id)
        return thread.model_copy(update={"metadata": metadata})

    # --- messages -----------------------------------------------------------------------------

    async def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Offload every message's payloads, then write all the messages in one transaction.

        Nothing is written unless every upload succeeded; the caller gets back its own messages.
        """
        for message in messages:
            if not message.thread_id:
                raise InvalidInputError(f"message {message.id!r}: Thread ID is required")
            if not message.resource_id:
                raise InvalidInputError(f"message {message.id!r}: Resource ID is required")
        contents = await asyncio.gather(*(self._offload_content(m) for m in messages))
        rows = []
        for message, content in zip(messages, contents, strict=True):
            row = message.to_row_with_content(dumps(content))
            self.owner.check_size(row, f"message {message.id}")
            rows.append(row)
        await self.inner.save_message_rows(messages, rows)
        return message_list(messages)

    async def _offload_content(self, message: Message) -> Any:
        if not isinstance(message.content, dict | list):
            return message.content
        rewritten = await self.offloader.offload(
            message.content, holder=MESSAGE_HOLDER, tenant=message.resource_id, where=f"message {message.id}"
        )
        return rewritten.root

    async def update_messages(self, updates: Sequence[MessageUpdate]) -> list[Message]:
        """`MemoryStore.update_messages`, offloading new payloads and keeping the manifest right."""

        async def merge(current: dict[str, Any], update: MessageUpdate) -> dict[str, Any]:
            merged = {k: v for k, v in current.items() if not k.startswith("_")}
            if update.thread_id:
                merged["thread_id"] = update.thread_id
            if update.resource_id is not None:
                merged["resourceId"] = update.resource_id
            if update.role:
                merged["role"] = update.role
            if update.type:
                merged["type"] = update.type
            if update.content:
                existing = safely_parse_json(current.get("content"))
                content = await self._merged_content(
                    existing, update.content, merged.get("resourceId"), update.id
                )
                merged["content"] = dumps(content)
            self.owner.check_size(merged, f"message {update.id}")
            return merged

        updated = await self.inner.apply_message_updates(updates, merge)
        return await self._restored_messages(updated)

    async def _merged_content(
        self, existing: Any, update: dict[str, Any], tenant: str | None, message_id: str
    ) -> dict[str, Any]:
        """The stored content after merging `update` as TS does, with one manifest for old and new refs."""
        rewritten = await self.offloader.offload(
            update, holder=MESSAGE_HOLDER, tenant=tenant, where=f"message {message_id}"
        )
        old = _manifest_at(existing, MESSAGE_HOLDER)
        new = _manifest_at(rewritten.root, MESSAGE_HOLDER)
        update_stored = _drop_manifest(
            rewritten.root, MESSAGE_HOLDER, created=bool(new and new.created_metadata)
        )
        merged = merge_content(existing, update_stored)
        user_had_metadata = (
            isinstance(existing, dict) and "metadata" in existing and not (old and old.created_metadata)
        )
        created = not ("metadata" in update or user_had_metadata)
        refs = _surviving_refs(merged, old, self.offloader, tenant) + (new.refs if new else [])
        return _set_manifest(merged, MESSAGE_HOLDER, refs, created=created)

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
        result = await self.inner.list_messages(
            thread_id,
            resource_id=resource_id,
            include=include,
            date_range=date_range,
            metadata=metadata,
            per_page=per_page,
            page=page,
            order_by=order_by,
        )
        return result.model_copy(update={"messages": await self._restored_messages(result.messages)})

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
        result = await self.inner.list_messages_by_resource_id(
            resource_id,
            date_range=date_range,
            metadata=metadata,
            per_page=per_page,
            page=page,
            order_by=order_by,
        )
        return result.model_copy(update={"messages": await self._restored_messages(result.messages)})

    async def list_messages_by_id(self, message_ids: Sequence[str]) -> list[Message]:
        """`MemoryStore.list_messages_by_id`, with every message restored."""
        return await self._restored_messages(await self.inner.list_messages_by_id(message_ids))

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        """Delete messages by id."""
        await self.inner.delete_messages(message_ids)

    async def _restored_messages(self, messages: list[Message]) -> list[Message]:
        return list(await asyncio.gather(*(self._restored_message(m) for m in messages)))

    async def _restored_message(self, message: Message) -> Message:
        content = message.content
        if not isinstance(content, dict):
            return message
        holder = content.get("metadata")
        if not isinstance(holder, dict) or MANIFEST_KEY not in holder:
            return message
        restored = await self.owner.restore_tree(content, MESSAGE_HOLDER, message.resource_id)
        return message.model_copy(update={"content": restored})

    # --- resources ----------------------------------------------------------------------------

    async def save_resource(self, resource: Resource) -> Resource:
        """Create or replace a resource, offloading payloads in working memory and metadata."""
        root = _resource_root(resource.working_memory, resource.metadata)
        rewritten = await self.offloader.offload(
            root, holder=RESOURCE_HOLDER, tenant=resource.id, where=f"resource {resource.id}"
        )
        if rewritten.root is root:
            await self.inner.save_resource(resource)
            return resource
        stored = resource.model_copy(
            update={
                "working_memory": rewritten.root.get("workingMemory"),
                "metadata": rewritten.root.get("metadata"),
            }
        )
        self.owner.check_size(stored.to_row(), f"resource {resource.id}")
        await self.inner.save_resource(stored)
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
        row = await self.inner.db.load(TABLE_RESOURCES, {"id": resource_id})
        existing = _resource_root(
            row.get("workingMemory") if row else None, (_as_dict(row.get("metadata")) if row else None)
        )
        update = _resource_root(working_memory, dict(metadata) if metadata is not None else None)
        rewritten = await self.offloader.offload(
            update, holder=RESOURCE_HOLDER, tenant=resource_id, where=f"resource {resource_id}"
        )
        old = _manifest_at(existing, RESOURCE_HOLDER)
        if not rewritten.changed and old is None:
            return await self.inner.update_resource(
                resource_id, working_memory=working_memory, metadata=metadata
            )
        new = _manifest_at(rewritten.root, RESOURCE_HOLDER)
        new_metadata = _drop_manifest(rewritten.root.get("metadata") or {}, ROOT_HOLDER, created=False)
        merged: dict[str, Any] = {
            **existing,
            "metadata": {**(existing.get("metadata") or {}), **new_metadata},
        }
        if "workingMemory" in rewritten.root:
            merged["workingMemory"] = rewritten.root["workingMemory"]
        refs = _surviving_refs(merged, old, self.offloader, resource_id) + (new.refs if new else [])
        metadata_update = {**new_metadata, MANIFEST_KEY: Manifest(refs=refs).to_json()}
        stored = await self.inner.update_resource(
            resource_id,
            working_memory=merged.get("workingMemory") if working_memory is not None else None,
            metadata=metadata_update,
        )
        return await self._restored_resource(stored)

    async def _restored_resource(self, resource: Resource) -> Resource:
        if not resource.metadata or MANIFEST_KEY not in resource.metadata:
            return resource
        root = _resource_root(resource.working_memory, dict(resource.metadata))
        restored = await self.owner.restore_tree(root, RESOURCE_HOLDER, resource.id)
        return resource.model_copy(
            update={"working_memory": restored.get("workingMemory"), "metadata": restored.get("metadata", {})}
        )

    async def dangerously_clear_all(self) -> None:
        """Delete every thread, message and resource row."""
        await self.inner.dangerously_clear_all()


class OffloadingWorkflows:
    """`WorkflowStore` with snapshots offloaded."""

    def __init__(self, inner: WorkflowStore, owner: OffloadingStore) -> None:
        self.inner = inner
        self.owner = owner
        self.offloader = owner.offloader

    def __repr__(self) -> str:
        return f"OffloadingWorkflows({self.inner!r})"

    async def persist_workflow_snapshot(
        self,
        workflow_name: str,
        run_id: str,
        snapshot: Any,
        *,
        resource_id: str | None = None,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """Create or replace a run's snapshot, offloading its payloads."""
        root = snapshot
        if isinstance(snapshot, dict):
            rewritten = await self.offloader.offload(
                snapshot,
                holder=ROOT_HOLDER,
                tenant=resource_id,
                where=f"workflow run {workflow_name}/{run_id}",
            )
            root = rewritten.root
        await self.inner.persist_snapshot_json(
            workflow_name,
            run_id,
            dumps(root),
            resource_id=resource_id,
            created_at=created_at,
            updated_at=updated_at,
        )

    async def load_workflow_snapshot(self, workflow_name: str, run_id: str) -> Any | None:
        """The run's snapshot, restored, or None."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        if row is None:
            return None
        run = WorkflowRun.from_row(row)
        return (await self._restored_run(run)).snapshot

    async def list_workflow_runs(
        self,
        *,
        workflow_name: str | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        per_page: PerPage = None,
        page: int | None = None,
        resource_id: str | None = None,
        status: str | None = None,
    ) -> WorkflowRunsPage:
        """`WorkflowStore.list_workflow_runs`, with snapshots restored."""
        result = await self.inner.list_workflow_runs(
            workflow_name=workflow_name,
            from_date=from_date,
            to_date=to_date,
            per_page=per_page,
            page=page,
            resource_id=resource_id,
            status=status,
        )
        runs = await asyncio.gather(*(self._restored_run(run) for run in result.runs))
        return result.model_copy(update={"runs": list(runs)})

    async def get_workflow_run_by_id(
        self, run_id: str, workflow_name: str | None = None
    ) -> WorkflowRun | None:
        """A run with its snapshot restored, or None."""
        run = await self.inner.get_workflow_run_by_id(run_id, workflow_name)
        return await self._restored_run(run) if run is not None else None

    async def delete_workflow_run_by_id(self, run_id: str, workflow_name: str) -> None:
        """Delete a run."""
        await self.inner.delete_workflow_run_by_id(run_id, workflow_name)

    async def update_workflow_results(
        self, workflow_name: str, run_id: str, step_id: str, result: Any, request_context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge a step's result (its payloads offloaded into a manifest of its own); returns the context."""
        run = await self.inner.get_run_row(workflow_name, run_id)
        tenant = run.get("resourceId") if run else None
        stored = result
        if isinstance(result, dict):
            rewritten = await self.offloader.offload(
                result,
                holder=ROOT_HOLDER,
                tenant=tenant,
                where=f"workflow run {workflow_name}/{run_id} step {step_id}",
            )
            stored = rewritten.root
        context = await self.inner.update_workflow_results(
            workflow_name, run_id, step_id, stored, request_context
        )
        await self._restore_steps(context, tenant)
        return context

    async def update_workflow_state(self, workflow_name: str, run_id: str, opts: Mapping[str, Any]) -> Any:
        """Merge `opts` into the snapshot's top level; returns the restored snapshot."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        tenant = row.get("resourceId") if row else None
        existing = _as_dict(row.get("snapshot")) if row else None
        update = await _top_level_update(
            self.offloader,
            existing or {},
            dict(opts),
            tenant=tenant,
            where=f"workflow run {workflow_name}/{run_id}",
        )
        snapshot = await self.inner.update_workflow_state(workflow_name, run_id, update)
        if isinstance(snapshot, dict) and MANIFEST_KEY in snapshot:
            snapshot = await self.owner.restore_tree(snapshot, ROOT_HOLDER, tenant)
        await self._restore_steps(snapshot.get("context") if isinstance(snapshot, dict) else None, tenant)
        return snapshot

    async def _restored_run(self, run: WorkflowRun) -> WorkflowRun:
        snapshot = run.snapshot
        if not isinstance(snapshot, dict):
            return run
        await self._restore_steps(snapshot.get("context"), run.resource_id)
        if MANIFEST_KEY in snapshot:
            snapshot = await self.owner.restore_tree(snapshot, ROOT_HOLDER, run.resource_id)
        return run.model_copy(update={"snapshot": snapshot})

    async def _restore_steps(self, context: Any, tenant: str | None) -> None:
        """Step results offloaded by `update_workflow_results` carry their own manifests."""
        if not isinstance(context, dict):
            return
        steps = [step for step in context.values() if isinstance(step, dict) and MANIFEST_KEY in step]
        await asyncio.gather(*(self.owner.restore_tree(step, ROOT_HOLDER, tenant) for step in steps))

    async def dangerously_clear_all(self) -> None:
        """Delete every workflow run."""
        await self.inner.dangerously_clear_all()


def _resource_root(working_memory: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
    root: dict[str, Any] = {}
    if working_memory is not None:
        root["workingMemory"] = working_memory
    if metadata is not None:
        root["metadata"] = metadata
    return root


def _as_dict(value: Any) -> dict[str, Any] | None:
    parsed = safely_parse_json(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else None


def _manifest_at(tree: Any, holder: tuple[Token, ...]) -> Manifest | None:
    node = tree
    for token in holder:
        node = node.get(token) if isinstance(node, dict) else None
    return read_manifest(node)


def _drop_manifest(tree: Any, holder: tuple[Token, ...], *, created: bool) -> Any:
    """A copy of `tree` without its manifest; a holder the offloader created goes too."""
    if not isinstance(tree, dict):
        return tree
    if not holder:
        return {k: v for k, v in tree.items() if k != MANIFEST_KEY}
    result = dict(tree)
    inner = result.get(holder[0])
    rest = _drop_manifest(inner, holder[1:], created=created)
    if created and rest == {} and len(holder) == 1:
        del result[holder[0]]
    elif inner is not None:
        result[holder[0]] = rest
    return result


def _surviving_refs(merged: Any, old: Manifest | None, offloader: Offloader, tenant: str | None) -> list[Ref]:
    """The refs of `old` whose place in `merged` still holds their URL (checked for tenant/bucket)."""
    refs = [ref for ref in (old.refs if old else []) if ref_holds(merged, ref)]
    for ref in refs:
        offloader.check_ref(ref, tenant)
    return refs


def _set_manifest(
    tree: dict[str, Any], holder: tuple[Token, ...], refs: list[Ref], *, created: bool
) -> dict[str, Any]:
    """`tree` with a manifest of `refs` at `holder` (none at all when there are no refs)."""
    if not refs:
        return _drop_manifest(tree, holder, created=created)  # type: ignore[no-any-return]
    result = dict(tree)
    node: dict[Any, Any] = result
    for token in holder:
        child = node.get(token)
        child = dict(child) if isinstance(child, dict) else {}
        node[token] = child
        node = child
    node[MANIFEST_KEY] = Manifest(created_metadata=created, refs=refs).to_json()
    return result


async def _top_level_update(
    offloader: Offloader, stored: dict[str, Any], update: dict[str, Any], *, tenant: str | None, where: str
) -> dict[str, Any]:
    """What to send for a server-side shallow merge (`{...stored, ...update}`) of a tree whose
    manifest sits at its top level: the update offloaded, carrying the manifest of the result."""
    rewritten = await offloader.offload(update, holder=ROOT_HOLDER, tenant=tenant, where=where)
    old = read_manifest(stored)
    if not rewritten.changed and old is None:
        return update
    new = read_manifest(rewritten.root)
    update_stored = _drop_manifest(rewritten.root, ROOT_HOLDER, created=False)
    merged = {**stored, **update_stored}
    refs = _surviving_refs(merged, old, offloader, tenant) + (new.refs if new else [])
    return {**update_stored, MANIFEST_KEY: Manifest(refs=refs).to_json()}
