"""`doctor`: can this configuration work? Config, Convex, and every bucket, probed for real.

Each check is `ok`, `problem` or `skipped` (nothing configured to check, or not applicable).
A bucket always gets three checks (probe, encryption, CORS) so reports line up across runs.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from convex_offload.blobs.base import BlobStore, ObjectInfo
from convex_offload.blobs.factory import open_bucket
from convex_offload.blobs.s3 import S3BlobStore
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import (
    BucketConfigError,
    ConvexAuthError,
    ConvexError,
    ConvexRequestError,
    ConvexTransportError,
)

Status = Literal["ok", "problem", "skipped"]
PROBE = b"convex-offload doctor probe\n"
PROBE_FOLDER = "_doctor/"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


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
    """Every check, in order: configuration, Convex, then each bucket (probe, encryption, CORS).

    `config` must name a Convex URL and key (the CLI refuses to start without them).
    """
    if config.convex_url is None or config.convex_admin_key is None:
        raise BucketConfigError("convex_url / convex_admin_key: doctor needs both")
    checks = [check_config(config)]
    client = ConvexClient(config.convex_url, config.convex_admin_key, max_retries=1, timeout=15)
    try:
        checks.append(await check_convex(client))
        for name, bucket_config in config.buckets.items():
            bucket = open_bucket(name, bucket_config, convex=client, max_workers=2)
            try:
                probe, head = await probe_bucket(bucket, bucket_config.prefix)
                checks.append(probe)
                checks.append(check_encryption(name, bucket_config, head))
                checks.append(await check_cors(bucket, bucket_config))
            finally:
                await bucket.aclose()
    finally:
        await client.aclose()
    return checks


def check_config(config: OffloadConfig) -> Check:
    """The configuration loaded and validated (the caller got this far); what it holds."""
    buckets = ", ".join(f"{name} ({b.provider})" for name, b in config.buckets.items())
    rules = f", {len(config.rules)} routing rule(s)" if config.rules else ""
    return Check("config", "ok", f"buckets {buckets}; default {config.default_bucket}{rules}")


async def check_convex(client: ConvexClient) -> Check:
    """Convex answers, accepts the admin key, and has this project's functions deployed."""
    try:
        await client.query("offload/refs:list", {"cursor": None, "pageSize": 1})
    except ConvexAuthError:
        return Check("convex", "problem", f"{client.url} refused the admin key")
    except ConvexTransportError as exc:
        return Check("convex", "problem", f"{client.url} is not reachable: {exc}")
    except ConvexRequestError as exc:
        return Check(
            "convex",
            "problem",
            f"{client.url} answered {exc.status_code} to offload/refs:list: "
            "deploy this project's convex/ folder",
        )
    except ConvexError as exc:
        return Check("convex", "problem", f"{client.url}: {exc}")
    return Check("convex", "ok", f"{client.url} reachable, admin key accepted, functions deployed")


async def probe_bucket(bucket: BlobStore, prefix: str) -> tuple[Check, ObjectInfo | None]:
    """Put a small object under `<prefix>_doctor/`, read it back, delete it; and its HEAD while it lived.

    Failures of any kind are reported rather than raised: that is what doctor is for.
    """
    name = f"bucket {bucket.name} probe"
    key = f"{prefix}{PROBE_FOLDER}{uuid.uuid4().hex}"
    sha256 = hashlib.sha256(PROBE).hexdigest()
    try:
        await bucket.put(key, PROBE, content_type="text/plain", sha256=sha256, disposition="attachment")
    except Exception as exc:  # any failure is the finding, whatever its type
        return Check(name, "problem", f"put {key} failed: {_describe(exc)}"), None
    problems: list[str] = []
    head: ObjectInfo | None = None
    try:
        got = await bucket.get(key)
        if got is None:
            problems.append("get found nothing right after the put")
        elif got != PROBE:
            problems.append("get returned different bytes than were put")
        head = await bucket.head(key)
        if head is None:
            problems.append("head found nothing right after the put")
    except Exception as exc:
        problems.append(f"reading it back failed: {_describe(exc)}")
    try:
        await bucket.delete(key)
        if await bucket.head(key) is not None:
            problems.append(f"{key} is still there after delete")
    except Exception as exc:
        problems.append(f"delete failed, {key} is left behind: {_describe(exc)}")
    if problems:
        return Check(name, "problem", "; ".join(problems)), head
    where = f"{prefix}{PROBE_FOLDER}"
    return Check(name, "ok", f"put, get and delete of a {len(PROBE)}-byte object under {where} work"), head


def check_encryption(bucket_name: str, config: BucketConfig, head: ObjectInfo | None) -> Check:
    """The probe's HEAD reports the configured server-side encryption (and KMS key, if set)."""
    name = f"bucket {bucket_name} encryption"
    if config.sse is None:
        return Check(name, "skipped", "no sse configured")
    if config.provider not in ("s3", "r2"):
        return Check(name, "skipped", f"sse does not apply to {config.provider} buckets")
    if head is None:
        return Check(name, "skipped", "the probe could not be stored, so nothing to inspect")
    if head.encryption != config.sse:
        return Check(
            name,
            "problem",
            f"configured {config.sse}, HEAD of the stored probe reports {head.encryption or 'none'}",
        )
    reported = f"HEAD of the stored probe reports ServerSideEncryption={head.encryption}"
    if config.kms_key_id:
        if not head.kms_key_id:
            return Check(name, "problem", f"{reported} but no KMS key id (configured {config.kms_key_id})")
        same = same_kms_key(config.kms_key_id, head.kms_key_id)
        if same is False:
            return Check(
                name, "problem", f"{reported} with key {head.kms_key_id}, configured {config.kms_key_id}"
            )
        reported += f", SSEKMSKeyId={head.kms_key_id}"
        if same is None:
            reported += f" (the configured alias {config.kms_key_id} was not resolved to compare)"
    host = urlsplit(config.effective_endpoint or "").hostname
    if host in _LOOPBACK:
        # A local S3 stand-in echoes the headers it was sent (LocalStack accepts SSE-KMS with KMS off).
        reported += "; a local endpoint: this shows the request asked for it, not that data is encrypted"
    return Check(name, "ok", reported)


def same_kms_key(configured: str, reported: str) -> bool | None:
    """Whether S3's reported key ARN is the configured key (id or ARN); None if an alias hides it."""
    if reported == configured or reported.endswith(("/" + configured, ":" + configured)):
        return True
    if configured.startswith("alias/") or ":alias/" in configured:
        return None  # S3 reports the key's ARN; resolving an alias needs kms:DescribeKey
    return False


async def check_cors(bucket: BlobStore, config: BucketConfig) -> Check:
    """Every configured origin may GET from the bucket (S3 and R2)."""
    name = f"bucket {bucket.name} CORS"
    origins = config.cors_origins
    if not origins:
        return Check(name, "skipped", "no cors_origins configured")
    if not isinstance(bucket, S3BlobStore):
        return Check(name, "skipped", f"not applicable to {config.provider} buckets")
    try:
        answer = await asyncio.to_thread(bucket.client.get_bucket_cors, Bucket=bucket.bucket_name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchCORSConfiguration":
            return Check(name, "problem", f"the bucket has no CORS rules: {', '.join(origins)} cannot GET")
        return Check(name, "problem", f"GetBucketCors failed: {code or _describe(exc)}")
    except BotoCoreError as exc:
        return Check(name, "problem", f"GetBucketCors failed: {_describe(exc)}")
    patterns = [
        origin
        for rule in answer.get("CORSRules", [])
        if "GET" in rule.get("AllowedMethods", [])
        for origin in rule.get("AllowedOrigins", [])
    ]
    missing = [o for o in origins if not any(fnmatch.fnmatchcase(o, p) for p in patterns)]
    if missing:
        return Check(name, "problem", f"no CORS rule allows GET from {', '.join(missing)}")
    return Check(name, "ok", f"GET allowed from {', '.join(origins)}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
