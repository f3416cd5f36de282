"""A bucket in Convex file storage, through this project's `convex/offload/files.ts` functions.

Convex names files by storage id; the table `offload_files` maps each content-addressed key to
its file. Upload: `generateUploadUrl` → POST the bytes → `commit` (a racing duplicate is deleted
there, so each key keeps exactly one file). The URL written into records is the file's Convex
storage URL, which anyone holding it can GET (Convex's own model: bearer URLs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from convex_offload.blobs.base import ObjectInfo, check_key
from convex_offload.config import BucketConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import BucketConfigError, ConvexError, OffloadError

FILES_MODULE = "offload/files"


class ConvexFilesBlobStore:
    """Objects in the Convex deployment's own file storage."""

    def __init__(self, name: str, config: BucketConfig, client: ConvexClient | None) -> None:
        if client is None:
            raise BucketConfigError(
                f"buckets.{name}: a convex bucket needs the Convex deployment (convex_url)"
            )
        self.name = name
        self.config = config
        self.client = client

    def __repr__(self) -> str:
        return f"ConvexFilesBlobStore({self.name!r}, {self.client!r})"

    async def _lookup(self, key: str) -> dict[str, Any] | None:
        entry = await self.client.query(f"{FILES_MODULE}:lookup", {"key": check_key(key)})
        return entry if isinstance(entry, dict) else None

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """Upload through an upload URL and record the key; Convex checks the size it received."""
        try:
            upload_url = await self.client.mutation(f"{FILES_MODULE}:generateUploadUrl", {})
            storage_id = await self.client.upload(upload_url, bytes(data), content_type)
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
        except ConvexError as exc:
            raise OffloadError(f"bucket {self.name!r}: Convex file upload failed: {exc}") from None

    async def get(self, key: str) -> bytes | None:
        """Download the file behind `key`, or None when there is none."""
        try:
            entry = await self._lookup(key)
            if entry is None or not entry.get("url"):
                return None
            return await self.client.download(entry["url"])
        except ConvexError as exc:
            raise OffloadError(f"bucket {self.name!r}: Convex file download failed: {exc}") from None

    async def head(self, key: str) -> ObjectInfo | None:
        """The recorded size, type and sha256 of the object, or None."""
        try:
            entry = await self._lookup(key)
        except ConvexError as exc:
            raise OffloadError(f"bucket {self.name!r}: Convex file lookup failed: {exc}") from None
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
        try:
            await self.client.mutation(f"{FILES_MODULE}:deleteByKey", {"key": check_key(key)})
        except ConvexError as exc:
            raise OffloadError(f"bucket {self.name!r}: Convex file delete failed: {exc}") from None

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every recorded object under `prefix`, a page at a time."""
        cursor: str | None = None
        while True:
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
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/") + "/" + check_key(key)
        entry = await self._lookup(key)
        if entry is None or not entry.get("url"):
            raise OffloadError(f"bucket {self.name!r}: no Convex file for {key!r}")
        url: str = entry["url"]
        return url

    async def access_url(self, key: str, ttl: int) -> str:
        """Convex storage URLs do not expire; the same URL as `reference_url`."""
        return await self.reference_url(key)

    async def aclose(self) -> None:
        """The Convex client belongs to the store that made this bucket."""
