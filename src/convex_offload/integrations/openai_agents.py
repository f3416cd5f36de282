"""An OpenAI Agents SDK session kept as Mastra v2 messages in a Convex thread.

    session = MastraSession(store, session_id="thread-1", resource_id="user-1")
    result = await Runner.run(agent, "Hello", session=session)

The session id is the Mastra thread id. Each item the SDK adds becomes one Mastra message:

- a `message` from the user, system or developer → a `user` / `system` message; from the
  assistant → an `assistant` message. `input_text` / `output_text` (and `refusal`) → `text`
  parts; `input_image` with an `image_url` → a `file` part whose `data` is that URL (a data URL
  is offloaded by `OffloadingStore`; an `https://` URL is kept, never fetched); `input_file` with
  `file_data` or `file_url` → a `file` part (with `filename`); `file_id` references → no part
- `function_call` → `tool-invocation` `state: "call"` (arguments parsed to an object)
- `function_call_output` → `tool-invocation` `state: "result"` with the call's name and args
- `reasoning` → a `reasoning` part with the summary text
- every other item kind (hosted tool calls, computer use, compaction, ...) → an `assistant`
  message with no parts

The item itself is kept exactly under `content.metadata.openaiAgents`, without the values its
parts already hold, so `get_items` gives back exactly what `add_items` was given. Messages a
TypeScript Mastra app wrote are read from their parts (user text and files, assistant text, tool
calls and their results; reasoning without an OpenAI id cannot be replayed and is left out).
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, cast

from convex_offload.errors import InvalidInputError, MissingDependencyError
from convex_offload.integrations._mastra import (
    URL_SCHEME,
    Link,
    Mismatch,
    Store,
    carve,
    content_of,
    created_times,
    ensure_thread,
    fill,
    parts_of,
    record_of,
    stored_messages,
)
from convex_offload.offload.scan import DATA_URL_HEADER
from convex_offload.store.models import Message, OrderBy

try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as exc:  # without the extra (tests/test_integrations_optional.py)
    raise MissingDependencyError(package="openai-agents", extra="openai-agents") from exc

__all__ = ["METADATA_KEY", "MastraSession", "item_from_mastra", "item_to_mastra"]

METADATA_KEY: Final = "openaiAgents"
"""Where each Mastra message keeps its item (`content.metadata`)."""

_ROLES: Final = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_TYPES: Final = {"input_text": "text", "output_text": "text", "refusal": "refusal"}


class MastraSession:
    """The SDK's `Session` protocol over a store's memory: one Convex thread per session.

    `resource_id` is the Mastra resource (usually the user) the thread and messages belong to.
    The thread is created on the first `add_items`. Concurrent writers to one session are not
    serialised (as with the SDK's own SQLite session, the last write wins on order).
    """

    def __init__(
        self,
        store: Store,
        session_id: str,
        resource_id: str,
        *,
        session_settings: SessionSettings | None = None,
    ) -> None:
        if not session_id or not resource_id:
            raise InvalidInputError("session_id and resource_id must be non-empty")
        self.store = store
        self.session_id = session_id
        self.resource_id = resource_id
        self.session_settings = session_settings or SessionSettings()

    def __repr__(self) -> str:
        return f"MastraSession(session_id={self.session_id!r}, resource_id={self.resource_id!r})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first; with `limit`, only the latest `limit` of them."""
        items = [item for _, items in await self._items() for item in items]
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is None or wanted < 0:
            return items
        return items[-wanted:] if wanted else []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items, each as one Mastra message, in one transaction."""
        if not items:
            return
        checked = [_checked(item, index) for index, item in enumerate(items)]
        calls = await self._calls_for(checked)
        messages = []
        for item in checked:
            messages.append(item_to_mastra(item, calls))
            if item.get("type") == "function_call":
                calls[str(item.get("call_id"))] = item
        times = created_times([None] * len(messages), await self._last_time())
        await ensure_thread(self.store, self.session_id, self.resource_id)
        await self._save(messages, times)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item (None for an empty session).

        A message that holds several items (written by a TypeScript app) is replaced by messages
        for the items that stay, saved before it is deleted.
        """
        held = await self._items()
        for message, items in reversed(held):
            if not items:
                continue
            if len(items) > 1:
                rest = [item_to_mastra(item, _calls_in(items)) for item in items[:-1]]
                await self._save(rest, created_times([message.created_at] * len(rest), None))
            await self.store.memory.delete_messages([message.id])
            return items[-1]
        return None

    async def clear_session(self) -> None:
        """Delete every message of the session (and attachments no other record uses); keeps the thread."""
        stored = await stored_messages(self.store, self.session_id)
        if stored:
            await self.store.memory.delete_messages([m.id for m in stored])

    async def _save(self, messages: Sequence[tuple[str, dict[str, Any]]], times: Sequence[datetime]) -> None:
        """Save (role, content) pairs as new messages of the session, created at `times`."""
        await self.store.memory.save_messages(
            [
                Message(
                    id=str(uuid.uuid4()),
                    role=role,
                    content=content,
                    created_at=when,
                    thread_id=self.session_id,
                    resource_id=self.resource_id,
                )
                for (role, content), when in zip(messages, times, strict=True)
            ]
        )

    async def _items(self) -> list[tuple[Message, list[TResponseInputItem]]]:
        return _read(await stored_messages(self.store, self.session_id))

    async def _last_time(self) -> datetime | None:
        latest = OrderBy(field="createdAt", direction="DESC")
        page = await self.store.memory.list_messages(self.session_id, per_page=1, order_by=latest)
        return page.messages[0].created_at if page.messages else None

    async def _calls_for(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """The function calls that outputs among `items` answer: in the batch, else read from the thread."""
        calls = _calls_in(items)
        wanted = {str(i.get("call_id")) for i in items if i.get("type") == "function_call_output"}
        if wanted - calls.keys():
            held = [item for _, found in await self._items() for item in found]
            calls = {**_calls_in(held), **calls}
        return calls


def _read(messages: Sequence[Message]) -> list[tuple[Message, list[TResponseInputItem]]]:
    return [(m, item_from_mastra(m)) for m in messages]


def _checked(item: Any, index: int) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"items[{index}]: expected an input item (a dict), got {type(item).__name__}")
    try:
        return cast(dict[str, Any], json.loads(json.dumps(item, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"items[{index}]: not JSON: {exc}") from exc


def _calls_in(items: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Function-call items by call id."""
    return {str(i.get("call_id")): i for i in items if i.get("type") == "function_call"}


# --- item → Mastra --------------------------------------------------------------------------------


def item_to_mastra(
    item: Mapping[str, Any], calls: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[str, dict[str, Any]]:
    """The Mastra role and v2 content of one input item (`calls`: earlier function calls by id)."""
    tree = dict(item)
    kind = tree.get("type")
    parts: list[dict[str, Any]] = []
    links: list[Link] = []
    if kind in (None, "message") and isinstance(tree.get("role"), str):
        role = _ROLES.get(tree["role"], "user")
        _message_parts(tree, parts, links)
    elif kind == "function_call":
        role = "assistant"
        parts.append(_invocation(tree, "call"))
    elif kind == "function_call_output":
        role = "assistant"
        call = (calls or {}).get(str(tree.get("call_id")), {})
        part = _invocation({**call, "call_id": tree.get("call_id")}, "result")
        part["toolInvocation"]["result"] = tree.get("output")
        parts.append(part)
        links.append(Link(("output",), 0, 0, ("toolInvocation", "result")))
    elif kind == "reasoning":
        role = "assistant"
        texts = [s["text"] for s in tree.get("summary") or [] if isinstance(s, dict) and "text" in s]
        details = [{"type": "text", "text": t} for t in texts]
        parts.append({"type": "reasoning", "reasoning": "\n".join(texts), "details": details})
    else:
        role = "assistant"
    record = {"item": carve(tree, links), "links": [link.to_json() for link in links]}
    return role, content_of(parts, METADATA_KEY, record)


def _message_parts(tree: dict[str, Any], parts: list[dict[str, Any]], links: list[Link]) -> None:
    content = tree.get("content")
    if isinstance(content, str):
        parts.append({"type": "text", "text": content})
        links.append(Link(("content",), 0, 0, ("text",)))
        return
    if not isinstance(content, list):
        return
    for i, piece in enumerate(content):
        if not isinstance(piece, dict):
            continue
        kind = piece.get("type")
        index = len(parts)
        field = _TEXT_TYPES.get(str(kind))
        if field is not None and isinstance(piece.get(field), str):
            parts.append({"type": "text", "text": piece[field]})
            links.append(Link(("content", i, field), 0, index, ("text",)))
        elif kind == "input_image" and isinstance(piece.get("image_url"), str):
            parts.append(_file_part(piece["image_url"], None))
            links.append(Link(("content", i, "image_url"), 0, index, ("data",)))
        elif kind == "input_file":
            for field in ("file_data", "file_url"):
                if isinstance(piece.get(field), str):
                    parts.append(_file_part(piece[field], piece.get("filename")))
                    links.append(Link(("content", i, field), 0, index, ("data",)))
                    break


def _file_part(data: str, filename: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "file", "data": data}
    header = DATA_URL_HEADER.match(data)
    mime = header.group(1) if header else None
    if not mime and isinstance(filename, str):
        mime = mimetypes.guess_type(filename)[0]
    if not mime and header is None and URL_SCHEME.match(data):
        mime = mimetypes.guess_type(data)[0]
    if mime:
        part["mimeType"] = mime
    if isinstance(filename, str):
        part["filename"] = filename
    return part


def _invocation(call: Mapping[str, Any], state: str) -> dict[str, Any]:
    arguments = call.get("arguments")
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else {}
    except ValueError:
        args = {}
    invocation = {
        "state": state,
        "toolCallId": str(call.get("call_id")),
        "toolName": str(call.get("name") or "unknown"),
        "args": args if isinstance(args, dict) else {},
    }
    return {"type": "tool-invocation", "toolInvocation": invocation}


# --- Mastra → items -------------------------------------------------------------------------------


def item_from_mastra(message: Message) -> list[TResponseInputItem]:
    """The items of one Mastra message: its kept item exactly, else what its parts say."""
    record = record_of(message, METADATA_KEY)
    if record is not None and "item" in record:
        try:
            links = [Link.from_json(link) for link in record.get("links", [])]
            item = fill(record["item"], [message.content], links)
        except Mismatch:
            item = None
        if isinstance(item, dict):
            return [cast(TResponseInputItem, item)]
    return [cast(TResponseInputItem, item) for item in _from_parts(message)]


def _from_parts(message: Message) -> list[dict[str, Any]]:
    parts = parts_of(message)
    if message.role in ("user", "system"):
        content: list[dict[str, Any]] = []
        for part in parts:
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                content.append({"type": "input_text", "text": part["text"]})
            elif part.get("type") == "file" and isinstance(part.get("data"), str):
                content.append(_input_file(part))
        if not content:
            return []
        if len(content) == 1 and content[0]["type"] == "input_text":
            return [{"role": message.role, "content": content[0]["text"]}]
        return [{"role": message.role, "content": content}]
    if message.role != "assistant":
        return []
    out: list[dict[str, Any]] = []
    for part in parts:
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            out.append({"role": "assistant", "content": part["text"]})
        elif part.get("type") == "tool-invocation" and isinstance(part.get("toolInvocation"), dict):
            out.extend(_call_and_output(part["toolInvocation"]))
    return out


def _input_file(part: dict[str, Any]) -> dict[str, Any]:
    data: str = part["data"]
    mime = part.get("mimeType") or part.get("mediaType")
    if not URL_SCHEME.match(data):  # raw base64, as Mastra keeps core image/file inputs
        data = f"data:{mime or 'application/octet-stream'};base64,{data}"
    if isinstance(mime, str) and mime.startswith("image/"):
        return {"type": "input_image", "image_url": data, "detail": "auto"}
    piece: dict[str, Any] = {"type": "input_file"}
    piece["file_url" if not data.startswith("data:") else "file_data"] = data
    if isinstance(part.get("filename"), str):
        piece["filename"] = part["filename"]
    return piece


def _call_and_output(invocation: dict[str, Any]) -> list[dict[str, Any]]:
    call_id, name = invocation.get("toolCallId"), invocation.get("toolName")
    if not isinstance(call_id, str) or not isinstance(name, str):
        return []
    args = invocation.get("args") if isinstance(invocation.get("args"), dict) else {}
    out: list[dict[str, Any]] = [
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": json.dumps(args)}
    ]
    if invocation.get("state") == "result":
        result = invocation.get("result")
        output = result if isinstance(result, str) else json.dumps(result)
        out.append({"type": "function_call_output", "call_id": call_id, "output": output})
    return out
