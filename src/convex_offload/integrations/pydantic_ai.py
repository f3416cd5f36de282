"""Pydantic AI message history as Mastra v2 messages, and back.

    history = await load_history(store, thread_id)
    result = await agent.run(prompt, message_history=history)
    await save_history(store, thread_id, resource_id, result.all_messages())

Each `ModelResponse` becomes one `assistant` message; each `ModelRequest` one `user` message, or
two when it carries tool results: an `assistant` message with the results first (the form
Mastra's own MessageList gives a `tool` message), then a `user` message with the rest. Parts:

- `UserPromptPart` text, `TextContent`, `TextPart` → `text`
- `BinaryContent` (image, audio, document, video) → `file` with raw base64 `data` and `mimeType`
  (so `OffloadingStore` offloads it); `FilePart` (a model's file) → the same, in the response
- `ImageUrl` / `AudioUrl` / `VideoUrl` / `DocumentUrl` → `file` whose `data` is the URL (never fetched)
- `ToolCallPart` → `tool-invocation` `state: "call"` (string arguments parsed to an object)
- `ToolReturnPart` → `tool-invocation` `state: "result"` with the call's `args`; `isError: true`
  when its outcome is `failed` or `retried`
- `RetryPromptPart` for a tool → the same with the retry text as `result` (Pydantic AI itself
  reads this deprecated part back as `ToolReturnPart(outcome="retried")`); without a tool, and
  `RetryFeedbackPart` → `text` with the retry text
- `ThinkingPart` → `reasoning` (`details[0]` carries the signature)
- `SystemPromptPart`, `CachePoint`, `UploadedFile`, instruction parts, native (provider) tool
  parts, compaction, speech and any later kind → no Mastra part (kept, see below)

Every response starts with a `step-start` part. Everything Pydantic AI records that Mastra has no
place for (timestamps, usage, model and provider names, ids, signatures, parts with no Mastra
form) is kept, exactly, as Pydantic AI's own JSON under `content.metadata.pydanticAi`, without the
values the parts already hold, so nothing is stored twice and nothing is refused. Round trip:
`from_mastra(to_mastra(h))` equals `h` after Pydantic AI's own JSON round trip. Messages written
by a TypeScript Mastra app (no `pydanticAi` record) are read from their parts: `user` → a
`UserPromptPart`, `system` → a `SystemPromptPart`, `assistant` → one `ModelResponse` per step
(`step-start`) followed by a `ModelRequest` with the step's tool results; parts Pydantic AI has
no form for (`source-url`, `data-*`, a file URL in an assistant message) are left out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from convex_offload.errors import (
    HistoryConflictError,
    InvalidInputError,
    MalformedAttachmentError,
    MissingDependencyError,
)
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
    fingerprint,
    parts_of,
    record_of,
    stable_id,
    stored_messages,
)
from convex_offload.offload.scan import DATA_URL_HEADER
from convex_offload.store.models import Message, now

try:
    import pydantic
    from pydantic_ai import messages as pai
except ImportError as exc:  # without the extra (tests/test_integrations_optional.py)
    raise MissingDependencyError(package="pydantic-ai-slim", extra="pydantic-ai") from exc

__all__ = ["METADATA_KEY", "from_mastra", "load_history", "save_history", "to_mastra"]

METADATA_KEY: Final = "pydanticAi"
"""Where each Mastra message keeps what only Pydantic AI knows of it (`content.metadata`)."""

ModelMessage = pai.ModelMessage
_ADAPTER: Final = pai.ModelMessagesTypeAdapter
_URL_KINDS: Final = frozenset({"image-url", "audio-url", "video-url", "document-url"})
_TOOL_RESULT_KINDS: Final = frozenset({"tool-return"})
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}", re.ASCII)


# --- Pydantic AI → Mastra -----------------------------------------------------------------------


def to_mastra(
    messages: Sequence[ModelMessage],
    *,
    thread_id: str,
    resource_id: str,
    start: int = 0,
    after: datetime | None = None,
) -> list[Message]:
    """Mastra messages for `messages[start:]` (earlier ones give tool results their call's args).

    Ids are stable: the same message at the same place of a thread always gets the same id.
    `createdAt` is each message's own timestamp, kept strictly increasing and later than `after`.
    """
    _check_history(messages)
    dumped = [_standard_base64(tree) for tree in _ADAPTER.dump_python(list(messages), mode="json")]
    calls: dict[str, Any] = {}
    out: list[Message] = []
    for position, (message, tree) in enumerate(zip(messages, dumped, strict=True)):
        slots = _response_slots(tree) if tree["kind"] == "response" else _request_slots(message, tree, calls)
        for part in tree["parts"]:
            if part.get("part_kind") == "tool-call":
                calls[part["tool_call_id"]] = part.get("args")
        if position < start:
            continue
        out.extend(_messages_of(slots, tree, message, position, thread_id, resource_id))
    times = created_times([m.created_at for m in out], after)
    return [m.model_copy(update={"created_at": t}) for m, t in zip(out, times, strict=True)]


class _Slot:
    """One Mastra message being built from (part of) a Pydantic AI message."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.parts: list[dict[str, Any]] = []


def _messages_of(
    built: tuple[list[_Slot], list[Link]],
    tree: dict[str, Any],
    message: ModelMessage,
    position: int,
    thread_id: str,
    resource_id: str,
) -> list[Message]:
    slots, links = built
    digest = fingerprint(tree)
    ids = [stable_id(thread_id, position, index, digest) for index in range(len(slots))]
    when = _time_of(message)
    out = []
    for index, slot in enumerate(slots):
        if index == 0:
            record = {"message": carve(tree, links), "links": [link.to_json() for link in links]}
            record["span"] = len(slots)
        else:
            record = {"partOf": ids[0], "slot": index}
        out.append(
            Message(
                id=ids[index],
                role=slot.role,
                content=content_of(slot.parts, METADATA_KEY, record),
                created_at=when,
                thread_id=thread_id,
                resource_id=resource_id,
            )
        )
    return out


def _time_of(message: ModelMessage) -> datetime:
    """The message's timestamp, else its first part's (requests may have none), else now."""
    if message.timestamp is not None:
        return message.timestamp
    for part in message.parts:
        stamp = getattr(part, "timestamp", None)
        if isinstance(stamp, datetime):
            return stamp
    return now()


def _response_slots(tree: dict[str, Any]) -> tuple[list[_Slot], list[Link]]:
    slot = _Slot("assistant")
    slot.parts.append({"type": "step-start"})
    links: list[Link] = []
    for j, part in enumerate(tree["parts"]):
        kind = part.get("part_kind")
        at = ("parts", j)
        index = len(slot.parts)
        if kind == "text":
            slot.parts.append({"type": "text", "text": part["content"]})
            links.append(Link((*at, "content"), 0, index, ("text",)))
        elif kind == "thinking":
            detail: dict[str, Any] = {"type": "text", "text": part["content"]}
            if part.get("signature") is not None:
                detail["signature"] = part["signature"]
            slot.parts.append({"type": "reasoning", "reasoning": part["content"], "details": [detail]})
            links.append(Link((*at, "content"), 0, index, ("reasoning",)))
        elif kind == "tool-call":
            args = part.get("args")
            invocation = {
                "state": "call",
                "toolCallId": part["tool_call_id"],
                "toolName": part["tool_name"],
                "args": _args_dict(args),
            }
            slot.parts.append({"type": "tool-invocation", "toolInvocation": invocation})
            if isinstance(args, dict):
                links.append(Link((*at, "args"), 0, index, ("toolInvocation", "args")))
        elif kind == "file":
            content = part["content"]
            slot.parts.append({"type": "file", "data": content["data"], "mimeType": content["media_type"]})
            links.append(Link((*at, "content", "data"), 0, index, ("data",)))
    return [slot], links


def _request_slots(
    message: ModelMessage, tree: dict[str, Any], calls: dict[str, Any]
) -> tuple[list[_Slot], list[Link]]:
    typed = list(message.parts)
    tool_parts = [j for j, part in enumerate(tree["parts"]) if _is_tool_result(part)]
    slots: list[_Slot] = []
    if tool_parts:
        slots.append(_Slot("assistant"))
    if len(tool_parts) < len(tree["parts"]) or not slots:
        slots.append(_Slot("user"))
    tools, user = 0, len(slots) - 1
    links: list[Link] = []
    for j, part in enumerate(tree["parts"]):
        at = ("parts", j)
        if _is_tool_result(part):
            slot = slots[tools]
            index = len(slot.parts)
            slot.parts.append(_tool_result(part, typed[j], calls))
            if part.get("part_kind") in _TOOL_RESULT_KINDS:
                links.append(Link((*at, "content"), tools, index, ("toolInvocation", "result")))
            continue
        slot = slots[user]
        kind = part.get("part_kind")
        if kind == "user-prompt":
            links.extend(_user_prompt(part, at, slot, user))
        elif kind in ("retry-prompt", "retry-feedback"):
            slot.parts.append({"type": "text", "text": _retry_text(typed[j])})
    return slots, links


def _is_tool_result(part: dict[str, Any]) -> bool:
    kind = part.get("part_kind")
    return kind in _TOOL_RESULT_KINDS or (kind == "retry-prompt" and part.get("tool_name") is not None)


def _tool_result(part: dict[str, Any], typed: Any, calls: dict[str, Any]) -> dict[str, Any]:
    call_id = part["tool_call_id"]
    invocation: dict[str, Any] = {
        "state": "result",
        "toolCallId": call_id,
        "toolName": part["tool_name"],
        "args": _args_dict(calls.get(call_id)),
    }
    if part.get("part_kind") == "retry-prompt":
        invocation["result"] = _retry_text(typed)
        invocation["isError"] = True
    else:
        invocation["result"] = part.get("content")
        if part.get("outcome") in ("failed", "retried"):
            invocation["isError"] = True
    return {"type": "tool-invocation", "toolInvocation": invocation}


def _user_prompt(part: dict[str, Any], at: tuple[str | int, ...], slot: _Slot, slot_index: int) -> list[Link]:
    content = part["content"]
    if isinstance(content, str):
        links = [Link((*at, "content"), slot_index, len(slot.parts), ("text",))]
        slot.parts.append({"type": "text", "text": content})
        return links
    links = []
    for i, item in enumerate(content):
        where = (*at, "content", i)
        index = len(slot.parts)
        kind = item.get("kind") if isinstance(item, dict) else None
        if isinstance(item, str):
            slot.parts.append({"type": "text", "text": item})
            links.append(Link(where, slot_index, index, ("text",)))
        elif kind == "text-content":
            slot.parts.append({"type": "text", "text": item["content"]})
            links.append(Link((*where, "content"), slot_index, index, ("text",)))
        elif kind == "binary":
            slot.parts.append({"type": "file", "data": item["data"], "mimeType": item["media_type"]})
            links.append(Link((*where, "data"), slot_index, index, ("data",)))
        elif kind in _URL_KINDS:
            file_part: dict[str, Any] = {"type": "file", "data": item["url"]}
            if item.get("media_type"):
                file_part["mimeType"] = item["media_type"]
            slot.parts.append(file_part)
            links.append(Link((*where, "url"), slot_index, index, ("data",)))
    return links


def _retry_text(part: Any) -> str:
    text = part.model_response()
    return text if isinstance(text, str) else str(text)


def _args_dict(args: Any) -> dict[str, Any]:
    """Tool arguments as Mastra keeps them: an object (a JSON string is parsed; anything else is {})."""
    if isinstance(args, dict):
        return args
    if isinstance(args, str):
        try:
            parsed = pydantic.TypeAdapter(Any).validate_json(args)
        except pydantic.ValidationError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _standard_base64(tree: Any) -> Any:
    """Pydantic writes bytes as URL-safe base64; Mastra (and the offloader) read standard base64."""
    if isinstance(tree, list):
        return [_standard_base64(item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    out = {key: _standard_base64(value) for key, value in tree.items()}
    data = out.get("data")
    if not isinstance(data, str) or "media_type" not in out:
        return out
    if ("-" in data or "_" in data) and _URLSAFE_B64.fullmatch(data):
        out["data"] = base64.b64encode(base64.urlsafe_b64decode(data)).decode("ascii")
    return out


def _check_history(messages: Sequence[Any]) -> None:
    for index, message in enumerate(messages):
        if not isinstance(message, pai.ModelRequest | pai.ModelResponse):
            raise InvalidInputError(
                f"history[{index}]: expected a ModelRequest or ModelResponse, got {type(message).__name__}"
            )


# --- Mastra → Pydantic AI -----------------------------------------------------------------------


def from_mastra(messages: Sequence[Message]) -> list[ModelMessage]:
    """The Pydantic AI history of Mastra messages (oldest first).

    Messages this module wrote come back exactly; others are read from their parts.
    """
    out: list[ModelMessage] = []
    called: set[str] = set()
    i = 0
    while i < len(messages):
        record = record_of(messages[i], METADATA_KEY)
        if record is not None and "message" in record:
            span = record.get("span")
            group = messages[i : i + span] if isinstance(span, int) and span >= 1 else []
            exact = _exact(group, record) if len(group) == span else None
            if exact is not None:
                out.append(exact)
                called.update(_call_ids(exact))
                i += len(group)
                continue
        out.extend(_from_parts(messages[i], called))
        i += 1
    return out


def _exact(group: Sequence[Message], record: dict[str, Any]) -> ModelMessage | None:
    head = group[0]
    for slot, follower in enumerate(group[1:], start=1):
        kept = record_of(follower, METADATA_KEY)
        if kept is None or kept.get("partOf") != head.id or kept.get("slot") != slot:
            return None
    try:
        links = [Link.from_json(link) for link in record.get("links", [])]
        tree = fill(record["message"], [m.content for m in group], links)
        [message] = _ADAPTER.validate_python([tree])
    except (Mismatch, pydantic.ValidationError, ValueError):
        return None
    return message


def _call_ids(message: ModelMessage) -> list[str]:
    return [p.tool_call_id for p in message.parts if isinstance(p, pai.ToolCallPart)]


def _from_parts(message: Message, called: set[str]) -> list[ModelMessage]:
    when = message.created_at
    parts = parts_of(message)
    if message.role == "user":
        prompt = _user_content(message, parts)
        if not prompt:
            return []
        content: str | list[pai.UserContent] = (
            prompt[0] if len(prompt) == 1 and isinstance(prompt[0], str) else prompt
        )
        return [pai.ModelRequest(parts=[pai.UserPromptPart(content, timestamp=when)], timestamp=when)]
    if message.role == "system":
        text = "\n".join(
            p["text"] for p in parts if p.get("type") == "text" and isinstance(p.get("text"), str)
        )
        return [pai.ModelRequest(parts=[pai.SystemPromptPart(text, timestamp=when)], timestamp=when)]
    if message.role in ("assistant", "tool"):
        return _assistant_steps(message, parts, called)
    return []


def _user_content(message: Message, parts: list[dict[str, Any]]) -> list[pai.UserContent]:
    items: list[pai.UserContent] = []
    seen: set[str] = set()
    for index, part in enumerate(parts):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            items.append(part["text"])
        elif kind == "file" and isinstance(part.get("data"), str):
            where = f"message {message.id} part {index}"
            items.append(_file(part["data"], _mime(part), where))
            seen.add(part["data"])
    content = message.content if isinstance(message.content, dict) else {}
    for index, attachment in enumerate(content.get("experimental_attachments") or []):
        url = attachment.get("url") if isinstance(attachment, dict) else None
        if isinstance(url, str) and url not in seen and not _same_payload(url, seen):
            where = f"message {message.id} attachment {index}"
            items.append(_file(url, attachment.get("contentType"), where))
    if not items and isinstance(content.get("content"), str) and content["content"]:
        items.append(content["content"])
    return items


def _same_payload(url: str, seen: set[str]) -> bool:
    """A v5 file is stored as a part and again as an attachment (data URL vs raw base64)."""
    header = DATA_URL_HEADER.match(url)
    return header is not None and url[header.end() :] in seen


def _mime(part: dict[str, Any]) -> str | None:
    for key in ("mimeType", "mediaType"):
        value = part.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _file(
    data: str, mime: str | None, where: str
) -> pai.BinaryContent | pai.ImageUrl | pai.AudioUrl | pai.VideoUrl | pai.DocumentUrl:
    header = DATA_URL_HEADER.match(data)
    if header is not None:
        return pai.BinaryContent(_decode(data[header.end() :], where), media_type=mime or header.group(1))
    if URL_SCHEME.match(data):
        if mime and mime.startswith("image/"):
            return pai.ImageUrl(data, media_type=mime)
        if mime and mime.startswith("audio/"):
            return pai.AudioUrl(data, media_type=mime)
        if mime and mime.startswith("video/"):
            return pai.VideoUrl(data, media_type=mime)
        return pai.DocumentUrl(data, media_type=mime)
    return pai.BinaryContent(_decode(data, where), media_type=mime or "application/octet-stream")


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedAttachmentError("file data is neither a URL nor base64", path=where) from exc


def _assistant_steps(message: Message, parts: list[dict[str, Any]], called: set[str]) -> list[ModelMessage]:
    when = message.created_at
    out: list[ModelMessage] = []
    response: list[pai.ModelResponsePart] = []
    results: list[pai.ModelRequestPart] = []

    def flush() -> None:
        if response:
            out.append(pai.ModelResponse(parts=list(response), timestamp=when))
        if results:
            out.append(pai.ModelRequest(parts=list(results), timestamp=when))
        response.clear()
        results.clear()

    for index, part in enumerate(parts):
        kind = part.get("type")
        if kind == "step-start":
            flush()
        elif kind == "text" and isinstance(part.get("text"), str):
            response.append(pai.TextPart(part["text"]))
        elif kind == "reasoning":
            response.append(_thinking(part))
        elif kind == "file" and isinstance(part.get("data"), str) and not URL_SCHEME.match(part["data"]):
            file = _file(part["data"], _mime(part), f"message {message.id} part {index}")
            if isinstance(file, pai.BinaryContent):
                response.append(pai.FilePart(file))
        elif kind == "tool-invocation" and isinstance(part.get("toolInvocation"), dict):
            _invocation(part["toolInvocation"], when, called, response, results)
    flush()
    return out


def _thinking(part: dict[str, Any]) -> pai.ThinkingPart:
    details = [d for d in part.get("details") or [] if isinstance(d, dict)]
    text = part.get("reasoning")
    if not isinstance(text, str) or not text:
        text = "".join(d["text"] for d in details if isinstance(d.get("text"), str))
    signature = next((d["signature"] for d in details if isinstance(d.get("signature"), str)), None)
    return pai.ThinkingPart(text, signature=signature)


def _invocation(
    invocation: dict[str, Any],
    when: datetime,
    called: set[str],
    response: list[pai.ModelResponsePart],
    results: list[pai.ModelRequestPart],
) -> None:
    call_id, name = invocation.get("toolCallId"), invocation.get("toolName")
    if not isinstance(call_id, str) or not isinstance(name, str):
        return
    args = invocation.get("args")
    if call_id not in called:
        response.append(pai.ToolCallPart(name, args if isinstance(args, dict) else None, call_id))
        called.add(call_id)
    state = invocation.get("state")
    if state == "result":
        failed = bool(invocation.get("isError"))
        results.append(
            pai.ToolReturnPart(
                name,
                invocation.get("result"),
                call_id,
                timestamp=when,
                outcome="failed" if failed else "success",
            )
        )
    elif state == "output-error":
        text = invocation.get("errorText")
        results.append(pai.ToolReturnPart(name, text, call_id, timestamp=when, outcome="failed"))
    elif state == "output-denied":
        approval = invocation.get("approval")
        reason = approval.get("reason") if isinstance(approval, dict) else None
        results.append(
            pai.ToolReturnPart(
                name, reason or "Tool call was not approved", call_id, timestamp=when, outcome="denied"
            )
        )


# --- a thread's history -------------------------------------------------------------------------


async def load_history(store: Store, thread_id: str) -> list[ModelMessage]:
    """The Pydantic AI history of a thread (empty for a thread with no messages)."""
    return from_mastra(await stored_messages(store, thread_id))


async def save_history(
    store: Store, thread_id: str, resource_id: str, messages: Sequence[ModelMessage]
) -> list[Message]:
    """Save the messages of `messages` the thread does not hold yet; returns the Mastra messages saved.

    `messages` is the whole history (`result.all_messages()` of a run given `load_history`'s
    history): it must start with what the thread holds, else `HistoryConflictError` and nothing
    is written. Creates the thread if needed. Saving the same history again writes nothing.
    """
    _check_history(messages)
    stored = await stored_messages(store, thread_id)
    held = from_mastra(stored)
    if len(messages) < len(held) or _json(messages[: len(held)]) != _json(held):
        raise HistoryConflictError(
            f"thread {thread_id!r}: the history given does not start with the {len(held)} messages "
            "the thread holds (pass the whole history of a run given load_history's messages)"
        )
    if len(messages) == len(held):
        return []
    new = to_mastra(
        messages,
        thread_id=thread_id,
        resource_id=resource_id,
        start=len(held),
        after=stored[-1].created_at if stored else None,
    )
    await ensure_thread(store, thread_id, resource_id)
    await store.memory.save_messages(new)
    return new


def _json(messages: Sequence[ModelMessage]) -> bytes:
    return _ADAPTER.dump_json(list(messages))
