"""Case 7, in a fresh process: peak RSS while saving and restoring one message with a big attachment.

Baseline: the process's RSS once the message (its base64 text, as the app holds it) is built and
the stores are connected. Peak: the kernel's high-water mark of RSS (`VmHWM`), reset at the
baseline through `/proc/self/clear_refs` and read after the save; reset again and read after the
restore (by a second store, so nothing comes from the writer's cache). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import json
import os
from pathlib import Path

from PIL import Image

from benchmarks.cases import add_server_arguments
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def png_of(size: int) -> bytes:
    side = int((size / 3) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


async def measure(args: argparse.Namespace) -> dict[str, int]:
    bucket = BucketConfig.model_validate(
        {
            "provider": "s3",
            "bucket": "bench",
            "endpoint_url": args.endpoint,
            "region": args.region,
            "access_key_id": "test",
            "secret_access_key": "test",
            "prefix": args.prefix,
            "max_object_bytes": max(args.size * 2, 100 << 20),
        }
    )
    config = OffloadConfig(convex_url=args.convex_url, buckets={"bench": bucket})
    text = base64.b64encode(png_of(args.size)).decode("ascii")
    message = Message(
        id=f"memory-{os.getpid()}",
        thread_id="bench-memory",
        resource_id="bench-user",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": text}]},
    )
    # A second store reads it back: the writer's cache holds what it just wrote, and this measures
    # a restore that fetches, verifies and re-encodes.
    async with OffloadingStore.connect(config) as store, OffloadingStore.connect(config) as reader:
        gc.collect()
        baseline = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        await store.memory.save_messages([message])
        save_peak = rss_kib("VmHWM")
        gc.collect()
        before_restore = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        [restored] = await reader.memory.list_messages_by_id([message.id])
        restore_peak = rss_kib("VmHWM")
        assert restored.content == message.content
    return {
        "baseline_rss": baseline * 1024,
        "peak_rss": max(save_peak, restore_peak) * 1024,
        "save_above": (save_peak - baseline) * 1024,
        "restore_above": (restore_peak - before_restore) * 1024,
        "attachment_bytes": len(text) * 3 // 4,
    }


def main() -> None:
    """Run the measurement; print one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    add_server_arguments(parser)
    print(json.dumps(asyncio.run(measure(parser.parse_args()))))


if __name__ == "__main__":
    main()
