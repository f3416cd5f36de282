"""Signed, expiring URLs for local buckets served over HTTP by `convex-offload dev`.

A URL is `<serve_url>/<key>?expires=<unix seconds>&signature=<hex>`, where the signature is
HMAC-SHA256, under the bucket's `signing_key`, of `v1`, the bucket name, the key and the expiry,
one per line. The server recomputes it and compares in constant time; an expired or altered URL
is refused. Anyone holding a URL can read the object until it expires (a bearer URL, like an S3
presigned one).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Literal
from urllib.parse import quote

Verdict = Literal["ok", "expired", "bad"]


def signature(secret: str, bucket: str, key: str, expires: int) -> str:
    """The hex HMAC-SHA256 of one (bucket, key, expiry) under `secret`."""
    message = f"v1\n{bucket}\n{key}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_url(
    serve_url: str, bucket: str, key: str, *, secret: str, ttl: int, now: float | None = None
) -> str:
    """A URL for `key` valid for `ttl` seconds from `now` (default: the current time)."""
    expires = int(now if now is not None else time.time()) + ttl
    token = signature(secret, bucket, key, expires)
    return f"{serve_url.rstrip('/')}/{quote(key)}?expires={expires}&signature={token}"


def check_signature(
    secret: str, bucket: str, key: str, expires: str, given: str, now: float | None = None
) -> Verdict:
    """Whether a request's `expires` and `signature` admit reading `key` of `bucket` now."""
    if not expires.isdigit() or len(expires) > 12:
        return "bad"
    expected = signature(secret, bucket, key, int(expires))
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", errors="replace")):
        return "bad"
    return "expired" if int(expires) < (now if now is not None else time.time()) else "ok"
