"""The local Convex server's runtime: its sources plus their npm packages, ready to run with Node.

A source checkout after `make setup` is ready as it is. An installed wheel ships the sources and
a lock file; on first use `prepare_runtime` copies them into a per-user cache folder
(`$CONVEX_OFFLOAD_CACHE_DIR`, else `$XDG_CACHE_HOME/convex-offload`, else `~/.cache/convex-offload`,
then `<version>/`) and runs `npm ci` there. The folder also holds a copy of the shipped Convex
functions, which the demo serves. Concurrent first uses wait on a file lock; a half-built folder
never becomes the runtime.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from convex_offload import bundled
from convex_offload.errors import DevToolsError, ToolMissingError

CACHE_ENV = "CONVEX_OFFLOAD_CACHE_DIR"
MIN_NODE = 20
_MARKER = ".convex-offload-runtime"
_NPM_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Runtime:
    """A runnable local Convex server: `node server_script --functions <dir>`."""

    server_script: Path
    functions: Path
    """The shipped Convex functions folder, with its npm packages resolvable from it."""


def cache_dir() -> Path:
    """This version's runtime folder (it may not exist yet)."""
    from convex_offload import __version__

    if explicit := os.environ.get(CACHE_ENV):
        base = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "convex-offload"
    return base.resolve() / __version__


def check_node() -> str:
    """Node's version (`20.20.2`); `ToolMissingError` if node is missing or older than 20."""
    node = shutil.which("node")
    if node is None:
        raise ToolMissingError(
            f"Node.js {MIN_NODE} or newer is needed for the local Convex server, and `node` is not on PATH"
        )
    try:
        done = subprocess.run(  # noqa: S603 (node from PATH, a fixed argument)
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolMissingError(f"`node --version` failed ({node}): {exc}") from None
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)\S*", done.stdout.strip())
    if match is None:
        raise ToolMissingError(f"cannot read Node's version from `node --version`: {done.stdout.strip()!r}")
    if int(match.group(1)) < MIN_NODE:
        raise ToolMissingError(
            f"Node.js {MIN_NODE} or newer is needed for the local Convex server; "
            f"{node} is {done.stdout.strip()}"
        )
    return ".".join(match.groups())


def check_npm() -> str:
    """The path of `npm`; `ToolMissingError` if it is not on PATH."""
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissingError(
            "npm is needed to install the local Convex server's packages, and `npm` is not on PATH "
            "(it comes with Node.js)"
        )
    return npm


def checkout_runtime() -> Runtime | None:
    """The source checkout's own server and functions, when `make setup` installed their packages."""
    root = bundled.source_checkout()
    if root is None or not (root / "node_modules" / "convex-test" / "package.json").is_file():
        return None
    return Runtime(server_script=root / "localconvex" / "server.mjs", functions=root / "convex")


def prepared_runtime() -> Runtime | None:
    """The runtime if it is ready to run (a checkout's, or this version's cache folder), else None."""
    found = checkout_runtime()
    if found is not None:
        return found
    folder = cache_dir()
    marker = folder / _MARKER
    if marker.is_file() and marker.read_text().strip() == bundled.digest():
        return _cached(folder)
    return None


def prepare_runtime(progress: Callable[[str], None] | None = None) -> Runtime:
    """The runtime, installing the npm packages from the shipped lock file first if needed.

    `progress` receives one line at a time (what is happening, then npm's own output).
    Raises `ToolMissingError` without Node ≥ 20 or npm, `DevToolsError` if `npm ci` fails.
    """
    check_node()
    ready = prepared_runtime()
    if ready is not None:
        return ready
    npm = check_npm()
    folder = cache_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f".{folder.name}.lock"):
        ready = prepared_runtime()  # another process may have built it while we waited
        if ready is not None:
            return ready
        _build(folder, npm, progress or (lambda line: None))
    return _cached(folder)


def _cached(folder: Path) -> Runtime:
    return Runtime(server_script=folder / "localconvex" / "server.mjs", functions=folder / "convex")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(folder: Path, npm: str, progress: Callable[[str], None]) -> None:
    """Lay out the runtime in a temp folder beside `folder`, `npm ci` it, then move it into place.

    Layout: `package.json` + `package-lock.json` + `node_modules/` at the top, so both
    `localconvex/server.mjs` and the functions in `convex/` resolve their packages there.
    """
    expected = bundled.digest()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        source = bundled.localconvex_dir()
        for rel in bundled.localconvex_files():
            target = staging / "localconvex" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(source / name, staging / name)
        functions = bundled.functions_dir()
        for rel in bundled.tree_files(functions):
            if rel in ("package.json", "package-lock.json"):
                continue  # the runtime's own manifest is the server's, at the top
            target = staging / "convex" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(functions / rel, target)
        progress(f"installing the local Convex server's npm packages into {folder} (first use; ~200 MB)")
        _npm_ci(npm, staging, progress)
        (staging / _MARKER).write_text(expected + "\n")
        if folder.exists():  # a runtime built from other files: replace it
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            folder.rename(old / "runtime")
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(folder)
        progress(f"the local Convex server is ready in {folder}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _npm_ci(npm: str, cwd: Path, progress: Callable[[str], None]) -> None:
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"]
    env = {**os.environ, "npm_config_update_notifier": "false"}
    tail: list[str] = []
    try:
        with subprocess.Popen(  # noqa: S603 (npm from PATH, fixed arguments)
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                if line:
                    tail = [*tail[-4:], line]
                    progress(f"npm: {line}")
            code = proc.wait(timeout=_NPM_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DevToolsError(f"`npm ci` could not run in {cwd}: {exc}") from None
    if code != 0:
        last = next((line for line in reversed(tail) if "ERR" in line), tail[-1] if tail else "no output")
        raise DevToolsError(f"`npm ci` failed (exit {code}) installing the local Convex server: {last}")
