"""S3 and S3-compatible buckets (AWS, LocalStack, MinIO) and Cloudflare R2, with boto3.

boto3 is synchronous: every call runs in this store's own bounded thread pool, so uploads go in
parallel without blocking the event loop, and every call goes through one place (`_call`) that
turns boto3's errors into `BlobStoreError` (a refused checksum into `AttachmentIntegrityError`).
R2's quirks live here: region `auto`, SigV4, checksums only when required (R2 refuses boto3's
default CRC32 trailer), no SSE-KMS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from convex_offload.blobs.base import READ_CHUNK, ObjectInfo, check_key, public_url
from convex_offload.errors import AttachmentIntegrityError, BlobStoreError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")
MULTIPART_THRESHOLD: Final = 16 << 20
"""Objects this large go up in parts."""
PARTS: Final = TransferConfig(
    multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=8 << 20, max_concurrency=2, use_threads=True
)
PARTS.max_in_memory_upload_chunks = 2  # s3transfer's own setting (boto3's constructor does not take it)
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchObject"})
_BAD_DIGEST: Final = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"})


@dataclass(frozen=True)
class S3Connection:
    """What an S3-compatible bucket needs to be reached and written: no policy."""

    bucket: str
    provider: Literal["s3", "r2"] = "s3"
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile: str | None = None
    timeout_seconds: float = 60
    max_attempts: int = 4
    public_base_url: str | None = None
    max_presign_ttl: int = 900
    """No presigned URL lives longer than this, whatever a caller asks."""
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None


class S3BlobStore:
    """A bucket on S3 or an S3-compatible service (provider `s3` or `r2`)."""

    def __init__(self, name: str, connection: S3Connection, *, max_workers: int = 8) -> None:
        self.name = name
        self.connection = connection
        self.bucket_name = connection.bucket
        self._client = make_client(connection, max_pool_connections=max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"s3-{name}")

    @property
    def client(self) -> S3Client:
        """The boto3 client (for bucket-level checks such as CORS)."""
        return self._client

    def __repr__(self) -> str:
        return (
            f"S3BlobStore({self.name!r}, bucket={self.bucket_name!r}, provider={self.connection.provider!r})"
        )

    async def _call(
        self, operation: str, key: str, fn: Callable[..., T], /, *, missing: bool = False, **kwargs: Any
    ) -> T | None:
        """Run one boto3 call in the pool; None for a missing object when `missing` allows it."""
        loop = asyncio.get_running_loop()
        with self._translated(operation, key, missing=missing):
            return await loop.run_in_executor(self._pool, functools.partial(fn, **kwargs))
        return None

    @contextlib.contextmanager
    def _translated(self, operation: str, key: str, *, missing: bool = False) -> Iterator[None]:
        """boto3's errors as this library's: the one place they are translated."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if missing and code in _MISSING:
                return
            if code in _BAD_DIGEST:
                raise AttachmentIntegrityError(
                    f"{self.name} refused the bytes: {code}", bucket=self.name, key=key
                ) from None
            raise BlobStoreError(_describe(exc), bucket=self.name, key=key, operation=operation) from None
        except BotoCoreError as exc:
            raise BlobStoreError(_describe(exc), bucket=self.name, key=key, operation=operation) from None

    async def put(
        self, key: str, data: bytes | bytearray, *, content_type: str, sha256: str, disposition: str | None
    ) -> None:
        """PutObject with a SHA-256 checksum the service verifies, and the bucket's encryption."""
        c = self.connection
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
        if c.sse:
            params["ServerSideEncryption"] = c.sse
            if c.kms_key_id:
                params["SSEKMSKeyId"] = c.kms_key_id
        if c.storage_class:
            params["StorageClass"] = c.storage_class
        if len(data) >= MULTIPART_THRESHOLD:
            await self._call("multipart upload", key, self._put_in_parts, data=data, params=params)
            return
        await self._call("PutObject", key, self._client.put_object, **params)

    def _put_in_parts(self, data: bytes | bytearray, params: dict[str, Any]) -> None:
        """A large object in parts straight from the decoded buffer (boto3's transfer manager).

        Each part carries a CRC32 the service checks (a SHA-256 of the whole object is in its
        metadata, and every restore checks it); R2 gets none, as it refuses boto3's checksum trailers.
        """
        extra = {k: v for k, v in params.items() if k not in ("Bucket", "Key", "Body", "ChecksumSHA256")}
        if self.connection.provider == "s3":
            extra["ChecksumAlgorithm"] = "CRC32"
        self._client.upload_fileobj(
            io.BufferedReader(BufferReader(data)),
            params["Bucket"],
            params["Key"],
            ExtraArgs=extra,
            Config=PARTS,
        )

    async def get(self, key: str) -> bytes | None:
        """GetObject's bytes, or None when the object does not exist."""
        return await self._call("GetObject", key, self._get, missing=True, key=check_key(key))

    def _get(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.bucket_name, Key=key)
        body: bytes = response["Body"].read()
        return body

    async def read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T | None:
        """GetObject's body streamed into `consume` on this store's threads; None when missing."""
        return await self._call(
            "GetObject", key, self._read_with, missing=True, key=check_key(key), consume=consume
        )

    def _read_with(self, key: str, consume: Callable[[Iterator[bytes]], T]) -> T:
        body = self._client.get_object(Bucket=self.bucket_name, Key=key)["Body"]
        try:
            return consume(body.iter_chunks(READ_CHUNK))
        finally:
            body.close()

    async def head(self, key: str) -> ObjectInfo | None:
        """HeadObject, or None when the object does not exist."""
        response = await self._call(
            "HeadObject",
            key,
            self._client.head_object,
            missing=True,
            Bucket=self.bucket_name,
            Key=check_key(key),
        )
        if response is None:
            return None
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
        await self._call(
            "DeleteObject", key, self._client.delete_object, Bucket=self.bucket_name, Key=check_key(key)
        )

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """ListObjectsV2 through every page."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket_name, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            page = await self._call("ListObjectsV2", "", self._client.list_objects_v2, **params)
            assert page is not None
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"], size=int(item["Size"]), last_modified=item.get("LastModified")
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def reference_url(self, key: str) -> str:
        """The public/CDN URL when configured, else `s3://bucket/key`."""
        return self._reference(key)

    def is_reference_url(self, key: str, url: str) -> bool:
        """Whether `url` is this bucket's reference URL of `key`."""
        return url == self._reference(key)

    def _reference(self, key: str) -> str:
        if self.connection.public_base_url:
            return public_url(self.connection.public_base_url, key)
        return f"s3://{self.bucket_name}/{check_key(key)}"

    async def access_url(self, key: str, ttl: int) -> str:
        """The public URL, or a presigned GET valid for `ttl` seconds (at most `max_presign_ttl`).

        Signing is arithmetic, not I/O: it runs here rather than in the thread pool.
        """
        if self.connection.public_base_url:
            return public_url(self.connection.public_base_url, key)
        with self._translated("presign GetObject", key):
            url: str = self._client.generate_presigned_url(
                ClientMethod="get_object",
                Params={"Bucket": self.bucket_name, "Key": check_key(key)},
                ExpiresIn=max(1, min(ttl, self.connection.max_presign_ttl)),
            )
            return url
        raise AssertionError("unreachable")  # pragma: no cover - _translated re-raises

    async def aclose(self) -> None:
        """Shut the thread pool down and close the client's connections."""
        self._pool.shutdown(wait=True)
        self._client.close()


class BufferReader(io.RawIOBase):
    """A read-only file over a buffer, without copying it (boto3 reads it a part at a time)."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(len(self._view), base + offset))
        return self._position

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._view) - self._position)
        buffer[:size] = self._view[self._position : self._position + size]
        self._position += size
        return size


def make_client(connection: S3Connection, *, max_pool_connections: int = 10) -> S3Client:
    """A boto3 S3 client for a bucket (path-style addressing, SigV4, R2 quirks)."""
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": "path"},
        "max_pool_connections": max_pool_connections,
        "retries": {"max_attempts": connection.max_attempts, "mode": "standard"},
        "connect_timeout": min(10.0, connection.timeout_seconds),
        "read_timeout": connection.timeout_seconds,
    }
    if connection.provider == "r2":
        # R2 rejects the CRC32 trailer boto3 >= 1.36 sends by default (FACTS §8).
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = (
        boto3.session.Session(profile_name=connection.profile)
        if connection.profile
        else boto3.session.Session()
    )
    kwargs: dict[str, Any] = {
        "config": Config(**options),
        "region_name": connection.region or ("auto" if connection.provider == "r2" else None),
    }
    if connection.endpoint_url:
        kwargs["endpoint_url"] = connection.endpoint_url
    if connection.access_key_id is not None and connection.secret_access_key is not None:
        kwargs["aws_access_key_id"] = connection.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = connection.secret_access_key.get_secret_value()
        if connection.session_token is not None:
            kwargs["aws_session_token"] = connection.session_token.get_secret_value()
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
