"""The real TypeScript stores of @mastra/convex, driven from Python tests through a Node process."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Self

SCRIPT = Path(__file__).parent / "interop" / "mastra_client.mjs"


class TsError(RuntimeError):
    """The TypeScript store threw."""


class TsMastra:
    """`call("memory", "saveThread", {...})` runs `(await store.getStore("memory")).saveThread({...})`."""

    def __init__(self, url: str, admin_key: str) -> None:
        env = {**os.environ, "CONVEX_URL": url, "CONVEX_ADMIN_KEY": admin_key}
        self._proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self._ids = itertools.count()

    def __repr__(self) -> str:
        return f"TsMastra(pid={self._proc.pid})"

    def call(self, target: str, method: str, *args: Any, config: dict[str, Any] | None = None) -> Any:
        """Call a method of a TS domain (`memory`, `workflows`, `scores`), of `vector`, or of a
        `cache` (ConvexServerCache) or `nativeVector` (ConvexNativeVector) built from `config`."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        request_id = next(self._ids)
        self._proc.stdin.write(
            json.dumps({"id": request_id, "target": target, "method": method, "args": args, "config": config})
            + "\n"
        )
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise TsError(f"the Node process exited (code {self._proc.poll()})")
        answer = json.loads(line)
        assert answer["id"] == request_id
        if not answer["ok"]:
            raise TsError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        """End the Node process."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
