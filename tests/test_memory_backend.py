"""The in-memory backend is a real `BlobStore`, and the offloader runs on it with no server at all."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from convex_offload import (
    AttachmentIntegrityError,
    AttachmentMissingError,
    BlobStore,
    BlobStoreError,
    BucketConfig,
    BucketConfigError,
    ForbiddenReferenceError,
    MemoryBlobStore,
    OffloadConfig,
    Offloader,
    UnsupportedManifestError,
)
from convex_offload.blobs.factory import open_bucket
from convex_offload.convex.values import dumps
from convex_offload.offload.manifest import MANIFEST_KEY
from media import b64, data_url, image_bytes

HOLDER = ("metadata",)
PNG = image_bytes("png", 60_000, seed=31)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def offloader() -> Offloader:
    config = OffloadConfig(buckets={"mem": BucketConfig(provider="memory")})
    return Offloader(config, {"mem": open_bucket("mem", config.buckets["mem"])})


def content() -> dict[str, Any]:
    return {
        "format": 2,
        "parts": [
            {"type": "file", "mimeType": "image/png", "data": b64(PNG)},
            {"type": "text", "text": f"again ![x]({data_url(PNG, 'image/png')})"},
        ],
    }


async def test_memory_store_keeps_bytes_and_metadata_like_a_real_store() -> None:
    store = MemoryBlobStore("m")
    assert isinstance(store, BlobStore)
    await store.put(
        "a/b", b"hello", content_type="text/plain", sha256=sha(b"hello"), disposition="attachment"
    )
    assert await store.get("a/b") == b"hello"
    head = await store.head("a/b")
    assert head is not None
    assert (head.size, head.sha256, head.content_type, head.disposition) == (
        5,
        sha(b"hello"),
        "text/plain",
        "attachment",
    )
    assert [info.key async for info in store.list_objects("a/")] == ["a/b"]
    assert await store.get("missing") is None
    assert await store.reference_url("a/b") == "memory://m/a/b"
    assert store.is_reference_url("a/b", "memory://m/a/b")
    assert not store.is_reference_url("a/b", "memory://other/a/b")
    await store.delete("a/b")
    await store.delete("a/b")  # deleting twice is not an error
    assert await store.head("a/b") is None


async def test_memory_store_refuses_what_real_stores_refuse() -> None:
    store = MemoryBlobStore("m")
    with pytest.raises(AttachmentIntegrityError, match="sha256"):
        await store.put("k", b"bytes", content_type="x/y", sha256=sha(b"other"), disposition=None)
    with pytest.raises(ForbiddenReferenceError, match="not a key this library writes"):
        await store.get("../escape")
    await store.aclose()
    with pytest.raises(BlobStoreError) as caught:
        await store.get("k")
    assert (caught.value.bucket, caught.value.key, caught.value.operation) == ("m", "k", "GetObject")


async def test_offloads_and_restores_byte_for_byte_in_memory(offloader: Offloader) -> None:
    original = content()
    rewritten = await offloader.offload(original, holder=HOLDER, tenant="u", where="message m1")
    assert original == content(), "the caller's tree is never modified"
    stored = dumps(rewritten.root)
    assert b64(PNG) not in stored
    assert offloader.stats.uploads == 1, "the same bytes in two places are one object"
    restored = await offloader.restore(json.loads(stored), holder=HOLDER, tenant="u", record="message m1")
    assert restored == original


async def test_a_second_offload_finds_the_object_already_there(offloader: Offloader) -> None:
    await offloader.offload(content(), holder=HOLDER, tenant="u", where="m")
    await offloader.offload(content(), holder=HOLDER, tenant="u", where="m")
    assert offloader.stats.uploads == 1


async def test_a_deleted_object_is_a_missing_attachment(offloader: Offloader) -> None:
    rewritten = await offloader.offload(content(), holder=HOLDER, tenant="u", where="m")
    ref = rewritten.refs[0]
    await offloader.buckets["mem"].delete(ref.key)
    offloader.forget("mem", ref.key)
    with pytest.raises(AttachmentMissingError, match=ref.key):
        await offloader.restore(json.loads(dumps(rewritten.root)), holder=HOLDER, tenant="u")


async def test_a_manifest_of_an_unknown_version_is_refused(offloader: Offloader) -> None:
    rewritten = await offloader.offload(content(), holder=HOLDER, tenant="u", where="m")
    tree = json.loads(dumps(rewritten.root))
    tree["metadata"][MANIFEST_KEY]["v"] = 9
    with pytest.raises(UnsupportedManifestError, match=r"message m7: .*version 9"):
        await offloader.restore(tree, holder=HOLDER, tenant="u", record="message m7")


@pytest.mark.parametrize(
    "forged",
    ["memory://elsewhere/x", "https://cdn.example/x.png", ""],
    ids=["other-bucket", "other-host", "empty"],
)
async def test_a_ref_whose_url_this_library_would_not_write_is_refused(
    offloader: Offloader, forged: str
) -> None:
    rewritten = await offloader.offload(content(), holder=HOLDER, tenant="u", where="m")
    tree = json.loads(dumps(rewritten.root))
    tree["metadata"][MANIFEST_KEY]["refs"][0]["url"] = forged
    tree["parts"][0]["data"] = forged
    with pytest.raises(ForbiddenReferenceError, match="is not the URL bucket 'mem' gives this object"):
        await offloader.restore(tree, holder=HOLDER, tenant="u")


def test_an_unknown_provider_is_a_configuration_error() -> None:
    config = BucketConfig.model_construct(provider="ftp")  # type: ignore[arg-type]
    with pytest.raises(BucketConfigError, match=r"buckets\.x\.provider: unknown provider 'ftp'"):
        open_bucket("x", config)


def test_the_offloader_refuses_buckets_the_config_does_not_name() -> None:
    config = OffloadConfig(buckets={"mem": BucketConfig(provider="memory")})
    with pytest.raises(BucketConfigError, match="not in the configuration"):
        Offloader(config, {"other": MemoryBlobStore("other")})
