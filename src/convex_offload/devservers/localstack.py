"""Start LocalStack's S3 on a free loopback port with seeded buckets, and stop it leaving nothing behind.

    with LocalStack(buckets=["attachments"]) as ls:
        s3 = ls.s3_client()
        s3.put_object(Bucket="attachments", Key="k", Body=b"...")

LocalStack must first be installed into its own venv with `bash localstack/install.sh`; this module never
installs anything. Each instance gets its own temp dir (FILESYSTEM_ROOT, caches, S3 spool, log), its own
port on 127.0.0.1 and its own process group, so several can run at once. Credentials are LocalStack's
dummy `test`/`test`; presigned URLs are signature- and expiry-checked (S3_SKIP_SIGNATURE_VALIDATION=0).

Command line (prints one JSON line once ready, stops on SIGINT/SIGTERM or end of stdin):

    python -m convex_offload.devservers.localstack --bucket a --bucket b
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "BucketSpec",
    "LocalStack",
    "LocalStackError",
    "LocalStackNotInstalledError",
    "LocalStackStartError",
]

LOCALSTACK_DIR_ENV = "CONVEX_OFFLOAD_LOCALSTACK_DIR"
_SEED_ENV = "CONVEX_OFFLOAD_LOCALSTACK_SEED"
_SPOOL_ENV = "CONVEX_OFFLOAD_S3_SPOOL_DIR"
_PARENT_ENV = "CONVEX_OFFLOAD_PARENT_PID"
_INSTANCE_DIR_ENV = "CONVEX_OFFLOAD_INSTANCE_DIR"
_HOST = "127.0.0.1"
_POLL_INTERVAL = 0.05
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
# Passed through to LocalStack; everything else in our environment (AWS_*, LocalStack's own many
# settings such as PERSISTENCE or DEBUG) stays out so a developer's shell cannot change its behaviour.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class LocalStackError(RuntimeError):
    """Base class for everything that goes wrong starting or finding LocalStack."""


class LocalStackNotInstalledError(LocalStackError):
    """The repo's `localstack/` folder or its venv is missing: run `bash localstack/install.sh`."""


class LocalStackStartError(LocalStackError):
    """LocalStack did not become ready (exited, timed out, or a seed hook failed); the message has its log."""


class _PortTakenError(LocalStackStartError):
    """Something other than our instance answers on the port we picked (a race with another process)."""


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class BucketSpec:
    """A bucket to create at start, with optional CORS origins (GET/PUT/HEAD) and default encryption.

    Raises ValueError for a name S3 would refuse (3-63 of a-z, 0-9, '.', '-'; letter or digit at both ends).
    """

    name: str
    cors_allowed_origins: tuple[str, ...] = ()
    encryption: Literal["AES256", "aws:kms"] | None = None

    def __post_init__(self) -> None:
        if not _BUCKET_NAME.fullmatch(self.name) or ".." in self.name:
            raise ValueError(f"invalid S3 bucket name {self.name!r}: use 3-63 of a-z, 0-9, '.', '-'")


@dataclass(frozen=True)
class _Install:
    directory: Path
    python: Path
    runner: Path
    seed_hook: Path
    static_root: Path


def find_localstack_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the repo's `localstack/` folder: `explicit`, else $CONVEX_OFFLOAD_LOCALSTACK_DIR, else searched.

    The search walks up from the current directory, then from this file, for `localstack/install.sh`.
    """
    if explicit is not None:
        return Path(explicit).resolve()
    if from_env := os.environ.get(LOCALSTACK_DIR_ENV):
        return Path(from_env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for directory in (start, *start.parents):
            candidate = directory / "localstack"
            if (candidate / "install.sh").is_file():
                return candidate.resolve()
    raise LocalStackNotInstalledError(
        "could not find the repo's localstack/ folder (looked upward from the current directory and from "
        f"{Path(__file__).parent}); pass localstack_dir= or set {LOCALSTACK_DIR_ENV}"
    )


def _check_install(directory: Path) -> _Install:
    install = _Install(
        directory=directory,
        python=directory / ".venv" / "bin" / "python",
        runner=directory / "run_localstack.py",
        seed_hook=directory / "seed_buckets.py",
        static_root=directory / ".venv" / "localstack-static",
    )
    for path in (install.runner, install.seed_hook):
        if not path.is_file():
            raise LocalStackNotInstalledError(
                f"{path} is missing: is {directory} the repo's localstack/ folder?"
            )
    if not install.python.is_file() or not (directory / ".venv" / ".installed").is_file():
        raise LocalStackNotInstalledError(
            f"LocalStack is not installed in {directory / '.venv'}: run `bash {directory / 'install.sh'}`"
        )
    return install


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _get_json(url: str) -> Any:
    """GET a JSON document; None while nothing listens yet. Anything but JSON from a 200 is a ValueError."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 (our own http:// URL)
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url} answered HTTP {exc.code}") from exc
    except (ConnectionError, TimeoutError, urllib.error.URLError):
        return None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _terminate_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group led by `proc`, wait, then SIGKILL whatever is left."""
    pgid = proc.pid

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return False
        return True

    signal_group(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(signal.SIGKILL)
        proc.wait()
    # The leader is gone; wait for any child it left in the group, then kill those too.
    deadline = time.monotonic() + timeout
    while signal_group(0):
        if time.monotonic() > deadline:
            signal_group(signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(_POLL_INTERVAL)


class LocalStack:
    """One LocalStack S3 server on 127.0.0.1, seeded with `buckets`; a sync context manager.

    `start()` raises `LocalStackNotInstalledError` if `localstack/install.sh` has not run, and
    `LocalStackStartError` (with the tail of LocalStack's log) if the server is not ready within
    `start_timeout` seconds. `stop()` is idempotent and removes the temp dir, log included.
    """

    access_key = "test"
    # LocalStack signs presigned URLs of account `test` with this secret; kept out of __repr__ all the same.
    secret_key = "test"  # noqa: S105 (LocalStack's published dummy secret)

    def __init__(
        self,
        buckets: Iterable[str | BucketSpec] = (),
        *,
        region: str = "us-east-1",
        localstack_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.buckets: tuple[BucketSpec, ...] = tuple(
            BucketSpec(b) if isinstance(b, str) else b for b in buckets
        )
        self.region = region
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._localstack_dir = localstack_dir
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._port: int | None = None
        self.log_path: Path | None = None

    # -- public surface -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback port the gateway listens on."""
        if self._port is None or self._proc is None:
            raise LocalStackError("LocalStack is not running: call start() or use it as a context manager")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """`http://127.0.0.1:<port>`: the S3 endpoint."""
        return f"http://{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """LocalStack's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and return once S3 runs and the buckets exist."""
        if self._proc is not None:
            raise LocalStackError("LocalStack is already running")
        install = _check_install(find_localstack_dir(self._localstack_dir))
        taken: list[_PortTakenError] = []
        try:
            # A port found free can be taken before LocalStack binds it; LocalStack then does not exit
            # but sits there unbound, so the readiness check notices and we try another port.
            while len(taken) < _PORT_ATTEMPTS:
                try:
                    self._start_once(install, _free_loopback_port())
                    return self
                except _PortTakenError as exc:
                    self.stop()
                    taken.append(exc)
        except BaseException:
            self.stop()
            raise
        raise LocalStackStartError(
            f"{_PORT_ATTEMPTS} free ports were taken before LocalStack bound them"
        ) from taken[-1]

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, SIGKILL after `stop_timeout`) and remove the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc, self.stop_timeout)
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        self._port = None

    def s3_client(self, *, region: str | None = None, config: Config | None = None) -> S3Client:
        """A boto3 S3 client for this server: path-style addressing, SigV4, `region` or the server's.

        `config` is merged over those defaults (e.g. R2's checksum settings).
        """
        merged = Config(signature_version="s3v4", s3={"addressing_style": "path"})
        if config is not None:
            merged = merged.merge(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=region or self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=merged,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint_url if self._proc is not None else "stopped"
        names = [b.name for b in self.buckets]
        return (
            f"LocalStack({where}, region={self.region!r}, buckets={names!r}, "
            f"access_key={self.access_key!r}, secret_key='***')"
        )

    # -- internals ------------------------------------------------------------------------------

    def _start_once(self, install: _Install, port: int) -> None:
        directory = Path(tempfile.mkdtemp(prefix="convex-offload-localstack-"))
        self._dir = directory
        self._port = port
        hook_name = f"convex-offload-seed-{secrets.token_hex(6)}.py"
        self._prepare_filesystem(install, directory, hook_name, port)
        env = self._environment(directory, port)
        log_path = directory / "localstack.log"
        self.log_path = log_path
        argv = [str(install.python), str(install.runner)]
        with log_path.open("wb") as log:
            log.write(f"convex-offload: starting LocalStack on {_HOST}:{port}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(  # noqa: S603 (fixed argv: our venv's python and our runner)
                argv,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        _wait_until_ready(proc, self.endpoint_url, hook_name, log_path, self.start_timeout)

    def _prepare_filesystem(self, install: _Install, directory: Path, hook_name: str, port: int) -> None:
        fs_root = directory / "fs"
        # A prebuilt service catalog saves ~3.5 s and ~350 MB RSS per start (see install.sh).
        static_libs = fs_root / "usr" / "lib" / "localstack"
        static_libs.mkdir(parents=True)
        for catalog in (install.static_root / "usr" / "lib" / "localstack").glob("service-catalog-*.dill"):
            (static_libs / catalog.name).symlink_to(catalog)
        # The hook's file name is unique to this instance: seeing it in /_localstack/init/ready proves the
        # server answering on our port is ours and not another LocalStack that grabbed the port first.
        ready_d = fs_root / "etc" / "localstack" / "init" / "ready.d"
        ready_d.mkdir(parents=True)
        shutil.copyfile(install.seed_hook, ready_d / hook_name)
        seed = {
            "endpoint_url": f"http://{_HOST}:{port}",
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "buckets": [asdict(b) for b in self.buckets],
        }
        (directory / "seed.json").write_text(json.dumps(seed), encoding="utf-8")

    def _environment(self, directory: Path, port: int) -> dict[str, str]:
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env.update(
            {
                "SERVICES": "s3",
                "EAGER_SERVICE_LOADING": "1",
                "GATEWAY_LISTEN": f"{_HOST}:{port}",
                # The default twisted server listens on 0.0.0.0 whatever GATEWAY_LISTEN says.
                "GATEWAY_SERVER": "hypercorn",
                # The machine has /.dockerenv; without this LocalStack writes under /var/lib/localstack.
                "OVERRIDE_IN_DOCKER": "0",
                "FILESYSTEM_ROOT": str(directory / "fs"),
                "XDG_CACHE_HOME": str(directory / "cache"),
                "DNS_ADDRESS": "0",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "DISABLE_EVENTS": "1",
                # Without it, expired or tampered presigned URLs are accepted.
                "S3_SKIP_SIGNATURE_VALIDATION": "0",
                _SEED_ENV: str(directory / "seed.json"),
                _SPOOL_ENV: str(directory / "s3-spool"),
                _PARENT_ENV: str(os.getpid()),
                _INSTANCE_DIR_ENV: str(directory),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._extra_env)
        return env


def _wait_until_ready(
    proc: subprocess.Popen[bytes], base: str, hook_name: str, log_path: Path, timeout: float
) -> None:
    """Poll until S3 runs and our seed hook succeeded; raise with the log's tail otherwise."""

    def failure(what: str) -> LocalStackStartError:
        return LocalStackStartError(f"{what} ({base}); last lines of {log_path}:\n{_tail(log_path)}")

    deadline = time.monotonic() + timeout
    while True:
        if (code := proc.poll()) is not None:
            raise failure(f"LocalStack exited with code {code} before it was ready")
        try:
            state = _readiness(base, hook_name)
        except ValueError as exc:  # not JSON, or an HTTP error: some other server
            raise _PortTakenError(f"{base} is not our LocalStack: {exc}") from exc
        if state == "ready":
            return
        if state == "hook-failed":
            raise failure("the seed hook failed to create the buckets")
        if time.monotonic() > deadline:
            raise failure(f"LocalStack was not ready within {timeout:g} s")
        time.sleep(_POLL_INTERVAL)


def _readiness(base: str, hook_name: str) -> Literal["waiting", "ready", "hook-failed"]:
    # Health turns green before init hooks finish, so the buckets exist only once the hook is done.
    init = _get_json(f"{base}/_localstack/init/ready")
    if init is None:
        return "waiting"
    if not isinstance(init, dict):
        raise ValueError(f"unexpected /_localstack/init/ready answer {init!r}")
    states = {s.get("name"): s.get("state") for s in init.get("scripts", [])}
    if hook_name not in states:
        raise _PortTakenError(
            f"{base} answers without our seed hook {hook_name}: another server has the port"
        )
    if states[hook_name] == "ERROR":
        return "hook-failed"
    if not (init.get("completed") is True and states[hook_name] == "SUCCESSFUL"):
        return "waiting"
    health = _get_json(f"{base}/_localstack/health")
    running = isinstance(health, dict) and health.get("services", {}).get("s3") == "running"
    return "ready" if running else "waiting"


# -- command line -------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m convex_offload.devservers.localstack",
        description=(
            "Start LocalStack S3 on a free 127.0.0.1 port, print one JSON line when ready, and run until "
            "SIGINT/SIGTERM or end of stdin. Credentials: access key 'test', secret key 'test'."
        ),
    )
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--localstack-dir", help=f"the repo's localstack/ folder (default: ${LOCALSTACK_DIR_ENV} or searched)"
    )
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not stop at end of stdin (for running in the background)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    try:
        server = LocalStack(
            buckets=args.bucket,
            region=args.region,
            localstack_dir=args.localstack_dir,
            start_timeout=args.start_timeout,
        )
        server.start()
    except ValueError as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        return 2
    except LocalStackError as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        return 1
    try:
        ready = {
            "event": "ready",
            "endpoint_url": server.endpoint_url,
            "region": server.region,
            "access_key": server.access_key,
            "buckets": [b.name for b in server.buckets],
            "pid": server.pid,
            "log_path": str(server.log_path),
        }
        print(json.dumps(ready), flush=True)
        if not args.ignore_stdin:
            threading.Thread(target=_set_at_eof, args=(stop,), daemon=True).start()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print(json.dumps({"event": "stopped"}), flush=True)
    return 0


def _set_at_eof(event: threading.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while os.read(sys.stdin.fileno(), 65536):
            pass
    event.set()


if __name__ == "__main__":
    sys.exit(main())
