"""Property: restore(offload(content)) == content, byte for byte after JSON encoding, for generated
Mastra message contents with payloads in every location, text around them, and odd JSON values."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convex_offload.blobs.factory import open_bucket
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.offload.manifest import MANIFEST_KEY
from convex_offload.offload.offloader import Offloader
from media import MIME, b64, data_url, image_bytes

REAL = {kind: image_bytes(kind, 3_000, seed=9) for kind in MIME}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8).filter(lambda k: k != MANIFEST_KEY), children, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """Real media, or random bytes labelled as such."""
    if draw(st.booleans()):
        kind = draw(st.sampled_from(sorted(REAL)))
        return REAL[kind], MIME[kind]
    return draw(st.binary(min_size=1, max_size=4_000)), "application/octet-stream"


@st.composite
def parts(draw: st.DrawFn) -> dict[str, Any]:
    data, mime = draw(payloads())
    shape = draw(st.integers(min_value=0, max_value=7))
    text = draw(st.text(max_size=30))
    if shape == 0:
        return {"type": "text", "text": text}
    if shape == 1:
        part: dict[str, Any] = {"type": "file", "mimeType": mime, "data": b64(data)}
        if draw(st.booleans()):
            part["filename"] = draw(st.from_regex(r"[a-z]{1,10}\.[a-z]{3}", fullmatch=True))
        return part
    if shape == 2:
        return {"type": "file", "mimeType": mime, "data": data_url(data, mime)}
    if shape == 3:
        return {"type": "file", "url": data_url(data, mime), "mediaType": mime}
    if shape == 4:
        return {"type": "image", "image": b64(data), "mimeType": mime}
    if shape == 5:
        return {
            "type": "tool-invocation",
            "toolInvocation": {
                "state": "result",
                "toolCallId": text,
                "toolName": "tool",
                "args": draw(json_values),
                "result": {
                    "content": [{"type": "image", "data": b64(data), "mimeType": mime}],
                    "extra": draw(json_values),
                },
            },
        }
    if shape == 6:
        return {"type": "text", "text": f"{text} ![img]({data_url(data, mime)}) {text}"}
    return {"type": "file", "mimeType": "image/png", "data": "https://example.com/" + text.replace(" ", "_")}


@st.composite
def contents(draw: st.DrawFn) -> dict[str, Any]:
    content: dict[str, Any] = {"format": 2, "parts": draw(st.lists(parts(), max_size=5))}
    if draw(st.booleans()):
        data, mime = draw(payloads())
        content["experimental_attachments"] = [
            {"name": "a", "contentType": mime, "url": data_url(data, mime)}
        ]
    if draw(st.booleans()):
        content["metadata"] = draw(
            st.dictionaries(st.text(max_size=6).filter(lambda k: k != MANIFEST_KEY), json_values, max_size=3)
        )
    if draw(st.booleans()):
        content["providerMetadata"] = {"x": draw(json_values)}
    if draw(st.booleans()):
        content["content"] = draw(st.text(max_size=50))
    keys = list(content)
    order = draw(st.permutations(keys))
    return {k: content[k] for k in order}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    content=contents(), threshold=st.sampled_from([1, 64, 2_000]), budget=st.sampled_from([0, 1_000, 1 << 20])
)
def test_restore_of_offload_is_identity(
    tmp_path_factory: Any, content: dict[str, Any], threshold: int, budget: int
) -> None:
    folder: Path = tmp_path_factory.mktemp("bucket")
    config = OffloadConfig(
        buckets={"b": BucketConfig(provider="local", path=folder)},
        inline_threshold=threshold,
        record_inline_budget=budget,
        bare_base64_min_bytes=64,
    )
    before = dumps(content)

    async def round_trip() -> tuple[str, str]:
        offloader = Offloader(config, {"b": open_bucket("b", config.buckets["b"])})
        rewritten = await offloader.offload(content, holder=("metadata",), tenant="t", where="m")
        stored = dumps(rewritten.root)
        restored = await offloader.restore(json.loads(stored), holder=("metadata",), tenant="t")
        return stored, dumps(restored)

    stored, after = asyncio.run(round_trip())
    assert dumps(content) == before, "offload must not modify its input"
    assert after == before
    if threshold == 1 and budget == 0:
        for data in REAL.values():
            assert b64(data) not in stored
    assert os.path.isdir(folder)
