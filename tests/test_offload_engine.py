"""The offloader on its own (a local-folder bucket): every location, exact restore, the refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from convex_offload.blobs.factory import open_bucket
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.errors import (
    AttachmentIntegrityError,
    AttachmentMissingError,
    AttachmentPolicyError,
    ForbiddenReferenceError,
    MalformedAttachmentError,
)
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.offloader import Offloader
from media import MIME, b64, data_url, image_bytes

HOLDER = ("metadata",)


def every_location(img: bytes, mime: str) -> dict[str, Any]:
    """Mastra v2 content with the payload in every place FACTS §5 lists."""
    return {
        "format": 2,
        "parts": [
            {"type": "text", "text": "look at this"},
            {"type": "file", "mimeType": mime, "data": b64(img), "filename": "photo"},
            {"type": "file", "mimeType": mime, "data": data_url(img, mime)},
            {"type": "file", "url": data_url(img, mime), "mediaType": mime},
            {"type": "image", "image": b64(img), "mimeType": mime},
            {
                "type": "tool-invocation",
                "toolInvocation": {
                    "state": "result",
                    "toolCallId": "c1",
                    "toolName": "render",
                    "args": {},
                    "result": {
                        "content": [{"type": "image", "data": b64(img), "mimeType": mime}],
                        "preview": data_url(img, mime),
                    },
                },
            },
            {"type": "text", "text": f"inline markdown ![x]({data_url(img, mime)}) end"},
        ],
        "experimental_attachments": [{"name": "photo", "contentType": mime, "url": data_url(img, mime)}],
        "providerMetadata": {"openai": {"images": [{"b64_json": b64(img)}], "raw": b64(img)}},
        "metadata": {"client": "web"},
    }


@pytest.fixture
def offloader(tmp_path: Path) -> Offloader:
    config = OffloadConfig(
        buckets={"main": BucketConfig(provider="local", path=tmp_path / "bucket")},
        bare_base64_min_bytes=16 << 10,
    )
    return Offloader(config, {"main": open_bucket("main", config.buckets["main"])})


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp", "pdf"])
async def test_offloads_every_location_and_restores_byte_for_byte(offloader: Offloader, kind: str) -> None:
    img = image_bytes(kind, 120_000, seed=1)
    content = every_location(img, MIME[kind])
    before = dumps(content)

    rewritten = await offloader.offload(content, holder=HOLDER, tenant="user-1", where="message m1")

    assert dumps(content) == before, "the caller's content must not be modified"
    stored = dumps(rewritten.root)
    assert b64(img)[:200] not in stored
    assert len(stored) < 8_000
    refs = rewritten.root["metadata"][MANIFEST_KEY]["refs"]
    assert {r["path"] for r in refs} >= {
        "/parts/1/data",
        "/parts/2/data",
        "/parts/3/url",
        "/parts/4/image",
        "/parts/5/toolInvocation/result/content/0/data",
        "/parts/5/toolInvocation/result/preview",
        "/parts/6/text",
        "/experimental_attachments/0/url",
        "/providerMetadata/openai/images/0/b64_json",
        "/providerMetadata/openai/raw",
    }
    assert {r["sniffed_type"] for r in refs} == {MIME[kind]}
    assert offloader.stats.uploads == 1, "one object for the same bytes in every location"

    restored = await offloader.restore(json.loads(stored), holder=HOLDER, tenant="user-1")
    assert dumps(restored) == before


async def test_small_payloads_stay_inline(offloader: Offloader) -> None:
    icon = image_bytes("png", 300)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(icon)}]}
    rewritten = await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    assert rewritten.root is content
    assert offloader.stats.uploads == 0


async def test_users_https_url_is_never_rewritten(offloader: Offloader) -> None:
    content = {
        "format": 2,
        "parts": [{"type": "file", "mimeType": "image/png", "data": "https://example.com/cat.png"}],
        "experimental_attachments": [{"url": "https://example.com/cat.png"}],
    }
    rewritten = await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    assert rewritten.root == content
    assert not rewritten.changed


async def test_second_offload_of_the_same_bytes_uploads_nothing(offloader: Offloader) -> None:
    img = image_bytes("jpeg", 80_000, seed=2)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/jpeg", "data": b64(img)}]}
    await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    await offloader.offload(copy.deepcopy(content), holder=HOLDER, tenant="u", where="m")
    assert offloader.stats.uploads == 1


async def test_same_bytes_for_another_tenant_get_their_own_object(offloader: Offloader) -> None:
    img = image_bytes("webp", 80_000, seed=3)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/webp", "data": b64(img)}]}
    a = await offloader.offload(content, holder=HOLDER, tenant="alice", where="m")
    b = await offloader.offload(content, holder=HOLDER, tenant="bob", where="m")
    assert a.refs[0].key != b.refs[0].key
    assert offloader.stats.uploads == 2


async def test_malformed_base64_in_a_file_part_is_refused(offloader: Offloader) -> None:
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": "not*base64" * 100}]}
    with pytest.raises(MalformedAttachmentError, match="/parts/0/data"):
        await offloader.offload(content, holder=HOLDER, tenant="u", where="message m")


async def test_declared_type_that_lies_about_the_bytes_is_refused(offloader: Offloader) -> None:
    html = b"<!DOCTYPE html><html><script>alert(1)</script></html>" * 500
    content = {
        "format": 2,
        "parts": [{"type": "file", "url": data_url(html, "image/png"), "mediaType": "image/png"}],
    }
    with pytest.raises(
        AttachmentPolicyError, match="declared type 'image/png' but the bytes are 'text/html'"
    ):
        await offloader.offload(content, holder=HOLDER, tenant="u", where="m")


async def test_zero_byte_attachment_is_refused(offloader: Offloader) -> None:
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": ""}]}
    with pytest.raises(AttachmentPolicyError, match="zero-byte"):
        await offloader.offload(content, holder=HOLDER, tenant="u", where="m")


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.png", "a\\b.png", "bad\x00name", "x" * 300])
async def test_unsafe_filenames_are_refused(offloader: Offloader, name: str) -> None:
    img = image_bytes("png", 30_000)
    content = {
        "format": 2,
        "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img), "filename": name}],
    }
    with pytest.raises(AttachmentPolicyError, match="filename"):
        await offloader.offload(content, holder=HOLDER, tenant="u", where="m")


async def test_corrupted_object_raises_integrity_error(offloader: Offloader, tmp_path: Path) -> None:
    img = image_bytes("png", 40_000, seed=4)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    rewritten = await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    key = rewritten.refs[0].key
    path = tmp_path / "bucket" / key
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(AttachmentIntegrityError, match="sha256"):
        await offloader.restore(json.loads(dumps(rewritten.root)), holder=HOLDER, tenant="u")


async def test_missing_object_raises_missing_error(offloader: Offloader, tmp_path: Path) -> None:
    img = image_bytes("png", 40_000, seed=5)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    rewritten = await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    (tmp_path / "bucket" / rewritten.refs[0].key).unlink()
    with pytest.raises(AttachmentMissingError):
        await offloader.restore(json.loads(dumps(rewritten.root)), holder=HOLDER, tenant="u")


async def test_manifest_pointing_at_another_tenant_is_refused(offloader: Offloader) -> None:
    img = image_bytes("png", 40_000, seed=6)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    alice = await offloader.offload(content, holder=HOLDER, tenant="alice", where="m")
    forged = json.loads(dumps(alice.root))
    with pytest.raises(ForbiddenReferenceError, match="tenant"):
        await offloader.restore(forged, holder=HOLDER, tenant="mallory")


async def test_manifest_pointing_outside_the_buckets_is_refused(offloader: Offloader) -> None:
    img = image_bytes("png", 40_000, seed=7)
    content = {"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]}
    rewritten = await offloader.offload(content, holder=HOLDER, tenant="u", where="m")
    forged = json.loads(dumps(rewritten.root))
    forged["metadata"][MANIFEST_KEY]["refs"][0]["bucket"] = "elsewhere"
    with pytest.raises(ForbiddenReferenceError, match="not configured"):
        await offloader.restore(forged, holder=HOLDER, tenant="u")
