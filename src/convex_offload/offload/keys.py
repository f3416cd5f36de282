"""Object keys and tenant scope: where an object lives, and whether a reference may be followed.

Keys are content-addressed within a tenant scope, `<bucket prefix><scope>/<sha256>`, where the
scope is a hash of the record's tenant (its resource id), or `global`. No user text enters a key.
A reference read from a record is followed only if it names a configured bucket, exactly the key
this library would write there for the record's tenant and content, and the URL this library
would have written for that key.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Final, Literal

from convex_offload.blobs.base import BlobStore
from convex_offload.errors import ForbiddenReferenceError
from convex_offload.offload.manifest import Ref

TenantMode = Literal["resource", "global"]
_OUR_KEY: Final = re.compile(r"(?:t-[0-9a-f]{32}|global)/[0-9a-f]{64}")


class KeyScheme:
    """The keys of one store's buckets (each bucket's prefix) under one tenant mode."""

    def __init__(self, prefixes: Mapping[str, str], tenant_mode: TenantMode = "resource") -> None:
        self.prefixes = dict(prefixes)
        self.tenant_mode: TenantMode = tenant_mode

    def __repr__(self) -> str:
        return f"KeyScheme(buckets={sorted(self.prefixes)}, tenant_mode={self.tenant_mode!r})"

    def tenant_scope(self, tenant: str | None) -> str:
        """The key segment of a tenant: a hash, so no user-controlled text enters a key."""
        if self.tenant_mode == "global":
            return "global"
        return _tenant_scope(tenant or "")

    def key_for(self, bucket: str, tenant: str | None, sha256: str) -> str:
        """The content-addressed key of an object: `<prefix><tenant scope>/<sha256>`."""
        return f"{self.prefixes[bucket]}{self.tenant_scope(tenant)}/{sha256}"

    def is_our_key(self, bucket: str, key: str) -> bool:
        """Whether `key` has the shape of a key this library writes in `bucket`."""
        prefix = self.prefixes[bucket]
        return key.startswith(prefix) and _OUR_KEY.fullmatch(key[len(prefix) :]) is not None

    def check_ref(
        self, ref: Ref, tenant: str | None, buckets: Mapping[str, BlobStore], *, record: str
    ) -> None:
        """Refuse a ref outside the configured buckets, outside this record's tenant scope, or
        holding a URL this library would not have written (`ForbiddenReferenceError`)."""
        bucket = buckets.get(ref.bucket)
        if bucket is None or ref.bucket not in self.prefixes:
            raise ForbiddenReferenceError(
                f"{record}: ref {ref.path}: bucket {ref.bucket!r} is not configured"
            )
        if ref.key != self.key_for(ref.bucket, tenant, ref.sha256):
            raise ForbiddenReferenceError(
                f"{record}: ref {ref.path}: key {ref.key[:120]!r} is not this record's tenant's key "
                "for its content"
            )
        if not bucket.is_reference_url(ref.key, ref.url):
            raise ForbiddenReferenceError(
                f"{record}: ref {ref.path}: url {ref.url[:120]!r} is not the URL bucket "
                f"{ref.bucket!r} gives this object"
            )


@functools.lru_cache(maxsize=65_536)
def _tenant_scope(tenant: str) -> str:
    digest = hashlib.sha256(b"convex-offload-tenant\x00" + tenant.encode("utf-8")).hexdigest()
    return "t-" + digest[:32]
