"""`OffloadingStore`: a `ConvexStore` whose records never carry large base64 payloads.

Drop-in: the same domains and methods as `ConvexStore` (`memory`, `workflows`, `scores`), the same
models in and out, and callers read exactly what they saved.

Every write follows one order: plan (find, decode, check, route the payloads) → lease the new
objects and upload them → rewrite the records → write records and their references in one
Convex transaction (`offload/records:write`, which runs the @mastra/convex handler itself, so
rows are identical to the TypeScript store's). If an upload fails, nothing is written. If the
transaction finds a referenced object gone (deleted meanwhile), it writes nothing, and the
object is uploaded again before a retry. Objects no record references after a write or a delete
are deleted right away (erasure); the garbage collector catches whatever a crash leaves behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, overload

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.factory import open_buckets
from convex_offload.closing import AsyncClosing
from convex_offload.config import OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.convex.values import check_value, document_size, dumps
from convex_offload.errors import (
    AttachmentMissingError,
    ConvexOffloadError,
    InvalidInputError,
    RecordTooLargeError,
    UploadError,
)
from convex_offload.offload.engine import (
    OffloadBatch,
    Offloader,
    PlannedTree,
    RestoreMode,
    Rewritten,
    ref_holds,
)
from convex_offload.offload.lifecycle import Lifecycle
from convex_offload.offload.manifest import MANIFEST_KEY, Manifest, Ref, read_manifest
from convex_offload.offload.registry import ConvexRefRegistry, ObjectKey, ObjectRef, owner_of
from convex_offload.offload.scan import Token
from convex_offload.store.db import (
    TABLE_MESSAGES,
    TABLE_RESOURCES,
    TABLE_THREADS,
    TABLE_WORKFLOW_SNAPSHOT,
    delete_many_request,
    insert_request,
)
from convex_offload.store.memory import (
    MemoryStore,
    delete_thread_requests,
    merge_content,
    merge_message_row,
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
    WorkflowRun,
    WorkflowRunsPage,
    iso,
    now,
    safely_parse_json,
)
from convex_offload.store.paging import PerPage, message_list
from convex_offload.store.scores import ScoreStore
from convex_offload.store.store import ConvexStore, DomainName
from convex_offload.store.workflows import WorkflowStore, workflow_run_id

logger = logging.getLogger(__name__)

MESSAGE_HOLDER: tuple[Token, ...] = ("metadata",)
"""A message's manifest lives in `content.metadata`."""
RESOURCE_HOLDER: tuple[Token, ...] = ("metadata",)
"""A resource is offloaded as `{"workingMemory": ..., "metadata": ...}`; the manifest goes in its metadata."""
ROOT_HOLDER: tuple[Token, ...] = ()
"""Thread metadata and workflow snapshots (and step results) hold their manifest at their top level."""
WRITE_ATTEMPTS = 3


class OffloadingStore(AsyncClosing):
    """Wraps a `ConvexStore`: same interface, attachments offloaded to the configured buckets.

    Build it with `OffloadingStore(store, config)` (buckets are opened from the config; Convex file
    buckets use the store's client) or `OffloadingStore.connect(config)`. Close it with `aclose()`
    or `async with`: it closes its buckets and the store.
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
        self.registry = ConvexRefRegistry(store.client)
        self.lifecycle = Lifecycle(self.offloader, self.registry)
        self.restore_mode: RestoreMode = restore_mode
        self.memory = OffloadingMemory(store.memory, self)
        self.workflows = OffloadingWorkflows(store.workflows, self)
        self.scores: ScoreStore = store.scores
        self._owns = True

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

    def with_restore_mode(self, mode: RestoreMode) -> OffloadingStore:
        """A view of this store that restores as `mode` (`"urls"`: fresh URLs for UIs); closing it
        closes nothing."""
        view = OffloadingStore(
            self.store, self.config, buckets=self.buckets, offloader=self.offloader, restore_mode=mode
        )
        view._owns = False
        return view

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

    async def aclose(self) -> None:
        """Close the buckets and the wrapped store (not for views)."""
        if not self._owns:
            return
        for bucket in self.buckets.values():
            await bucket.aclose()
        await self.store.aclose()

    # --- the write path -----------------------------------------------------------------------

    def batch(self) -> OffloadBatch:
        """A new batch whose leases go to this store's registry."""
        return self.offloader.batch(self.registry)

    async def upload(self, batch: OffloadBatch) -> None:
        """Lease and upload a batch; on failure, drop its leases (and any orphan they leave)."""
        try:
            await batch.upload()
        except BaseException:
            await self.abandon(batch)
            raise

    async def abandon(self, batch: OffloadBatch) -> None:
        """Best effort: release a failed batch's leases and delete objects nobody references."""
        if not batch.leased:
            return
        try:
            orphans = await self.registry.abandon(batch.token)
            await self.lifecycle.delete_unreferenced(orphans)
        except ConvexOffloadError as exc:
            logger.warning("could not release the leases of a failed write (gc will): %s", exc)

    async def commit(
        self,
        batch: OffloadBatch | None,
        requests: Sequence[dict[str, Any]],
        owners: Mapping[str, Sequence[ObjectRef]],
        *,
        release: Sequence[str] = (),
    ) -> list[Any]:
        """Write records and their references in one transaction; returns the requests' results.

        Objects the transaction finds gone are uploaded again (from the batch) and the write is
        retried; objects left unreferenced are deleted.
        """
        try:
            for _attempt in range(WRITE_ATTEMPTS):
                token = batch.token if batch is not None and batch.leased else None
                answer = await self.registry.write(requests, owners, release=release, token=token)
                if answer.ok:
                    for refs in owners.values():
                        for ref in refs:
                            self.offloader.remember(ref.ident)
                    await self.lifecycle.delete_unreferenced(answer.released)
                    return answer.results
                await self._repair(batch, answer.missing)
            raise UploadError("referenced objects kept disappearing", path="(write)", bucket="", key="")
        except BaseException:
            if batch is not None:
                await self.abandon(batch)
            raise

    async def _repair(self, batch: OffloadBatch | None, missing: list[ObjectKey]) -> None:
        for ident in missing:
            self.offloader.forget(*ident)
        available = set(batch.objects()) if batch is not None else set()
        lost = [ident for ident in missing if ident not in available]
        if lost:
            bucket, key = lost[0]
            raise AttachmentMissingError(bucket=bucket, key=key, path="a reference this write keeps")
        assert batch is not None
        await batch.upload(only=missing)

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

    def object_refs(self, refs: Sequence[Ref], tenant: str | None) -> list[ObjectRef]:
        """Manifest refs as the registry records them."""
        scope = self.offloader.tenant_scope(tenant)
        unique = {(r.bucket, r.key): ObjectRef(r.bucket, r.key, scope, r.size, r.sha256) for r in refs}
        return list(unique.values())

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
        batch = self.owner.batch()
        plan = batch.plan(
            thread.metadata or {}, holder=ROOT_HOLDER, tenant=thread.resource_id, where=f"thread {thread.id}"
        )
        await self.owner.upload(batch)
        rewritten = await self.offloader.rewrite(plan)
        stored = thread.model_copy(update={"metadata": rewritten.root}) if rewritten.changed else thread
        row = stored.to_row()
        self.owner.check_size(row, f"thread {thread.id}")
        check_value(row["metadata"], where=f"thread {thread.id!r} metadata")
        owners = {
            owner_of(TABLE_THREADS, thread.id): self.owner.object_refs(rewritten.refs, thread.resource_id)
        }
        await self.owner.commit(batch, [insert_request(TABLE_THREADS, row)], owners)
        return thread

    async def update_thread(
        self, thread_id: str, title: str, metadata: Mapping[str, Any] | None = None
    ) -> Thread:
        """Set the title and merge metadata; the manifest is merged with the stored one."""
        row = await self.inner.db.load(TABLE_THREADS, {"id": thread_id})
        tenant = row.get("resourceId") if row else None
        stored = (_as_dict(row.get("metadata")) if row else None) or {}
        batch = self.owner.batch()
        plan = batch.plan(
            dict(metadata or {}), holder=ROOT_HOLDER, tenant=tenant, where=f"thread {thread_id}"
        )
        await self.owner.upload(batch)
        update, refs = _top_level_update(
            self.owner,
            stored,
            dict(metadata) if metadata is not None else None,
            await self.offloader.rewrite(plan),
            tenant,
        )
        owners = {owner_of(TABLE_THREADS, thread_id): refs} if row else {}
        [answer] = await self.owner.commit(batch, [update_thread_request(thread_id, title, update)], owners)
        return await self._restored_thread(thread_updated(thread_id, answer))

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and its messages, and every attachment no other record references."""
        message_ids = await self.inner.thread_message_ids(thread_id)
        release = [owner_of(TABLE_MESSAGES, mid) for mid in message_ids] + [
            owner_of(TABLE_THREADS, thread_id)
        ]
        await self.owner.commit(None, delete_thread_requests(thread_id, message_ids), {}, release=release)

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
        if not messages:
            return []
        batch = self.owner.batch()
        plans = [self._plan_content(batch, m.content, m.resource_id, m.id) for m in messages]
        await self.owner.upload(batch)
        rows = []
        owners: dict[str, list[ObjectRef]] = {}
        for message, plan in zip(messages, plans, strict=True):
            rewritten = await self.offloader.rewrite(plan) if plan is not None else None
            content = rewritten.root if rewritten is not None else message.content
            row = message.to_row_with_content(dumps(content))
            self.owner.check_size(row, f"message {message.id}")
            rows.append(row)
            owners[owner_of(TABLE_MESSAGES, message.id)] = self.owner.object_refs(
                rewritten.refs if rewritten else [], message.resource_id
            )
        requests = save_requests(rows, [m.thread_id for m in messages if m.thread_id])
        await self.owner.commit(batch, requests, owners)
        return message_list(messages)

    def _plan_content(
        self, batch: OffloadBatch, content: Any, tenant: str | None, message_id: str
    ) -> PlannedTree | None:
        if not isinstance(content, dict):
            return None
        return batch.plan(content, holder=MESSAGE_HOLDER, tenant=tenant, where=f"message {message_id}")

    async def update_messages(self, updates: Sequence[MessageUpdate]) -> list[Message]:
        """`MemoryStore.update_messages`, offloading new payloads and keeping the manifest right."""
        if not updates:
            return []
        rows = await self.inner.db.load_many(TABLE_MESSAGES, [u.id for u in updates])
        current = {row["id"]: row for row in rows}
        batch = self.owner.batch()
        plans: dict[int, PlannedTree] = {}
        for index, update in enumerate(updates):
            row = current.get(update.id)
            if row is not None and update.content:
                tenant = update.resource_id if update.resource_id is not None else row.get("resourceId")
                plans[index] = batch.plan(
                    update.content, holder=MESSAGE_HOLDER, tenant=tenant, where=f"message {update.id}"
                )
        await self.owner.upload(batch)
        requests: list[dict[str, Any]] = []
        owners: dict[str, list[ObjectRef]] = {}
        touched: dict[str, None] = {}
        merged_rows: list[dict[str, Any]] = []
        for index, update in enumerate(updates):
            row = current.get(update.id)
            if row is None:
                continue
            tenant = update.resource_id if update.resource_id is not None else row.get("resourceId")
            existing = safely_parse_json(row.get("content"))
            content, refs = None, _refs_in(existing, MESSAGE_HOLDER)
            if index in plans:
                content, refs = _merged_content(
                    self.owner,
                    existing,
                    update.content or {},
                    await self.offloader.rewrite(plans[index]),
                    tenant,
                )
            merged = merge_message_row(row, update, content=content)
            self.owner.check_size(merged, f"message {update.id}")
            touched[row["thread_id"]] = None
            touched[merged["thread_id"]] = None
            requests.append(insert_request(TABLE_MESSAGES, merged))
            owners[owner_of(TABLE_MESSAGES, update.id)] = self.owner.object_refs(refs, tenant)
            current[update.id] = merged
            merged_rows.append(merged)
        if not requests:
            return []
        await self.owner.commit(batch, [*requests, *touch_requests(touched)], owners)
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
        result = await self.inner.list_messages_by_resource_id(
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
        return await self._restored_messages(await self.inner.list_messages_by_id(message_ids))

    async def delete_messages(self, message_ids: Sequence[str]) -> None:
        """Delete messages, and every attachment no other record references."""
        if not message_ids:
            return
        release = [owner_of(TABLE_MESSAGES, mid) for mid in message_ids]
        await self.owner.commit(None, [delete_many_request(TABLE_MESSAGES, message_ids)], {}, release=release)

    async def _restored_messages(self, messages: list[Message]) -> list[Message]:
        """Restore each message's content in place: from the cache without waiting where possible,
        the rest concurrently."""
        pending = []
        for message in messages:
            content = message.content
            holder = content.get("metadata") if isinstance(content, dict) else None
            if not isinstance(holder, dict) or MANIFEST_KEY not in holder:
                continue
            if self.owner.restore_mode == "inline" and self.offloader.restore_cached(
                content, holder=MESSAGE_HOLDER, tenant=message.resource_id
            ):
                continue
            pending.append(self.owner.restore_tree(content, MESSAGE_HOLDER, message.resource_id))
        await asyncio.gather(*pending)
        return messages

    # --- resources ----------------------------------------------------------------------------

    async def save_resource(self, resource: Resource) -> Resource:
        """Create or replace a resource, offloading payloads in working memory and metadata."""
        root = _resource_root(resource.working_memory, resource.metadata)
        batch = self.owner.batch()
        plan = batch.plan(root, holder=RESOURCE_HOLDER, tenant=resource.id, where=f"resource {resource.id}")
        await self.owner.upload(batch)
        rewritten = await self.offloader.rewrite(plan)
        stored = resource
        if rewritten.changed:
            stored = resource.model_copy(
                update={
                    "working_memory": rewritten.root.get("workingMemory"),
                    "metadata": rewritten.root.get("metadata"),
                }
            )
        row = stored.to_row()
        self.owner.check_size(row, f"resource {resource.id}")
        owners = {owner_of(TABLE_RESOURCES, resource.id): self.owner.object_refs(rewritten.refs, resource.id)}
        await self.owner.commit(batch, [insert_request(TABLE_RESOURCES, row)], owners)
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
            row.get("workingMemory") if row else None, _as_dict(row.get("metadata")) if row else None
        )
        update = _resource_root(working_memory, dict(metadata) if metadata is not None else None)
        batch = self.owner.batch()
        plan = batch.plan(update, holder=RESOURCE_HOLDER, tenant=resource_id, where=f"resource {resource_id}")
        await self.owner.upload(batch)
        rewritten = await self.offloader.rewrite(plan)
        old = _manifest_at(existing, RESOURCE_HOLDER)
        new_metadata = _without_key(rewritten.root.get("metadata") or {}, MANIFEST_KEY)
        merged: dict[str, Any] = {
            **existing,
            "metadata": {**(existing.get("metadata") or {}), **new_metadata},
        }
        if "workingMemory" in rewritten.root:
            merged["workingMemory"] = rewritten.root["workingMemory"]
        refs = _unique(_surviving_refs(self.owner, merged, old, resource_id) + _new_refs(rewritten))
        metadata_update: dict[str, Any] | None = dict(metadata) if metadata is not None else None
        if refs or old is not None:
            metadata_update = {**new_metadata, MANIFEST_KEY: Manifest(refs=refs).to_json()}
        request = update_resource_request(
            resource_id,
            working_memory=rewritten.root.get("workingMemory") if working_memory is not None else None,
            metadata=metadata_update,
        )
        owners = {owner_of(TABLE_RESOURCES, resource_id): self.owner.object_refs(refs, resource_id)}
        [answer] = await self.owner.commit(batch, [request], owners)
        return await self._restored_resource(Resource.from_row(answer))

    async def _restored_resource(self, resource: Resource) -> Resource:
        if not resource.metadata or MANIFEST_KEY not in resource.metadata:
            return resource
        root = _resource_root(resource.working_memory, dict(resource.metadata))
        restored = await self.owner.restore_tree(root, RESOURCE_HOLDER, resource.id)
        return resource.model_copy(
            update={"working_memory": restored.get("workingMemory"), "metadata": restored.get("metadata", {})}
        )

    async def dangerously_clear_all(self) -> None:
        """Delete every thread, message and resource row (their objects are left to `gc`)."""
        await self.inner.dangerously_clear_all()


class OffloadingWorkflows:
    """`WorkflowStore` with snapshots (and step results) offloaded."""

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
        where = f"workflow run {workflow_name}/{run_id}"
        batch = self.owner.batch()
        plan = (
            batch.plan(snapshot, holder=ROOT_HOLDER, tenant=resource_id, where=where)
            if isinstance(snapshot, dict)
            else None
        )
        await self.owner.upload(batch)
        rewritten = await self.offloader.rewrite(plan) if plan is not None else None
        existing = await self.inner.get_run_row(workflow_name, run_id)
        stamp = iso(now())
        record: dict[str, Any] = {"workflow_name": workflow_name, "run_id": run_id}
        if resource_id is not None:
            record["resourceId"] = resource_id
        record["snapshot"] = dumps(rewritten.root if rewritten is not None else snapshot)
        record["createdAt"] = (existing or {}).get("createdAt") or (iso(created_at) if created_at else stamp)
        record["updatedAt"] = iso(updated_at) if updated_at else stamp
        self.owner.check_size(record, where)
        run_owner = owner_of(TABLE_WORKFLOW_SNAPSHOT, workflow_run_id(workflow_name, run_id))
        refs = self.owner.object_refs(rewritten.refs if rewritten else [], resource_id)
        await self.owner.commit(
            batch, [insert_request(TABLE_WORKFLOW_SNAPSHOT, record)], {run_owner: refs}, release=[run_owner]
        )

    async def load_workflow_snapshot(self, workflow_name: str, run_id: str) -> Any | None:
        """The run's snapshot, restored, or None."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        if row is None:
            return None
        return (await self._restored_run(WorkflowRun.from_row(row))).snapshot

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
        """Delete a run, and every attachment no other record references."""
        record_id = workflow_run_id(workflow_name, run_id)
        await self.owner.commit(
            None,
            [delete_many_request(TABLE_WORKFLOW_SNAPSHOT, [record_id])],
            {},
            release=[owner_of(TABLE_WORKFLOW_SNAPSHOT, record_id)],
        )

    async def update_workflow_results(
        self, workflow_name: str, run_id: str, step_id: str, result: Any, request_context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge a step's result (its payloads offloaded under a manifest of its own); returns the context."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        tenant = row.get("resourceId") if row else None
        where = f"workflow run {workflow_name}/{run_id} step {step_id}"
        batch = self.owner.batch()
        plan = (
            batch.plan(result, holder=ROOT_HOLDER, tenant=tenant, where=where)
            if isinstance(result, dict)
            else None
        )
        await self.owner.upload(batch)
        rewritten = await self.offloader.rewrite(plan) if plan is not None else None
        request = {
            "op": "mergeWorkflowStepResult",
            "tableName": TABLE_WORKFLOW_SNAPSHOT,
            "workflowName": workflow_name,
            "runId": run_id,
            "stepId": step_id,
            "result": dumps(rewritten.root if rewritten is not None else result),
            "requestContext": dumps(dict(request_context)),
        }
        step_owner = (
            f"{owner_of(TABLE_WORKFLOW_SNAPSHOT, workflow_run_id(workflow_name, run_id))}/step/{step_id}"
        )
        refs = self.owner.object_refs(rewritten.refs if rewritten else [], tenant)
        [answer] = await self.owner.commit(batch, [request], {step_owner: refs})
        context: dict[str, Any] = safely_parse_json(answer)
        await self._restore_steps(context, tenant)
        # Results persisted with the whole snapshot are under the snapshot's own manifest.
        stored = _as_dict(row.get("snapshot")) if row else None
        manifest = read_manifest(stored)
        in_context = [r for r in manifest.refs if r.path.startswith("/context/")] if manifest else []
        if in_context:
            tree = {"context": context, MANIFEST_KEY: Manifest(refs=in_context).to_json()}
            context = (await self.owner.restore_tree(tree, ROOT_HOLDER, tenant))["context"]
        return context

    async def update_workflow_state(self, workflow_name: str, run_id: str, opts: Mapping[str, Any]) -> Any:
        """Merge `opts` into the snapshot's top level; returns the restored snapshot."""
        row = await self.inner.get_run_row(workflow_name, run_id)
        tenant = row.get("resourceId") if row else None
        existing = (_as_dict(row.get("snapshot")) if row else None) or {}
        batch = self.owner.batch()
        plan = batch.plan(
            dict(opts), holder=ROOT_HOLDER, tenant=tenant, where=f"workflow run {workflow_name}/{run_id}"
        )
        await self.owner.upload(batch)
        update, refs = _top_level_update(
            self.owner, existing, dict(opts), await self.offloader.rewrite(plan), tenant
        )
        request = {
            "op": "mergeWorkflowState",
            "tableName": TABLE_WORKFLOW_SNAPSHOT,
            "workflowName": workflow_name,
            "runId": run_id,
            "opts": dumps(update),
        }
        run_owner = owner_of(TABLE_WORKFLOW_SNAPSHOT, workflow_run_id(workflow_name, run_id))
        [answer] = await self.owner.commit(batch, [request], {run_owner: refs} if row else {})
        snapshot = safely_parse_json(answer)
        run = WorkflowRun(
            workflow_name=workflow_name,
            run_id=run_id,
            snapshot=snapshot,
            created_at=now(),
            updated_at=now(),
            resource_id=tenant,
        )
        return (await self._restored_run(run)).snapshot

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
        """Delete every workflow run (their objects are left to `gc`)."""
        await self.inner.dangerously_clear_all()


# --- merging manifests on partial updates -------------------------------------------------------


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


def _without_key(tree: Any, key: str) -> Any:
    if isinstance(tree, dict) and key in tree:
        return {k: v for k, v in tree.items() if k != key}
    return tree


def _manifest_at(tree: Any, holder: tuple[Token, ...]) -> Manifest | None:
    node = tree
    for token in holder:
        node = node.get(token) if isinstance(node, dict) else None
    return read_manifest(node)


def _refs_in(tree: Any, holder: tuple[Token, ...]) -> list[Ref]:
    manifest = _manifest_at(tree, holder)
    return list(manifest.refs) if manifest else []


def _new_refs(rewritten: Rewritten) -> list[Ref]:
    return list(rewritten.refs)


def _surviving_refs(
    owner: OffloadingStore, merged: Any, old: Manifest | None, tenant: str | None
) -> list[Ref]:
    """The refs of `old` whose place in `merged` still holds their URL (checked for tenant/bucket)."""
    refs = [ref for ref in (old.refs if old else []) if ref_holds(merged, ref)]
    for ref in refs:
        owner.offloader.check_ref(ref, tenant)
    return refs


def _unique(refs: Sequence[Ref]) -> list[Ref]:
    """Refs once each (the same place can come from the stored manifest and the update's)."""
    return list({(r.path, r.span): r for r in refs}.values())


def _merged_content(
    owner: OffloadingStore, existing: Any, update: dict[str, Any], rewritten: Rewritten, tenant: str | None
) -> tuple[dict[str, Any], list[Ref]]:
    """The stored content after merging `update` as TS does, with one manifest for old and new refs."""
    old = _manifest_at(existing, MESSAGE_HOLDER)
    new = _manifest_at(rewritten.root, MESSAGE_HOLDER)
    update_stored = dict(rewritten.root)
    metadata = update_stored.get("metadata")
    if isinstance(metadata, dict) and MANIFEST_KEY in metadata:
        stripped = _without_key(metadata, MANIFEST_KEY)
        if new is not None and new.created_metadata and not stripped:
            del update_stored["metadata"]
        else:
            update_stored["metadata"] = stripped
    merged = merge_content(existing, update_stored)
    user_had_metadata = (
        isinstance(existing, dict) and "metadata" in existing and not (old and old.created_metadata)
    )
    created = not ("metadata" in update or user_had_metadata)
    refs = _unique(_surviving_refs(owner, merged, old, tenant) + (list(new.refs) if new else []))
    if refs:
        current = merged.get("metadata")
        holder = dict(current) if isinstance(current, dict) else {}
        holder[MANIFEST_KEY] = Manifest(created_metadata=created, refs=refs).to_json()
        merged["metadata"] = holder
    else:
        metadata = merged.get("metadata")
        if isinstance(metadata, dict) and MANIFEST_KEY in metadata:
            stripped = _without_key(metadata, MANIFEST_KEY)
            if created and not stripped:
                del merged["metadata"]
            else:
                merged["metadata"] = stripped
    return merged, refs


def _top_level_update(
    owner: OffloadingStore,
    stored: dict[str, Any],
    update: dict[str, Any] | None,
    rewritten: Rewritten,
    tenant: str | None,
) -> tuple[dict[str, Any] | None, list[ObjectRef]]:
    """What to send for a server-side shallow merge (`{...stored, ...update}`) of a tree holding its
    manifest at its top level, and the references of the merged result."""
    old = read_manifest(stored)
    if update is None:
        return None, owner.object_refs(old.refs if old else [], tenant)
    if not rewritten.changed and old is None:
        return update, []
    update_stored = _without_key(rewritten.root, MANIFEST_KEY)
    merged = {**stored, **update_stored}
    refs = _unique(_surviving_refs(owner, merged, old, tenant) + _new_refs(rewritten))
    return {**update_stored, MANIFEST_KEY: Manifest(refs=refs).to_json()}, owner.object_refs(refs, tenant)
