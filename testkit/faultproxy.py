"""A fault-injecting HTTP proxy on loopback, for the reliability tests and the benchmarks.

    with FaultProxy("127.0.0.1", localstack_port) as proxy:
        proxy.fail_next(2, status=503, body=SLOW_DOWN)     # the next two requests get 503
        proxy.reset_after(65536, match=is_put)              # the next PUT is cut after 64 KiB of body
        proxy.delay_next(5.0)                               # the next request waits 5 s first
        proxy.down(); proxy.up()                            # refuse connections, then accept again
        proxy.randomly(0.05, seed=7)                        # a random fault on 5% of requests

It understands HTTP/1.1 well enough to act per request on keep-alive connections (request and
response bodies by Content-Length or chunked), runs its own event loop on a thread (usable from
sync and async code alike), and counts what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
T = TypeVar("T")
FaultKind = Literal["status", "reset", "delay", "drop", "hold", "delay_response"]


@dataclass(frozen=True)
class Request:
    """What a matcher sees of a request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Matcher = Callable[[Request], bool]


@dataclass
class Fault:
    """One fault to inject into a matching request."""

    kind: FaultKind
    status: int = 503
    body: bytes = b""
    content_type: str = "application/xml"
    after_bytes: int = 0
    seconds: float = 0.0
    match: Matcher | None = None
    release: threading.Event | None = None


@dataclass
class ProxyStats:
    """What the proxy saw and did."""

    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    held: threading.Event = field(default_factory=threading.Event)
    """Set when a `hold` fault starts holding a request."""

    @property
    def injected(self) -> int:
        """Faults injected in all."""
        return sum(self.faults.values())


class FaultProxy:
    """An HTTP proxy to `upstream_host:upstream_port`, listening on 127.0.0.1, injecting faults."""

    def __init__(self, upstream_host: str, upstream_port: int, *, latency: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency = latency
        self.stats = ProxyStats()
        self._queue: list[Fault] = []
        self._random: tuple[float, random.Random, list[Fault]] | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._port = 0
        self._connections: set[asyncio.StreamWriter] = set()

    def __repr__(self) -> str:
        return f"FaultProxy(127.0.0.1:{self._port} -> {self.upstream[0]}:{self.upstream[1]})"

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`"""
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        """Start listening on a free loopback port."""
        self._thread.start()
        self.up()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection, end the loop thread."""
        self.down()
        self._call(self._close_connections())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def up(self) -> None:
        """Accept connections (again, on the same port); nothing to do if it already does."""
        if self._server is None:
            self._server = self._call(self._listen())

    def down(self) -> None:
        """Refuse new connections and cut the open ones: the upstream looks down."""
        server, self._server = self._server, None
        if server is not None:
            self._call(self._shut(server))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        body: bytes = SLOW_DOWN,
        content_type: str = "application/xml",
        match: Matcher | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` and `body`, without forwarding."""
        self._add(count, Fault("status", status=status, body=body, content_type=content_type, match=match))

    def reset_after(self, after_bytes: int, *, count: int = 1, match: Matcher | None = None) -> None:
        """Forward the next matching request's head and `after_bytes` of its body, then reset."""
        self._add(count, Fault("reset", after_bytes=after_bytes, match=match))

    def delay_next(self, seconds: float, *, count: int = 1, match: Matcher | None = None) -> None:
        """Hold the next matching requests `seconds` before forwarding them (a slow upstream)."""
        self._add(count, Fault("delay", seconds=seconds, match=match))

    def delay_response(self, seconds: float, *, count: int = 1, match: Matcher | None = None) -> None:
        """Forward the next matching requests, then hold their answers `seconds` (processed, late)."""
        self._add(count, Fault("delay_response", seconds=seconds, match=match))

    def drop_next(self, count: int = 1, *, match: Matcher | None = None) -> None:
        """Close the connection instead of answering the next matching requests."""
        self._add(count, Fault("drop", match=match))

    def hold_next(self, release: threading.Event, *, match: Matcher | None = None) -> None:
        """Hold the next matching request (unforwarded) until `release` is set; `stats.held` is set."""
        self._add(1, Fault("hold", release=release, match=match))

    def randomly(self, probability: float, *, seed: int, faults: list[Fault] | None = None) -> None:
        """From now on, inject one of `faults` (default: 500, 503 SlowDown, reset) into requests at
        random with `probability`, reproducibly from `seed`; `randomly(0, seed=0)` stops it."""
        choices = faults or [
            Fault("status", status=503, body=SLOW_DOWN),
            Fault("status", status=500, body=INTERNAL_ERROR),
            Fault("reset", after_bytes=0),
        ]
        with self._lock:
            self._random = (probability, random.Random(seed), choices) if probability > 0 else None

    def clear(self) -> None:
        """Forget every pending fault (random mode included)."""
        with self._lock:
            self._queue.clear()
            self._random = None

    def _add(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._queue.extend([fault] * count)

    def _fault_for(self, request: Request) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.match is None or fault.match(request):
                    del self._queue[index]
                    return fault
            if self._random is not None:
                probability, rng, choices = self._random
                if rng.random() < probability:
                    return rng.choice(choices)
        return None

    # --- the proxy ----------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", self._port, reuse_address=True)
        self._port = server.sockets[0].getsockname()[1]
        return server

    async def _shut(self, server: asyncio.Server) -> None:
        server.close()
        await self._close_connections()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _close_connections(self) -> None:
        for writer in list(self._connections):
            _reset(writer)
        self._connections.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._connections.add(client_writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _read_head(client_reader)
                if head is None:
                    return
                method, path, headers = _parse_request_head(head)
                if headers.get("expect", "").lower() == "100-continue":
                    # Answer the interim response ourselves; upstream gets the body in one go.
                    client_writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await client_writer.drain()
                    head = _without_header(head, b"expect")
                body = await _read_body(client_reader, headers)
                self.stats.requests += 1
                request = Request(method, path, headers, body)
                fault = self._fault_for(request)
                if fault is not None:
                    self.stats.faults[fault.kind if fault.kind != "status" else f"status {fault.status}"] += 1
                if self.latency:
                    await asyncio.sleep(self.latency)
                if fault is not None and fault.kind == "status":
                    await _answer(client_writer, fault.status, fault.body, fault.content_type)
                    continue
                if fault is not None and fault.kind == "drop":
                    _reset(client_writer)
                    return
                if fault is not None and fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                if fault is not None and fault.kind == "hold":
                    self.stats.held.set()
                    assert fault.release is not None
                    while not fault.release.is_set():
                        if client_reader.at_eof() or client_writer.is_closing():
                            return  # the client died while held: its request never reaches upstream
                        await asyncio.sleep(0.01)
                    if client_reader.at_eof() or client_writer.is_closing():
                        return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                up_reader, up_writer = upstream
                if fault is not None and fault.kind == "reset":
                    up_writer.write(head + body[: fault.after_bytes])
                    await up_writer.drain()
                    _reset(up_writer)
                    _reset(client_writer)
                    return
                up_writer.write(head + body)
                await up_writer.drain()
                response = await _read_response(up_reader, method)
                if fault is not None and fault.kind == "delay_response":
                    await asyncio.sleep(fault.seconds)
                client_writer.write(response)
                await client_writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            self._connections.discard(client_writer)
            if upstream is not None:
                upstream[1].close()
            client_writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def _parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    return method, path, _headers(lines[1:])


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(name + b":")]
    return b"\r\n".join(kept)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """The raw chunked body, kept chunked (forwarded as is)."""
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        out += size_line
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


async def _read_response(reader: asyncio.StreamReader, method: str) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = _headers(lines[1:])
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return head
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return head + await _read_chunked(reader)
    if "content-length" in headers:
        return head + await reader.readexactly(int(headers["content-length"]))
    return head + await reader.read()


async def _answer(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    reason = {
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        560: "Function Failed",
    }
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode("latin-1")
    writer.write(head + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a broken network would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()
