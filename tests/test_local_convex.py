"""The local Convex server answers Convex's HTTP API as a deployment does, limits included.

Every test talks HTTP to a real server (`localconvex/server.mjs`) running the repository's real
`convex/` folder, with the test-only modules of `tests/fixtures/convex/` mounted under
`test_fixtures/`. The expected texts are Convex's own (see `localconvex/README.md`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convex_offload.convex.client import ConvexClient
from convex_offload.devservers.local_convex import LocalConvex, find_server_script
from convex_offload.errors import (
    ConvexAuthError,
    ConvexFunctionError,
    ConvexTransportError,
    LimitExceededError,
    RecordTooLargeError,
)

FIXTURES = Path(__file__).parent / "fixtures" / "convex"
STORAGE = "mastra/storage:handle"
FAILED = 560
ERROR_PREFIX = re.compile(r"^\[Request ID: [0-9a-f]{16}\] Server Error\n")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalConvex]:
    """One server for this module, test fixtures mounted."""
    with LocalConvex(extra_functions=FIXTURES) as running:
        yield running


@pytest.fixture
def admin(server: LocalConvex) -> Iterator[httpx.Client]:
    """HTTP to the server as its admin."""
    headers = {"Authorization": f"Convex {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
def anonymous(server: LocalConvex) -> Iterator[httpx.Client]:
    """HTTP to the server without a key."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def call(client: httpx.Client, kind: str, path: str, args: Any, **extra: Any) -> httpx.Response:
    return client.post(f"/api/{kind}", json={"path": path, "args": args, "format": "json", **extra})


def value(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["status"] == "success"
    return body["value"]


def failure(response: httpx.Response) -> str:
    """The errorMessage of a 560, without its `[Request ID: ...] Server Error` line."""
    assert response.status_code == FAILED, response.text[:500]
    body = response.json()
    assert body["status"] == "error"
    assert ERROR_PREFIX.match(body["errorMessage"]), body["errorMessage"][:200]
    return ERROR_PREFIX.sub("", body["errorMessage"])


def thread_row(thread_id: str) -> dict[str, Any]:
    stamp = "2025-01-01T00:00:00.000Z"
    return {
        "id": thread_id,
        "resourceId": "r",
        "title": "t",
        "metadata": {},
        "createdAt": stamp,
        "updatedAt": stamp,
    }


def message_row(message_id: str, thread_id: str, content: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "thread_id": thread_id,
        "content": content,
        "role": "user",
        "type": "v2",
        "createdAt": "2025-01-01T00:00:00.000Z",
        "resourceId": "r",
    }


def messages_of(client: httpx.Client, thread_id: str) -> list[dict[str, Any]]:
    filters = [{"field": "thread_id", "value": thread_id}]
    answer = value(
        call(
            client,
            "mutation",
            STORAGE,
            {"op": "queryTable", "tableName": "mastra_messages", "filters": filters},
        )
    )
    assert answer["ok"] is True
    rows: list[dict[str, Any]] = answer["result"]
    return rows


# --- functions ----------------------------------------------------------------------------------


def test_mastra_handler_inserts_and_loads_a_thread(admin: httpx.Client) -> None:
    tid = fresh("t")
    inserted = call(
        admin, "mutation", STORAGE, {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)}
    )
    assert value(inserted) == {"ok": True}
    loaded = value(
        call(admin, "mutation", STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": tid}})
    )
    assert {k: v for k, v in loaded["result"].items() if not k.startswith("_")} == thread_row(tid)
    assert isinstance(loaded["result"]["_id"], str)
    assert isinstance(loaded["result"]["_creationTime"], float | int)


def test_run_endpoint_and_positional_args_reach_the_same_function(admin: httpx.Client) -> None:
    tid = fresh("t")
    body = {"args": {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)}}
    assert value(admin.post("/api/run/mastra/storage/handle", json=body)) == {"ok": True}
    positional = {"op": "load", "tableName": "mastra_threads", "keys": {"id": tid}}
    loaded = call(admin, "mutation", STORAGE, [positional], format="convex_encoded_json")
    assert value(loaded)["result"]["id"] == tid


def test_endpoint_must_match_the_function_kind(admin: httpx.Client) -> None:
    message = failure(call(admin, "query", STORAGE, {}))
    assert message == "Trying to execute mastra/storage.js:handle as Query, but it is defined as Mutation."


def test_wrong_admin_key_is_401_bad_admin_key(server: LocalConvex) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": "Convex not-the-key"}) as wrong:
        answer = call(
            wrong, "mutation", STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": "x"}}
        )
    assert answer.status_code == 401
    assert answer.json() == {
        "code": "BadAdminKey",
        "message": "The provided admin key was invalid for this instance",
    }


def test_internal_functions_answer_only_the_admin(admin: httpx.Client, anonymous: httpx.Client) -> None:
    upload = fresh("upload").encode()
    storage_id = upload_file(admin, upload, "text/plain")
    hidden = (
        "Could not find public function for 'test_fixtures/probe:storageDoc'. "
        "Did you forget to run `npx convex dev` or `npx convex deploy`?"
    )
    assert (
        failure(call(anonymous, "query", "test_fixtures/probe:storageDoc", {"storageId": storage_id}))
        == hidden
    )
    bearer = {"Authorization": "Bearer some.user.token"}
    as_user = anonymous.post(
        "/api/query",
        json={"path": "test_fixtures/probe:storageDoc", "args": {"storageId": storage_id}},
        headers=bearer,
    )
    assert failure(as_user) == hidden
    missing = "Could not find public function for 'test_fixtures/probe:nothing'"
    assert failure(call(admin, "query", "test_fixtures/probe:nothing", {})).startswith(missing)
    assert value(call(admin, "query", "test_fixtures/probe:storageDoc", {"storageId": storage_id}))[
        "size"
    ] == len(upload)
    public = call(
        anonymous, "mutation", STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": "x"}}
    )
    assert value(public) == {"ok": True, "result": None}, (
        "a public function answers without a key, as on Convex"
    )


def test_convex_error_carries_its_data_and_other_errors_none(admin: httpx.Client) -> None:
    refused = call(admin, "mutation", "test_fixtures/errors:refuse", {"reason": "nope"})
    assert failure(refused) == 'Uncaught ConvexError: {"code":"REFUSED","reason":"nope"}'
    assert refused.json()["errorData"] == {"code": "REFUSED", "reason": "nope"}
    crashed = call(admin, "mutation", "test_fixtures/errors:crash", {})
    assert failure(crashed) == "Uncaught Error: boom"
    assert "errorData" not in crashed.json()


def test_values_are_exported_in_the_requested_format(anonymous: httpx.Client) -> None:
    clean = value(call(anonymous, "query", "test_fixtures/probe:specialValues", {}))
    assert clean == {"count": "5", "bytes": "AQID", "ratio": "NaN"}
    encoded = value(
        call(anonymous, "query", "test_fixtures/probe:specialValues", {}, format="convex_encoded_json")
    )
    assert encoded["count"] == {"$integer": base64.b64encode((5).to_bytes(8, "little")).decode()}
    assert encoded["bytes"] == {"$bytes": "AQID"}


def test_console_output_comes_back_as_log_lines(anonymous: httpx.Client) -> None:
    answer = call(anonymous, "mutation", "test_fixtures/probe:chatty", {"name": "ann"})
    assert value(answer) == 3
    assert answer.json()["logLines"] == ["[LOG] hello ann", "[WARN] { careful: true }"]


# --- limits -------------------------------------------------------------------------------------


def test_document_over_1_mib_fails_and_the_mutation_rolls_back(admin: httpx.Client) -> None:
    tid = fresh("t")
    rows = [message_row(fresh("m"), tid, "small"), message_row(fresh("m"), tid, "x" * 1_200_000)]
    answer = call(
        admin, "mutation", STORAGE, {"op": "batchInsert", "tableName": "mastra_messages", "records": rows}
    )
    assert failure(answer) == "Uncaught Error: Value is too large (1.14 MiB > maximum size 1 MiB)"
    assert messages_of(admin, tid) == [], "the small row written before the big one was rolled back"


def test_patch_that_grows_a_document_over_1_mib_fails(admin: httpx.Client) -> None:
    tid, mid = fresh("t"), fresh("m")
    insert = {
        "op": "insert",
        "tableName": "mastra_messages",
        "record": message_row(mid, tid, "c" * 1_000_000),
    }
    assert value(call(admin, "mutation", STORAGE, insert)) == {"ok": True}
    grow = {"op": "patch", "tableName": "mastra_messages", "id": mid, "record": {"content": "c" * 1_100_000}}
    assert "Value is too large (1.05 MiB > maximum size 1 MiB)" in failure(
        call(admin, "mutation", STORAGE, grow)
    )
    assert len(messages_of(admin, tid)[0]["content"]) == 1_000_000


def test_arguments_over_16_mib_are_refused_before_the_function_runs(admin: httpx.Client) -> None:
    args = {
        "op": "insert",
        "tableName": "mastra_threads",
        "record": thread_row(fresh("t")),
        "pad": "z" * (17 << 20),
    }
    message = failure(call(admin, "mutation", STORAGE, args))
    assert message == "Arguments for mastra/storage.js:handle are too large (actual: 17 MiB, limit: 16 MiB)"


def test_values_convex_rejects_are_refused(admin: httpx.Client) -> None:
    dollar = failure(call(admin, "mutation", STORAGE, {"op": "load", "$where": 1}))
    reserved = "Field name $where starts with a '$', which is reserved."
    assert dollar == f"Invalid arguments for mastra/storage.js:handle: {reserved}"
    deep: Any = 1
    for _ in range(16):
        deep = [deep]
    row = {**thread_row(fresh("t")), "metadata": {"deep": deep}}
    nested = failure(
        call(admin, "mutation", STORAGE, {"op": "insert", "tableName": "mastra_threads", "record": row})
    )
    assert nested == "Uncaught Error: Document is too nested (nested 18 levels deep > maximum nesting 16)"


def test_reading_over_16_mib_in_one_transaction_fails(admin: httpx.Client) -> None:
    tid = fresh("t")
    for i in range(20):
        row = message_row(f"{tid}-{i}", tid, "c" * 900_000)
        assert value(
            call(admin, "mutation", STORAGE, {"op": "insert", "tableName": "mastra_messages", "record": row})
        )
    filters = [{"field": "thread_id", "value": tid}]
    listing = call(
        admin, "mutation", STORAGE, {"op": "queryTable", "tableName": "mastra_messages", "filters": filters}
    )
    assert failure(listing).startswith(
        "Uncaught Error: Too many bytes read in a single function execution (limit: 16777216 bytes). "
    )


# --- file storage -------------------------------------------------------------------------------


def upload_file(client: httpx.Client, data: bytes, content_type: str | None) -> str:
    upload_url = value(call(client, "mutation", "offload/files:generateUploadUrl", {}))
    headers = {"Content-Type": content_type} if content_type else {}
    answer = httpx.post(upload_url, content=data, headers=headers)
    assert answer.status_code == 200, answer.text
    storage_id: str = answer.json()["storageId"]
    return storage_id


def test_upload_url_flow_round_trips_bytes_and_content_type(server: LocalConvex, admin: httpx.Client) -> None:
    data = os.urandom(300_000)
    upload_url = value(call(admin, "mutation", "offload/files:generateUploadUrl", {}))
    assert upload_url.startswith(f"{server.url}/api/storage/upload?token=")
    stored = httpx.post(upload_url, content=data, headers={"Content-Type": "image/png"})
    storage_id = stored.json()["storageId"]
    url = value(call(admin, "query", "offload/files:getUrl", {"storageId": storage_id}))
    assert url.startswith(f"{server.url}/api/storage/")
    fetched = httpx.get(url)
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/png"
    assert int(httpx.head(url).headers["content-length"]) == len(data)
    sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()  # Convex keeps base64, not hex
    assert fetched.headers["digest"] == f"sha-256={sha256}"
    meta = value(call(admin, "query", "offload/files:getMetadata", {"storageId": storage_id}))
    assert (meta["size"], meta["sha256"], meta["contentType"]) == (len(data), sha256, "image/png")
    assert value(call(admin, "mutation", "offload/files:deleteFile", {"storageId": storage_id})) is True
    assert httpx.get(url).status_code == 404
    assert value(call(admin, "query", "offload/files:getUrl", {"storageId": storage_id})) is None


def test_ranges_of_a_file_can_be_read(admin: httpx.Client) -> None:
    data = os.urandom(10_000)
    storage_id = upload_file(admin, data, "application/octet-stream")
    url = value(call(admin, "query", "offload/files:getUrl", {"storageId": storage_id}))
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (
        206,
        data[100:200],
        "bytes 100-199/10000",
    )


def test_upload_without_content_type_records_null_as_convex_does(admin: httpx.Client) -> None:
    storage_id = upload_file(admin, b"plain bytes", None)
    doc = value(call(admin, "query", "test_fixtures/probe:storageDoc", {"storageId": storage_id}))
    assert doc["contentType"] is None
    assert doc["size"] == len(b"plain bytes")


def test_uploads_need_a_token_the_server_issued(admin: httpx.Client, server: LocalConvex) -> None:
    forged = httpx.post(f"{server.url}/api/storage/upload?token=forged", content=b"x")
    assert forged.status_code == 401
    assert forged.json()["code"] == "StorageTokenInvalid"
    upload_url = value(call(admin, "mutation", "offload/files:generateUploadUrl", {}))
    wrong_digest = httpx.post(upload_url, content=b"abc", headers={"Digest": "sha-256=" + "A" * 43 + "="})
    assert (wrong_digest.status_code, wrong_digest.json()["code"]) == (400, "Sha256Mismatch")


# --- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"path": "a:b", "args": {}}', {"Content-Type": "text/plain"}, 400, "BadJsonBody"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "BadJsonBody"),
        (b'{"args": {}}', {"Content-Type": "application/json"}, 400, "BadJsonBody"),
        (
            b'{"path": "../x:y", "args": {}}',
            {"Content-Type": "application/json"},
            400,
            "BadConvexFunctionIdentifier",
        ),
        (
            b'{"path": "a:b", "args": {}}',
            {"Content-Type": "application/json", "Authorization": "Basic x"},
            400,
            "InvalidAdminKey",
        ),
    ],
)
def test_malformed_requests_get_4xx_json(
    anonymous: httpx.Client, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    answer = anonymous.post("/api/mutation", content=body, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.json()["message"]


def test_unknown_routes_are_404_and_huge_bodies_413(anonymous: httpx.Client) -> None:
    assert anonymous.get("/api/nothing").status_code == 404
    assert anonymous.get("/api/mutation").status_code == 405
    huge = b'{"path": "a:b", "args": "' + b"z" * (21 << 20) + b'"}'
    answer = anonymous.post("/api/mutation", content=huge, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


async def test_concurrent_requests_all_get_answers(server: LocalConvex) -> None:
    ids = [fresh("t") for _ in range(20)]
    headers = {"Authorization": f"Convex {server.admin_key}"}

    async def insert(client: httpx.AsyncClient, tid: str) -> Any:
        args = {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)}
        return (await client.post("/api/mutation", json={"path": STORAGE, "args": args})).json()

    async def load(client: httpx.AsyncClient, tid: str) -> Any:
        args = {"op": "load", "tableName": "mastra_threads", "keys": {"id": tid}}
        return (await client.post("/api/mutation", json={"path": STORAGE, "args": args})).json()

    # One connection per request for the writes, one shared keep-alive pool for the reads.
    written = [httpx.AsyncClient(base_url=server.url, headers=headers) for _ in ids]
    try:
        answers = await asyncio.gather(
            *(insert(client, tid) for client, tid in zip(written, ids, strict=True))
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in written))
    assert [answer["value"] for answer in answers] == [{"ok": True}] * len(ids)
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits) as pool:
        loaded = await asyncio.gather(*(load(pool, tid) for tid in ids))
    assert [answer["value"]["result"]["id"] for answer in loaded] == ids


# --- the process --------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_server_listens_on_loopback_only(server: LocalConvex) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    assert server.url == f"http://127.0.0.1:{port}"
    assert listening_addresses(port) == {"0100007F"}, "127.0.0.1 and nothing else"


def test_stop_leaves_no_process_and_no_port() -> None:
    with LocalConvex() as running:
        pid, port = running.pid, int(running.url.rsplit(":", 1)[1])
        assert running.admin_key not in repr(running)
        assert running.log_path is not None
        assert running.log_path.exists()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert running.url == ""
    assert running.pid is None


def test_server_exits_when_its_parent_closes_stdin() -> None:
    env = {**os.environ, "CONVEX_ADMIN_KEY": "k" * 32}
    command = ["node", str(find_server_script()), "--exit-on-stdin-close"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0


def test_server_refuses_to_start_without_an_admin_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEX_ADMIN_KEY"}
    done = subprocess.run(
        ["node", str(find_server_script())], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert "CONVEX_ADMIN_KEY" in done.stderr
    assert done.stdout == ""


# --- the project's Python client over this server -------------------------------------------------
# (Kept here from the first version of this file; they belong with the client's own tests.)


async def test_python_client_types_the_servers_failures(server: LocalConvex) -> None:
    tid = fresh("t")
    big = {
        "op": "insert",
        "tableName": "mastra_threads",
        "record": {**thread_row(tid), "title": "y" * 1_100_000},
    }
    async with ConvexClient(server.url, server.admin_key) as client:
        with pytest.raises(RecordTooLargeError):
            await client.mutation(STORAGE, big)
        with pytest.raises(LimitExceededError) as over:
            await client.mutation(STORAGE, {"op": "load", "pad": "z" * (17 << 20)})
        assert "Arguments for mastra/storage.js:handle are too large" in over.value.convex_message
        with pytest.raises(ConvexFunctionError) as refused:
            await client.mutation("test_fixtures/errors:refuse", {"reason": "nope"})
        assert refused.value.data == {"code": "REFUSED", "reason": "nope"}
    async with ConvexClient(server.url, "not-the-key") as wrong:
        with pytest.raises(ConvexAuthError) as caught:
            await wrong.mutation(STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": "x"}})
    assert "not-the-key" not in str(caught.value)


async def test_unreachable_convex_is_a_transport_error_after_bounded_retries() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    async with ConvexClient(
        f"http://127.0.0.1:{port}", "secret-admin-key", max_retries=2, backoff=0.01
    ) as convex:
        with pytest.raises(ConvexTransportError, match="after 3 attempts") as caught:
            await convex.query("anything:here")
        assert convex.stats.retries == 3
    assert "secret-admin-key" not in str(caught.value)
    assert "secret-admin-key" not in repr(convex)
