"""Start and stop the local Convex server (`localconvex/server.mjs`) on a free loopback port.

    with LocalConvex() as server:
        store = ConvexStore(server.url, server.admin_key)

It runs the repository's real `convex/` folder through convex-test behind Convex's HTTP API
(see `localconvex/`). The admin key is random per instance, passed through the environment and
never printed or shown in reprs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

SERVER_SCRIPT = Path("localconvex") / "server.mjs"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class LocalConvexError(RuntimeError):
    """The local Convex server could not be found or started."""


def find_server_script(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`localconvex/server.mjs`: given, from `CONVEX_OFFLOAD_LOCALCONVEX_DIR`, or found upward from
    the current directory or this package."""
    if explicit is not None:
        candidates = [Path(explicit)]
    elif os.environ.get("CONVEX_OFFLOAD_LOCALCONVEX_DIR"):
        candidates = [Path(os.environ["CONVEX_OFFLOAD_LOCALCONVEX_DIR"])]
    else:
        starts = [Path.cwd(), Path(__file__).resolve().parent]
        candidates = [d / "localconvex" for start in starts for d in (start, *start.parents)]
    for directory in candidates:
        script = directory / "server.mjs"
        if script.is_file():
            return script
    raise LocalConvexError(
        "cannot find localconvex/server.mjs: run from the convex-offload repository "
        "or set CONVEX_OFFLOAD_LOCALCONVEX_DIR"
    )


class LocalConvex:
    """One local Convex server on 127.0.0.1; a sync context manager."""

    def __init__(
        self,
        *,
        server_dir: str | os.PathLike[str] | None = None,
        extra_functions: str | os.PathLike[str] | None = None,
        port: int = 0,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.script = find_server_script(server_dir)
        self.extra_functions = Path(extra_functions) if extra_functions is not None else None
        self.port = port
        self.start_timeout = start_timeout
        self._admin_key = secrets.token_hex(24)
        self._proc: subprocess.Popen[str] | None = None
        self._dir: Path | None = None
        self.url = ""
        self.log_path: Path | None = None

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

    def start(self) -> Self:
        """Start the server and return once it listens."""
        if self._proc is not None:
            raise LocalConvexError("the local Convex server is already running")
        node = shutil.which("node")
        if node is None:
            raise LocalConvexError("node is not on PATH")
        self._dir = Path(tempfile.mkdtemp(prefix="localconvex-"))
        self.log_path = self._dir / "server.log"
        command = [node, str(self.script), "--port", str(self.port), "--exit-on-stdin-close"]
        if self.extra_functions is not None:
            command += ["--extra-functions", str(self.extra_functions)]
        env = {**os.environ, "CONVEX_ADMIN_KEY": self._admin_key}
        log = self.log_path.open("w")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 (our own server script)
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
                start_new_session=True,
            )
        finally:
            log.close()
        assert self._proc.stdout is not None
        line = _read_line(self._proc.stdout, self.start_timeout)
        if line is None:
            tail = self._log_tail()
            self.stop()
            raise LocalConvexError(
                f"the local Convex server did not start within {self.start_timeout}s:\n{tail}"
            )
        try:
            ready = json.loads(line)
            self.url = str(ready["url"])
        except (ValueError, KeyError) as exc:
            tail = self._log_tail()
            self.stop()
            raise LocalConvexError(f"unexpected first line from the server: {line!r}\n{tail}") from exc
        return self

    def stop(self) -> None:
        """Stop the server (closing its stdin, then SIGTERM, then SIGKILL) and remove its temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=STOP_TIMEOUT / 2)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT / 2)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.url = ""

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_line(stream: IO[str], timeout: float) -> str | None:
    """The first line of `stream`, or None if none arrives within `timeout` (or it closes)."""
    found: list[str] = []
    done = threading.Event()

    def reader() -> None:
        found.append(stream.readline())
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(timeout) or not found or not found[0]:
        return None
    return found[0]


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
