"""LocalStack S3 as started by `convex_offload.devservers.localstack`: real servers, no mocks.

Needs `bash localstack/install.sh` first (the Makefile runs it before the tests).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import botocore.auth
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from convex_offload.devservers import localstack as devserver
from convex_offload.devservers.localstack import (
    BucketSpec,
    LocalStack,
    LocalStackNotInstalledError,
    LocalStackStartError,
    find_localstack_dir,
)

BUCKET = "offload-test"
CORS_BUCKET = "offload-browser"
ORIGIN = "http://localhost:3000"
# Over LocalStack's 512 KiB in-memory limit, so the object goes through the on-disk spool.
LARGE = 1024 * 1024 + 7


@pytest.fixture(scope="module")
def server() -> Iterator[LocalStack]:
    with LocalStack(
        buckets=[BUCKET, BucketSpec(CORS_BUCKET, cors_allowed_origins=(ORIGIN,), encryption="AES256")]
    ) as ls:
        yield ls


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _non_loopback_addresses() -> list[str]:
    addresses = []
    for nic_addresses in psutil.net_if_addrs().values():
        for a in nic_addresses:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            host = a.address.split("%")[0]
            if host.startswith(("127.", "fe80:")) or host == "::1":
                continue
            addresses.append(host)
    return addresses


def test_buckets_from_the_config_exist_at_start(server: LocalStack) -> None:
    names = {b["Name"] for b in server.s3_client().list_buckets()["Buckets"]}

    assert names == {BUCKET, CORS_BUCKET}


def test_bucket_settings_from_the_config_are_applied(server: LocalStack) -> None:
    s3 = server.s3_client()

    cors = s3.get_bucket_cors(Bucket=CORS_BUCKET)["CORSRules"]
    encryption = s3.get_bucket_encryption(Bucket=CORS_BUCKET)["ServerSideEncryptionConfiguration"]

    assert cors[0]["AllowedOrigins"] == [ORIGIN]
    assert set(cors[0]["AllowedMethods"]) == {"GET", "PUT", "HEAD"}
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_put_get_head_delete_round_trip_bytes_exactly(server: LocalStack) -> None:
    s3 = server.s3_client()
    body = os.urandom(LARGE)

    s3.put_object(Bucket=BUCKET, Key="round/trip.bin", Body=body, ContentType="application/octet-stream")
    got = s3.get_object(Bucket=BUCKET, Key="round/trip.bin")["Body"].read()
    head = s3.head_object(Bucket=BUCKET, Key="round/trip.bin")
    s3.delete_object(Bucket=BUCKET, Key="round/trip.bin")

    assert got == body
    assert head["ContentLength"] == LARGE
    assert head["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=BUCKET, Key="round/trip.bin")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_wrong_sha256_checksum_is_refused(server: LocalStack) -> None:
    s3 = server.s3_client()
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="bad-digest", Body=b"these bytes", ChecksumSHA256=wrong)

    assert _error_code(refused) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="bad-digest")


def test_a_presigned_get_returns_the_object(server: LocalStack) -> None:
    s3 = server.s3_client()
    s3.put_object(Bucket=BUCKET, Key="presigned", Body=b"signed bytes")

    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned"}, ExpiresIn=60)

    assert _http_get(url) == (200, b"signed bytes")


def test_an_expired_presigned_get_is_refused(server: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = server.s3_client()
    s3.put_object(Bucket=BUCKET, Key="expiring", Body=b"old news")
    ten_minutes_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        minutes=10
    )
    # Sign as if ten minutes ago (the client's clock, not the server's): one URL lived a minute, one an hour.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: ten_minutes_ago)
    params = {"Bucket": BUCKET, "Key": "expiring"}
    expired = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    still_valid = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)

    status, body = _http_get(expired)

    assert status == 403
    assert b"Request has expired" in body
    assert _http_get(still_valid) == (200, b"old news")


def test_a_tampered_presigned_url_is_refused(server: LocalStack) -> None:
    s3 = server.s3_client()
    s3.put_object(Bucket=BUCKET, Key="secret-a", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="secret-b", Body=b"b")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "secret-a"}, ExpiresIn=60)

    status, body = _http_get(url.replace("secret-a", "secret-b"))

    assert status == 403
    assert b"SignatureDoesNotMatch" in body


def test_if_none_match_star_refuses_a_second_put(server: LocalStack) -> None:
    s3 = server.s3_client()
    s3.put_object(Bucket=BUCKET, Key="once", Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="once", Body=b"second", IfNoneMatch="*")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=BUCKET, Key="once")["Body"].read() == b"first"


def test_an_r2_style_client_in_region_auto_works(server: LocalStack) -> None:
    r2 = server.s3_client(
        region="auto",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            signature_version="s3v4",
        ),
    )
    body = os.urandom(4096)
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()

    put = r2.put_object(Bucket=BUCKET, Key="r2/object", Body=body, ChecksumSHA256=checksum)
    url = r2.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "r2/object"}, ExpiresIn=60)

    assert put["ChecksumSHA256"] == checksum
    assert r2.get_object(Bucket=BUCKET, Key="r2/object")["Body"].read() == body
    assert _http_get(url) == (200, body)


def test_the_gateway_listens_on_loopback_only(server: LocalStack) -> None:
    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback address to try")

    listening = {
        c.laddr.ip for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"
    }
    reachable = [a for a in addresses if _port_open(a, server.port)]

    assert listening == {"127.0.0.1"}
    assert reachable == []


def test_a_port_taken_before_localstack_binds_it_is_detected_and_another_is_used(
    server: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the race: the first "free" port is the running server's. The new LocalStack cannot bind it and
    # does not exit; start() must notice that the answers come from another server, kill it and move on.
    ports = iter([server.port, _free_port()])
    monkeypatch.setattr(devserver, "_free_loopback_port", lambda: next(ports))
    before = _children()

    with LocalStack(buckets=["offload-retry"]) as retried:
        names = {b["Name"] for b in retried.s3_client().list_buckets()["Buckets"]}
        retried_port = retried.port
        left_over = _children() - before - {retried.pid}

    assert retried_port != server.port
    assert names == {"offload-retry"}
    assert left_over == set()
    assert {b["Name"] for b in server.s3_client().list_buckets()["Buckets"]} == {BUCKET, CORS_BUCKET}


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if _running(p.pid)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_repr_hides_the_secret_key(server: LocalStack) -> None:
    text = repr(server)

    assert server.endpoint_url in text
    assert "secret_key='***'" in text
    assert f"secret_key={server.secret_key!r}" not in text


def test_two_instances_with_the_same_bucket_do_not_share_spool_files(server: LocalStack) -> None:
    # With LocalStack's shared /tmp/localstack-s3-storage, deleting a bucket in one instance removed the
    # spool folder of the same-named bucket in every other, and their large PUTs failed with a 500.
    s3 = server.s3_client()
    with LocalStack(buckets=[BUCKET]) as other:
        other_s3 = other.s3_client()
        other_s3.put_object(Bucket=BUCKET, Key="gone", Body=os.urandom(LARGE))
        other_s3.delete_object(Bucket=BUCKET, Key="gone")
        other_s3.delete_bucket(Bucket=BUCKET)

        body = os.urandom(LARGE)
        s3.put_object(Bucket=BUCKET, Key="still-works", Body=body)

        assert s3.get_object(Bucket=BUCKET, Key="still-works")["Body"].read() == body
        assert other.port != server.port
    assert not Path("/tmp/localstack-s3-storage", BUCKET).exists()


def test_stop_closes_the_port_ends_the_process_group_and_removes_the_temp_dir() -> None:
    ls = LocalStack(buckets=[BUCKET]).start()
    pid, port, log_path = ls.pid, ls.port, ls.log_path
    assert pid is not None
    assert log_path is not None
    assert _port_open("127.0.0.1", port)

    ls.stop()

    assert not _port_open("127.0.0.1", port)
    assert not _running(pid)
    assert [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pid] == []
    assert not log_path.parent.exists()


def test_killing_the_starting_process_stops_localstack_and_removes_its_temp_dir() -> None:
    # A test run killed by a timeout must not leave servers holding ports and memory behind.
    starter = (
        "import json, os, signal\n"
        "from convex_offload.devservers.localstack import LocalStack\n"
        f"ls = LocalStack(buckets=[{BUCKET!r}]).start()\n"
        "print(json.dumps([ls.pid, ls.port, str(ls.log_path.parent)]), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, check=False)
    pid, port, directory = json.loads(out.stdout)

    deadline = time.monotonic() + 15
    while (_running(pid) or Path(directory).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert out.returncode == -9
    assert not _running(pid)
    assert not Path(directory).exists()
    assert not _port_open("127.0.0.1", port)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_start_timeout_raises_with_the_log_tail_and_leaves_nothing_running() -> None:
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("convex-offload-localstack-*"))
    ls = LocalStack(buckets=[BUCKET], start_timeout=0.3)

    with pytest.raises(LocalStackStartError, match=r"not ready within 0\.3 s.*last lines of") as failed:
        ls.start()

    assert "convex-offload: starting LocalStack on 127.0.0.1:" in str(failed.value)
    assert ls.pid is None
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("convex-offload-localstack-*")) == before


def test_a_missing_install_says_to_run_install_sh(tmp_path: Path) -> None:
    for name in ("install.sh", "run_localstack.py", "seed_buckets.py"):
        shutil.copy(find_localstack_dir() / name, tmp_path / name)

    with pytest.raises(LocalStackNotInstalledError, match=r"run `bash .*install\.sh`"):
        LocalStack(localstack_dir=tmp_path).start()


def test_an_invalid_bucket_name_is_refused_before_starting() -> None:
    with pytest.raises(ValueError, match="invalid S3 bucket name 'a'"):
        LocalStack(buckets=["a"])


def test_the_command_line_prints_ready_json_and_stops_at_end_of_stdin() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "convex_offload.devservers.localstack", "--bucket", BUCKET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        ready = json.loads(proc.stdout.readline())
        port = int(ready["endpoint_url"].rsplit(":", 1)[1])
        status, body = _http_get(f"{ready['endpoint_url']}/_localstack/health")

        proc.stdin.close()
        rest = proc.stdout.read()
        code = proc.wait(timeout=30)
    finally:
        proc.kill()

    assert ready["event"] == "ready"
    assert ready["region"] == "us-east-1"
    assert ready["buckets"] == [BUCKET]
    assert "secret" not in json.dumps(ready)
    assert status == 200
    assert json.loads(body)["services"]["s3"] == "running"
    assert json.loads(rest) == {"event": "stopped"}
    assert code == 0
    assert not _port_open("127.0.0.1", port)
