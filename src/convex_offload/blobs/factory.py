"""Open the configured buckets."""

from __future__ import annotations

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.convex_files import ConvexFilesBlobStore
from convex_offload.blobs.local import LocalBlobStore
from convex_offload.blobs.s3 import S3BlobStore
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.convex.client import ConvexClient


def open_bucket(
    name: str, config: BucketConfig, *, convex: ConvexClient | None = None, max_workers: int = 8
) -> BlobStore:
    """The `BlobStore` for one bucket's config."""
    if config.provider in ("s3", "r2"):
        return S3BlobStore(name, config, max_workers=max_workers)
    if config.provider == "convex":
        return ConvexFilesBlobStore(name, config, convex)
    return LocalBlobStore(name, config)


def open_buckets(config: OffloadConfig, *, convex: ConvexClient | None = None) -> dict[str, BlobStore]:
    """Every configured bucket, by name."""
    return {
        name: open_bucket(name, bucket, convex=convex, max_workers=config.concurrency)
        for name, bucket in config.buckets.items()
    }
