"""Nobody let in: private objects, bounded URLs, honest types, active content defused, encryption
applied, no user text in keys, tenants kept apart, and secrets never printed."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conftest import s3_bucket
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import AttachmentPolicyError, ConvexOffloadError
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore
from media import b64, image_bytes

HTML = (
    b"<!DOCTYPE html><html><head><title>t</title></head><body><script>alert(1)</script></body></html>\n" * 400
)


def config_for(
    local_convex: LocalConvex, localstack: LocalStack, bucket: str = "images", **extra: Any
) -> OffloadConfig:
    return OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"b": s3_bucket(localstack, bucket, prefix=f"sec-{uuid.uuid4().hex[:8]}/", **extra)},
    )


def message(uid: Callable[[str], str], resource: str, parts: list[dict[str, Any]]) -> Message:
    return Message(
        id=uid("m"),
        thread_id=uid("t"),
        resource_id=resource,
        role="user",
        content={"format": 2, "parts": parts},
    )


async def stored_ref(store: ConvexStore, message_id: str) -> dict[str, Any]:
    [stored] = await store.memory.list_messages_by_id([message_id])
    ref: dict[str, Any] = stored.content["metadata"][MANIFEST_KEY]["refs"][0]
    return ref


async def test_objects_are_private_typed_by_their_bytes_and_keyed_without_user_text(
    local_convex: LocalConvex, localstack: LocalStack, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    config = config_for(local_convex, localstack)
    png = image_bytes("png", 60_000, seed=900)
    tricky = "../../etc/passwd\x00<script>"
    msg = message(
        uid,
        tricky,
        [{"type": "file", "mimeType": "application/octet-stream", "data": b64(png), "filename": "cat.png"}],
    )
    async with OffloadingStore.connect(config) as offloading:
        await offloading.memory.save_messages([msg])
    ref = await stored_ref(store, msg.id)
    prefix = config.buckets["b"].prefix
    assert re.fullmatch(re.escape(prefix) + r"t-[0-9a-f]{32}/[0-9a-f]{64}", ref["key"]), ref["key"]
    assert ref["url"] == f"s3://images/{ref['key']}", "a private bucket gets a locator, not a public URL"
    s3 = localstack.s3_client()
    head = s3.head_object(Bucket="images", Key=ref["key"])
    assert head["ContentType"] == "image/png", "stored with the sniffed type, not the declared one"
    grants = s3.get_object_acl(Bucket="images", Key=ref["key"])["Grants"]
    assert all("URI" not in g["Grantee"] for g in grants), "no AllUsers/AuthenticatedUsers grant"


async def test_presigned_urls_are_bounded_by_the_buckets_ttl(
    local_convex: LocalConvex, localstack: LocalStack, uid: Callable[[str], str]
) -> None:
    config = config_for(local_convex, localstack, presign_ttl=120)
    msg = message(
        uid,
        "u",
        [{"type": "file", "mimeType": "image/png", "data": b64(image_bytes("png", 40_000, seed=901))}],
    )
    async with OffloadingStore.connect(config) as offloading:
        await offloading.memory.save_messages([msg])
        [shown] = await offloading.with_restore_mode("urls").memory.list_messages_by_id([msg.id])
        url = shown.content["parts"][0]["data"]
        assert "X-Amz-Expires=120" in url
        longer = await offloading.buckets["b"].access_url(
            shown.content["parts"][0]["data"].split("?")[0].split("/images/")[1], 86_400
        )
    assert "X-Amz-Expires=120" in longer, "a caller cannot ask for longer than the configured TTL"
    with pytest.raises(ValueError, match="less than or equal to 604800"):
        BucketConfig(provider="s3", bucket="b", presign_ttl=10**7)


async def test_active_content_is_served_as_a_download_or_refused(
    local_convex: LocalConvex, localstack: LocalStack, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    page = message(uid, "u", [{"type": "file", "mimeType": "text/html", "data": b64(HTML)}])
    async with OffloadingStore.connect(config_for(local_convex, localstack)) as offloading:
        await offloading.memory.save_messages([page])
    ref = await stored_ref(store, page.id)
    head = localstack.s3_client().head_object(Bucket="images", Key=ref["key"])
    assert head["ContentType"] == "text/html"
    assert head["ContentDisposition"] == "attachment", "a browser downloads it instead of running it"

    strict = config_for(local_convex, localstack, active_content="refuse")
    async with OffloadingStore.connect(strict) as offloading:
        with pytest.raises(AttachmentPolicyError, match=r"active content \(text/html\) is refused"):
            await offloading.memory.save_messages([message(uid, "u", page.content["parts"])])


async def test_encryption_at_rest_is_applied_per_bucket(
    local_convex: LocalConvex, localstack: LocalStack, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    config = config_for(local_convex, localstack, bucket="encrypted", sse="AES256")
    msg = message(
        uid,
        "u",
        [{"type": "file", "mimeType": "image/png", "data": b64(image_bytes("png", 40_000, seed=902))}],
    )
    async with OffloadingStore.connect(config) as offloading:
        await offloading.memory.save_messages([msg])
    ref = await stored_ref(store, msg.id)
    assert (
        localstack.s3_client().head_object(Bucket="encrypted", Key=ref["key"])["ServerSideEncryption"]
        == "AES256"
    )


async def test_one_tenant_cannot_delete_another_tenants_object(
    local_convex: LocalConvex, localstack: LocalStack, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    same = image_bytes("png", 40_000, seed=903)
    alice = message(uid, "alice", [{"type": "file", "mimeType": "image/png", "data": b64(same)}])
    mallory = message(uid, "mallory", [{"type": "file", "mimeType": "image/png", "data": b64(same)}])
    config = config_for(local_convex, localstack)
    async with OffloadingStore.connect(config) as offloading:
        await offloading.memory.save_messages([alice, mallory])
        alice_key = (await stored_ref(store, alice.id))["key"]
        assert alice_key != (await stored_ref(store, mallory.id))["key"], (
            "same bytes, separate objects per tenant"
        )
        await offloading.memory.delete_messages([mallory.id])
    async with OffloadingStore.connect(config) as fresh:
        assert await fresh.memory.list_messages_by_id([alice.id]) == [alice]
    assert localstack.s3_client().head_object(Bucket="images", Key=alice_key)["ContentLength"] == len(same)


async def test_secrets_never_appear_in_logs_errors_or_reprs(
    local_convex: LocalConvex,
    localstack: LocalStack,
    uid: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY0"
    admin_key = "prod:happy-animal-123|0123456789abcdefSECRET"
    caplog.set_level(logging.DEBUG)
    bad_bucket = BucketConfig(
        provider="s3",
        bucket="no-such-bucket-for-secrets",
        endpoint_url=localstack.endpoint_url,
        region="us-east-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key=aws_secret,
        max_attempts=1,
    )
    texts: list[str] = []
    for convex_url, key in ((local_convex.url, local_convex.admin_key), ("http://127.0.0.1:9", admin_key)):
        config = OffloadConfig(
            convex_url=convex_url, convex_admin_key=key, convex_timeout_seconds=2, buckets={"b": bad_bucket}
        )
        texts += [repr(config), str(config), repr(config.buckets["b"]), config.model_dump_json()]
        async with OffloadingStore.connect(config) as offloading:
            texts += [repr(offloading), repr(offloading.store.client), repr(offloading.buckets["b"])]
            msg = message(
                uid,
                "u",
                [
                    {
                        "type": "file",
                        "mimeType": "image/png",
                        "data": b64(image_bytes("png", 30_000, seed=904)),
                    }
                ],
            )
            with pytest.raises(ConvexOffloadError) as caught:
                await offloading.memory.save_messages([msg])
            texts += [str(caught.value), repr(caught.value), str(caught.value.__cause__ or "")]
    texts.append(caplog.text)
    everything = "\n".join(texts)
    assert "upload to bucket 'b' failed" in everything, "the S3 failure was real"
    assert "ConvexTransportError" in everything or "failed after" in everything, "so was the Convex one"
    assert aws_secret not in everything
    assert admin_key not in everything
    assert local_convex.admin_key not in everything
