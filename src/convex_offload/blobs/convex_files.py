"""A bucket in Convex file storage, through this project's `convex/offload/files.ts` functions.

Convex names files by storage id; the table `offload_files` maps each content-addressed key to
its file. Upload: `generateUploadUrl` → POST the bytes → `commit` (a racing duplicate is deleted
there, so each key keeps exactly one file). The URL written into records is the file's Convex
storage URL (`<deployment>/api/storage/<id>`), which anyone holding it can GET (Convex's own
model: bearer URLs). Every Convex failure becomes `BlobStoreError` in one place (`_calling`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from convex_offload.blobs.base import READ_CHUNK, ObjectInfo, check_key, public_url
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import BlobStoreError, ConvexError

FILES_MODULE: Final = "offload/files"
SAFE_TYPE: Final = "application/octet-stream"
T = TypeVar("T")


class ConvexFilesBlobStore:
    """Objects in the Convex deployment's own file storage."""

    def __init__(self, name: str, client: ConvexClient, *, public_base_url: str | None = None) -> None:
        self.name = name
        self.client = client
        self.public_base_url = public_base_url
        self._storage_prefix = client.url.rstrip("/") + "/api/storage/"

    def __repr__(self) -> str:
        return f"ConvexFilesBlobStore({self.name!r}, {self.client!r})"

    @contextlib.contextmanager
    def _calling(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except ConvexError as exc:
            raise BlobStoreError(str(exc), bucket=self.name, key=key, operation=operation) from None

    async def _lookup(self, key: str) -> dict[str, Any] | None:
        entry = await self.client.query(f"{FILES_MODULE}:lookup", {"key": check_key(key)})
        return entry if isinstance(entry, dict) else None

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """Upload through an upload URL and record the key; Convex checks the size it received.

        Convex serves a file with the type it was uploaded with and cannot add a
        `Content-Disposition`, so an attachment that must not render (HTML, SVG, scripts) is
        uploaded as `application/octet-stream`: browsers download it instead of running it. Its
        real type stays in `offload_files` (and in the record's manifest).
        """
        served_as = SAFE_TYPE if disposition == "attachment" else content_type
        with self._calling("upload", key):
            upload_url = await self.client.mutation(f"{FILES_MODULE}:generateUploadUrl", {})
            storage_id = await self.client.upload(upload_url, bytes(data), served_as)
            args: dict[str, Any] = {
                "key": check_key(key),
                "storageId": storage_id,
                "sha256": sha256,
                "size": len(data),
                "contentType": content_type,
            }
            if disposition:
                args["disposition"] = disposition
            await self.client.mutation(f"{FILES_MODULE}:commit", args)

    async def get(self, key: str) -> bytes | None:
        """Download the file behind `key`, or None when there is none."""
        with self._calling("download", key):
            entry = await self._lookup(key)
            if entry is None or not entry.get("url"):
                return None
            return await self.client.download(entry["url"])

    async def read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T | None:
        """The downloaded file handed to `consume` in a thread, or None when there is none.

        Convex's download is one response held whole; it is handed over in chunks, off the loop."""
        data = await self.get(key)
        if data is None:
            return None
        box = [data]
        del data
        return await asyncio.to_thread(consume, _drained(box))

    async def head(self, key: str) -> ObjectInfo | None:
        """The recorded size, type and sha256 of the object, or None."""
        with self._calling("lookup", key):
            entry = await self._lookup(key)
        if entry is None:
            return None
        return ObjectInfo(
            key=key,
            size=int(entry["size"]),
            content_type=entry.get("contentType"),
            last_modified=datetime.fromtimestamp(entry["createdAt"] / 1000, UTC),
            sha256=entry.get("sha256"),
            disposition=entry.get("disposition"),
        )

    async def delete(self, key: str) -> None:
        """Delete the key's entry and its file."""
        with self._calling("delete", key):
            await self.client.mutation(f"{FILES_MODULE}:deleteByKey", {"key": check_key(key)})

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every recorded object under `prefix`, a page at a time."""
        cursor: str | None = None
        while True:
            with self._calling("list", ""):
                page = await self.client.query(
                    f"{FILES_MODULE}:list", {"prefix": prefix, "cursor": cursor, "pageSize": 500}
                )
            for item in page["page"]:
                yield ObjectInfo(
                    key=item["key"],
                    size=int(item["size"]),
                    content_type=item.get("contentType"),
                    last_modified=datetime.fromtimestamp(item["createdAt"] / 1000, UTC),
                    sha256=item.get("sha256"),
                )
            if page["isDone"]:
                return
            cursor = page["continueCursor"]

    async def reference_url(self, key: str) -> str:
        """The file's Convex storage URL (public base URL instead, when configured)."""
        if self.public_base_url:
            return public_url(self.public_base_url, key)
        with self._calling("lookup", key):
            entry = await self._lookup(key)
        if entry is None or not entry.get("url"):
            raise BlobStoreError("no Convex file for this key", bucket=self.name, key=key, operation="lookup")
        url: str = entry["url"]
        return url

    def is_reference_url(self, key: str, url: str) -> bool:
        """Whether `url` is a storage URL of this deployment (Convex picks the file id, which is not
        checked here: the file behind a key is always found by its key, never by this URL)."""
        if self.public_base_url:
            return url == public_url(self.public_base_url, key)
        rest = url[len(self._storage_prefix) :] if url.startswith(self._storage_prefix) else ""
        return bool(rest) and all(ch.isalnum() or ch in "-_" for ch in rest)

    async def access_url(self, key: str, ttl: int) -> str:
        """Convex storage URLs do not expire; the same URL as `reference_url`."""
        return await self.reference_url(key)

    async def aclose(self) -> None:
        """The Convex client belongs to the store that made this bucket."""


def _drained(box: list[bytes]) -> Iterator[bytes]:
    """The bytes in `box` (taken out of it, so they go when the consumer is done), in chunks."""
    data = box.pop()
    for at in range(0, len(data), READ_CHUNK):
        yield data[at : at + READ_CHUNK]
