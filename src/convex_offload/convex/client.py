"""An async client for Convex's HTTP API: `POST /api/query|mutation|action` with an admin key.

Bounded retries with exponential backoff on connection errors and on 5xx answers that are not
function failures (560 means the function ran and failed: never retried). Errors are typed
(`convex_offload.errors`) and never carry the admin key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from convex_offload.closing import AsyncClosing
from convex_offload.errors import (
    ConvexAuthError,
    ConvexFunctionError,
    ConvexRequestError,
    ConvexTransportError,
    InvalidInputError,
    LimitExceededError,
    RecordTooLargeError,
)

logger = logging.getLogger(__name__)

FunctionKind = Literal["query", "mutation", "action"]

FUNCTION_FAILED = 560
_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_UNPROCESSED_STATUS = frozenset({503})
# Failures that prove the request never reached the server, so resending cannot double it.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TOO_LARGE = re.compile(r"Value is too large")
_LIMIT = re.compile(
    r"Read too much data|Wrote too (much data|many documents)|Scanned too many documents|"
    r"Too many (reads|writes|documents|bytes|queries|index ranges)|"
    r"Arguments for .* are too large|Array length is too long|Object has too many fields|"
    r"Value is too deeply nested|Return value is too large"
)
_CLIENT_NAME = "convex-offload-python-0.1.0"


class ConvexClient(AsyncClosing):
    """Calls Convex functions over HTTP as the deployment's admin.

    One client holds one connection pool; close it with `aclose()` or use it as an async context
    manager. `max_retries` bounds the retries of one call; timeouts apply per attempt.
    """

    def __init__(
        self,
        url: str,
        admin_key: str | SecretStr,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"Convex URL must start with http:// or https://, got {url[:200]!r}")
        key = admin_key if isinstance(admin_key, SecretStr) else SecretStr(admin_key)
        if not key.get_secret_value().strip():
            raise InvalidInputError("Convex admin key is empty")
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self._admin_key = key
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Convex-Client": _CLIENT_NAME},
        )
        self.stats = CallStats()

    def __repr__(self) -> str:
        return f"ConvexClient(url={self.url!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def query(self, path: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run a query and return its value."""
        return await self.call("query", path, args)

    async def mutation(self, path: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run a mutation and return its value."""
        return await self.call("mutation", path, args)

    async def action(self, path: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run an action and return its value; actions are not retried once sent."""
        return await self.call("action", path, args)

    async def call(self, kind: FunctionKind, path: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run function `path` of `kind` with `args`; raise a typed error if it fails."""
        body = {"path": path, "args": dict(args or {}), "format": "json"}
        headers = {"Authorization": f"Convex {self._admin_key.get_secret_value()}"}
        response = await self._send(
            "POST", f"/api/{kind}", what=path, resend_ok=kind != "action", json=body, headers=headers
        )
        return _function_value(response, path)

    async def upload(self, upload_url: str, data: bytes, content_type: str) -> str:
        """POST `data` to an upload URL from `ctx.storage.generateUploadUrl()`; return the storage id."""
        response = await self._send(
            "POST",
            upload_url,
            what="file upload",
            resend_ok=False,
            content=data,
            headers={"Content-Type": content_type},
        )
        if response.status_code != 200:
            raise ConvexRequestError(
                f"file upload refused: HTTP {response.status_code} {_short(response.text)}",
                status_code=response.status_code,
            )
        storage_id = _json(response).get("storageId")
        if not isinstance(storage_id, str):
            raise ConvexRequestError("file upload answered without a storageId", status_code=200)
        return storage_id

    async def download(self, file_url: str) -> bytes | None:
        """GET a Convex storage URL; None when the file does not exist."""
        response = await self._send("GET", file_url, what="file download", resend_ok=True)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ConvexRequestError(
                f"file download refused: HTTP {response.status_code}", status_code=response.status_code
            )
        return response.content

    async def _send(
        self, method: str, url: str, *, what: str, resend_ok: bool, **kwargs: Any
    ) -> httpx.Response:
        """Send with bounded retries on connection errors and retryable 5xx.

        With `resend_ok` False (actions, uploads) only failures that prove the request never
        reached the server are retried: a refused or timed-out connection, and HTTP 503.
        """
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, url, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if not resend_ok and not isinstance(exc, _NEVER_SENT):
                    raise ConvexTransportError(f"Convex {what} failed: {_describe(exc)}") from None
                failure = _describe(exc)
            else:
                retryable = _RETRYABLE_STATUS if resend_ok else _UNPROCESSED_STATUS
                if response.status_code not in retryable:
                    self.stats.calls += 1
                    return response
                failure = f"HTTP {response.status_code}"
            self.stats.retries += 1
            if attempt >= self.max_retries:
                raise ConvexTransportError(
                    f"Convex {what} failed after {attempt + 1} attempts: {failure}"
                ) from None
            delay = self.backoff * (2**attempt) * (0.5 + random.random())  # noqa: S311 (jitter)
            logger.warning("Convex %s: %s; retrying in %.2fs", what, failure, delay)
            await asyncio.sleep(delay)
            attempt += 1


class CallStats:
    """Counts of what one client did: calls answered and retries made."""

    def __init__(self) -> None:
        self.calls = 0
        self.retries = 0


def _function_value(response: httpx.Response, path: str) -> Any:
    status = response.status_code
    if status in (401, 403):
        body = _json(response)
        message = body.get("message") or _short(response.text)
        raise ConvexAuthError(f"Convex refused the admin key calling {path}: {message}")
    if status == FUNCTION_FAILED or (status == 200 and _json(response).get("status") == "error"):
        body = _json(response)
        raise _function_error(path, str(body.get("errorMessage") or "unknown error"), body.get("errorData"))
    if status != 200:
        body = _json(response)
        message = body.get("message") or _short(response.text)
        raise ConvexRequestError(
            f"Convex refused the call to {path}: HTTP {status} {message}",
            status_code=status,
            code=body.get("code") if isinstance(body.get("code"), str) else None,
        )
    body = _json(response)
    if body.get("status") != "success":
        raise ConvexRequestError(f"Convex answered {path} with an unknown body", status_code=status)
    return body.get("value")


def _function_error(path: str, convex_message: str, data: Any) -> ConvexFunctionError:
    headline = _headline(convex_message)
    message = f"{path} failed: {headline}"
    if _TOO_LARGE.search(convex_message):
        return RecordTooLargeError(message, path=path, convex_message=convex_message, data=data)
    if _LIMIT.search(convex_message):
        return LimitExceededError(message, path=path, convex_message=convex_message, data=data)
    return ConvexFunctionError(message, path=path, convex_message=convex_message, data=data)


def _headline(convex_message: str) -> str:
    """The useful line of a Convex error: the `Uncaught Error: ...` part, without the stack."""
    for line in convex_message.splitlines():
        stripped = line.strip()
        if stripped.startswith("Uncaught "):
            return stripped.split(": ", 1)[-1] if ": " in stripped else stripped
    first = convex_message.strip().splitlines()
    return first[0] if first else convex_message


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
