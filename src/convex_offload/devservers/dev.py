"""`convex-offload dev`: a local Convex server on a project's own functions, its buckets served over HTTP.

`dev_servers` starts, in order, the local Convex server (`LocalConvex` on the given folder), the
bucket server for local buckets (`BucketServer`, signed URLs) and, when asked, LocalStack for the
S3 buckets; it yields the environment an app and its tests need (`CONVEX_URL`,
`CONVEX_ADMIN_KEY`, `CONVEX_OFFLOAD_BUCKETS__<NAME>__...`) and stops them all, newest first.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from convex_offload.config import OffloadConfig
from convex_offload.devservers.bucket_server import BucketServer, ServedBucket
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.runtime import prepare_runtime
from convex_offload.errors import DevToolsError

DEFAULT_BUCKET = "local"
DEFAULT_S3_BUCKET = "attachments"
_ENV = "CONVEX_OFFLOAD_BUCKETS__"


@dataclass
class DevServers:
    """What `dev_servers` started, and the environment for apps that use it."""

    convex: LocalConvex
    buckets: BucketServer | None
    env: dict[str, str] = field(repr=False)

    def convex_exited(self) -> int | None:
        """The local Convex server's exit code if it stopped on its own, else None."""
        return self.convex.exit_code()


def check_functions_dir(folder: Path) -> Path:
    """`folder` resolved, if it is a Convex functions folder with a schema; `DevToolsError` otherwise."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise DevToolsError(
            f"there is no Convex functions folder at {folder}: run `convex-offload init` first, or pass --dir"
        )
    if not (folder / "schema.ts").is_file() and not (folder / "schema.js").is_file():
        raise DevToolsError(f"{folder} has no schema.ts: it is not a Convex functions folder")
    return folder


def _env_name(bucket: str) -> str:
    return _ENV + bucket.upper().replace("-", "_")


@contextlib.contextmanager
def dev_servers(
    functions: Path,
    *,
    port: int = 0,
    bucket_dir: Path,
    bucket_port: int = 0,
    config: OffloadConfig | None = None,
    s3: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Iterator[DevServers]:
    """Start the servers (see the module's docstring) and stop them on exit.

    Local buckets come from `config` (each served with its own folder) or, without one, a bucket
    `local` in `bucket_dir`. `s3` also starts LocalStack with `config`'s s3 buckets (or one
    called `attachments`). Raises `DevToolsError` / `LocalStackError` if something cannot start.
    """
    functions = check_functions_dir(functions)
    if s3:
        _check_localstack()
    prepare_runtime(progress=progress)
    local = {
        name: bucket.path
        for name, bucket in (config.buckets.items() if config is not None else [])
        if bucket.provider == "local" and bucket.path is not None
    }
    if config is None or not config.buckets:
        local = {DEFAULT_BUCKET: bucket_dir}
    served: dict[str, ServedBucket] = {}
    for name, path in local.items():
        configured = config.buckets[name].signing_key if config is not None and config.buckets else None
        secret = configured.get_secret_value() if configured is not None else secrets.token_urlsafe(32)
        path.mkdir(parents=True, exist_ok=True)
        served[name] = ServedBucket(path, secret)
    with contextlib.ExitStack() as stack:
        convex = stack.enter_context(LocalConvex(functions=functions, port=port))
        env = {"CONVEX_URL": convex.url, "CONVEX_ADMIN_KEY": convex.admin_key}
        bucket_server = None
        if served:
            bucket_server = stack.enter_context(BucketServer(served, port=bucket_port))
            for name, bucket in served.items():
                prefix = _env_name(name)
                env[f"{prefix}__PROVIDER"] = "local"
                env[f"{prefix}__PATH"] = str(bucket.root.resolve())
                env[f"{prefix}__SERVE_URL"] = bucket_server.serve_url(name)
                env[f"{prefix}__SIGNING_KEY"] = bucket.secret
        if s3:
            env.update(_start_localstack(stack, config))
        yield DevServers(convex=convex, buckets=bucket_server, env=env)


def _check_localstack() -> None:
    """`DevToolsError` unless LocalStack is installed (its own venv, by `localstack/install.sh`)."""
    from convex_offload.devservers.localstack import LocalStackError, find_localstack_dir

    try:
        folder = find_localstack_dir()
    except LocalStackError:
        folder = None
    if folder is None or not (folder / ".venv" / ".installed").is_file():
        raise DevToolsError(
            "--s3 needs LocalStack, which is not installed"
            + (f" in {folder}" if folder is not None else "")
            + ": in a convex-offload checkout run `make setup` (or `bash localstack/install.sh`), "
            "or set CONVEX_OFFLOAD_LOCALSTACK_DIR"
        )


def _start_localstack(stack: contextlib.ExitStack, config: OffloadConfig | None) -> dict[str, str]:
    from convex_offload.devservers.localstack import LocalStack

    buckets = config.buckets if config is not None else {}
    names = [b.bucket for b in buckets.values() if b.provider == "s3" and b.bucket] or [DEFAULT_S3_BUCKET]
    localstack = stack.enter_context(LocalStack(buckets=names))
    env: dict[str, str] = {}
    configured = {b.bucket: n for n, b in buckets.items()}
    for bucket in names:
        prefix = _env_name(configured.get(bucket, bucket))
        env[f"{prefix}__PROVIDER"] = "s3"
        env[f"{prefix}__BUCKET"] = bucket
        env[f"{prefix}__ENDPOINT_URL"] = localstack.endpoint_url
        env[f"{prefix}__REGION"] = localstack.region
        env[f"{prefix}__ACCESS_KEY_ID"] = localstack.access_key
        env[f"{prefix}__SECRET_ACCESS_KEY"] = localstack.secret_key
    return env


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets while inside (the previous handlers come back after).

    Entered before the servers start, so a signal that arrives while they start is not lost.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_stopped(servers: DevServers, stop: threading.Event, *, poll: float = 0.5) -> int:
    """Block until `stop` is set (0) or the local Convex server dies (its exit code, or 1)."""
    while not stop.wait(poll):
        code = servers.convex_exited()
        if code is not None:
            return code or 1
    return 0
