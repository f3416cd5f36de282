"""An OpenAI Agents SDK session kept as Mastra messages: a real Runner on a local Model, real stores."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agents import Agent, ModelResponse, RunConfig, Runner, SQLiteSession, Usage, function_tool
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.memory import Session, SessionSettings
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_prompt_param import ResponsePromptParam

from bridges import object_bytes, raw_contents, raw_sizes
from convex_offload.errors import InvalidInputError
from convex_offload.integrations.openai_agents import METADATA_KEY, MastraSession
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import iso
from media import b64, data_url, image_bytes
from ts_mastra import TsMastra

PNG = image_bytes("png", 60_000, seed=11)
T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
NO_TRACING = RunConfig(tracing_disabled=True)


class LocalModel(Model):
    """The SDK's Model interface, answered locally: a tool call first, then a description."""

    def __init__(self) -> None:
        self.inputs: list[list[dict[str, Any]]] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items: list[dict[str, Any]] = (
            [{"role": "user", "content": input}] if isinstance(input, str) else [dict(i) for i in input]
        )
        self.inputs.append(items)
        turn = len(self.inputs)
        answered = items[-1].get("type") == "function_call_output"
        if not answered and tools:
            call = ResponseFunctionToolCall(
                type="function_call", call_id=f"call-{turn}", name="measure", arguments='{"unit": "px"}'
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = f"A noisy square, {items[-1]['output']} wide." if answered else "Still the same square."
        message = ResponseOutputMessage(
            id=f"msg-{turn}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the tests run without streaming")


@function_tool
def measure(unit: str) -> str:
    """Measure the image."""
    return f"141 {unit}"


def image_input() -> list[TResponseInputItem]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": data_url(PNG, "image/png"), "detail": "auto"},
            ],
        }
    ]


def image_urls(items: list[dict[str, Any]]) -> list[str]:
    return [
        c["image_url"]
        for i in items
        if isinstance(i.get("content"), list)
        for c in i["content"]
        if c.get("type") == "input_image"
    ]


@pytest.fixture
def session(offloading: OffloadingStore, uid: Callable[[str], str]) -> MastraSession:
    return MastraSession(offloading, session_id=uid("t"), resource_id=uid("r"))


async def test_runner_session_offloads_the_image_and_a_second_run_sees_the_history(
    offloading: OffloadingStore, session: MastraSession
) -> None:
    assert isinstance(session, Session), "implements the SDK's Session protocol"
    reference = SQLiteSession("reference")
    for target in (session, reference):
        agent = Agent(name="describer", instructions="Describe images.", model=LocalModel(), tools=[measure])
        result = await Runner.run(agent, image_input(), session=target, run_config=NO_TRACING)
        assert result.final_output == "A noisy square, 141 px wide."
    items = await session.get_items()
    assert items == await reference.get_items(), (
        "the items come back exactly as the SDK's own session keeps them"
    )
    assert [i.get("type", "message") for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]

    stored = await raw_contents(offloading, session.session_id)
    assert b64(PNG)[:100] not in json.dumps(stored), "the image is not inline in the row"
    assert max(raw_sizes(stored)) < 4_000 < len(b64(PNG)), "every stored row is small"
    assert await object_bytes(offloading, stored[0], "/parts/1/data") == PNG

    model = LocalModel()
    follow_up = Agent(name="describer", model=model)
    second = await Runner.run(follow_up, "And now?", session=session, run_config=NO_TRACING)
    assert second.final_output == "Still the same square."
    [sent] = model.inputs
    assert image_urls(sent) == [data_url(PNG, "image/png")], "the second run's model sees the image"
    assert [i.get("type", "message") for i in sent][:4] == items_kinds(items), "and the earlier turns"
    assert sent[-1] == {"role": "user", "content": "And now?"}
    assert len(await session.get_items()) == 6


def items_kinds(items: list[TResponseInputItem]) -> list[str]:
    return [str(i.get("type", "message")) for i in items]


async def test_items_become_mastra_messages_with_parts(
    offloading: OffloadingStore, session: MastraSession
) -> None:
    await session.add_items(image_input())
    await session.add_items(
        [
            {"type": "function_call", "call_id": "c1", "name": "measure", "arguments": '{"unit": "px"}'},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "measure first"}],
            },
        ]
    )
    await session.add_items([{"type": "function_call_output", "call_id": "c1", "output": "141 px"}])
    page = await offloading.memory.list_messages(session.session_id, per_page=False)
    roles_and_parts = [(m.role, [p["type"] for p in m.content["parts"]]) for m in page.messages]
    assert roles_and_parts == [
        ("user", ["text", "file"]),
        ("assistant", ["tool-invocation"]),
        ("assistant", ["reasoning"]),
        ("assistant", ["tool-invocation"]),
    ]
    user, call, reasoning, output = page.messages
    assert user.content["parts"][1] == {
        "type": "file",
        "data": data_url(PNG, "image/png"),
        "mimeType": "image/png",
    }
    assert call.content["parts"][0]["toolInvocation"] == {
        "state": "call",
        "toolCallId": "c1",
        "toolName": "measure",
        "args": {"unit": "px"},
    }
    assert reasoning.content["parts"][0]["reasoning"] == "measure first"
    assert output.content["parts"][0]["toolInvocation"]["toolName"] == "measure", (
        "the call's name, found earlier"
    )
    assert output.content["parts"][0]["toolInvocation"]["result"] == "141 px"
    assert output.content["metadata"][METADATA_KEY]["item"]["output"] is None, "the output is kept once"


async def test_limits_pop_and_clear(offloading: OffloadingStore, session: MastraSession) -> None:
    texts = [{"role": "user", "content": f"message {i}"} for i in range(4)]
    await session.add_items(image_input())
    await session.add_items(list(texts))  # type: ignore[arg-type]
    assert await session.get_items(limit=2) == texts[-2:]
    assert await session.get_items(limit=0) == []
    limited = MastraSession(
        offloading, session.session_id, session.resource_id, session_settings=SessionSettings(limit=3)
    )
    assert await limited.get_items() == texts[-3:]

    assert await session.pop_item() == texts[-1]
    assert len(await session.get_items()) == 4
    stored = await raw_contents(offloading, session.session_id)

    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert await offloading.memory.get_thread_by_id(session.session_id) is not None, "the thread stays"
    assert await object_bytes(offloading, stored[0], "/parts/1/data") is None, "the image is erased"


async def test_add_items_refuses_what_is_not_an_item(session: MastraSession) -> None:
    bad: Any = ["just a string"]
    with pytest.raises(InvalidInputError, match=r"items\[0\]: expected an input item"):
        await session.add_items(bad)
    not_json: Any = [{"role": "user", "content": object()}]
    with pytest.raises(InvalidInputError, match=r"items\[0\]: not JSON"):
        await session.add_items(not_json)
    assert await session.get_items() == []


async def test_a_thread_written_by_typescript_reads_as_items_and_pops_one_at_a_time(
    ts: TsMastra, session: MastraSession
) -> None:
    thread, resource = session.session_id, session.resource_id
    stamp = {"createdAt": iso(T0), "updatedAt": iso(T0)}
    ts.call("memory", "saveThread", {"thread": {"id": thread, "resourceId": resource, "title": "", **stamp}})
    common = {"threadId": thread, "resourceId": resource, "type": "v2"}
    invocation = {
        "state": "result",
        "toolCallId": "c9",
        "toolName": "measure",
        "args": {"unit": "px"},
        "result": 141,
    }
    messages = [
        {
            **common,
            "id": f"{thread}-u",
            "role": "user",
            "createdAt": iso(T0),
            "content": {
                "format": 2,
                "parts": [
                    {"type": "text", "text": "How wide?"},
                    {"type": "file", "data": b64(PNG), "mimeType": "image/png"},
                ],
            },
        },
        {
            **common,
            "id": f"{thread}-a",
            "role": "assistant",
            "createdAt": iso(T0 + timedelta(seconds=1)),
            "content": {
                "format": 2,
                "parts": [
                    {"type": "step-start"},
                    {"type": "tool-invocation", "toolInvocation": invocation},
                    {"type": "step-start"},
                    {"type": "text", "text": "141 px."},
                ],
            },
        },
    ]
    ts.call("memory", "saveMessages", {"messages": messages})
    expected: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "How wide?"},
                {"type": "input_image", "image_url": data_url(PNG, "image/png"), "detail": "auto"},
            ],
        },
        {"type": "function_call", "call_id": "c9", "name": "measure", "arguments": '{"unit": "px"}'},
        {"type": "function_call_output", "call_id": "c9", "output": "141"},
        {"role": "assistant", "content": "141 px."},
    ]
    assert await session.get_items() == expected
    assert await session.pop_item() == expected[-1]
    assert await session.get_items() == expected[:-1], "the other items of that message stay"
    assert await session.pop_item() == expected[-2]
    listed = ts.call("memory", "listMessages", {"threadId": thread, "perPage": False})["messages"]
    assert [m["role"] for m in listed] == ["user", "assistant"]
    assert listed[-1]["content"]["parts"][0]["toolInvocation"]["state"] == "call"
