"""A bucket in memory: a real `BlobStore`, for fast tests of the layers above and for throwaway use.

It behaves as the other backends do (keys checked, sha256 verified on put, `None` for missing
objects, metadata kept, sorted listings, `memory://` locators), the way httpx's `MockTransport` is
a real transport. Objects live as long as the store object.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

from convex_offload.blobs.base import READ_CHUNK, ObjectInfo, check_key, public_url
from convex_offload.errors import AttachmentIntegrityError, BlobStoreError

T = TypeVar("T")


class MemoryBlobStore:
    """Objects in a dict, with the metadata a real store keeps."""

    def __init__(self, name: str, *, public_base_url: str | None = None) -> None:
        self.name = name
        self.public_base_url = public_base_url
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryBlobStore({self.name!r}, objects={len(self._objects)})"

    def _open(self, operation: str, key: str) -> str:
        if self._closed:
            raise BlobStoreError("the store is closed", bucket=self.name, key=key, operation=operation)
        return check_key(key) if key else key

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """Store a copy of `data`, refusing bytes that do not match `sha256`."""
        self._open("PutObject", key)
        body = bytes(data)
        if hashlib.sha256(body).hexdigest() != sha256:
            raise AttachmentIntegrityError("bytes do not match their sha256", bucket=self.name, key=key)
        info = ObjectInfo(
            key=key,
            size=len(body),
            content_type=content_type,
            last_modified=datetime.now(UTC),
            sha256=sha256,
            disposition=disposition,
        )
        self._objects[key] = (body, info)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        self._open("GetObject", key)
        found = self._objects.get(key)
        return found[0] if found is not None else None

    async def read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T | None:
        """The object's bytes in `READ_CHUNK` pieces into `consume` (here, on the loop), or None."""
        self._open("GetObject", key)
        found = self._objects.get(key)
        if found is None:
            return None
        data = found[0]
        return consume(data[i : i + READ_CHUNK] for i in range(0, len(data), READ_CHUNK))

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None."""
        self._open("HeadObject", key)
        found = self._objects.get(key)
        return found[1] if found is not None else None

    async def delete(self, key: str) -> None:
        """Forget the object (a missing one is not an error)."""
        self._open("DeleteObject", key)
        self._objects.pop(key, None)

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects under `prefix`, in key order."""
        self._open("ListObjects", "")
        for key in sorted(self._objects):
            if key.startswith(prefix) and key in self._objects:
                yield self._objects[key][1]

    async def reference_url(self, key: str) -> str:
        """`public_base_url/key` when set, else `memory://<bucket>/<key>`."""
        return (
            public_url(self.public_base_url, key)
            if self.public_base_url
            else f"memory://{self.name}/{check_key(key)}"
        )

    def is_reference_url(self, key: str, url: str) -> bool:
        """Whether `url` is this store's reference URL of `key`."""
        expected = (
            public_url(self.public_base_url, key) if self.public_base_url else f"memory://{self.name}/{key}"
        )
        return url == expected

    async def access_url(self, key: str, ttl: int) -> str:
        """The reference URL (nothing serves memory objects over HTTP)."""
        return await self.reference_url(key)

    async def aclose(self) -> None:
        """Drop every object."""
        self._objects.clear()
        self._closed = True
