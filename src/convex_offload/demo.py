"""The README's main job: an image chat on embedded defaults (a local Convex server, a local folder bucket).

It saves a short conversation whose messages carry real images and a PDF in the places Mastra puts
them, through an `OffloadingStore`, then reads the thread back and shows, per message, the size the
caller saved, the size of the record Convex stored, and whether the restore matched byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import tempfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.convex.values import document_size, dumps
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, Thread
from convex_offload.store.store import ConvexStore


@dataclass(frozen=True)
class DemoRow:
    """One message of the demo: what was saved, what Convex holds, whether it came back exact."""

    message_id: str
    role: str
    attachments: int
    saved_bytes: int
    stored_bytes: int
    restored_exactly: bool


@dataclass(frozen=True)
class DemoResult:
    """The whole demo: its rows, the thread read back, and what went to the bucket."""

    thread_id: str
    rows: list[DemoRow]
    uploads: int
    objects: int
    bucket_bytes: int
    bucket_path: Path

    @property
    def ok(self) -> bool:
        """Every message restored exactly."""
        return all(row.restored_exactly for row in self.rows)


def png(width: int, height: int, *, seed: int) -> bytes:
    """A real PNG (RGB, noisy gradient) made with the standard library only."""
    rng = random.Random(seed)  # noqa: S311 (picture noise, not security)
    rows = []
    for y in range(height):
        line = bytearray(b"\x00")
        for x in range(width):
            line += bytes(((x * 255 // width) ^ rng.randrange(64), (y * 255 // height), rng.randrange(256)))
        rows.append(bytes(line))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + chunk(b"IEND", b"")
    )


def pdf(text: str, *, attachment_bytes: int = 40_000) -> bytes:
    """A real one-page PDF with `text` on it, carrying an embedded file of random bytes."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    payload = random.Random(text).randbytes(attachment_bytes)  # noqa: S311 (filler, not security)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /EmbeddedFile /Length %d >>\nstream\n" % len(payload) + payload + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def conversation(thread_id: str, resource_id: str) -> list[Message]:
    """A short image chat, with payloads where Mastra stores them (FACTS §5)."""
    photo = png(420, 420, seed=1)
    chart = png(300, 200, seed=2)
    report = pdf("Quarterly report")
    icon = png(8, 8, seed=3)
    t0 = datetime.now(UTC).replace(microsecond=0)

    def msg(index: int, role: str, content: dict[str, Any]) -> Message:
        return Message(
            id=f"{thread_id}-m{index}",
            thread_id=thread_id,
            resource_id=resource_id,
            role=role,
            content=content,
            created_at=t0 + timedelta(seconds=index),
        )

    photo_url = f"data:image/png;base64,{b64(photo)}"
    return [
        msg(
            0,
            "user",
            {
                "format": 2,
                "parts": [
                    {"type": "text", "text": "Hi! What is in this photo?"},
                    {"type": "file", "mimeType": "image/png", "data": b64(photo)},
                ],
            },
        ),
        msg(
            1,
            "assistant",
            {
                "format": 2,
                "parts": [{"type": "text", "text": "A noisy gradient. Nice colours."}],
                "content": "A noisy gradient. Nice colours.",
            },
        ),
        msg(
            2,
            "user",
            {
                "format": 2,
                "parts": [
                    {"type": "text", "text": "Same photo again (AI SDK v5 form), and a report."},
                    {"type": "file", "mimeType": "image/png", "data": photo_url},
                ],
                "experimental_attachments": [
                    {"name": "photo.png", "contentType": "image/png", "url": photo_url},
                    {
                        "name": "report.pdf",
                        "contentType": "application/pdf",
                        "url": f"data:application/pdf;base64,{b64(report)}",
                    },
                ],
            },
        ),
        msg(
            3,
            "assistant",
            {
                "format": 2,
                "parts": [
                    {
                        "type": "tool-invocation",
                        "toolInvocation": {
                            "state": "result",
                            "toolCallId": "call-1",
                            "toolName": "renderChart",
                            "args": {},
                            "result": {
                                "content": [{"type": "image", "mimeType": "image/png", "data": b64(chart)}]
                            },
                        },
                    },
                    {"type": "text", "text": "Here is the chart. (And a tiny icon stays inline.)"},
                    {"type": "file", "mimeType": "image/png", "data": b64(icon)},
                ],
            },
        ),
        msg(
            4,
            "user",
            {
                "format": 2,
                "parts": [
                    {"type": "text", "text": "And this one is just a link:"},
                    {"type": "file", "mimeType": "image/png", "data": "https://example.com/cat.png"},
                ],
            },
        ),
    ]


async def run_demo(convex_url: str, admin_key: str, bucket_dir: Path | None = None) -> DemoResult:
    """Run the image chat against a Convex deployment, offloading to a local folder bucket."""
    folder = bucket_dir or Path(tempfile.mkdtemp(prefix="convex-offload-demo-"))
    config = OffloadConfig(
        convex_url=convex_url,
        convex_admin_key=admin_key,
        buckets={"local": BucketConfig(provider="local", path=folder)},
    )
    suffix = hashlib.sha256(datetime.now(UTC).isoformat().encode()).hexdigest()[:8]
    thread_id, resource_id = f"demo-thread-{suffix}", f"demo-user-{suffix}"
    messages = conversation(thread_id, resource_id)
    async with OffloadingStore.connect(config) as store:
        await store.memory.save_thread(Thread(id=thread_id, resource_id=resource_id, title="Image chat demo"))
        for message in messages:
            await store.memory.save_messages([message])
            await store.memory.save_messages([message])  # Mastra re-saves history; nothing is uploaded twice
        restored = await store.memory.list_messages(thread_id, per_page=False)
        plain = ConvexStore(client=store.store.client)
        stored = {m.id: m for m in (await plain.memory.list_messages(thread_id, per_page=False)).messages}
        by_id = {m.id: m for m in restored.messages}
        rows = []
        for message in messages:
            found = by_id.get(message.id)
            stored_row = stored[message.id].to_row()
            rows.append(
                DemoRow(
                    message_id=message.id,
                    role=message.role,
                    attachments=_count_attachments(stored[message.id].content),
                    saved_bytes=document_size(message.to_row()),
                    stored_bytes=document_size(stored_row),
                    restored_exactly=found is not None and dumps(found.content) == dumps(message.content),
                )
            )
        stats = store.offloader.stats
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")]
    return DemoResult(
        thread_id=thread_id,
        rows=rows,
        uploads=stats.uploads,
        objects=len(files),
        bucket_bytes=sum(p.stat().st_size for p in files),
        bucket_path=folder,
    )


def _count_attachments(content: Any) -> int:
    metadata = content.get("metadata") if isinstance(content, dict) else None
    manifest = metadata.get("convex_offload") if isinstance(metadata, dict) else None
    return len(manifest["refs"]) if isinstance(manifest, dict) else 0
