"""Uploads: bounded, concurrent, each object once.

Concurrent callers for the same object share one upload (in flight), and objects this process has
seen stored and referenced are remembered (known), so re-saving history uploads nothing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

from convex_offload.blobs.base import BlobStore
from convex_offload.errors import AttachmentIntegrityError, UploadError
from convex_offload.offload.payload import decode_base64
from convex_offload.offload.policy import PlannedObject
from convex_offload.offload.stats import OffloadStats

ObjectKey = tuple[str, str]
Progress = Callable[[int, int], Awaitable[None]]
"""each(done, total): awaited as each upload finishes."""
KNOWN_LIMIT: Final = 100_000


class Uploader:
    """Puts planned objects into their buckets (see the module docstring)."""

    def __init__(self, buckets: Mapping[str, BlobStore], *, concurrency: int, stats: OffloadStats) -> None:
        self.buckets = buckets
        self.stats = stats
        self._slots = asyncio.Semaphore(concurrency)
        self._known: OrderedDict[ObjectKey, None] = OrderedDict()
        self._inflight: dict[ObjectKey, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"Uploader(buckets={sorted(self.buckets)}, known={len(self._known)})"

    def is_known(self, ident: ObjectKey) -> bool:
        """Whether this process saw the object stored and referenced (its lease may be skipped)."""
        if ident in self._known:
            self._known.move_to_end(ident)
            return True
        return False

    def remember(self, ident: ObjectKey) -> None:
        """Note that an object is stored and referenced."""
        self._known[ident] = None
        self._known.move_to_end(ident)
        while len(self._known) > KNOWN_LIMIT:
            self._known.popitem(last=False)

    def forget(self, ident: ObjectKey) -> None:
        """Drop what is known of an object (after deleting it)."""
        self._known.pop(ident, None)

    async def upload(
        self, objects: Sequence[PlannedObject], *, check_bucket: bool, each: Progress | None = None
    ) -> None:
        """Upload `objects` concurrently; `UploadError` names the first that failed.

        With `check_bucket`, a HEAD first skips objects already stored (when no registry can say).
        `each(done, total)` is awaited as each upload finishes.
        """
        if not objects:
            return
        finished = 0

        async def one(p: PlannedObject) -> None:
            nonlocal finished
            await self.ensure_uploaded(p, check_bucket=check_bucket)
            finished += 1
            if each is not None:
                await each(finished, len(objects))

        tasks = []
        for p in objects:
            tasks.append(asyncio.ensure_future(one(p)))
            await asyncio.sleep(0)  # let this upload start before the next one is queued
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for p, result in zip(objects, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, UploadError | AttachmentIntegrityError):
                    raise result
                raise UploadError(str(result), path=p.place, bucket=p.bucket, key=p.key) from result

    async def ensure_uploaded(self, p: PlannedObject, *, check_bucket: bool) -> None:
        """Upload one object; concurrent callers for the same object share one upload."""
        ident = p.ident
        running = self._inflight.get(ident)
        if running is None:
            running = asyncio.ensure_future(self._put(self.buckets[p.bucket], p, check_bucket=check_bucket))
            self._inflight[ident] = running
            running.add_done_callback(lambda _task: self._inflight.pop(ident, None))
        await asyncio.shield(running)

    async def _put(self, bucket: BlobStore, p: PlannedObject, *, check_bucket: bool) -> None:
        async with self._slots:
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
        self.remember(p.ident)
