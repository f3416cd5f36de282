"""The README's "Python agents" examples, run as written against the local servers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agents
import pytest
from agents import Agent as SdkAgent
from agents import ModelResponse as SdkResponse
from agents import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText
from pydantic_ai import Agent
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bridges import raw_contents
from convex_offload.offload.store import OffloadingStore
from media import b64, data_url, image_bytes
from test_openai_agents import LocalModel, image_urls

README = Path(__file__).parent.parent / "README.md"
PNG = image_bytes("png", 40_000, seed=21)


def readme_examples() -> list[str]:
    """The Python code blocks of the README's "Python agents" section, in order."""
    text = README.read_text()
    section = text[text.index("\n## Python agents") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def example(index: int) -> Callable[..., Any]:
    """The `ask` function the README's `index`th example defines."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_examples()[index], f"README.md (Python agents, example {index})", "exec"), namespace)
    ask: Callable[..., Any] = namespace["ask"]
    return ask


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """The README's example runs the SDK with its defaults; here nothing may try to export traces."""
    agents.set_tracing_disabled(True)
    yield
    agents.set_tracing_disabled(False)


def test_the_section_has_one_example_per_framework() -> None:
    blocks = readme_examples()
    assert len(blocks) == 2
    assert "save_history" in blocks[0]
    assert "MastraSession" in blocks[1]


async def test_readme_pydantic_ai_example(offloading: OffloadingStore, uid: Callable[[str], str]) -> None:
    ask = example(0)
    seen: list[list[pai.ModelMessage]] = []

    def model(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        seen.append(list(messages))
        return pai.ModelResponse(parts=[pai.TextPart(f"answer {len(seen)}")])

    agent = Agent(FunctionModel(model))
    thread, user = uid("t"), uid("u")
    assert await ask(offloading, agent, thread, user, "What is this?", PNG) == "answer 1"
    assert await ask(offloading, agent, thread, user, "And now?") == "answer 2"
    second = seen[1]
    assert len(second) == 3, "the second run is sent the first turn and the new prompt"
    [prompt] = second[0].parts
    assert isinstance(prompt, pai.UserPromptPart)
    image = prompt.content[1]
    assert isinstance(image, pai.BinaryContent)
    assert (image.data, image.media_type) == (PNG, "image/png"), "the image bytes come back"
    stored = await raw_contents(offloading, thread)
    assert len(stored) == 4
    assert b64(PNG)[:100] not in json.dumps(stored), "the image is offloaded"


async def test_readme_openai_agents_example(
    offloading: OffloadingStore, uid: Callable[[str], str], no_tracing: None
) -> None:
    ask = example(1)

    class Describer(LocalModel):
        async def get_response(self, *args: Any, **kwargs: Any) -> SdkResponse:
            await super().get_response(*args, **kwargs)
            text = ResponseOutputText(type="output_text", text=f"answer {len(self.inputs)}", annotations=[])
            message = ResponseOutputMessage(
                id=f"m{len(self.inputs)}",
                type="message",
                role="assistant",
                status="completed",
                content=[text],
            )
            return SdkResponse(output=[message], usage=Usage(), response_id=None)

    model = Describer()
    agent = SdkAgent(name="describer", model=model)
    thread, user = uid("t"), uid("u")
    assert (
        await ask(offloading, agent, thread, user, "What is this?", data_url(PNG, "image/png")) == "answer 1"
    )
    assert await ask(offloading, agent, thread, user, "And now?") == "answer 2"
    assert image_urls(model.inputs[1]) == [data_url(PNG, "image/png")], "the second run sees the image"
    stored = await raw_contents(offloading, thread)
    assert len(stored) == 4
    assert b64(PNG)[:100] not in json.dumps(stored), "the image is offloaded"
