"""Open the configured buckets: each provider's backend gets what it needs from the bucket's config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.convex_files import ConvexFilesBlobStore
from convex_offload.blobs.local import LocalBlobStore
from convex_offload.blobs.memory import MemoryBlobStore
from convex_offload.blobs.s3 import S3BlobStore, S3Connection
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import BucketConfigError

Opener = Callable[[str, BucketConfig, ConvexClient | None, int], BlobStore]


def s3_connection(config: BucketConfig) -> S3Connection:
    """What an `s3`/`r2` bucket's backend needs from its config (the policy stays behind)."""
    assert config.bucket is not None  # the config validated it
    return S3Connection(
        bucket=config.bucket,
        provider="r2" if config.provider == "r2" else "s3",
        endpoint_url=config.effective_endpoint,
        region=config.region,
        access_key_id=config.access_key_id,
        secret_access_key=config.secret_access_key,
        session_token=config.session_token,
        profile=config.profile,
        timeout_seconds=config.timeout_seconds,
        max_attempts=config.max_attempts,
        public_base_url=config.public_base_url,
        max_presign_ttl=config.presign_ttl,
        sse=config.sse,
        kms_key_id=config.kms_key_id,
        storage_class=config.storage_class,
    )


def _s3(name: str, config: BucketConfig, _convex: ConvexClient | None, max_workers: int) -> BlobStore:
    return S3BlobStore(name, s3_connection(config), max_workers=max_workers)


def _convex(name: str, config: BucketConfig, convex: ConvexClient | None, _max_workers: int) -> BlobStore:
    if convex is None:
        raise BucketConfigError(f"buckets.{name}: a convex bucket needs the Convex deployment (convex_url)")
    return ConvexFilesBlobStore(name, convex, public_base_url=config.public_base_url)


def _local(name: str, config: BucketConfig, _convex: ConvexClient | None, max_workers: int) -> BlobStore:
    if config.path is None:
        raise BucketConfigError(f"buckets.{name}.path: a local bucket needs a folder")
    return LocalBlobStore(
        name,
        config.path,
        public_base_url=config.public_base_url,
        serve_url=config.serve_url,
        signing_key=config.signing_key,
        max_workers=max_workers,
    )


def _memory(name: str, config: BucketConfig, _convex: ConvexClient | None, _max_workers: int) -> BlobStore:
    return MemoryBlobStore(name, public_base_url=config.public_base_url)


OPENERS: Final[dict[str, Opener]] = {
    "s3": _s3,
    "r2": _s3,
    "convex": _convex,
    "local": _local,
    "memory": _memory,
}


def open_bucket(
    name: str, config: BucketConfig, *, convex: ConvexClient | None = None, max_workers: int = 8
) -> BlobStore:
    """The `BlobStore` for one bucket's config; `BucketConfigError` for a provider nobody implements."""
    opener = OPENERS.get(config.provider)
    if opener is None:
        raise BucketConfigError(
            f"buckets.{name}.provider: unknown provider {config.provider!r} ({', '.join(OPENERS)})"
        )
    return opener(name, config, convex, max_workers)


def open_buckets(config: OffloadConfig, *, convex: ConvexClient | None = None) -> dict[str, BlobStore]:
    """Every configured bucket, by name."""
    return {
        name: open_bucket(name, bucket, convex=convex, max_workers=config.concurrency)
        for name, bucket in config.buckets.items()
    }
