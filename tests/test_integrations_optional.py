"""The agent frameworks are optional: the package imports without them, the bridges say what is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCKED = "import sys; sys.modules['pydantic_ai'] = None; sys.modules['agents'] = None; "


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED + code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_package_imports_without_the_agent_frameworks() -> None:
    done = run(
        "import convex_offload, convex_offload.integrations; print(convex_offload.OffloadingStore.__name__)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OffloadingStore"


@pytest.mark.parametrize(
    ("module", "extra"),
    [("pydantic_ai", "pydantic-ai"), ("openai_agents", "openai-agents")],
)
def test_a_bridge_without_its_framework_names_the_extra(module: str, extra: str) -> None:
    done = run(
        "from convex_offload.errors import MissingDependencyError\n"
        "try:\n"
        f"    import convex_offload.integrations.{module}\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'convex-offload[{extra}]'" in done.stdout
