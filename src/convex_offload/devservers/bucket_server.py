"""Serve local buckets over HTTP on 127.0.0.1 with signed, expiring URLs (for `convex-offload dev`).

    with BucketServer({"local": ServedBucket(Path("bucket"), secret)}) as server:
        config = BucketConfig(provider="local", path=Path("bucket"),
                              serve_url=server.serve_url("local"), signing_key=secret)

`GET`/`HEAD /b/<bucket>/<key>?expires=<unix>&signature=<hex>` answers the object's bytes with
the type and disposition it was stored with; a bad signature or an expired URL is 403, an
unknown bucket or object 404. A development server: one folder per bucket, threads, no TLS.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from convex_offload.blobs.base import check_key
from convex_offload.errors import DevToolsError, ForbiddenReferenceError
from convex_offload.signing import check_signature

log = logging.getLogger(__name__)
_META = ".meta.json"
_PREFIX = "/b/"


@dataclass(frozen=True)
class ServedBucket:
    """A local bucket's folder and the key its URLs are signed with."""

    root: Path
    secret: str = field(repr=False)


class BucketServer:
    """Local buckets over HTTP, as a sync context manager; `port` 0 picks a free port."""

    def __init__(self, buckets: Mapping[str, ServedBucket], *, port: int = 0) -> None:
        self.buckets = {name: ServedBucket(b.root.resolve(), b.secret) for name, b in buckets.items()}
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"BucketServer({sorted(self.buckets)}, url={self.url!r})"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` while running, else empty."""
        if self._server is None:
            return ""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve_url(self, bucket: str) -> str:
        """The `serve_url` of one bucket: its objects' URLs start with it."""
        if self._server is None:
            raise DevToolsError("the bucket server is not running")
        return f"{self.url}{_PREFIX}{bucket}"

    def start(self) -> Self:
        """Listen and serve in a background thread; `DevToolsError` if the port is taken."""
        handler = type("_Handler", (_Handler,), {"buckets": self.buckets})
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        except OSError as exc:
            raise DevToolsError(f"the bucket server cannot listen on 127.0.0.1:{self.port}: {exc}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="bucket-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    buckets: dict[str, ServedBucket]
    server_version = "convex-offload-dev"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_OPTIONS(self) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        # Never log the query string: its signature is a bearer credential until it expires.
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        body = (reason + "\n").encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self, *, with_body: bool) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith(_PREFIX):
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        bucket_name, _, raw_key = parts.path[len(_PREFIX) :].partition("/")
        bucket = self.buckets.get(unquote(bucket_name))
        try:
            key = check_key(unquote(raw_key))
        except ForbiddenReferenceError:
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        if bucket is None or key.endswith(_META):
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        query = parse_qs(parts.query)
        expires = query.get("expires", [""])[0]
        given = query.get("signature", [""])[0]
        verdict = check_signature(bucket.secret, unquote(bucket_name), key, expires, given)
        if verdict != "ok":
            why = "this URL has expired" if verdict == "expired" else "bad or missing signature"
            return self._refuse(HTTPStatus.FORBIDDEN, why)
        path = bucket.root / key
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return self._refuse(HTTPStatus.NOT_FOUND, "no such object")
        with handle:
            meta = _meta(path)
            size = path.stat().st_size
            self.send_response(HTTPStatus.OK)
            self._cors()
            self.send_header("Content-Type", str(meta.get("content_type") or "application/octet-stream"))
            if meta.get("disposition"):
                self.send_header("Content-Disposition", str(meta["disposition"]))
            self.send_header("Content-Length", str(size))
            self.send_header("X-Content-Type-Options", "nosniff")
            remaining = max(0, int(expires) - int(time.time()))
            self.send_header("Cache-Control", f"private, max-age={remaining}")
            self.end_headers()
            if with_body:
                shutil.copyfileobj(handle, self.wfile)
        return None


def _meta(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.with_name(path.name + _META).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
