"""Pydantic AI history as Mastra messages: real agents on FunctionModels, the real stores, both ways."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_ai import Agent
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from bridges import mastra_reading, object_bytes, raw_contents, raw_sizes
from conftest import s3_bucket
from convex_offload.config import OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.errors import HistoryConflictError, InvalidInputError
from convex_offload.integrations.pydantic_ai import (
    METADATA_KEY,
    from_mastra,
    load_history,
    save_history,
    to_mastra,
)
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import iso
from media import b64, image_bytes
from ts_mastra import TsMastra

# RetryPromptPart is deprecated, and still part of the format histories hold.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic_ai.PydanticAIDeprecationWarning")

ADAPTER = pai.ModelMessagesTypeAdapter
PNG = image_bytes("png", 60_000, seed=7)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def as_json(messages: Sequence[pai.ModelMessage]) -> Any:
    return ADAPTER.dump_python(list(messages), mode="json")


def pydantic_round_trip(messages: Sequence[pai.ModelMessage]) -> Any:
    """What Pydantic AI itself gives back after its own JSON round trip: the standard of 'equal'."""
    return as_json(ADAPTER.validate_python(as_json(messages)))


def images_in(messages: Sequence[pai.ModelMessage]) -> list[bytes]:
    return [
        item.data
        for m in messages
        if isinstance(m, pai.ModelRequest)
        for p in m.parts
        if isinstance(p, pai.UserPromptPart) and not isinstance(p.content, str)
        for item in p.content
        if isinstance(item, pai.BinaryContent)
    ]


def texts_in(messages: Sequence[pai.ModelMessage]) -> list[str]:
    return [p.content for m in messages for p in m.parts if isinstance(p, pai.TextPart)]


def image_agent() -> Agent[None, str]:
    """An agent that measures the image with a tool, then describes it."""

    def model(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        assert images_in(messages)[-1] == PNG, "the model is sent the image bytes"
        returns = [p for p in messages[-1].parts if isinstance(p, pai.ToolReturnPart)]
        if not returns:
            return pai.ModelResponse(parts=[pai.ToolCallPart("measure", {"unit": "px"}, "call-1")])
        return pai.ModelResponse(parts=[pai.TextPart(f"A noisy square, {returns[0].content} wide.")])

    agent = Agent(FunctionModel(model), system_prompt="You describe images.")

    @agent.tool_plain
    def measure(unit: str) -> str:
        return f"141 {unit}"

    return agent


def follow_up_agent(seen: list[list[pai.ModelMessage]]) -> Agent[None, str]:
    """An agent that records what it was sent and answers from the earlier turns."""

    def model(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        seen.append(list(messages))
        return pai.ModelResponse(parts=[pai.TextPart("Still the same noisy square.")])

    return Agent(FunctionModel(model))


# --- a real agent through the offloading store ----------------------------------------------------


async def test_agent_history_with_an_image_is_offloaded_and_reloaded_into_a_second_run(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    first = await image_agent().run(["What is this?", pai.BinaryContent(PNG, media_type="image/png")])
    saved = await save_history(offloading, thread, resource, first.all_messages())
    assert [m.role for m in saved] == ["user", "assistant", "assistant", "assistant"]

    stored = await raw_contents(offloading, thread)
    assert b64(PNG)[:100] not in json.dumps(stored), "the image is not inline in the row"
    assert max(raw_sizes(stored)) < 4_000 < len(b64(PNG)), "every stored row is small"
    assert await object_bytes(offloading, stored[0], "/parts/1/data") == PNG

    history = await load_history(offloading, thread)
    assert as_json(history) == as_json(first.all_messages()), "the history comes back exactly"

    seen: list[list[pai.ModelMessage]] = []
    second = await follow_up_agent(seen).run("And now?", message_history=history)
    [sent] = seen
    assert images_in(sent) == [PNG], "the second run's model sees the image bytes"
    assert texts_in(sent) == ["A noisy square, 141 px wide."], "and the earlier turns"
    assert isinstance(sent[-1].parts[-1], pai.UserPromptPart)
    assert sent[-1].parts[-1].content == "And now?"

    added = await save_history(offloading, thread, resource, second.all_messages())
    assert [m.role for m in added] == ["user", "assistant"], "only the new messages are saved"
    assert as_json(await load_history(offloading, thread)) == as_json(second.all_messages())
    assert await save_history(offloading, thread, resource, second.all_messages()) == []
    assert len(await raw_contents(offloading, thread)) == 6


async def test_save_history_refuses_a_history_that_does_not_extend_the_thread(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    first = await follow_up_agent([]).run("one")
    await save_history(offloading, thread, resource, first.all_messages())
    other = await follow_up_agent([]).run("another conversation")
    with pytest.raises(HistoryConflictError, match="does not start with the 2 messages"):
        await save_history(offloading, thread, resource, other.all_messages())
    assert len(await raw_contents(offloading, thread)) == 2, "nothing was written"


async def test_save_history_refuses_what_is_not_a_model_message(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    bad: Any = [{"kind": "request", "parts": []}]
    with pytest.raises(InvalidInputError, match=r"history\[0\]: expected a ModelRequest"):
        await save_history(offloading, uid("t"), uid("r"), bad)


async def test_messages_saved_twice_keep_their_ids(
    offloading: OffloadingStore, uid: Callable[[str], str]
) -> None:
    history = (await follow_up_agent([]).run("hello")).all_messages()
    a = to_mastra(history, thread_id="t1", resource_id="r")
    b = to_mastra(history, thread_id="t1", resource_id="r")
    assert [m.id for m in a] == [m.id for m in b]
    assert {m.id for m in a}.isdisjoint(m.id for m in to_mastra(history, thread_id="t2", resource_id="r"))
    assert all(x.created_at < y.created_at for x, y in itertools.pairwise(a)), "strictly ordered"


# --- both ways with the TypeScript store ----------------------------------------------------------


@pytest.fixture
async def public_offloading(
    localstack: LocalStack, local_convex: LocalConvex
) -> AsyncIterator[OffloadingStore]:
    """Images offloaded to a bucket with a public URL (LocalStack serves anonymous GETs), as a
    TypeScript Mastra agent needs them: it downloads file URLs to build its prompt."""
    public = s3_bucket(
        localstack, "images", prefix="public/", public_base_url=f"{localstack.endpoint_url}/images"
    )
    config = OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={"images": public},
        default_bucket="images",
    )
    async with OffloadingStore.connect(config) as store:
        yield store


async def test_typescript_lists_a_thread_written_by_a_pydantic_ai_agent_as_mastra_messages(
    public_offloading: OffloadingStore, ts: TsMastra, uid: Callable[[str], str]
) -> None:
    offloading = public_offloading
    thread, resource = uid("t"), uid("r")
    run = await image_agent().run(["What is this?", pai.BinaryContent(PNG, media_type="image/png")])
    await save_history(offloading, thread, resource, run.all_messages())

    listed = ts.call("memory", "listMessages", {"threadId": thread, "perPage": False})["messages"]
    assert [m["role"] for m in listed] == ["user", "assistant", "assistant", "assistant"]
    assert all(m["content"]["format"] == 2 and m["threadId"] == thread for m in listed)
    assert [[p["type"] for p in m["content"]["parts"]] for m in listed] == [
        ["text", "file"],
        ["step-start", "tool-invocation"],
        ["tool-invocation"],
        ["step-start", "text"],
    ]
    file_part = listed[0]["content"]["parts"][1]
    assert file_part["mimeType"] == "image/png"
    assert file_part["data"].startswith(f"{offloading.config.bucket('images').public_base_url}/public/")
    assert await object_bytes(offloading, listed[0]["content"], "/parts/1/data") == PNG

    reading = mastra_reading(listed)
    prompt = reading["prompt"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool", "assistant"]
    assert prompt[0]["content"][0] == {"type": "text", "text": "What is this?"}
    assert prompt[0]["content"][1]["type"] == "file"
    assert prompt[0]["content"][1]["mediaType"] == "image/png"
    assert prompt[0]["content"][1]["data"] == {"base64": b64(PNG)}, "Mastra fetched the image's bytes"
    [call] = prompt[1]["content"]
    assert (call["type"], call["toolName"], call["input"]) == ("tool-call", "measure", {"unit": "px"})
    [result] = prompt[2]["content"]
    assert result["toolCallId"] == call["toolCallId"]
    assert result["output"]["value"] == "141 px"
    assert prompt[3]["content"] == [{"type": "text", "text": "A noisy square, 141 px wide."}]


async def test_a_thread_written_by_typescript_loads_as_pydantic_ai_history(
    offloading: OffloadingStore, ts: TsMastra, uid: Callable[[str], str]
) -> None:
    thread, resource = uid("t"), uid("r")
    stamp = {"createdAt": iso(T0), "updatedAt": iso(T0)}
    ts.call("memory", "saveThread", {"thread": {"id": thread, "resourceId": resource, "title": "", **stamp}})
    common = {"threadId": thread, "resourceId": resource, "type": "v2"}
    user = {
        "format": 2,
        "parts": [
            {"type": "text", "text": "How wide is it?"},
            {"type": "file", "data": b64(PNG), "mimeType": "image/png"},
        ],
    }
    invocation = {
        "state": "result",
        "toolCallId": "call-ts",
        "toolName": "measure",
        "args": {"unit": "px"},
        "result": {"width": 141},
    }
    assistant = {
        "format": 2,
        "parts": [
            {"type": "step-start"},
            {"type": "tool-invocation", "toolInvocation": invocation},
            {"type": "step-start"},
            {"type": "text", "text": "141 px."},
        ],
    }
    ts.call(
        "memory",
        "saveMessages",
        {
            "messages": [
                {**common, "id": f"{thread}-u", "role": "user", "createdAt": iso(T0), "content": user},
                {
                    **common,
                    "id": f"{thread}-a",
                    "role": "assistant",
                    "createdAt": iso(T0 + timedelta(seconds=1)),
                    "content": assistant,
                },
            ]
        },
    )

    history = await load_history(offloading, thread)
    assert [type(m).__name__ for m in history] == [
        "ModelRequest",
        "ModelResponse",
        "ModelRequest",
        "ModelResponse",
    ]
    [prompt] = history[0].parts
    assert isinstance(prompt, pai.UserPromptPart)
    assert prompt.content[0] == "How wide is it?"
    image = prompt.content[1]
    assert isinstance(image, pai.BinaryContent)
    assert (image.data, image.media_type) == (PNG, "image/png")
    [call] = history[1].parts
    assert isinstance(call, pai.ToolCallPart)
    assert (call.tool_name, call.args, call.tool_call_id) == ("measure", {"unit": "px"}, "call-ts")
    [ret] = history[2].parts
    assert isinstance(ret, pai.ToolReturnPart)
    assert (ret.tool_call_id, ret.content) == ("call-ts", {"width": 141})
    assert texts_in(history) == ["141 px."]

    seen: list[list[pai.ModelMessage]] = []
    run = await follow_up_agent(seen).run("Thanks", message_history=history)
    assert images_in(seen[0]) == [PNG]
    added = await save_history(offloading, thread, resource, run.all_messages())
    assert [m.role for m in added] == ["user", "assistant"], "a TS thread is continued, not rewritten"
    listed = ts.call("memory", "listMessages", {"threadId": thread, "perPage": False})["messages"]
    assert [m["id"] for m in listed][:2] == [f"{thread}-u", f"{thread}-a"]
    assert listed[-1]["content"]["parts"][-1] == {"type": "text", "text": "Still the same noisy square."}


# --- the converter, property-tested ---------------------------------------------------------------

TEXT = st.text(max_size=12)
NAMES = st.sampled_from(["measure", "search", "get_weather"])
CALL_IDS = st.sampled_from(["c1", "c2", "call_3"])
TIMES = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))
MEDIA = st.sampled_from(["image/png", "image/jpeg", "application/pdf", "audio/wav", "video/mp4"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
BINARY = st.builds(
    lambda data, media: pai.BinaryContent(data, media_type=media), st.binary(max_size=48), MEDIA
)
URLS = st.builds(
    lambda cls, name, media: cls(f"https://example.com/{name}", media_type=media),
    st.sampled_from([pai.ImageUrl, pai.DocumentUrl, pai.AudioUrl, pai.VideoUrl]),
    st.sampled_from(["a.png", "b.pdf", "noext"]),
    st.none() | MEDIA,
)
USER_ITEMS = st.lists(TEXT | BINARY | URLS | st.just(pai.CachePoint()), max_size=4)
REQUEST_PARTS: st.SearchStrategy[pai.ModelRequestPart] = st.one_of(
    st.builds(pai.SystemPromptPart, TEXT, timestamp=TIMES),
    st.builds(pai.UserPromptPart, TEXT | USER_ITEMS, timestamp=TIMES),
    st.builds(
        pai.ToolReturnPart,
        NAMES,
        JSON,
        CALL_IDS,
        timestamp=TIMES,
        outcome=st.sampled_from(["success", "failed", "retried"]),
    ),
    st.builds(pai.RetryPromptPart, TEXT, tool_name=st.none() | NAMES, tool_call_id=CALL_IDS, timestamp=TIMES),
    st.builds(
        pai.RetryFeedbackPart,
        TEXT,
        retry=st.builds(pai.RetryInfo, st.sampled_from(["validation_error", "no_output", "model_retry"])),
        timestamp=TIMES,
    ),
)
RESPONSE_PARTS: st.SearchStrategy[pai.ModelResponsePart] = st.one_of(
    st.builds(pai.TextPart, TEXT, id=st.none() | TEXT),
    st.builds(pai.ThinkingPart, TEXT, signature=st.none() | TEXT, provider_name=st.none() | TEXT),
    st.builds(
        pai.ToolCallPart,
        NAMES,
        st.none() | st.dictionaries(TEXT, JSON, max_size=3) | st.just('{"unit": "px"}') | TEXT,
        CALL_IDS,
    ),
    st.builds(pai.FilePart, BINARY),
)
MESSAGES = st.one_of(
    st.builds(
        pai.ModelRequest,
        st.lists(REQUEST_PARTS, max_size=4),
        timestamp=st.none() | TIMES,
        instructions=st.none() | TEXT,
        run_id=st.none() | TEXT,
    ),
    st.builds(
        pai.ModelResponse,
        st.lists(RESPONSE_PARTS, max_size=4),
        model_name=st.none() | TEXT,
        timestamp=TIMES,
        provider_name=st.none() | TEXT,
        finish_reason=st.none() | st.sampled_from(["stop", "length", "tool_call"]),
        usage=st.builds(
            RequestUsage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6)
        ),
    ),
)
HISTORIES = st.lists(MESSAGES, max_size=6)


def stored_like(messages: list[Any]) -> list[Any]:
    """Mastra messages as a store gives them back: content through JSON."""
    return [m.model_copy(update={"content": json.loads(json.dumps(m.content))}) for m in messages]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HISTORIES)
def test_round_trip_equals_pydantic_ais_own(history: list[pai.ModelMessage]) -> None:
    mastra = stored_like(to_mastra(history, thread_id="t", resource_id="r"))
    assert as_json(from_mastra(mastra)) == pydantic_round_trip(history)


@settings(max_examples=100, deadline=None)
@given(HISTORIES)
def test_file_bytes_live_only_in_mastra_file_parts_as_standard_base64(
    history: list[pai.ModelMessage],
) -> None:
    mastra = to_mastra(history, thread_id="t", resource_id="r")
    files = [
        base64.b64decode(p["data"], validate=True)
        for m in mastra
        for p in m.content["parts"]
        if p["type"] == "file" and not p["data"].startswith("https://")
    ]
    expected = [
        c.data
        for m in history
        for p in m.parts
        for c in (
            [p.content]
            if isinstance(p, pai.FilePart)
            else p.content
            if isinstance(p, pai.UserPromptPart) and not isinstance(p.content, str)
            else []
        )
        if isinstance(c, pai.BinaryContent)
    ]
    assert sorted(files) == sorted(expected)
    kept = json.dumps([m.content["metadata"][METADATA_KEY] for m in mastra])
    assert all(b64(data) not in kept for data in expected if len(data) > 8), "no bytes kept twice"


@settings(max_examples=100, deadline=None)
@given(HISTORIES)
def test_without_the_kept_record_the_parts_still_read_as_a_history(history: list[pai.ModelMessage]) -> None:
    mastra = stored_like(to_mastra(history, thread_id="t", resource_id="r"))
    for m in mastra:
        del m.content["metadata"]
    read = from_mastra(mastra)
    assert texts_in(read) == texts_in(history), "every text the model wrote survives"
    assert images_in(read) == images_in(history), "and every file the user sent"
