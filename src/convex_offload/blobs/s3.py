"""S3 and S3-compatible buckets (AWS, LocalStack, MinIO) and Cloudflare R2, with boto3.

boto3 is synchronous: every call runs in this store's own bounded thread pool, so uploads go in
parallel without blocking the event loop. R2's quirks live here: region `auto`, SigV4, checksums
only when required (R2 refuses boto3's default CRC32 trailer), no SSE-KMS.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from convex_offload.blobs.base import ObjectInfo, check_key
from convex_offload.config import BucketConfig
from convex_offload.errors import AttachmentIntegrityError, BucketConfigError, OffloadError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchObject"})


class S3BlobStore:
    """A bucket on S3 or an S3-compatible service (provider `s3` or `r2`)."""

    def __init__(self, name: str, config: BucketConfig, *, max_workers: int = 8) -> None:
        if config.bucket is None:
            raise BucketConfigError(f"buckets.{name}.bucket: an S3 bucket needs its bucket name")
        self.name = name
        self.config = config
        self.bucket_name = config.bucket
        self._client = make_client(config, max_pool_connections=max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"s3-{name}")

    @property
    def client(self) -> S3Client:
        """The boto3 client (for bucket-level checks such as CORS)."""
        return self._client

    def __repr__(self) -> str:
        return f"S3BlobStore({self.name!r}, bucket={self.bucket_name!r}, provider={self.config.provider!r})"

    async def _run(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, **kwargs))

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """PutObject with a SHA-256 checksum the service verifies, and the bucket's encryption."""
        params: dict[str, Any] = {
            "Bucket": self.bucket_name,
            "Key": check_key(key),
            "Body": data,
            "ContentType": content_type,
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
            "Metadata": {"sha256": sha256},
        }
        if disposition:
            params["ContentDisposition"] = disposition
        if self.config.sse:
            params["ServerSideEncryption"] = self.config.sse
            if self.config.kms_key_id:
                params["SSEKMSKeyId"] = self.config.kms_key_id
        if self.config.storage_class:
            params["StorageClass"] = self.config.storage_class
        try:
            await self._run(self._client.put_object, **params)
        except ClientError as exc:
            code = _code(exc)
            if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
                raise AttachmentIntegrityError(
                    f"{self.name} refused the bytes: {code}", bucket=self.name, key=key
                ) from None
            raise OffloadError(f"bucket {self.name!r}: PutObject failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise OffloadError(
                f"bucket {self.name!r}: PutObject failed: {type(exc).__name__}: {exc}"
            ) from None

    async def get(self, key: str) -> bytes | None:
        """GetObject's bytes, or None when the object does not exist."""
        try:
            return await self._run(self._get, key=check_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise OffloadError(f"bucket {self.name!r}: GetObject failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise OffloadError(
                f"bucket {self.name!r}: GetObject failed: {type(exc).__name__}: {exc}"
            ) from None

    def _get(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.bucket_name, Key=key)
        body: bytes = response["Body"].read()
        return body

    async def head(self, key: str) -> ObjectInfo | None:
        """HeadObject, or None when the object does not exist."""
        try:
            response = await self._run(self._client.head_object, Bucket=self.bucket_name, Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise OffloadError(f"bucket {self.name!r}: HeadObject failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise OffloadError(
                f"bucket {self.name!r}: HeadObject failed: {type(exc).__name__}: {exc}"
            ) from None
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            content_type=response.get("ContentType"),
            last_modified=response.get("LastModified"),
            sha256=response.get("Metadata", {}).get("sha256"),
            disposition=response.get("ContentDisposition"),
            encryption=response.get("ServerSideEncryption"),
            kms_key_id=response.get("SSEKMSKeyId"),
        )

    async def delete(self, key: str) -> None:
        """DeleteObject (S3 answers success for a missing key too)."""
        try:
            await self._run(self._client.delete_object, Bucket=self.bucket_name, Key=check_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise OffloadError(f"bucket {self.name!r}: DeleteObject failed: {_describe(exc)}") from None

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """ListObjectsV2 through every page."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            try:
                page = await self._run(self._client.list_objects_v2, **params)
            except (ClientError, BotoCoreError) as exc:
                raise OffloadError(f"bucket {self.name!r}: ListObjectsV2 failed: {_describe(exc)}") from None
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"], size=int(item["Size"]), last_modified=item.get("LastModified")
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def reference_url(self, key: str) -> str:
        """The public/CDN URL when configured, else `s3://bucket/key`."""
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/") + "/" + check_key(key)
        return f"s3://{self.bucket_name}/{check_key(key)}"

    async def access_url(self, key: str, ttl: int) -> str:
        """The public URL, or a presigned GET valid for min(ttl, presign_ttl) seconds."""
        if self.config.public_base_url:
            return await self.reference_url(key)
        expires = max(1, min(ttl, self.config.presign_ttl))
        url: str = await self._run(
            self._client.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": self.bucket_name, "Key": check_key(key)},
            ExpiresIn=expires,
        )
        return url

    async def aclose(self) -> None:
        """Shut the thread pool down and close the client's connections."""
        self._pool.shutdown(wait=True)
        self._client.close()


def make_client(config: BucketConfig, *, max_pool_connections: int = 10) -> S3Client:
    """A boto3 S3 client for a bucket's config (path-style addressing, SigV4, R2 quirks)."""
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": "path"},
        "max_pool_connections": max_pool_connections,
        "retries": {"max_attempts": config.max_attempts, "mode": "standard"},
        "connect_timeout": min(10.0, config.timeout_seconds),
        "read_timeout": config.timeout_seconds,
    }
    if config.provider == "r2":
        # R2 rejects the CRC32 trailer boto3 >= 1.36 sends by default (FACTS §8).
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = (
        boto3.session.Session(profile_name=config.profile) if config.profile else boto3.session.Session()
    )
    kwargs: dict[str, Any] = {
        "config": Config(**options),
        "region_name": config.region or ("auto" if config.provider == "r2" else None),
    }
    if config.effective_endpoint:
        kwargs["endpoint_url"] = config.effective_endpoint
    if config.access_key_id is not None and config.secret_access_key is not None:
        kwargs["aws_access_key_id"] = config.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = config.secret_access_key.get_secret_value()
        if config.session_token is not None:
            kwargs["aws_session_token"] = config.session_token.get_secret_value()
    client: S3Client = session.client("s3", **kwargs)
    return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
