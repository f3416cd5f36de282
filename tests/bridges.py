"""Helpers of the agent-framework bridge tests: raw stored rows, and Mastra's own reading of them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from convex_offload.offload.store import OffloadingStore

PROMPT_SCRIPT = Path(__file__).parent / "interop" / "mastra_prompt.mjs"


async def raw_contents(offloading: OffloadingStore, thread_id: str) -> list[dict[str, Any]]:
    """The thread's message contents as stored in Convex (references, not restored payloads)."""
    page = await offloading.store.memory.list_messages(thread_id, per_page=False)
    return [m.content for m in page.messages]


def raw_sizes(contents: list[dict[str, Any]]) -> list[int]:
    """The JSON size of each stored content."""
    return [len(json.dumps(c)) for c in contents]


def mastra_reading(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"prompt"}`: the prompt @mastra/core's MessageList makes of messages listed by the TS store."""
    done = subprocess.run(
        ["node", str(PROMPT_SCRIPT)],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def object_bytes(offloading: OffloadingStore, content: dict[str, Any], path: str) -> bytes | None:
    """The bytes of the object the manifest of `content` names for the JSON pointer `path`."""
    manifest = content["metadata"]["convex_offload"]
    [ref] = [r for r in manifest["refs"] if r["path"] == path]
    return await offloading.buckets[ref["bucket"]].get(ref["key"])
