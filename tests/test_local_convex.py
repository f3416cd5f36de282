"""The local Convex server answers Convex's HTTP API as a deployment does, limits included; and the
Python client turns its answers into typed errors."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from convex_offload.convex.client import ConvexClient
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.errors import (
    ConvexAuthError,
    ConvexFunctionError,
    ConvexRequestError,
    ConvexTransportError,
    LimitExceededError,
    RecordTooLargeError,
)
from media import image_bytes

STORAGE = "mastra/storage:handle"


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


@pytest.fixture
async def client(local_convex: LocalConvex) -> AsyncIterator[ConvexClient]:
    async with ConvexClient(local_convex.url, local_convex.admin_key) as convex:
        yield convex


async def test_storage_handler_round_trip(client: ConvexClient, uid: Callable[[str], str]) -> None:
    tid = uid("t")
    assert await client.mutation(
        STORAGE, {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)}
    ) == {"ok": True}
    loaded = await client.mutation(
        STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": tid}}
    )
    assert loaded["ok"] is True
    assert {k: v for k, v in loaded["result"].items() if not k.startswith("_")} == thread_row(tid)
    assert {"_id", "_creationTime"} <= set(loaded["result"])


async def test_wrong_admin_key_is_401_and_a_typed_error(local_convex: LocalConvex) -> None:
    async with httpx.AsyncClient(base_url=local_convex.url) as http:
        answer = await http.post(
            "/api/mutation", json={"path": STORAGE, "args": {}}, headers={"Authorization": "Convex nope"}
        )
    assert answer.status_code == 401
    assert answer.json()["code"] == "BadAdminKey"
    async with ConvexClient(local_convex.url, "not-the-key") as wrong:
        with pytest.raises(ConvexAuthError) as caught:
            await wrong.mutation(STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": "x"}})
    assert "not-the-key" not in str(caught.value)
    assert local_convex.admin_key not in repr(local_convex)


async def test_internal_functions_need_the_admin_key(local_convex: LocalConvex) -> None:
    async with httpx.AsyncClient(base_url=local_convex.url) as http:
        anonymous = await http.post(
            "/api/query", json={"path": "offload/files:getUrl", "args": {"storageId": "x"}}
        )
        public = await http.post(
            "/api/mutation",
            json={
                "path": STORAGE,
                "args": {"op": "load", "tableName": "mastra_threads", "keys": {"id": "x"}},
            },
        )
    assert anonymous.status_code == 404
    assert "Could not find public function" in anonymous.json()["message"]
    assert public.status_code == 200, "a public function answers without a key, as on Convex"


async def test_run_endpoint_and_args_array_form(local_convex: LocalConvex, uid: Callable[[str], str]) -> None:
    tid = uid("t")
    headers = {"Authorization": f"Convex {local_convex.admin_key}"}
    async with httpx.AsyncClient(base_url=local_convex.url, headers=headers) as http:
        inserted = await http.post(
            "/api/run/mastra/storage/handle",
            json={
                "args": {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)},
                "format": "json",
            },
        )
        loaded = await http.post(
            "/api/mutation",
            json={
                "path": STORAGE,
                "args": [{"op": "load", "tableName": "mastra_threads", "keys": {"id": tid}}],
                "format": "convex_encoded_json",
            },
        )
        wrong_kind = await http.post("/api/query", json={"path": STORAGE, "args": {}})
    assert inserted.json()["status"] == "success"
    assert loaded.json()["value"]["result"]["id"] == tid
    assert wrong_kind.status_code == 400
    assert "defined as Mutation" in wrong_kind.json()["message"]


async def test_convex_error_carries_its_data(client: ConvexClient) -> None:
    with pytest.raises(ConvexFunctionError) as caught:
        await client.mutation("test_fixtures/errors:refuse", {"reason": "nope"})
    assert caught.value.data == {"code": "REFUSED", "reason": "nope"}
    assert "Uncaught ConvexError" in caught.value.convex_message
    assert caught.value.convex_message.startswith("[CONVEX M(test_fixtures/errors:refuse)] [Request ID: ")
    with pytest.raises(ConvexFunctionError, match="boom") as plain:
        await client.mutation("test_fixtures/errors:crash", {})
    assert plain.value.data is None


async def test_document_over_1_mib_fails_and_rolls_back(
    client: ConvexClient, uid: Callable[[str], str]
) -> None:
    first, second = uid("t"), uid("t")
    big = {**thread_row(second), "metadata": {"blob": "x" * 1_100_000}}
    with pytest.raises(RecordTooLargeError) as caught:
        await client.mutation(
            STORAGE, {"op": "batchInsert", "tableName": "mastra_threads", "records": [thread_row(first), big]}
        )
    assert "Value is too large (1.05 MiB > maximum size 1 MiB)" in caught.value.convex_message
    loaded = await client.mutation(
        STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": first}}
    )
    assert loaded["result"] is None, "the whole transaction rolled back"


async def test_patch_that_grows_a_document_over_the_limit_fails(
    client: ConvexClient, uid: Callable[[str], str]
) -> None:
    tid = uid("t")
    await client.mutation(STORAGE, {"op": "insert", "tableName": "mastra_threads", "record": thread_row(tid)})
    with pytest.raises(RecordTooLargeError):
        await client.mutation(
            STORAGE,
            {"op": "patch", "tableName": "mastra_threads", "id": tid, "record": {"title": "y" * 1_100_000}},
        )


async def test_arguments_over_16_mib_are_refused(client: ConvexClient) -> None:
    with pytest.raises(
        LimitExceededError, match=r"Arguments for handle are too large \(1[67]\.\d\d MiB, limit: 16 MiB\)"
    ):
        await client.mutation(
            STORAGE, {"op": "insert", "tableName": "mastra_threads", "padding": "z" * (17 << 20)}
        )


async def test_reading_over_16_mib_in_one_transaction_fails(
    local_convex: LocalConvex, uid: Callable[[str], str]
) -> None:
    thread = uid("t")
    async with ConvexClient(local_convex.url, local_convex.admin_key, timeout=120) as convex:
        for i in range(20):
            row = {
                "id": f"{thread}-{i}",
                "thread_id": thread,
                "content": "c" * 900_000,
                "role": "user",
                "type": "v2",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "resourceId": "r",
            }
            await convex.mutation(STORAGE, {"op": "insert", "tableName": "mastra_messages", "record": row})
        with pytest.raises(LimitExceededError, match="Read too much data"):
            await convex.mutation(
                STORAGE,
                {
                    "op": "queryTable",
                    "tableName": "mastra_messages",
                    "filters": [{"field": "thread_id", "value": thread}],
                },
            )


async def test_file_storage_upload_url_flow(client: ConvexClient) -> None:
    data = image_bytes("png", 50_000, seed=401)
    upload_url = await client.mutation("offload/files:generateUploadUrl", {})
    assert upload_url.startswith(client.url)
    storage_id = await client.upload(upload_url, data, "image/png")
    url = await client.query("offload/files:getUrl", {"storageId": storage_id})
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
        head = await http.head(url)
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/png"
    assert int(head.headers["content-length"]) == len(data)
    meta = await client.query("offload/files:getMetadata", {"storageId": storage_id})
    assert meta["size"] == len(data)
    assert await client.mutation("offload/files:deleteFile", {"storageId": storage_id}) is True
    assert await client.download(url) is None
    with pytest.raises(ConvexRequestError):
        await client.upload(upload_url, data, "image/png")  # an upload URL works once


async def test_many_concurrent_requests_all_get_answers(
    client: ConvexClient, uid: Callable[[str], str]
) -> None:
    ids = [uid("t") for _ in range(40)]
    await asyncio.gather(
        *(
            client.mutation(STORAGE, {"op": "insert", "tableName": "mastra_threads", "record": thread_row(t)})
            for t in ids
        )
    )
    loaded = await asyncio.gather(
        *(
            client.mutation(STORAGE, {"op": "load", "tableName": "mastra_threads", "keys": {"id": t}})
            for t in ids
        )
    )
    assert [answer["result"]["id"] for answer in loaded] == ids


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_server_binds_loopback_only_and_stops_cleanly() -> None:
    with LocalConvex() as server:
        port = int(server.url.rsplit(":", 1)[1])
        pid = server.pid
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        address = non_loopback_address()
        if address is not None:
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass
    assert pid is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


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
