"""The offloader: turns payloads in a JSON tree into references, and references back into payloads.

Writing: scan → decode strictly, hash, sniff → check policy → route to a bucket → upload (bounded,
concurrent, deduplicated: content-addressed keys within a tenant scope) → rewrite a copy of the
tree and add its manifest. Nothing is rewritten unless every upload it references succeeded.

Reading: read the manifest → check every ref points into a configured bucket, at the key this
library would have written for this tenant → fetch (bounded, cached) → verify sha256 and size →
put the original text back byte for byte.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from convex_offload.blobs.base import BlobStore
from convex_offload.config import OffloadConfig
from convex_offload.errors import (
    AttachmentIntegrityError,
    AttachmentMissingError,
    AttachmentPolicyError,
    ForbiddenReferenceError,
    MalformedAttachmentError,
    OffloadError,
    UploadError,
)
from convex_offload.offload.manifest import (
    MANIFEST_KEY,
    CopyOnWrite,
    Manifest,
    Ref,
    read_manifest,
    resolve,
)
from convex_offload.offload.payload import (
    ACTIVE_CONTENT,
    Decoded,
    Sniffer,
    base64_buffer,
    decode_base64,
    is_textual,
    normalize_type,
    types_agree,
)
from convex_offload.offload.registry import ObjectRef, Reserver
from convex_offload.offload.scan import Candidate, Token, parse_pointer, pointer, scan

logger = logging.getLogger(__name__)

RestoreMode = Literal["inline", "urls"]
_OUR_KEY = re.compile(r"(?:t-[0-9a-f]{32}|global)/[0-9a-f]{64}")
_FILENAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_FILENAME_BYTES: Final = 255


@dataclass(slots=True)
class OffloadStats:
    """Counters of what the offloader did, for benchmarks, the CLI and the soak."""

    payloads_found: int = 0
    offloaded: int = 0
    uploads: int = 0
    uploaded_bytes: int = 0
    dedup_skips: int = 0
    restored: int = 0
    fetches: int = 0
    fetched_bytes: int = 0
    cache_hits: int = 0


@dataclass(frozen=True, slots=True)
class Prepared:
    """What one payload is: its bytes' digest, size and sniffed type (and the bytes, until uploaded)."""

    sha256: str
    size: int
    sniffed_type: str
    data: bytes | bytearray | None


@dataclass(slots=True)
class Rewritten:
    """The result of offloading a tree: the rewritten copy and its refs (old ones kept included)."""

    root: Any
    refs: list[Ref] = field(default_factory=list)
    new_refs: list[Ref] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was replaced in this call."""
        return bool(self.new_refs)


@dataclass(slots=True)
class _Planned:
    candidate: Candidate
    prepared: Prepared
    offload: bool = False
    bucket: str = ""
    key: str = ""
    disposition: str | None = None
    place: str = ""
    tenant_scope: str = ""

    @property
    def ident(self) -> tuple[str, str]:
        """(bucket, key)"""
        return (self.bucket, self.key)

    def object_ref(self) -> ObjectRef:
        """The object as the reference registry records it."""
        return ObjectRef(self.bucket, self.key, self.tenant_scope, self.prepared.size, self.prepared.sha256)


@dataclass(frozen=True, slots=True)
class _LiveRefs:
    manifest: Manifest
    holder: dict[str, Any]
    refs: list[Ref]
    places: list[tuple[Any, Token]]
    """Where each ref's URL sits (its container and key or index)."""


@dataclass(slots=True)
class PlannedTree:
    """One tree's payloads, decoded, checked and routed, waiting for their uploads."""

    root: Any
    holder: tuple[Token, ...]
    tenant: str | None
    where: str
    items: list[_Planned]
    kept: list[Ref] | None

    def offloaded(self) -> list[_Planned]:
        """The payloads of this tree that go to a bucket."""
        return [p for p in self.items if p.offload]


class Offloader:
    """Offloads and restores payloads in JSON trees, for any record type.

    One instance per application: it owns the upload/restore concurrency limits and the caches.
    """

    def __init__(
        self, config: OffloadConfig, buckets: dict[str, BlobStore], *, sniffer: Sniffer | None = None
    ) -> None:
        if not buckets:
            raise OffloadError("the offloader needs at least one bucket")
        self.config = config
        self.buckets = buckets
        self.sniffer = sniffer or Sniffer()
        self.stats = OffloadStats()
        self._uploads = asyncio.Semaphore(config.concurrency)
        self._fetches = asyncio.Semaphore(config.restore_concurrency)
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._values = _ValueCache(config.cache_bytes)
        self._digests = _DigestCache(config.cache_bytes // 2)

    def __repr__(self) -> str:
        return f"Offloader(buckets={sorted(self.buckets)})"

    # --- keys ---------------------------------------------------------------------------------

    def tenant_scope(self, tenant: str | None) -> str:
        """The key segment of a tenant: a hash, so no user-controlled text enters a key."""
        if self.config.tenant_mode == "global":
            return "global"
        return _tenant_scope(tenant or "")

    def key_for(self, bucket: str, tenant: str | None, sha256: str) -> str:
        """The content-addressed key of an object: `<prefix><tenant scope>/<sha256>`."""
        return f"{self.buckets[bucket].config.prefix}{self.tenant_scope(tenant)}/{sha256}"

    def is_our_key(self, bucket: str, key: str) -> bool:
        """Whether `key` has the shape of a key this library writes in `bucket`."""
        prefix = self.buckets[bucket].config.prefix
        return key.startswith(prefix) and _OUR_KEY.fullmatch(key[len(prefix) :]) is not None

    # --- writing ------------------------------------------------------------------------------

    def batch(self, registry: Reserver | None = None) -> OffloadBatch:
        """A batch of trees offloaded together: one lease, concurrent uploads, one token."""
        return OffloadBatch(self, registry)

    async def offload(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str
    ) -> Rewritten:
        """Offload every payload of `root` worth offloading; `root` itself is never modified.

        `holder` is the path of the plain object that receives the manifest (created if absent).
        `where` names the record in errors (`message m1`). Raises `MalformedAttachmentError`,
        `AttachmentPolicyError` or `UploadError` (naming the payload's path) before anything is
        rewritten.
        """
        batch = self.batch()
        plan = batch.plan(root, holder=holder, tenant=tenant, where=where)
        await batch.upload()
        return await self.rewrite(plan)

    def plan_tree(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str
    ) -> PlannedTree:
        """Find, decode, check and route the payloads of one tree (no I/O)."""
        candidates = scan(
            root,
            min_chars=_base64_chars(max(1, self.config.inline_threshold)),
            bare_min_chars=_base64_chars(self.config.bare_base64_min_bytes),
            max_depth=self.config.max_depth,
            skip=(*holder, MANIFEST_KEY),
        )
        kept = self._carried_refs(root, holder, tenant)
        self.stats.payloads_found += len(candidates)
        items = self._plan(candidates, where) if candidates else []
        for p in items:
            if p.offload:
                p.place = f"{where} {pointer(p.candidate.path)}"
                p.bucket = self.config.route(p.prepared.sniffed_type, p.prepared.size, tenant or "")
                self._check_bucket_policy(p, p.place)
                p.key = self.key_for(p.bucket, tenant, p.prepared.sha256)
                p.tenant_scope = self.tenant_scope(tenant)
        return PlannedTree(root=root, holder=holder, tenant=tenant, where=where, items=items, kept=kept)

    def _plan(self, candidates: Sequence[Candidate], where: str) -> list[_Planned]:
        planned: list[_Planned] = []
        for candidate in candidates:
            prepared = self._prepare(candidate, where)
            if prepared is not None:
                planned.append(
                    _Planned(candidate, prepared, offload=prepared.size >= self.config.inline_threshold)
                )
        inline = sorted((p for p in planned if not p.offload), key=lambda p: p.prepared.size, reverse=True)
        budget = sum(p.prepared.size for p in inline)
        for p in inline:
            if budget <= self.config.record_inline_budget:
                break
            p.offload = True
            budget -= p.prepared.size
        return planned

    def _prepare(self, candidate: Candidate, where: str) -> Prepared | None:
        """Decode, hash and sniff one candidate; None for lenient candidates that are not payloads."""
        place = f"{where} {pointer(candidate.path)}"
        text = candidate.text
        cached = self._digests.get(text, candidate.start, candidate.end)
        if cached is not None:
            self._check_policy(candidate, cached, place)
            return cached
        try:
            decoded: Decoded = decode_base64(text, start=candidate.start, end=candidate.end, where=place)
        except MalformedAttachmentError:
            if candidate.strict:
                raise
            return None
        sniffed = normalize_type(self.sniffer.mime_type(decoded.data)) if decoded.size else ""
        if candidate.form == "base64" and not candidate.strict and not _recognised_binary(sniffed):
            return None
        prepared = Prepared(sha256=decoded.sha256, size=decoded.size, sniffed_type=sniffed, data=decoded.data)
        self._check_policy(candidate, prepared, place)
        self._digests.put(text, candidate.start, candidate.end, prepared)
        return prepared

    def _check_policy(self, candidate: Candidate, prepared: Prepared, place: str) -> None:
        if prepared.size == 0:
            raise AttachmentPolicyError("zero-byte attachment", path=place)
        if self.config.type_mismatch == "error" and not types_agree(
            candidate.declared_type, prepared.sniffed_type
        ):
            raise AttachmentPolicyError(
                f"declared type {candidate.declared_type!r} but the bytes are {prepared.sniffed_type!r}",
                path=place,
            )
        if candidate.filename is not None:
            check_filename(candidate.filename, place)

    def _check_bucket_policy(self, p: _Planned, place: str) -> None:
        config = self.buckets[p.bucket].config
        mime = p.prepared.sniffed_type
        if p.prepared.size > config.max_object_bytes:
            raise AttachmentPolicyError(
                f"{p.prepared.size} bytes is over bucket {p.bucket!r}'s limit of {config.max_object_bytes}",
                path=place,
            )
        if not config.accepts_type(mime):
            raise AttachmentPolicyError(f"type {mime!r} is not allowed in bucket {p.bucket!r}", path=place)
        if mime in ACTIVE_CONTENT:
            if config.active_content == "refuse":
                raise AttachmentPolicyError(
                    f"active content ({mime}) is refused by bucket {p.bucket!r}", path=place
                )
            p.disposition = "attachment"

    async def ensure_uploaded(self, p: _Planned, *, check_bucket: bool) -> None:
        """Upload one object; concurrent callers for the same object share one upload.

        With `check_bucket`, a HEAD first skips objects already stored (no registry to ask).
        """
        ident = (p.bucket, p.key)
        running = self._inflight.get(ident)
        if running is None:
            running = asyncio.ensure_future(
                self._upload(self.buckets[p.bucket], p, check_bucket=check_bucket)
            )
            self._inflight[ident] = running
            running.add_done_callback(lambda _task: self._inflight.pop(ident, None))
        await asyncio.shield(running)

    async def _upload(self, bucket: BlobStore, p: _Planned, *, check_bucket: bool) -> None:
        async with self._uploads:
            existing = await bucket.head(p.key) if check_bucket else None
            if existing is not None and existing.size == p.prepared.size:
                self.stats.dedup_skips += 1
            else:
                data = p.prepared.data
                if data is None:
                    # Known from the digest cache but not stored yet: decode the text again.
                    c = p.candidate
                    data = decode_base64(c.text, start=c.start, end=c.end, where=p.place).data
                await bucket.put(
                    p.key,
                    data,
                    content_type=p.prepared.sniffed_type or "application/octet-stream",
                    sha256=p.prepared.sha256,
                    disposition=p.disposition,
                )
                self.stats.uploads += 1
                self.stats.uploaded_bytes += p.prepared.size
        self.remember((bucket.name, p.key))

    def is_known(self, ident: tuple[str, str]) -> bool:
        """Whether this process saw the object stored and referenced (its lease may be skipped)."""
        if ident in self._known:
            self._known.move_to_end(ident)
            return True
        return False

    def remember(self, ident: tuple[str, str]) -> None:
        """Note that an object is stored and referenced."""
        self._known[ident] = None
        self._known.move_to_end(ident)
        while len(self._known) > 100_000:
            self._known.popitem(last=False)

    def forget(self, bucket: str, key: str) -> None:
        """Drop what the caches know of an object (after deleting it)."""
        self._known.pop((bucket, key), None)
        self._values.drop(bucket, key)

    async def rewrite(self, plan: PlannedTree) -> Rewritten:
        """The rewritten copy of a planned tree (every upload it references has succeeded)."""
        root, holder, planned, kept = plan.root, plan.holder, plan.items, plan.kept or []
        if not any(p.offload for p in planned):
            return Rewritten(root=root, refs=kept)
        tree = CopyOnWrite(root)
        new_refs: list[Ref] = []
        urls: dict[tuple[str, str], str] = {}
        for p in planned:
            if p.offload and (p.bucket, p.key) not in urls:
                urls[(p.bucket, p.key)] = await self.buckets[p.bucket].reference_url(p.key)
        by_path: dict[tuple[Token, ...], list[_Planned]] = {}
        for p in planned:
            if p.offload:
                by_path.setdefault(p.candidate.path, []).append(p)
        for path, items in by_path.items():
            original: str = tree.get(path)
            if items[0].candidate.form != "embedded":
                p = items[0]
                url = urls[(p.bucket, p.key)]
                tree.set(path, url)
                new_refs.append(_ref(p, url, span=None))
                continue
            pieces: list[str] = []
            cursor = 0
            for p in sorted(items, key=lambda item: item.candidate.start):
                assert p.candidate.span is not None
                begin, end = p.candidate.span
                url = urls[(p.bucket, p.key)]
                pieces.append(original[cursor:begin])
                offset = sum(len(piece) for piece in pieces)
                pieces.append(url)
                new_refs.append(_ref(p, url, span=(offset, offset + len(url))))
                cursor = end
            pieces.append(original[cursor:])
            tree.set(path, "".join(pieces))
        created = tree.ensure_dict(holder)
        previous = read_manifest(_get(root, holder))
        manifest = Manifest(
            created_metadata=created or bool(previous and previous.created_metadata),
            refs=[*kept, *new_refs],
        )
        tree.set((*holder, MANIFEST_KEY), manifest.to_json())
        self.stats.offloaded += len(new_refs)
        return Rewritten(root=tree.root, refs=manifest.refs, new_refs=new_refs)

    def _carried_refs(self, root: Any, holder: tuple[Token, ...], tenant: str | None) -> list[Ref] | None:
        """Refs of a manifest already in the input that still hold their URL; None if none."""
        manifest = read_manifest(_get(root, holder))
        if manifest is None:
            return None
        kept = []
        for ref in manifest.refs:
            self.check_ref(ref, tenant)
            if ref_holds(root, ref):
                kept.append(ref)
        return kept

    # --- reading ------------------------------------------------------------------------------

    def check_ref(self, ref: Ref, tenant: str | None) -> None:
        """Refuse a ref outside the configured buckets or outside this record's tenant scope."""
        if ref.bucket not in self.buckets:
            raise ForbiddenReferenceError(f"ref {ref.path}: bucket {ref.bucket!r} is not configured")
        if ref.key != self.key_for(ref.bucket, tenant, ref.sha256):
            raise ForbiddenReferenceError(
                f"ref {ref.path}: key {ref.key[:120]!r} is not this record's tenant's key for its content"
            )

    async def restore(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, mode: RestoreMode = "inline"
    ) -> Any:
        """Put every referenced payload back into `root` (modified in place) and drop the manifest.

        `mode="urls"` puts a fresh public or presigned URL in place of each payload instead.
        Raises `AttachmentMissingError`, `AttachmentIntegrityError`, `ForbiddenReferenceError`.
        """
        plan = self._restore_plan(root, holder, tenant)
        if plan is None:
            return root

        def mode_key(ref: Ref) -> str:
            return ref.header if mode == "inline" else ""

        wanted: dict[tuple[str, str, str], Ref] = {}
        for ref in plan.refs:
            wanted.setdefault((ref.bucket, ref.key, mode_key(ref)), ref)
        fetched = await asyncio.gather(*(self._value(r, mode) for r in wanted.values()))
        values = dict(zip(wanted, fetched, strict=True))
        self._apply(root, holder, plan, values, mode_key)
        return root

    def restore_cached(self, root: Any, *, holder: tuple[Token, ...], tenant: str | None) -> bool:
        """Restore `root` in place from the cache alone, without waiting: True if it could.

        The fast path of listings read again and again: nothing is fetched, nothing is awaited.
        """
        plan = self._restore_plan(root, holder, tenant)
        if plan is None:
            return True
        values: dict[tuple[str, str, str], str] = {}
        for ref in plan.refs:
            cached = self._values.get(ref.bucket, ref.key, ref.header)
            if cached is None:
                return False
            values[(ref.bucket, ref.key, ref.header)] = cached
        self.stats.cache_hits += len(values)
        self._apply(root, holder, plan, values, lambda ref: ref.header)
        return True

    def _restore_plan(self, root: Any, holder: tuple[Token, ...], tenant: str | None) -> _LiveRefs | None:
        holder_obj = _get(root, holder)
        manifest = read_manifest(holder_obj)
        if manifest is None or not isinstance(holder_obj, dict):
            return None
        for ref in manifest.refs:
            self.check_ref(ref, tenant)
        live: list[Ref] = []
        places: list[tuple[Any, Token]] = []
        for ref in manifest.refs:
            place = _place_holding(root, ref)
            if place is not None:
                live.append(ref)
                places.append(place)
        if len(live) < len(manifest.refs):
            logger.warning(
                "%d stale refs skipped: their place no longer holds their URL", len(manifest.refs) - len(live)
            )
        return _LiveRefs(manifest=manifest, holder=holder_obj, refs=live, places=places)

    def _apply(
        self,
        root: Any,
        holder: tuple[Token, ...],
        plan: _LiveRefs,
        values: dict[tuple[str, str, str], str],
        mode_key: Callable[[Ref], str],
    ) -> None:
        # Splice embedded refs from the end of their string, so earlier spans stay valid.
        order = sorted(
            range(len(plan.refs)), key=lambda i: (plan.refs[i].path, -(plan.refs[i].span or (0, 0))[0])
        )
        for index in order:
            ref = plan.refs[index]
            container, slot = plan.places[index]
            replacement = values[(ref.bucket, ref.key, mode_key(ref))]
            if ref.span is None:
                container[slot] = replacement
            else:
                begin, end = ref.span
                text: str = container[slot]
                container[slot] = text[:begin] + replacement + text[end:]
            self.stats.restored += 1
        del plan.holder[MANIFEST_KEY]
        if plan.manifest.created_metadata and not plan.holder and holder:
            parent = _get(root, holder[:-1])
            if isinstance(parent, dict):
                del parent[holder[-1]]

    async def _value(self, ref: Ref, mode: RestoreMode) -> str:
        bucket = self.buckets[ref.bucket]
        if mode == "urls":
            return await bucket.access_url(ref.key, bucket.config.presign_ttl)
        cached = self._values.get(ref.bucket, ref.key, ref.header)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        async with self._fetches:
            data = await bucket.get(ref.key)
        if data is None:
            raise AttachmentMissingError(bucket=ref.bucket, key=ref.key, path=ref.path)
        self.stats.fetches += 1
        self.stats.fetched_bytes += len(data)
        if len(data) != ref.size:
            raise AttachmentIntegrityError(
                f"{len(data)} bytes, manifest says {ref.size}", bucket=ref.bucket, key=ref.key
            )
        if await asyncio.to_thread(_sha256, data) != ref.sha256:
            raise AttachmentIntegrityError(
                "bytes do not match the manifest's sha256", bucket=ref.bucket, key=ref.key
            )
        text = base64_buffer(ref.header, data)
        del data  # the bytes go before the text is made: a big payload stays under 3x in memory
        value = text.decode("ascii")
        del text
        self._values.put(ref.bucket, ref.key, ref.header, value)
        return value


def _ref(p: _Planned, url: str, *, span: tuple[int, int] | None) -> Ref:
    c = p.candidate
    return Ref(
        path=pointer(c.path),
        form=c.form,
        header=c.header,
        span=span,
        bucket=p.bucket,
        key=p.key,
        size=p.prepared.size,
        sha256=p.prepared.sha256,
        declared_type=c.declared_type,
        sniffed_type=p.prepared.sniffed_type,
        url=url,
    )


def check_filename(name: str, place: str) -> None:
    """Refuse attachment names with path separators, `..`, control characters or over 255 bytes."""
    if _FILENAME_FORBIDDEN.search(name):
        raise AttachmentPolicyError(
            f"filename {name[:64]!r} has a path separator or control character", path=place
        )
    if name in (".", "..") or name.startswith(".."):
        raise AttachmentPolicyError(f"filename {name[:64]!r} is a relative path", path=place)
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise AttachmentPolicyError(f"filename is over {MAX_FILENAME_BYTES} bytes", path=place)


def ref_holds(root: Any, ref: Ref) -> bool:
    """Whether the place `ref` names still holds the URL it wrote there."""
    return _place_holding(root, ref) is not None


def _place_holding(root: Any, ref: Ref) -> tuple[Any, Token] | None:
    """The container and slot of `ref`'s place, if it still holds the URL `ref` wrote there."""
    target = resolve(root, parse_pointer(ref.path))
    if target is None:
        return None
    container, slot = target
    value = container[slot]
    if not isinstance(value, str):
        return None
    if ref.span is None:
        return target if value == ref.url else None
    begin, end = ref.span
    return target if value[begin:end] == ref.url else None


def _get(root: Any, path: tuple[Token, ...]) -> Any:
    node = root
    for token in path:
        if isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return None
    return node


def _recognised_binary(mime: str) -> bool:
    """Bytes libmagic recognised as a binary format (not text, not unknown octets): only such a
    bare base64 string outside a known byte field counts as an attachment."""
    return bool(mime) and not is_textual(mime) and mime != "application/octet-stream"


@functools.lru_cache(maxsize=65_536)
def _tenant_scope(tenant: str) -> str:
    digest = hashlib.sha256(b"convex-offload-tenant\x00" + tenant.encode("utf-8")).hexdigest()
    return "t-" + digest[:32]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _base64_chars(size: int) -> int:
    """Length of the base64 text of `size` bytes."""
    return (size + 2) // 3 * 4


class _ValueCache:
    """Restored field values (data URL or base64 text), least recently used out, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def get(self, bucket: str, key: str, header: str) -> str | None:
        item = self._items.get((bucket, key, header))
        if item is not None:
            self._items.move_to_end((bucket, key, header))
        return item

    def put(self, bucket: str, key: str, header: str, value: str) -> None:
        if len(value) > self.limit:
            return
        ident = (bucket, key, header)
        if ident in self._items:
            return
        self._items[ident] = value
        self.used += len(value)
        while self.used > self.limit:
            _, evicted = self._items.popitem(last=False)
            self.used -= len(evicted)

    def drop(self, bucket: str, key: str) -> None:
        for ident in [i for i in self._items if i[0] == bucket and i[1] == key]:
            self.used -= len(self._items.pop(ident))


class _DigestCache:
    """What a payload string was found to be, so re-saving the same message decodes nothing.

    Looked up by a fingerprint (length, bounds and three short samples of the text), then
    confirmed by comparing the whole text: hashing a fresh multi-megabyte string for a dict key
    would cost a pass over it on every first save (0.14 ms per MB), while a comparison runs only
    on a likely hit and is cheaper still. The bytes are not kept.
    """

    _SAMPLE = 48

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[int, int, int, str], tuple[str, Prepared]] = OrderedDict()

    def _fingerprint(self, text: str, start: int, end: int) -> tuple[int, int, int, str]:
        middle = (start + end) // 2
        n = self._SAMPLE
        return (
            len(text),
            start,
            end,
            text[start : start + n] + text[middle : middle + n] + text[end - n : end],
        )

    def get(self, text: str, start: int, end: int) -> Prepared | None:
        fingerprint = self._fingerprint(text, start, end)
        item = self._items.get(fingerprint)
        if item is None or item[0] != text:
            return None
        self._items.move_to_end(fingerprint)
        return item[1]

    def put(self, text: str, start: int, end: int, prepared: Prepared) -> None:
        if len(text) > self.limit:
            return
        fingerprint = self._fingerprint(text, start, end)
        replaced = self._items.pop(fingerprint, None)
        if replaced is not None:
            self.used -= len(replaced[0])
        self._items[fingerprint] = (
            text,
            Prepared(prepared.sha256, prepared.size, prepared.sniffed_type, None),
        )
        self.used += len(text)
        while self.used > self.limit:
            _, (evicted, _) = self._items.popitem(last=False)
            self.used -= len(evicted)


class OffloadBatch:
    """Trees offloaded together: planned one by one, then one lease and concurrent uploads.

    `plan()` each tree (decoding happens there), `upload()` once, then `Offloader.rewrite()` each
    plan. With a registry, every object not known to be referenced is leased under `token`
    before it is uploaded, so the garbage collector cannot take it before its record is written.
    """

    BUSY_RETRIES: Final = 8

    def __init__(self, offloader: Offloader, registry: Reserver | None) -> None:
        self.offloader = offloader
        self.registry = registry
        self.token = uuid.uuid4().hex
        self.plans: list[PlannedTree] = []
        self.leased = False

    def __repr__(self) -> str:
        return f"OffloadBatch(token={self.token[:8]}…, trees={len(self.plans)})"

    def plan(self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, where: str) -> PlannedTree:
        """Plan one tree into this batch."""
        plan = self.offloader.plan_tree(root, holder=holder, tenant=tenant, where=where)
        self.plans.append(plan)
        return plan

    def objects(self) -> dict[tuple[str, str], _Planned]:
        """Every object of the batch, once each."""
        found: dict[tuple[str, str], _Planned] = {}
        for plan in self.plans:
            for p in plan.offloaded():
                found.setdefault(p.ident, p)
        return found

    async def upload(self, *, only: Sequence[tuple[str, str]] | None = None) -> None:
        """Lease and upload the batch's objects (or `only` these); `UploadError` names the first failure.

        Without `only`, objects this process knows are stored and referenced are skipped: the
        record write verifies them atomically and asks for them back if they are gone.
        """
        objects = self.objects()
        if only is not None:
            wanted = set(only)
            todo = [p for ident, p in objects.items() if ident in wanted]
        else:
            todo = [p for ident, p in objects.items() if not self.offloader.is_known(ident)]
        if not todo:
            return
        present: frozenset[tuple[str, str]] = frozenset()
        if self.registry is not None:
            present = await self._lease(todo)
        uploads = {}
        for p in todo:
            if p.ident in present and only is None:
                self.offloader.stats.dedup_skips += 1
                continue
            uploads[p.ident] = asyncio.ensure_future(
                self.offloader.ensure_uploaded(p, check_bucket=self.registry is None)
            )
            await asyncio.sleep(0)  # let this upload start before the next one is queued
        if not uploads:
            return
        results = await asyncio.gather(*uploads.values(), return_exceptions=True)
        for (ident, _task), result in zip(uploads.items(), results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, UploadError | AttachmentIntegrityError):
                    raise result
                p = objects[ident]
                raise UploadError(str(result), path=p.place, bucket=p.bucket, key=p.key) from result

    async def _lease(self, todo: Sequence[_Planned]) -> frozenset[tuple[str, str]]:
        assert self.registry is not None
        refs = [p.object_ref() for p in todo]
        owner = f"lease:{todo[0].place}"
        delay = 0.05
        present: frozenset[tuple[str, str]] = frozenset()
        for _attempt in range(self.BUSY_RETRIES):
            reservation = await self.registry.reserve(
                self.token, owner, refs, self.offloader.config.lease_seconds
            )
            self.leased = True
            present |= reservation.present
            if not reservation.busy:
                return present
            # The collector is deleting some of these right now; it finishes in moments.
            refs = [r for r in refs if r.ident in reservation.busy]
            await asyncio.sleep(delay)
            delay *= 2
        p = todo[0]
        raise UploadError(
            "the garbage collector kept this object claimed", path=p.place, bucket=p.bucket, key=p.key
        )
