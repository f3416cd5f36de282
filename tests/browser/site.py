"""A small web site for browser tests: pages a test publishes, and a beacon that records every hit.

    with Site() as app:
        url = app.publish("/gallery.html", "<img src=...>")
        ...
        assert app.wait_for_hit("sentinel", timeout=10)
        assert "svg-script" not in app.hits()

Each site listens on its own free port of 127.0.0.1, so two sites are two origins. A request for
`/beacon/<name>` is recorded (under `name`) and answered 204 with `Access-Control-Allow-Origin: *`,
whatever its method and origin, so a script can reach it from any page. Unknown paths answer 404.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self, cast
from urllib.parse import quote, unquote, urlsplit

_HOST = "127.0.0.1"
BEACON_PREFIX = "/beacon/"


@dataclass(frozen=True)
class Resource:
    """What the site answers for one path."""

    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Site) -> None:
        super().__init__((_HOST, 0), _Handler)
        self.site = site


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _site(self) -> Site:
        return cast(_Server, self.server).site

    def _answer(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(BEACON_PREFIX):
            self._site().record(unquote(path[len(BEACON_PREFIX) :]))
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        resource = self._site().resource(path)
        if resource is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", resource.content_type)
        self.send_header("Content-Length", str(len(resource.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in resource.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resource.body)

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._drain_body()
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows what a test asserts, not an access log."""


class Site:
    """An HTTP server on a free loopback port; a context manager (served from a background thread)."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}
        self._hits: list[str] = []
        self._changed = threading.Condition()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="browser-site", daemon=True)

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:<port>`: the site's origin, as a browser names it."""
        return f"http://{_HOST}:{self._server.server_address[1]}"

    def publish(
        self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8", **headers: str
    ) -> str:
        """Serve `body` at `path` (from now on) and return its full URL.

        Keyword `headers` are sent too, `_` in a name becoming `-` (`content_disposition="attachment"`).
        """
        if not path.startswith("/") or path.startswith(BEACON_PREFIX):
            raise ValueError(f"{path!r}: a page path starts with '/' and is not under {BEACON_PREFIX}")
        data = body.encode() if isinstance(body, str) else body
        extra = tuple((name.replace("_", "-"), value) for name, value in headers.items())
        with self._changed:
            self._resources[path] = Resource(data, content_type, extra)
        return self.origin + path

    def resource(self, path: str) -> Resource | None:
        """What was published at `path`, if anything."""
        with self._changed:
            return self._resources.get(path)

    def beacon_url(self, name: str) -> str:
        """The URL whose request records a hit named `name`."""
        return f"{self.origin}{BEACON_PREFIX}{quote(name, safe='')}"

    def record(self, name: str) -> None:
        """Record one hit of the beacon `name` (the request handler calls this)."""
        with self._changed:
            self._hits.append(name)
            self._changed.notify_all()

    def hits(self) -> list[str]:
        """Every beacon hit so far, in arrival order."""
        with self._changed:
            return list(self._hits)

    def wait_for_hit(self, name: str, timeout: float) -> bool:
        """Wait until the beacon `name` has been hit; False if it was not within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: name in self._hits, timeout)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
