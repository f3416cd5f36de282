"""`convex-offload dev` and the served local buckets: signed, expiring URLs over real HTTP.

The bucket server is started in-process on a free port; `dev` runs as the installed script in a
subprocess on the repository's own `convex/` folder, and the offloading store talks to it with
the environment it prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from convex_offload.blobs.base import BlobStore
from convex_offload.blobs.factory import open_bucket
from convex_offload.blobs.local import LocalBlobStore
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.bucket_server import BucketServer, ServedBucket
from convex_offload.errors import BucketConfigError
from convex_offload.offload.store import OffloadingStore
from convex_offload.signing import check_signature, signed_url
from convex_offload.store.models import Message, Thread
from media import b64, image_bytes

CLI = str(Path(sys.executable).with_name("convex-offload"))
REPO = Path(__file__).resolve().parent.parent
SECRET = "test-signing-key-0123456789abcdef"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_"))}
    return {**env, "COLUMNS": "120", **extra}


async def put(store: BlobStore, key: str, data: bytes, content_type: str, disposition: str | None) -> None:
    await store.put(
        key, data, content_type=content_type, sha256=hashlib.sha256(data).hexdigest(), disposition=disposition
    )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[BucketServer, BlobStore, bytes]]:
    folder = tmp_path / "bucket"
    image = image_bytes("png", 9_000, seed=3)
    plain = open_bucket("images", BucketConfig(provider="local", path=folder))
    await put(plain, "t/u1/aa.png", image, "image/png", None)
    await put(plain, "t/u1/page.html", b"<script>alert(1)</script>", "text/html", "attachment")
    other = tmp_path / "other"
    with BucketServer(
        {"images": ServedBucket(folder, SECRET), "other": ServedBucket(other, "another-secret-0123456789")}
    ) as server:
        config = BucketConfig(
            provider="local", path=folder, serve_url=server.serve_url("images"), signing_key=SECRET
        )
        yield server, open_bucket("images", config), image


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


# --- signed URLs over HTTP ---------------------------------------------------------------------


async def test_access_url_of_a_served_bucket_returns_the_bytes_with_their_type(
    served: tuple[BucketServer, LocalBlobStore, bytes],
) -> None:
    server, store, image = served
    url = await store.access_url("t/u1/aa.png", 300)
    assert url.startswith(server.serve_url("images") + "/t/u1/aa.png?")
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == image
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["access-control-allow-origin"] == "*"
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(image))


async def test_served_url_expires_after_the_ttl_it_was_signed_for(
    served: tuple[BucketServer, LocalBlobStore, bytes],
) -> None:
    _server, store, _image = served
    before = int(time.time())
    url = await store.access_url("t/u1/aa.png", 120)
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert before + 120 <= expires <= int(time.time()) + 120


async def test_an_expired_url_is_refused_403(served: tuple[BucketServer, LocalBlobStore, bytes]) -> None:
    server, _store, _image = served
    long_ago = time.time() - 3600
    url = signed_url(server.serve_url("images"), "images", "t/u1/aa.png", secret=SECRET, ttl=60, now=long_ago)
    answer = httpx.get(url)
    assert answer.status_code == 403
    assert "expired" in answer.text


async def test_tampered_urls_are_refused_403(served: tuple[BucketServer, LocalBlobStore, bytes]) -> None:
    _server, store, _image = served
    url = await store.access_url("t/u1/aa.png", 300)
    query = parse_qs(urlsplit(url).query)
    signature, expires = query["signature"][0], query["expires"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = [
        with_query(url, signature=flipped),
        with_query(url, expires=str(int(expires) + 3600)),  # a longer life than was signed
        with_query(url, signature=""),
        url.replace("/t/u1/aa.png", "/t/u1/page.html"),  # another object, same signature
        url.replace("/b/images/", "/b/other/"),  # another bucket, same signature
        url.split("?")[0],
    ]
    for bad in tampered:
        answer = httpx.get(bad)
        assert answer.status_code == 403, bad
    assert httpx.get(url).status_code == 200


async def test_unknown_objects_and_buckets_are_404_and_metadata_is_never_served(
    served: tuple[BucketServer, LocalBlobStore, bytes],
) -> None:
    server, store, _image = served
    assert httpx.get(await store.access_url("t/u1/nothing.png", 60)).status_code == 404
    meta = signed_url(server.serve_url("images"), "images", "t/u1/aa.png.meta.json", secret=SECRET, ttl=60)
    assert httpx.get(meta).status_code == 404
    assert httpx.get(server.url + "/b/nope/t/u1/aa.png?expires=1&signature=x").status_code == 404
    assert httpx.get(server.url + "/elsewhere").status_code == 404


async def test_active_content_is_served_as_an_attachment(
    served: tuple[BucketServer, LocalBlobStore, bytes],
) -> None:
    _server, store, _image = served
    answer = httpx.get(await store.access_url("t/u1/page.html", 60))
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == "attachment"
    assert answer.headers["content-type"] == "text/html"


def test_signature_covers_bucket_key_and_expiry() -> None:
    url = signed_url("http://h/b/x", "x", "k/1.png", secret=SECRET, ttl=60, now=1000)
    query = parse_qs(urlsplit(url).query)
    expires, given = query["expires"][0], query["signature"][0]
    assert check_signature(SECRET, "x", "k/1.png", expires, given, now=1000) == "ok"
    assert check_signature(SECRET, "y", "k/1.png", expires, given, now=1000) == "bad"
    assert check_signature(SECRET, "x", "k/2.png", expires, given, now=1000) == "bad"
    assert check_signature(SECRET, "x", "k/1.png", str(int(expires) + 1), given, now=1000) == "bad"
    assert check_signature("another-secret-0123456789", "x", "k/1.png", expires, given, now=1000) == "bad"
    assert check_signature(SECRET, "x", "k/1.png", expires, given, now=int(expires) + 1) == "expired"
    assert check_signature(SECRET, "x", "k/1.png", "-5", given, now=1000) == "bad"


async def test_a_local_bucket_that_is_not_served_keeps_file_urls(tmp_path: Path) -> None:
    store = open_bucket("plain", BucketConfig(provider="local", path=tmp_path))
    assert (await store.access_url("a/b.png", 60)).startswith("file://")


def test_serve_url_needs_a_local_bucket_and_a_long_enough_signing_key(tmp_path: Path) -> None:
    with pytest.raises(BucketConfigError, match=r"buckets\.l: .*signing_key"):
        OffloadConfig.load(
            buckets={"l": {"provider": "local", "path": str(tmp_path), "serve_url": "http://x/b/l"}}
        )
    with pytest.raises(BucketConfigError, match="at least 16"):
        OffloadConfig.load(
            buckets={"l": {"provider": "local", "path": str(tmp_path), "signing_key": "short"}}
        )
    with pytest.raises(BucketConfigError, match="for local buckets"):
        OffloadConfig.load(
            buckets={
                "s": {"provider": "s3", "bucket": "b", "serve_url": "http://x/b/s", "signing_key": SECRET}
            }
        )
    with pytest.raises(BucketConfigError, match="http"):
        OffloadConfig.load(
            buckets={
                "l": {
                    "provider": "local",
                    "path": str(tmp_path),
                    "serve_url": "ftp://x",
                    "signing_key": SECRET,
                }
            }
        )
    config = BucketConfig(
        provider="local", path=tmp_path, serve_url="http://127.0.0.1:1/b/l", signing_key=SECRET
    )
    assert SECRET not in repr(config)


# --- convex-offload dev ------------------------------------------------------------------------


def start_dev(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [CLI, "dev", *args, "--json"],
        cwd=cwd,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        stderr = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"dev exited {proc.wait()}: {stderr}")
    ready = json.loads(line)
    assert ready["ok"] is True
    assert ready["event"] == "ready"
    return proc, ready["env"]


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    proc, env = start_dev(
        "--dir", str(REPO / "convex"), "--bucket-dir", str(tmp_path / "bucket"), cwd=tmp_path
    )
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def refused(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname or "", parts.port or 80)) != 0


async def test_urls_mode_through_dev_serves_attachments_over_http(
    dev: tuple[subprocess.Popen[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _proc, env = dev
    assert set(env) >= {
        "CONVEX_URL",
        "CONVEX_ADMIN_KEY",
        "CONVEX_OFFLOAD_BUCKETS__LOCAL__PROVIDER",
        "CONVEX_OFFLOAD_BUCKETS__LOCAL__PATH",
        "CONVEX_OFFLOAD_BUCKETS__LOCAL__SERVE_URL",
        "CONVEX_OFFLOAD_BUCKETS__LOCAL__SIGNING_KEY",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = OffloadConfig.load()
    image = image_bytes("png", 120_000, seed=11)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(image)}]}
    async with OffloadingStore.connect(config) as store:
        await store.memory.save_thread(Thread(id="dev-t", resource_id="dev-u"))
        await store.memory.save_messages(
            [Message(id="dev-m", thread_id="dev-t", resource_id="dev-u", role="user", content=content)]
        )
        ui = store.with_restore_mode("urls")
        listed = await ui.memory.list_messages("dev-t", per_page=False)
    url = listed.messages[0].content["parts"][0]["data"]
    assert url.startswith(env["CONVEX_OFFLOAD_BUCKETS__LOCAL__SERVE_URL"] + "/")
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == image
    assert answer.headers["content-type"] == "image/png"
    assert httpx.get(with_query(url, expires="1")).status_code == 403


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_dev_stops_cleanly_on_sigint_and_sigterm(tmp_path: Path, stop: signal.Signals) -> None:
    proc, env = start_dev("--dir", str(REPO / "convex"), "--bucket-dir", str(tmp_path / "b"), cwd=tmp_path)
    with proc:
        answer = httpx.post(
            env["CONVEX_URL"] + "/api/query",
            json={"path": "offload/files:generateUploadUrl", "args": {}},
            headers={"Authorization": f"Convex {env['CONVEX_ADMIN_KEY']}"},
        )
        assert answer.status_code == 560  # a mutation called as a query: the server runs our folder
        proc.send_signal(stop)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    assert refused(env["CONVEX_URL"])
    assert refused(env["CONVEX_OFFLOAD_BUCKETS__LOCAL__SERVE_URL"])


def test_dev_serves_the_chosen_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc, env = start_dev(
        "--dir", str(REPO / "convex"), "--port", str(port), "--bucket-dir", "b", cwd=tmp_path
    )
    with proc:
        assert env["CONVEX_URL"] == f"http://127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_dev_prints_env_lines_for_an_app(tmp_path: Path) -> None:
    with subprocess.Popen(
        [CLI, "dev", "--dir", str(REPO / "convex"), "--bucket-dir", "b"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    keys = [line.split("=", 1)[0] for line in lines]
    assert keys[:2] == ["CONVEX_URL", "CONVEX_ADMIN_KEY"]
    assert "CONVEX_OFFLOAD_BUCKETS__LOCAL__SIGNING_KEY" in keys
    assert all("=" in line for line in lines)


def test_dev_with_s3_starts_localstack_with_the_bucket(tmp_path: Path) -> None:
    proc, env = start_dev("--dir", str(REPO / "convex"), "--bucket-dir", "b", "--s3", cwd=tmp_path)
    with proc:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=env["CONVEX_OFFLOAD_BUCKETS__ATTACHMENTS__ENDPOINT_URL"],
            region_name=env["CONVEX_OFFLOAD_BUCKETS__ATTACHMENTS__REGION"],
            aws_access_key_id=env["CONVEX_OFFLOAD_BUCKETS__ATTACHMENTS__ACCESS_KEY_ID"],
            aws_secret_access_key=env["CONVEX_OFFLOAD_BUCKETS__ATTACHMENTS__SECRET_ACCESS_KEY"],
        )
        s3.put_object(Bucket="attachments", Key="k", Body=b"hello")
        assert s3.get_object(Bucket="attachments", Key="k")["Body"].read() == b"hello"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert refused(env["CONVEX_OFFLOAD_BUCKETS__ATTACHMENTS__ENDPOINT_URL"])


# --- expected failures: one line, exit 2, no traceback ---------------------------------------


def one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dev_without_a_functions_folder_fails_in_one_line(tmp_path: Path) -> None:
    line = one_line_failure(run_cli("dev", cwd=tmp_path))
    assert "no Convex functions folder" in line
    assert "convex-offload init" in line
    (tmp_path / "notconvex").mkdir()
    assert "no schema.ts" in one_line_failure(run_cli("dev", "--dir", "notconvex", cwd=tmp_path))


def test_dev_s3_without_localstack_fails_in_one_line(tmp_path: Path) -> None:
    env = clean_env(CONVEX_OFFLOAD_LOCALSTACK_DIR=str(tmp_path / "nowhere"))
    line = one_line_failure(run_cli("dev", "--dir", str(REPO / "convex"), "--s3", cwd=tmp_path, env=env))
    assert "--s3 needs LocalStack" in line


@pytest.mark.parametrize("command", [["demo"], ["demo", "--json"], ["dev", "--dir", str(REPO / "convex")]])
def test_commands_needing_node_say_so_in_one_line_without_it(tmp_path: Path, command: list[str]) -> None:
    env = clean_env(PATH=str(tmp_path / "empty"))
    done = run_cli(*command, cwd=tmp_path, env=env)
    assert "Node.js 20 or newer is needed" in one_line_failure(done)
    if "--json" in command:
        answer = json.loads(done.stdout)
        assert answer["ok"] is False
        assert answer["error"]["type"] == "ToolMissingError"


def test_a_node_older_than_20_is_named(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old = bin_dir / "node"
    old.write_text("#!/bin/sh\necho v18.19.0\n")
    old.chmod(0o755)
    line = one_line_failure(run_cli("demo", cwd=tmp_path, env=clean_env(PATH=str(bin_dir))))
    assert "Node.js 20 or newer" in line
    assert "v18.19.0" in line


def test_missing_npm_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convex_offload.devservers.runtime import check_npm
    from convex_offload.errors import ToolMissingError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="npm is needed"):
        check_npm()
