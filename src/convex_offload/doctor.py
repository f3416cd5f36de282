"""`doctor`: is this configuration able to work? Config, Convex, and every bucket, probed for real."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.factory import open_bucket
from convex_offload.blobs.s3 import S3BlobStore
from convex_offload.config import OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import ConvexAuthError, ConvexError, ConvexOffloadError, ConvexRequestError

Status = Literal["ok", "problem", "skipped"]
PROBE = b"convex-offload doctor probe\n"


@dataclass(frozen=True)
class Check:
    """One thing `doctor` looked at."""

    name: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, Any]:
        """As `--json` prints it."""
        return asdict(self)


async def run_doctor(config: OffloadConfig) -> list[Check]:
    """Every check, in order: configuration, Convex, then each bucket (probe, encryption, CORS)."""
    checks = [Check("config", "ok", f"{len(config.buckets)} bucket(s), default {config.default_bucket!r}")]
    client: ConvexClient | None = None
    if config.convex_url and config.convex_admin_key:
        client = ConvexClient(config.convex_url, config.convex_admin_key, max_retries=1, timeout=15)
    try:
        checks.append(await _check_convex(client))
        for name, bucket_config in config.buckets.items():
            bucket = open_bucket(name, bucket_config, convex=client, max_workers=2)
            try:
                checks.extend(await _check_bucket(bucket))
            finally:
                await bucket.aclose()
    finally:
        if client is not None:
            await client.aclose()
    return checks


async def _check_convex(client: ConvexClient | None) -> Check:
    if client is None:
        return Check("convex", "problem", "no convex_url / convex_admin_key configured")
    try:
        await client.query("offload/refs:list", {"cursor": None, "pageSize": 1})
    except ConvexAuthError:
        return Check("convex", "problem", f"{client.url} refused the admin key")
    except ConvexRequestError as exc:
        return Check(
            "convex",
            "problem",
            f"{client.url} answered {exc.status_code}: deploy this project's convex/ folder",
        )
    except ConvexError as exc:
        return Check("convex", "problem", f"{client.url}: {exc}")
    return Check("convex", "ok", f"{client.url} reachable, admin key accepted, functions deployed")


async def _check_bucket(bucket: BlobStore) -> list[Check]:
    name = f"bucket {bucket.name}"
    key = f"{bucket.config.prefix}_doctor/{uuid.uuid4().hex}"
    sha256 = hashlib.sha256(PROBE).hexdigest()
    try:
        await bucket.put(key, PROBE, content_type="text/plain", sha256=sha256, disposition="attachment")
        got = await bucket.get(key)
        head = await bucket.head(key)
    except ConvexOffloadError as exc:
        return [Check(f"{name} probe", "problem", f"put/get failed: {exc}")]
    checks: list[Check] = []
    try:
        if got != PROBE:
            checks.append(Check(f"{name} probe", "problem", "the probe read back different bytes"))
        else:
            checks.append(Check(f"{name} probe", "ok", "put, get and delete of a probe object work"))
        checks.append(
            _check_encryption(bucket, head.encryption if head else None, head.kms_key_id if head else None)
        )
    finally:
        try:
            await bucket.delete(key)
            if await bucket.head(key) is not None:
                checks.append(Check(f"{name} probe", "problem", "the probe is still there after delete"))
        except ConvexOffloadError as exc:
            checks.append(Check(f"{name} probe", "problem", f"delete failed: {exc}"))
    checks.append(await _check_cors(bucket))
    return checks


def _check_encryption(bucket: BlobStore, applied: str | None, kms_key: str | None) -> Check:
    name = f"bucket {bucket.name} encryption"
    wanted = bucket.config.sse
    if wanted is None:
        return Check(name, "skipped", "no server-side encryption configured")
    if applied != wanted:
        return Check(name, "problem", f"configured {wanted}, the stored probe reports {applied or 'none'}")
    if bucket.config.kms_key_id and kms_key and not kms_key.endswith(bucket.config.kms_key_id.split("/")[-1]):
        return Check(
            name, "problem", f"probe encrypted with KMS key {kms_key}, configured {bucket.config.kms_key_id}"
        )
    return Check(name, "ok", f"the stored probe reports {applied} (the service applied what we asked for)")


async def _check_cors(bucket: BlobStore) -> Check:
    name = f"bucket {bucket.name} CORS"
    origins = bucket.config.cors_origins
    if not origins:
        return Check(name, "skipped", "no cors_origins configured")
    if not isinstance(bucket, S3BlobStore):
        return Check(name, "skipped", f"not applicable to {bucket.config.provider} buckets")
    try:
        rules = await asyncio.to_thread(bucket.client.get_bucket_cors, Bucket=bucket.bucket_name)
    except (ClientError, BotoCoreError) as exc:
        return Check(name, "problem", f"no CORS configuration readable: {type(exc).__name__}")
    allowed: set[str] = set()
    for rule in rules.get("CORSRules", []):
        if "GET" in rule.get("AllowedMethods", []):
            allowed.update(rule.get("AllowedOrigins", []))
    missing = [o for o in origins if o not in allowed and "*" not in allowed]
    if missing:
        return Check(name, "problem", f"GET not allowed for {', '.join(missing)}")
    return Check(name, "ok", f"GET allowed for {', '.join(origins)}")
