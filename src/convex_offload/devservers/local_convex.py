"""Start and stop the local Convex server (`localconvex/server.mjs`) on a free loopback port.

    with LocalConvex() as server:
        store = ConvexStore(server.url, server.admin_key)

The server runs this package's real `convex/` folder (or a project's own, `functions=`) through
convex-test behind Convex's HTTP API (see `localconvex/README.md`). The admin key is random per
instance, passed to the server through its environment, and never printed or shown in reprs.
POSIX only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from convex_offload.devservers import runtime
from convex_offload.errors import DevToolsError

SERVER_DIR_ENV = "CONVEX_OFFLOAD_LOCALCONVEX_DIR"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_MAX_READY_LINE = 4096


class LocalConvexError(DevToolsError):
    """The local Convex server could not be found or started."""


def find_server_script(server_dir: str | os.PathLike[str] | None = None) -> Path:
    """`server.mjs` of the local Convex server: in `server_dir`, else `$CONVEX_OFFLOAD_LOCALCONVEX_DIR`,
    else the source checkout's or this version's prepared runtime (`devservers.runtime`)."""
    if server_dir is not None or os.environ.get(SERVER_DIR_ENV):
        directory = Path(server_dir if server_dir is not None else os.environ[SERVER_DIR_ENV])
        script = directory / "server.mjs"
        if script.is_file():
            return script
        raise LocalConvexError(f"there is no server.mjs in {directory}")
    prepared = runtime.prepared_runtime()
    if prepared is None:
        raise LocalConvexError(
            "the local Convex server's npm packages are not installed yet: run `convex-offload demo` once "
            "(or call convex_offload.devservers.runtime.prepare_runtime())"
        )
    return prepared.server_script


class LocalConvex:
    """One local Convex server on 127.0.0.1, as a sync context manager.

    `functions` is the Convex functions folder to serve (default: this package's own).
    `extra_functions` mounts a folder of test-only Convex modules under `test_fixtures/`
    (`test_fixtures/errors:refuse` is `errors.ts`'s `refuse`). `port` 0 picks a free port.
    Without `server_dir`, `start()` installs the server's npm packages first if this is their
    first use (see `devservers.runtime`).
    """

    def __init__(
        self,
        server_dir: str | os.PathLike[str] | None = None,
        *,
        functions: str | os.PathLike[str] | None = None,
        extra_functions: str | os.PathLike[str] | None = None,
        port: int = 0,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.server_dir = server_dir
        self.functions = Path(functions).resolve() if functions is not None else None
        self.extra_functions = Path(extra_functions).resolve() if extra_functions is not None else None
        self.port = port
        self.start_timeout = start_timeout
        self._admin_key = secrets.token_hex(32)
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.url = ""
        """`http://127.0.0.1:PORT` while running, else empty."""
        self.log_path: Path | None = None
        """The server's stderr, under a temp dir that `stop()` removes."""

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._proc is not None else "stopped"
        return f"LocalConvex({state})"

    @property
    def admin_key(self) -> str:
        """The admin key clients must send (random per instance)."""
        return self._admin_key

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        """The server's exit code if it stopped by itself, else None (running, or never started)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and return once it listens; raise LocalConvexError if it cannot."""
        if self._proc is not None:
            raise LocalConvexError("the local Convex server is already running")
        if self.server_dir is not None or os.environ.get(SERVER_DIR_ENV):
            script = find_server_script(self.server_dir)
        else:
            script = runtime.prepare_runtime().server_script
        node = shutil.which("node")
        if node is None:
            raise LocalConvexError("node is not on PATH")
        self._dir = Path(tempfile.mkdtemp(prefix="localconvex-"))
        self.log_path = self._dir / "server.log"
        command = [node, str(script), "--port", str(self.port), "--exit-on-stdin-close"]
        if self.functions is not None:
            command += ["--functions", str(self.functions)]
        if self.extra_functions is not None:
            command += ["--extra-functions", str(self.extra_functions)]
        env = {**os.environ, "CONVEX_ADMIN_KEY": self._admin_key}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(  # noqa: S603 (our own server script)
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        try:
            self.url = self._wait_until_ready(self._proc)
        except LocalConvexError:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> str:
        """The URL from the server's ready line; LocalConvexError if it exits or stays silent."""
        assert proc.stdout is not None
        line = _read_line(proc.stdout.fileno(), self.start_timeout)
        if line is None:
            try:  # it closed its stdout, or said nothing: tell exiting from hanging
                code: int | None = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            if code is None:
                why = f"did not start within {self.start_timeout}s"
            else:
                why = f"exited with code {code}"
            raise LocalConvexError(f"the local Convex server {why}:\n{self._log_tail()}")
        try:
            ready = json.loads(line)
            url = ready["url"]
            if ready.get("event") != "ready" or not isinstance(url, str):
                raise ValueError("not a ready line")
        except (ValueError, KeyError, TypeError) as exc:
            tail = self._log_tail()
            raise LocalConvexError(f"unexpected first line from the server: {line!r}\n{tail}") from exc
        return url

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a timeout) and remove its temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.url = ""

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_line(fd: int, timeout: float) -> str | None:
    """The first line written to `fd` within `timeout` seconds; None on timeout or end of file."""
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer and len(buffer) < _MAX_READY_LINE:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = os.read(fd, _MAX_READY_LINE)
            if not chunk:
                return None
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode("utf-8", errors="replace")
