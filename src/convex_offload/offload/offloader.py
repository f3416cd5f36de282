"""The offloader: one object holding the parts that turn payloads into references and back.

    policy    what is an attachment, whether it may be stored, and where (offload/policy.py)
    keys      content-addressed keys within a tenant scope (offload/keys.py)
    uploader  bounded, concurrent, deduplicated uploads (offload/uploader.py)
    rewrite   the copy of a tree with URLs and its manifest (offload/rewriter.py)
    restorer  references back into payloads, checked and cached (offload/restorer.py)

One instance per application: it owns the concurrency limits and the caches. `OffloadingStore`
uses it through its write transaction; `offload`/`restore` use it alone, without Convex.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from convex_offload.blobs.base import BlobStore
from convex_offload.config import OffloadConfig
from convex_offload.errors import BucketConfigError
from convex_offload.offload.keys import KeyScheme
from convex_offload.offload.manifest import Ref, read_manifest
from convex_offload.offload.payload import Sniffer
from convex_offload.offload.policy import PlannedTree, Policy
from convex_offload.offload.restorer import RestoreMode, Restorer, place_holding
from convex_offload.offload.rewriter import Rewritten, rewrite
from convex_offload.offload.stats import OffloadStats
from convex_offload.offload.tree import Token, get_at
from convex_offload.offload.uploader import Uploader


class Offloader:
    """Offloads and restores payloads in JSON trees, for any record kind."""

    def __init__(
        self, config: OffloadConfig, buckets: Mapping[str, BlobStore], *, sniffer: Sniffer | None = None
    ) -> None:
        if not buckets:
            raise BucketConfigError("the offloader needs at least one bucket")
        unknown = sorted(set(buckets) - set(config.buckets))
        if unknown:
            raise BucketConfigError(f"buckets {unknown} are not in the configuration's buckets")
        self.config = config
        self.buckets = dict(buckets)
        self.stats = OffloadStats()
        configs = {name: config.buckets[name] for name in self.buckets}
        self.keys = KeyScheme({name: c.prefix for name, c in configs.items()}, config.tenant_mode)
        self.policy = Policy(config, configs, self.keys, sniffer=sniffer or Sniffer(), stats=self.stats)
        self.uploader = Uploader(self.buckets, concurrency=config.concurrency, stats=self.stats)
        self.restorer = Restorer(
            self.buckets,
            configs,
            self.keys,
            concurrency=config.restore_concurrency,
            cache_bytes=config.cache_bytes,
            stats=self.stats,
        )

    def __repr__(self) -> str:
        return f"Offloader(buckets={sorted(self.buckets)})"

    # --- keys ---------------------------------------------------------------------------------

    def tenant_scope(self, tenant: str | None) -> str:
        """The key segment of a tenant (a hash, or `global`)."""
        return self.keys.tenant_scope(tenant)

    def key_for(self, bucket: str, tenant: str | None, sha256: str) -> str:
        """The content-addressed key of an object in `bucket` for `tenant`."""
        return self.keys.key_for(bucket, tenant, sha256)

    def is_our_key(self, bucket: str, key: str) -> bool:
        """Whether `key` has the shape of a key this library writes in `bucket`."""
        return self.keys.is_our_key(bucket, key)

    def check_ref(self, ref: Ref, tenant: str | None, *, record: str) -> None:
        """Refuse a ref this library would not have written for this record (`ForbiddenReferenceError`)."""
        self.keys.check_ref(ref, tenant, self.buckets, record=record)

    def forget(self, bucket: str, key: str) -> None:
        """Drop what the caches know of an object (after deleting it)."""
        self.uploader.forget((bucket, key))
        self.restorer.forget(bucket, key)

    # --- writing ------------------------------------------------------------------------------

    def plan(self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str) -> PlannedTree:
        """Find, decode, check and route the payloads of one tree (no I/O).

        Refs of a manifest already in `root` (a record read back raw and saved again) are kept
        when their places still hold their URLs, after the same checks a restore makes.
        """
        kept = self._kept(root, holder, tenant, where)
        return self.policy.plan(root, holder=holder, tenant=tenant, where=where, kept=kept)

    async def plan_async(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str
    ) -> PlannedTree:
        """`plan`, decoding and hashing the large payloads in threads (what writes use)."""
        kept = self._kept(root, holder, tenant, where)
        return await self.policy.plan_async(root, holder=holder, tenant=tenant, where=where, kept=kept)

    def _kept(self, root: Any, holder: tuple[Token, ...], tenant: str | None, where: str) -> list[Ref]:
        manifest = read_manifest(get_at(root, holder), record=where)
        kept: list[Ref] = []
        if manifest is not None:
            for ref in manifest.refs:
                self.check_ref(ref, tenant, record=where)
                if place_holding(root, ref) is not None:
                    kept.append(ref)
        return kept

    async def rewrite(self, plan: PlannedTree) -> Rewritten:
        """The rewritten copy of a planned tree (every upload it references has succeeded)."""
        urls: dict[tuple[str, str], str] = {}
        for p in plan.offloaded():
            if p.ident not in urls:
                urls[p.ident] = await self.buckets[p.bucket].reference_url(p.key)
        rewritten = rewrite(plan, urls)
        self.stats.offloaded += len(rewritten.new_refs)
        return rewritten

    async def offload(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str
    ) -> Rewritten:
        """Offload every payload of `root` worth offloading, without Convex; `root` is never modified.

        `holder` is the path of the plain object that receives the manifest (created if absent);
        `where` names the record in errors. Objects already in their bucket (HEAD) are not
        uploaded again. Raises `MalformedAttachmentError`, `AttachmentPolicyError` or
        `UploadError` (naming the payload's path) before anything is rewritten.
        """
        plan = await self.plan_async(root, holder=holder, tenant=tenant, where=where)
        todo = {p.ident: p for p in plan.offloaded() if not self.uploader.is_known(p.ident)}
        await self.uploader.upload(list(todo.values()), check_bucket=True)
        return await self.rewrite(plan)

    # --- reading ------------------------------------------------------------------------------

    async def restore(
        self,
        root: Any,
        *,
        holder: tuple[Token, ...],
        tenant: str | None,
        mode: RestoreMode = "inline",
        record: str = "record",
    ) -> Any:
        """Put every referenced payload back into `root` (in place) and drop its manifest.

        `mode="urls"` puts a fresh public or presigned URL in place of each payload instead.
        """
        return await self.restorer.restore(root, holder=holder, tenant=tenant, mode=mode, record=record)

    def restore_now(
        self,
        root: Any,
        *,
        holder: tuple[Token, ...],
        tenant: str | None,
        record: str = "record",
        mode: RestoreMode = "inline",
    ) -> Awaitable[None] | None:
        """Restore `root` in place from the caches alone if they hold it all (None); else the
        coroutine that fetches the rest (`Restorer.restore_now`)."""
        return self.restorer.restore_now(root, holder=holder, tenant=tenant, record=record, mode=mode)
