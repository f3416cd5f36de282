"""The `BlobStore` interface every backend implements, and what it answers.

Backends get what they need to reach their storage (a bucket and its endpoint and credentials,
a folder, a Convex client), never the policy: which types or sizes a bucket accepts, how long a
presigned URL may live and how keys are made are the offloader's business. Every failure of the
storage itself is a `BlobStoreError` naming the bucket, the key and the operation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeVar, runtime_checkable

from convex_offload.errors import ForbiddenReferenceError

T = TypeVar("T")
READ_CHUNK: Final = 3 << 18
"""Bytes per chunk of a streamed read: a multiple of 3, so the base64 of each chunk joins the next."""
_SAFE_KEY: Final = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows of one object."""

    key: str
    size: int
    content_type: str | None = None
    last_modified: datetime | None = None
    sha256: str | None = None
    """Hex sha256, where the backend records it."""
    disposition: str | None = None
    encryption: str | None = None
    kms_key_id: str | None = None


@runtime_checkable
class BlobStore(Protocol):
    """A bucket of immutable, content-addressed objects.

    Keys are produced by the offloader (never from user input) and checked by `check_key`.
    Implementations raise `BlobStoreError` for their own failures and keep provider quirks (R2's
    checksums, Convex's upload URLs) to themselves.
    """

    name: str

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """Store `data` under `key`; the store verifies the sha256 where it can."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""
        ...

    async def read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T | None:
        """`consume` run over the object's bytes, chunk by chunk as they arrive (at most
        `READ_CHUNK` each), where the backend reads them (a worker thread for S3 and folders);
        None if the object does not exist. The whole object is never in memory at once."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None if it does not exist."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        ...

    def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`."""
        ...

    async def reference_url(self, key: str) -> str:
        """The URL written into records in place of the payload.

        A public/CDN URL or a Convex storage URL where the bucket allows it, so consumers without
        this library can still use it; for a private bucket a locator such as `s3://bucket/key`.
        """
        ...

    def is_reference_url(self, key: str, url: str) -> bool:
        """Whether `url` is what `reference_url(key)` writes (a forged URL in a manifest is not)."""
        ...

    async def access_url(self, key: str, ttl: int) -> str:
        """A fresh URL a browser can GET: public, or valid for `ttl` seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...


def check_key(key: str) -> str:
    """`key` if it is a safe relative object key; `ForbiddenReferenceError` otherwise."""
    if len(key) > 1024 or not _SAFE_KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ForbiddenReferenceError(f"object key {key[:80]!r} is not a key this library writes")
    return key


def public_url(base: str, key: str) -> str:
    """The URL of `key` under a public/CDN base URL."""
    return base.rstrip("/") + "/" + check_key(key)
