"""Attachments of 16 MiB and more go up in parts, from the decoded buffer, and come back whole."""

from __future__ import annotations

import hashlib
import uuid

from convex_offload import Message, OffloadingStore
from convex_offload.devservers.localstack import LocalStack
from media import b64, data_url, image_bytes


async def test_a_20_mb_image_goes_up_in_parts_and_restores_exactly(
    offloading: OffloadingStore, localstack: LocalStack
) -> None:
    big = image_bytes("png", 20 << 20, seed=71)
    other = image_bytes("png", 17 << 20, seed=72)
    message = Message(
        id=f"big-{uuid.uuid4().hex[:8]}",
        thread_id="big-thread",
        resource_id="big-user",
        role="user",
        content={
            "format": 2,
            "parts": [
                {"type": "file", "mimeType": "image/png", "data": b64(big)},
                {"type": "file", "url": data_url(other, "image/png"), "mediaType": "image/png"},
            ],
        },
    )
    await offloading.memory.save_messages([message])
    s3 = localstack.s3_client()
    for img in (big, other):
        key = offloading.offloader.key_for("images", "big-user", hashlib.sha256(img).hexdigest())
        head = s3.head_object(Bucket="images", Key=key)
        assert head["ContentLength"] == len(img)
        assert "-" in head["ETag"], "a multipart upload's ETag counts its parts"
        assert head["Metadata"]["sha256"] == hashlib.sha256(img).hexdigest()
    async with OffloadingStore.connect(offloading.config) as reader:
        assert await reader.memory.list_messages_by_id([message.id]) == [message]
