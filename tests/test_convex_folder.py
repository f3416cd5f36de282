"""The project's convex/ folder holds everything the INSTALLED @mastra/convex needs: every table its
`/schema` exports, under the name its handlers use, and every Convex function its `/server` exports,
at the paths its TypeScript clients call. The expected lists are read from the package at run time
(tests/interop/convex_folder.mjs), so a package that gains a table or a function fails these tests
until convex/ has it; a deliberately incomplete copy of convex/ shows that they do fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ts_mastra import TsMastra

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "tests" / "interop" / "convex_folder.mjs"
OWN_TABLES = {"offload_refs", "offload_files"}


def report_of(folder: Path) -> dict[str, Any]:
    """Run the checker on a functions folder; its JSON report."""
    node = shutil.which("node")
    assert node is not None, "node is required on PATH to read the installed @mastra/convex"
    done = subprocess.run(
        [node, str(CHECKER), str(folder)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@cache
def project_report() -> str:
    """The report on the project's own convex/ (JSON text, computed once)."""
    return json.dumps(report_of(ROOT / "convex"))


@pytest.fixture
def report() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(project_report())
    return loaded


def missing_tables(report: dict[str, Any]) -> list[str]:
    return [table["export"] for table in report["tables"] if len(table["declaredAs"]) != 1]


def unmounted_functions(report: dict[str, Any]) -> list[str]:
    return [function["export"] for function in report["functions"] if not function["mountedAt"]]


def failing_routes(report: dict[str, Any]) -> list[str]:
    return [
        f"{route['handler']} {route['requests'][0]}: {route['error']}"
        for route in report["routes"]
        if route["error"]
    ]


# --- tables ------------------------------------------------------------------------------------


def test_the_package_exports_tables_and_functions(report: dict[str, Any]) -> None:
    # Guards the checker itself: an empty list would make every other test here pass.
    assert len(report["tables"]) >= 16
    assert len(report["functions"]) >= 5
    assert len(report["routes"]) >= len(report["tables"])


def test_schema_declares_every_table_the_package_exports_once(report: dict[str, Any]) -> None:
    assert missing_tables(report) == []


def test_every_table_is_declared_under_the_name_the_handlers_use(report: dict[str, Any]) -> None:
    reached = {hit["table"] for route in report["routes"] for hit in route["reached"]}
    declared_as = {name for table in report["tables"] for name in table["declaredAs"]}
    assert reached == declared_as
    for route in report["routes"]:
        for hit in route["reached"]:
            table = report["declared"].get(hit["table"])
            assert table is not None, f"{hit['table']} is not in convex/schema.ts"
            assert table["packageExport"] is not None, f"{hit['table']} is not the package's table"
            assert hit["index"] in table["indexes"]


def test_every_handler_probe_runs_clean_on_the_schema(report: dict[str, Any]) -> None:
    assert failing_routes(report) == []


def test_schema_has_only_the_packages_tables_and_this_projects_own(report: dict[str, Any]) -> None:
    foreign = {name for name, table in report["declared"].items() if table["packageExport"] is None}
    assert foreign == OWN_TABLES


# --- functions ---------------------------------------------------------------------------------


def test_every_server_function_is_mounted_in_the_folder(report: dict[str, Any]) -> None:
    assert unmounted_functions(report) == []


# Which client setting each server function answers; the paths and kinds come from the package.
SERVED_BY = {
    "storageFunction": "mastraStorage",
    "cacheFunction": "mastraCache",
    "nativeVectorAction": "mastraNativeVectorAction",
    "nativeVectorQuery": "mastraNativeVectorQuery",
    "nativeVectorMutation": "mastraNativeVectorMutation",
}


def test_default_paths_of_the_ts_clients_are_mounted(report: dict[str, Any]) -> None:
    assert set(report["clientPaths"]) == set(SERVED_BY)
    for setting, expected in report["clientPaths"].items():
        mounted = report["exportAt"].get(expected["path"])
        assert mounted is not None, f"{setting}: nothing at {expected['path']}"
        assert mounted == {"kind": expected["kind"], "packageExport": SERVED_BY[setting]}, setting


def test_every_server_function_is_at_a_default_client_path(report: dict[str, Any]) -> None:
    served = {
        report["exportAt"][path["path"]]["packageExport"]
        for path in report["clientPaths"].values()
        if path["path"] in report["exportAt"]
    }
    assert served == {function["export"] for function in report["functions"]}


# --- the checks fail on a folder that lacks something --------------------------------------------


def incomplete_copy(tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    """A copy of convex/ (resolving the same node_modules) changed by `edit`."""
    folder = tmp_path / "convex"
    shutil.copytree(ROOT / "convex", folder)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    edit(folder)
    return folder


def test_a_schema_without_a_package_table_fails_the_checks(tmp_path: Path) -> None:
    def drop_schedules(folder: Path) -> None:
        schema = folder / "schema.ts"
        text = schema.read_text()
        assert "  mastra_schedules: mastraSchedulesTable,\n" in text
        schema.write_text(text.replace("  mastra_schedules: mastraSchedulesTable,\n", ""))

    report = report_of(incomplete_copy(tmp_path, drop_schedules))
    assert missing_tables(report) == ["mastraSchedulesTable"]
    assert any("mastra_schedules" in line for line in failing_routes(report))


def test_a_table_under_another_name_fails_the_checks(tmp_path: Path) -> None:
    def rename(folder: Path) -> None:
        schema = folder / "schema.ts"
        text = schema.read_text()
        schema.write_text(text.replace("  mastra_channel_config:", "  mastra_channel_configs:"))

    report = report_of(incomplete_copy(tmp_path, rename))
    assert missing_tables(report) == []
    assert any("mastra_channel_config" in line for line in failing_routes(report))


def test_a_folder_without_a_server_function_fails_the_checks(tmp_path: Path) -> None:
    report = report_of(incomplete_copy(tmp_path, lambda folder: (folder / "mastra" / "cache.ts").unlink()))
    assert unmounted_functions(report) == ["mastraCache"]
    assert "mastra/cache:handle" not in report["exportAt"]


# --- the TypeScript calls that failed before these tables were declared ---------------------------


def test_ts_create_schedule_succeeds(ts: TsMastra, uid: Callable[[str], str]) -> None:
    schedule = {
        "id": uid("sched"),
        "target": {"type": "workflow", "workflowId": uid("wf")},
        "cron": "*/5 * * * *",
        "status": "active",
        "nextFireAt": 1_750_000_000_000,
        "createdAt": 1_749_000_000_000,
        "updatedAt": 1_749_000_000_000,
    }
    assert ts.call("schedules", "createSchedule", schedule) == schedule
    assert ts.call("schedules", "getSchedule", schedule["id"]) == schedule


def test_ts_create_task_succeeds(ts: TsMastra, uid: Callable[[str], str]) -> None:
    task = {
        "id": uid("task"),
        "status": "pending",
        "toolName": "search",
        "toolCallId": uid("call"),
        "args": {"q": "x"},
        "agentId": uid("agent"),
        "runId": uid("run"),
        "retryCount": 0,
        "maxRetries": 2,
        "timeoutMs": 30_000,
        "createdAt": "2025-06-01T08:30:15.123Z",
    }
    ts.call("backgroundTasks", "createTask", task)
    assert ts.call("backgroundTasks", "getTask", task["id"]) == task


def test_ts_list_installations_succeeds(ts: TsMastra, uid: Callable[[str], str]) -> None:
    assert ts.call("channels", "listInstallations", uid("platform")) == []


def test_the_generated_api_names_every_module_of_the_folder() -> None:
    folder = Path(__file__).parent.parent / "convex"
    modules = {
        path.relative_to(folder).with_suffix("").as_posix()
        for path in folder.rglob("*.ts")
        if "_generated" not in path.parts and "node_modules" not in path.parts and path.name != "schema.ts"
    }
    api = (folder / "_generated" / "api.ts").read_text()
    named = set(re.findall(r'^  "([^"]+)": typeof', api, re.MULTILINE))
    imported = set(re.findall(r'from "\.\./([^"]+)";', api))
    assert named == modules, (
        "convex/_generated/api.ts lists the folder's modules (as `npx convex codegen` would)"
    )
    assert imported == modules
