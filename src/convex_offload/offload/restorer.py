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
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import pybase64

from convex_offload.blobs.base import BlobStore
from convex_offload.config import BucketConfig
from convex_offload.errors import AttachmentIntegrityError, AttachmentMissingError
from convex_offload.offload.caches import RestoredTree, RestoredTrees, ValueCache, ValueKey, copy_tree
from convex_offload.offload.keys import KeyScheme
from convex_offload.offload.manifest import MANIFEST_KEY, Manifest, Ref, read_manifest
from convex_offload.offload.stats import OffloadStats
from convex_offload.offload.tree import Token, get_at, parse_pointer
from convex_offload.store.models import safely_parse_json

logger = logging.getLogger(__name__)

URL_CACHE_ENTRIES: Final = 100_000
CHECKED_ENTRIES: Final = 100_000
TREE_ENTRIES: Final = 20_000
RestoreMode = Literal["inline", "urls"]
"""`inline`: the payloads themselves, byte for byte; `urls`: fresh public or presigned URLs (for UIs)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One ref of a manifest, ready to restore: where it goes and what value it takes."""

    ref: Ref
    tokens: tuple[tuple[str, int | None], ...]
    """Its place, as a parsed JSON pointer: each token, and its value as a list index if it is one."""
    inline: ValueKey
    """The restored value's key in the value cache."""
    object: tuple[str, str]
    """(bucket, key): the object (what a URL depends on)."""

    @classmethod
    def of(cls, ref: Ref) -> Step:
        """The step of `ref`."""
        tokens = tuple((t, int(t) if t.isdigit() else None) for t in parse_pointer(ref.path))
        return cls(ref, tokens, (ref.bucket, ref.key, ref.header), (ref.bucket, ref.key))


@dataclass(frozen=True, slots=True)
class Plan:
    """A manifest checked for one tenant, its refs in the order they are put back: by place, and
    embedded refs from the end of their string, so the spans not yet spliced stay valid."""

    manifest: Manifest
    steps: tuple[Step, ...]


@dataclass(slots=True)
class LiveRefs:
    """The steps of one manifest whose places still hold their URLs, and those places."""

    manifest: Manifest
    holder: dict[str, Any]
    steps: list[Step]
    places: list[tuple[Any, Token]]
    """Where each step's URL sits (its container and key or index)."""


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
        self.trees: dict[RestoreMode, RestoredTrees] = {
            "inline": RestoredTrees(self._holds_value, entries=TREE_ENTRIES, limit=cache_bytes),
            "urls": RestoredTrees(self._holds_url, entries=TREE_ENTRIES, limit=cache_bytes),
        }
        """Stored texts already restored, per mode (`RestoredTrees`)."""
        self._fetches = asyncio.Semaphore(concurrency)
        self._urls: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._plans: OrderedDict[tuple[int, str | None], Plan] = OrderedDict()
        """Plans of manifests already found to hold only refs this library writes for their tenant."""

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
        if live is not None:
            await self._fetched(root, holder, live, mode, record)
        return root

    def restore_now(
        self,
        root: Any,
        *,
        holder: tuple[Token, ...],
        tenant: str | None,
        record: str,
        mode: RestoreMode = "inline",
    ) -> Awaitable[None] | None:
        """Restore `root` in place from the caches alone, without waiting, if they hold every value
        (None: done); otherwise the coroutine that fetches what they lack and restores it.

        The fast path of listings read again and again: nothing is fetched, nothing is awaited
        (in "urls" mode: every URL still has half its life left). The manifest is read once either way.
        """
        live = self.live_refs(root, holder, tenant, record=record)
        if live is None:
            return None
        values = self._cached_values(live, mode)
        if values is None:
            return self._fetched(root, holder, live, mode, record)
        self._apply(root, holder, live, values)
        return None

    async def _fetched(
        self, root: Any, holder: tuple[Token, ...], live: LiveRefs, mode: RestoreMode, record: str
    ) -> None:
        """Fetch (or find cached) each distinct value the live steps need, then put them back."""
        wanted: dict[ValueKey, Ref] = {}
        for step in live.steps:
            wanted.setdefault(_value_key(step, mode), step.ref)
        fetched = await asyncio.gather(*(self._value(r, mode, record) for r in wanted.values()))
        by_key = dict(zip(wanted, fetched, strict=True))
        self._apply(root, holder, live, [by_key[_value_key(step, mode)] for step in live.steps])

    def restore_text(
        self, text: str, *, holder: tuple[Token, ...], tenant: str | None, record: str, mode: RestoreMode
    ) -> Any:
        """The stored JSON `text` parsed and restored from the caches alone, or just parsed.

        A text restored before comes back from `trees` (a copy; nothing parsed, nothing walked); a
        text whose values are all cached is restored now and remembered; any other text is returned
        parsed and unrestored, for `restore` to fetch what it lacks.
        """
        trees = self.trees[mode]
        known = trees.get(text, tenant)
        if known is not None:
            self.stats.cache_hits += len(known.values)
            self.stats.restored += known.places
            return copy_tree(known.tree)
        tree = safely_parse_json(text)
        live = self.live_refs(tree, holder, tenant, record=record)
        if live is None:
            return tree
        values = self._cached_values(live, mode)
        if values is None:
            return tree
        taken = tuple(dict(zip((_value_key(step, mode) for step in live.steps), values, strict=True)).items())
        self._apply(tree, holder, live, values)
        trees.put(text, tenant, RestoredTree(copy_tree(tree), taken, len(live.steps)))
        return tree

    def _cached_values(self, live: LiveRefs, mode: RestoreMode) -> list[str] | None:
        """The value of each live step from the caches (counted as hits), or None if one is not there."""
        values: list[str] = []
        if mode == "urls":
            now = time.monotonic()
            for step in live.steps:
                known = self._urls.get(step.object)
                if known is None or known[1] <= now:
                    return None
                values.append(known[0])
        else:
            for step in live.steps:
                cached = self.values.find(step.inline)
                if cached is None:
                    return None
                values.append(cached)
        self.stats.cache_hits += len({_value_key(step, mode) for step in live.steps})
        return values

    def _holds_value(self, key: ValueKey, value: str) -> bool:
        return self.values.find(key) is value

    def _holds_url(self, key: ValueKey, url: str) -> bool:
        known = self._urls.get((key[0], key[1]))
        return known is not None and known[0] is url and known[1] > time.monotonic()

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
        plan = self._plan(manifest, tenant, record)
        steps: list[Step] = []
        places: list[tuple[Any, Token]] = []
        for step in plan.steps:
            place = _place(root, step)
            if place is not None:
                steps.append(step)
                places.append(place)
        if len(steps) < len(plan.steps):
            logger.warning(
                "%s: %d stale refs skipped (their place no longer holds their URL)",
                record,
                len(plan.steps) - len(steps),
            )
        return LiveRefs(manifest=manifest, holder=holder_obj, steps=steps, places=places)

    def _plan(self, manifest: Manifest, tenant: str | None, record: str) -> Plan:
        """The manifest's plan for `tenant`: its refs checked once, their places parsed, ordered.

        Manifests read again are the same (cached) objects; the entry keeps its manifest alive, so
        the id cannot be reused while it is remembered.
        """
        ident = (id(manifest), tenant)
        plan = self._plans.get(ident)
        if plan is not None and plan.manifest is manifest:
            return plan
        for ref in manifest.refs:
            self.keys.check_ref(ref, tenant, self.buckets, record=record)
        ordered = sorted(manifest.refs, key=lambda ref: (ref.path, -(ref.span or (0, 0))[0]))
        plan = Plan(
            manifest=manifest,
            steps=tuple(Step.of(ref) for ref in ordered),
        )
        self._plans[ident] = plan
        if len(self._plans) > CHECKED_ENTRIES:
            self._plans.popitem(last=False)
        return plan

    def _apply(self, root: Any, holder: tuple[Token, ...], live: LiveRefs, values: Sequence[str]) -> None:
        """Put `values` (one per live step, in order) in their places and drop the manifest."""
        for step, (container, slot), replacement in zip(live.steps, live.places, values, strict=True):
            span = step.ref.span
            if span is None:
                container[slot] = replacement
            else:
                text: str = container[slot]
                container[slot] = text[: span[0]] + replacement + text[span[1] :]
        self.stats.restored += len(live.steps)
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


def _value_key(step: Step, mode: RestoreMode) -> ValueKey:
    """What a restored value depends on: inline, the object and its header; a URL, the object."""
    return step.inline if mode == "inline" else (*step.object, "")


def _place(root: Any, step: Step) -> tuple[Any, Token] | None:
    """The container and slot of a step's place, if it still holds the URL its ref wrote there
    (the JSON pointer resolved as `tree.resolve` does, on the step's parsed tokens)."""
    container: Any = None
    slot: Token = ""
    node = root
    for token, index in step.tokens:
        if isinstance(node, dict):
            if token not in node:
                return None
            container, slot = node, token
        elif isinstance(node, list):
            if index is None or index >= len(node):
                return None
            container, slot = node, index
        else:
            return None
        node = container[slot]
    if container is None or not isinstance(node, str):
        return None
    ref = step.ref
    if ref.span is None:
        return (container, slot) if node == ref.url else None
    begin, end = ref.span
    return (container, slot) if node[begin:end] == ref.url else None


def place_holding(root: Any, ref: Ref) -> tuple[Any, Token] | None:
    """The container and slot of `ref`'s place, if it still holds the URL `ref` wrote there."""
    return _place(root, Step.of(ref))


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
