"""What the framework bridges share: kept skeletons, stable ids, ordering and thread I/O.

A bridge turns one framework message into Mastra parts (what Mastra can show and replay) and
keeps the framework's own JSON of it under one `content.metadata` key, minus the values that
now live in the parts (text, tool arguments and results, file bytes): each such value is a
`Link` from its place in the framework JSON to a field of a Mastra part. Reading fills the
links back from the parts, so the stored bytes are never kept twice and the round trip is
exact; when the parts no longer fit (a TypeScript app edited them) the bridge reads the parts
alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, Thread, iso, now, parse_iso
from convex_offload.store.store import ConvexStore

Token = str | int
Store = OffloadingStore | ConvexStore
"""Either store: the bridges only use its `memory` domain."""

FORMAT_VERSION: Final = 1
URL_SCHEME: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:", re.ASCII)
"""A URL's scheme (`https:`, `data:`): what tells a URL from raw base64 in a file part."""
_ID_NAMESPACE: Final = uuid.UUID("4f7a52c1-5b8e-4c1e-9a43-7d0e8f2b6c11")
_MILLISECOND: Final = timedelta(milliseconds=1)


class Mismatch(Exception):
    """The kept skeleton no longer fits the Mastra parts (edited elsewhere): read the parts alone."""


@dataclass(frozen=True, slots=True)
class Link:
    """The value at `at` in the framework's JSON lives at `field` of part `index` of message `slot`."""

    at: tuple[Token, ...]
    slot: int
    index: int
    field: tuple[str, ...]

    def to_json(self) -> list[Any]:
        """`[at, slot, index, field]`, as kept in metadata."""
        return [list(self.at), self.slot, self.index, list(self.field)]

    @classmethod
    def from_json(cls, value: Any) -> Link:
        """Parse a kept link; `Mismatch` if it is not one."""
        if not (isinstance(value, list) and len(value) == 4):
            raise Mismatch("not a link")
        at, slot, index, field = value
        if not (
            isinstance(at, list)
            and all(isinstance(t, str | int) and not isinstance(t, bool) for t in at)
            and isinstance(slot, int)
            and isinstance(index, int)
            and isinstance(field, list)
            and all(isinstance(f, str) for f in field)
        ):
            raise Mismatch("not a link")
        return cls(tuple(at), slot, index, tuple(field))


def carve(tree: Any, links: Iterable[Link]) -> Any:
    """A copy of `tree` with the value at each link's place replaced by None."""
    skeleton = copy.deepcopy(tree)
    for link in links:
        parent = _walk(skeleton, link.at[:-1])
        parent[link.at[-1]] = None
    return skeleton


def fill(skeleton: Any, contents: Sequence[Any], links: Iterable[Link]) -> Any:
    """A copy of `skeleton` with each link's value read back from the Mastra contents."""
    tree = copy.deepcopy(skeleton)
    for link in links:
        if not 0 <= link.slot < len(contents):
            raise Mismatch(f"no message {link.slot}")
        parts = contents[link.slot].get("parts") if isinstance(contents[link.slot], dict) else None
        if not isinstance(parts, list) or not 0 <= link.index < len(parts):
            raise Mismatch(f"no part {link.index}")
        value = _walk(parts[link.index], link.field)
        try:
            parent = _walk(tree, link.at[:-1])
            if parent[link.at[-1]] is not None:
                raise Mismatch("the skeleton holds a value where a link points")
            parent[link.at[-1]] = value
        except (IndexError, KeyError, TypeError) as exc:
            raise Mismatch(f"no place {link.at}") from exc
    return tree


def _walk(tree: Any, path: Sequence[Token]) -> Any:
    node = tree
    for token in path:
        in_dict = isinstance(token, str) and isinstance(node, dict) and token in node
        in_list = isinstance(token, int) and isinstance(node, list) and 0 <= token < len(node)
        if in_dict or in_list:
            node = node[token]
        else:
            raise Mismatch(f"no {token!r} on the way to {list(path)}")
    return node


def record_of(message: Message, key: str) -> dict[str, Any] | None:
    """The bridge's kept record in a message's `content.metadata[key]`, if there is one."""
    content = message.content
    metadata = content.get("metadata") if isinstance(content, dict) else None
    value = metadata.get(key) if isinstance(metadata, dict) else None
    if isinstance(value, dict) and value.get("v") == FORMAT_VERSION:
        return value
    return None


def content_of(parts: list[dict[str, Any]], key: str, record: dict[str, Any]) -> dict[str, Any]:
    """Mastra v2 content with `parts` and the bridge's record under `metadata[key]`."""
    return {"format": 2, "parts": parts, "metadata": {key: {"v": FORMAT_VERSION, **record}}}


def parts_of(message: Message) -> list[dict[str, Any]]:
    """The message's parts (dicts only); an empty list for content that has none."""
    content = message.content
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def fingerprint(tree: Any) -> str:
    """A short digest of a JSON tree, for ids that change when the message does."""
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def stable_id(thread_id: str, position: int, slot: int, digest: str) -> str:
    """A UUID for the `slot`th Mastra message of the framework message at `position` of a thread.

    The same message at the same place always gets the same id, so saving twice upserts.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{thread_id}\n{position}\n{slot}\n{digest}"))


def created_times(wanted: Sequence[datetime | None], after: datetime | None) -> list[datetime]:
    """One time per message: its own when it has one, but always at least 1 ms after the one before.

    Mastra lists a thread by `createdAt` (JavaScript milliseconds), so ties or steps back would
    reorder the conversation.
    """
    times: list[datetime] = []
    last = after
    for value in wanted:
        chosen = value or now()
        if last is not None and chosen < last + _MILLISECOND:
            chosen = last + _MILLISECOND
        chosen = parse_iso(iso(chosen))  # what a JavaScript Date keeps
        times.append(chosen)
        last = chosen
    return times


async def stored_messages(store: Store, thread_id: str) -> list[Message]:
    """Every message of a thread, oldest first, attachments restored."""
    page = await store.memory.list_messages(thread_id, per_page=False)
    return list(page.messages)


async def ensure_thread(store: Store, thread_id: str, resource_id: str) -> None:
    """Create the thread if it does not exist (Mastra lists threads, not loose messages)."""
    if await store.memory.get_thread_by_id(thread_id) is None:
        await store.memory.save_thread(Thread(id=thread_id, resource_id=resource_id))
