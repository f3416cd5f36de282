"""Restoring: references back into payloads, exactly as they were written.

Read the manifest → check every ref (configured bucket, this tenant's key for its content, the URL
this library writes) → fetch each object once (bounded, cached), streamed: each chunk hashed and
encoded into the text as it arrives, so the bytes and the text are never whole at once → verify
size and sha256 → put the original text back at its place (raw base64, or a data URL with its
exact header; embedded URLs spliced back into their string) → drop the manifest. Refs whose
place no longer holds their URL (the app edited the record) are skipped.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pybase64

from convex_offload.blobs.base import BlobStore
from convex_offload.config import BucketConfig
from convex_offload.errors import AttachmentIntegrityError, AttachmentMissingError
from convex_offload.offload.caches import ValueCache
from convex_offload.offload.keys import KeyScheme
from convex_offload.offload.manifest import MANIFEST_KEY, Manifest, Ref, read_manifest
from convex_offload.offload.stats import OffloadStats
from convex_offload.offload.tree import Token, get_at, parse_pointer, resolve

logger = logging.getLogger(__name__)

URL_CACHE_ENTRIES: Final = 100_000
CHECKED_ENTRIES: Final = 100_000
RestoreMode = Literal["inline", "urls"]
"""`inline`: the payloads themselves, byte for byte; `urls`: fresh public or presigned URLs (for UIs)."""
ValueKey = tuple[str, str, str]
"""(bucket, key, header): one restored value."""


@dataclass(frozen=True, slots=True)
class LiveRefs:
    """The refs of one manifest whose places still hold their URLs, and those places."""

    manifest: Manifest
    holder: dict[str, Any]
    refs: list[Ref]
    places: list[tuple[Any, Token]]
    """Where each ref's URL sits (its container and key or index)."""


class Restorer:
    """Restores trees from one store's buckets (see the module docstring)."""

    def __init__(
        self,
        buckets: Mapping[str, BlobStore],
        configs: Mapping[str, BucketConfig],
        keys: KeyScheme,
        *,
        concurrency: int,
        cache_bytes: int,
        stats: OffloadStats,
    ) -> None:
        self.buckets = buckets
        self.configs = configs
        self.keys = keys
        self.stats = stats
        self.values = ValueCache(cache_bytes)
        self._fetches = asyncio.Semaphore(concurrency)
        self._urls: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._checked: OrderedDict[tuple[int, str | None], Manifest] = OrderedDict()
        """Manifests already found to hold only refs this library writes for their tenant."""

    def __repr__(self) -> str:
        return f"Restorer(buckets={sorted(self.buckets)})"

    async def restore(
        self, root: Any, *, holder: tuple[Token, ...], tenant: str | None, mode: RestoreMode, record: str
    ) -> Any:
        """Put every referenced payload back into `root` (modified in place) and drop the manifest.

        Raises `AttachmentMissingError`, `AttachmentIntegrityError`, `ForbiddenReferenceError`,
        `UnsupportedManifestError`.
        """
        live = self.live_refs(root, holder, tenant, record=record)
        if live is None:
            return root
        wanted: dict[ValueKey, Ref] = {}
        for ref in live.refs:
            wanted.setdefault(_value_key(ref, mode), ref)
        fetched = await asyncio.gather(*(self._value(r, mode, record) for r in wanted.values()))
        values = dict(zip(wanted, fetched, strict=True))
        self._apply(root, holder, live, values, mode)
        return root

    def restore_cached(
        self,
        root: Any,
        *,
        holder: tuple[Token, ...],
        tenant: str | None,
        record: str,
        mode: RestoreMode = "inline",
    ) -> bool:
        """Restore `root` in place from the caches alone, without waiting: True if it could.

        The fast path of listings read again and again: nothing is fetched, nothing is awaited
        (in "urls" mode: every URL still has half its life left).
        """
        live = self.live_refs(root, holder, tenant, record=record)
        if live is None:
            return True
        values: dict[ValueKey, str] = {}
        now = time.monotonic()
        for ref in live.refs:
            if mode == "urls":
                known = self._urls.get((ref.bucket, ref.key))
                cached = known[0] if known is not None and known[1] > now else None
            else:
                cached = self.values.get(ref.bucket, ref.key, ref.header)
            if cached is None:
                return False
            values[_value_key(ref, mode)] = cached
        self.stats.cache_hits += len(values)
        self._apply(root, holder, live, values, mode)
        return True

    def forget(self, bucket: str, key: str) -> None:
        """Drop the cached value and URL of an object (after deleting it)."""
        self.values.drop(bucket, key)
        self._urls.pop((bucket, key), None)

    def live_refs(
        self, root: Any, holder: tuple[Token, ...], tenant: str | None, *, record: str
    ) -> LiveRefs | None:
        """The checked refs of the manifest at `holder` whose places hold their URLs; None if no manifest."""
        holder_obj = get_at(root, holder)
        manifest = read_manifest(holder_obj, record=record)
        if manifest is None or not isinstance(holder_obj, dict):
            return None
        # Manifests read again are the same (cached) objects: each is checked once per tenant. The
        # entry keeps its manifest alive, so the id cannot be reused while it is remembered.
        checked = (id(manifest), tenant)
        if self._checked.get(checked) is not manifest:
            for ref in manifest.refs:
                self.keys.check_ref(ref, tenant, self.buckets, record=record)
            self._checked[checked] = manifest
            if len(self._checked) > CHECKED_ENTRIES:
                self._checked.popitem(last=False)
        live: list[Ref] = []
        places: list[tuple[Any, Token]] = []
        for ref in manifest.refs:
            place = place_holding(root, ref)
            if place is not None:
                live.append(ref)
                places.append(place)
        if len(live) < len(manifest.refs):
            logger.warning(
                "%s: %d stale refs skipped (their place no longer holds their URL)",
                record,
                len(manifest.refs) - len(live),
            )
        return LiveRefs(manifest=manifest, holder=holder_obj, refs=live, places=places)

    def _apply(
        self,
        root: Any,
        holder: tuple[Token, ...],
        live: LiveRefs,
        values: Mapping[ValueKey, str],
        mode: RestoreMode,
    ) -> None:
        # Splice embedded refs from the end of their string, so earlier spans stay valid.
        order = sorted(
            range(len(live.refs)), key=lambda i: (live.refs[i].path, -(live.refs[i].span or (0, 0))[0])
        )
        for index in order:
            ref = live.refs[index]
            container, slot = live.places[index]
            replacement = values[_value_key(ref, mode)]
            if ref.span is None:
                container[slot] = replacement
            else:
                begin, end = ref.span
                text: str = container[slot]
                container[slot] = text[:begin] + replacement + text[end:]
            self.stats.restored += 1
        del live.holder[MANIFEST_KEY]
        if live.manifest.created_metadata and not live.holder and holder:
            parent = get_at(root, holder[:-1])
            if isinstance(parent, dict):
                del parent[holder[-1]]

    async def _access_url(self, ref: Ref) -> str:
        """A URL a browser can GET; one presigned URL serves while it has half its life left."""
        ident, now = (ref.bucket, ref.key), time.monotonic()
        known = self._urls.get(ident)
        if known is not None and known[1] > now:
            self._urls.move_to_end(ident)
            return known[0]
        ttl = self.configs[ref.bucket].presign_ttl
        url = await self.buckets[ref.bucket].access_url(ref.key, ttl)
        self._urls[ident] = (url, now + ttl / 2)
        while len(self._urls) > URL_CACHE_ENTRIES:
            self._urls.popitem(last=False)
        return url

    async def _value(self, ref: Ref, mode: RestoreMode, record: str) -> str:
        bucket = self.buckets[ref.bucket]
        if mode == "urls":
            return await self._access_url(ref)
        cached = self.values.get(ref.bucket, ref.key, ref.header)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        restore = functools.partial(restored_text, size=ref.size, sha256=ref.sha256, header=ref.header)
        async with self._fetches:
            outcome = await bucket.read_with(ref.key, restore)
        if outcome is None:
            raise AttachmentMissingError(bucket=ref.bucket, key=ref.key, path=f"{record} {ref.path}")
        self.stats.fetches += 1
        if isinstance(outcome, Mismatch):
            found = (
                f"{outcome.size} bytes, the manifest of {record} says {ref.size}"
                if outcome.size is not None
                else f"bytes do not match the sha256 in the manifest of {record}"
            )
            raise AttachmentIntegrityError(f"{found} ({ref.path})", bucket=ref.bucket, key=ref.key)
        self.stats.fetched_bytes += ref.size
        self.values.put(ref.bucket, ref.key, ref.header, outcome)
        return outcome


def _value_key(ref: Ref, mode: RestoreMode) -> ValueKey:
    """What a restored value depends on: inline, the object and its header; a URL, the object."""
    return (ref.bucket, ref.key, ref.header if mode == "inline" else "")


def place_holding(root: Any, ref: Ref) -> tuple[Any, Token] | None:
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


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Fetched bytes that are not the ones a manifest names: how many there were, or (None) that
    their sha256 differs."""

    size: str | None


def restored_text(chunks: Iterator[bytes], *, size: int, sha256: str, header: str) -> str | Mismatch:
    """`header` + the base64 of the bytes `chunks` yields, checked against `size` and `sha256`.

    Made as the bytes stream in: each chunk is hashed, encoded and appended to the text, then
    dropped, so a big attachment costs its text plus one chunk, never its bytes and its text at
    once. The text is one local string that only this function holds, which CPython extends in
    place (elsewhere the result is the same, at the cost of copies). Stops reading at the first
    byte past `size`.
    """
    digest = hashlib.sha256()
    text = header
    carry = b""
    seen = 0
    for arrived in chunks:
        seen += len(arrived)
        if seen > size:
            return Mismatch(f"more than {size}")
        digest.update(arrived)
        chunk = carry + arrived if carry else arrived
        del arrived
        whole = len(chunk) - len(chunk) % 3
        carry = chunk[whole:]
        text += pybase64.b64encode_as_string(memoryview(chunk)[:whole])
        del chunk
    if carry:
        text += pybase64.b64encode_as_string(carry)
    if seen != size:
        return Mismatch(str(seen))
    if digest.hexdigest() != sha256:
        return Mismatch(None)
    return text
