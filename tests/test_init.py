"""`convex-offload init`: the functions go into a user's project, and nothing of theirs is lost.

Runs the installed script in a subprocess on temporary projects. The type checks link the
repository's node_modules into the project (what `npm install` would give it) and run `tsc`; the
merged schema is then served by the local Convex server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.project import SUPPORTED_RANGES, check_version, plan_init

CLI = str(Path(sys.executable).with_name("convex-offload"))
REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "convex"

USER_SCHEMA = """import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  todos: defineTable({ text: v.string(), done: v.boolean() }),
  mastra_threads: defineTable({ id: v.string() }),
});
"""

USER_TODOS = """import { mutation } from "./_generated/server";
import { v } from "convex/values";

export const add = mutation({
  args: { text: v.string() },
  handler: async (ctx, { text }) => await ctx.db.insert("todos", { text, done: false }),
});
"""


def run_init(*args: str, cwd: Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_"))}
    done = subprocess.run(
        [CLI, "init", *args],
        check=False,
        cwd=cwd,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert done.returncode == check, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done


def init_json(*args: str, cwd: Path, check: int = 0) -> Any:
    return json.loads(run_init(*args, "--json", cwd=cwd, check=check).stdout)


def shipped_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "convex"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {line.removeprefix("convex/") for line in listed.stdout.split()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def link_node_modules(project: Path) -> None:
    (project / "node_modules").symlink_to(REPO / "node_modules", target_is_directory=True)


def tsc(project: Path, folder: str = "convex") -> None:
    done = subprocess.run(
        [str(REPO / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", folder],
        check=False,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def user_project(root: Path, *, dependencies: dict[str, str] | None = None) -> Path:
    """A project with its own convex/ folder (schema with a `todos` table, a function, codegen output)."""
    project = root / "app"
    convex = project / "convex"
    (convex / "_generated").mkdir(parents=True)
    for name in ("server.ts", "dataModel.ts"):  # what `npx convex codegen` would have written
        shutil.copyfile(SHIPPED / "_generated" / name, convex / "_generated" / name)
    (convex / "schema.ts").write_text(USER_SCHEMA)
    (convex / "todos.ts").write_text(USER_TODOS)
    shutil.copyfile(SHIPPED / "tsconfig.json", convex / "tsconfig.json")
    deps = (
        dependencies
        if dependencies is not None
        else {"@mastra/convex": "1.5.2", "@mastra/core": "1.71.0", "convex": "1.48.0"}
    )
    (project / "package.json").write_text(json.dumps({"name": "app", "type": "module", "dependencies": deps}))
    return project


# --- a new project -----------------------------------------------------------------------------


def test_init_into_an_empty_folder_writes_the_whole_functions_folder_and_a_package(tmp_path: Path) -> None:
    project = tmp_path / "new-app"
    answer = init_json(str(project), cwd=tmp_path)
    assert answer["ok"] is True
    assert answer["new_folder"] is True
    expected = {f for f in shipped_files() if f not in ("package.json", "package-lock.json")}
    assert set(snapshot(project / "convex")) == expected
    for rel in expected:
        assert (project / "convex" / rel).read_bytes() == (SHIPPED / rel).read_bytes()
    manifest = json.loads((project / "package.json").read_text())
    lock = json.loads((project / "package-lock.json").read_text())
    assert manifest["name"] == lock["name"] == lock["packages"][""]["name"] == "new-app"
    assert manifest["dependencies"] == json.loads((SHIPPED / "package.json").read_text())["dependencies"]
    assert manifest["scripts"]["typecheck"] == "tsc --noEmit -p convex"
    link_node_modules(project)
    tsc(project)


def test_dry_run_shows_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "planned"
    done = run_init(str(project), "--dry-run", cwd=tmp_path)
    assert not project.exists()
    assert "would create" in done.stdout
    assert "convex/offload/records.ts" in done.stdout
    assert "convex/schema.ts" in done.stdout
    answer = init_json(str(project), "--dry-run", cwd=tmp_path)
    assert answer["dry_run"] is True
    assert {f["action"] for f in answer["files"]} == {"create"}
    assert not project.exists()


def test_a_second_init_changes_nothing(tmp_path: Path) -> None:
    init_json("app", cwd=tmp_path)
    before = snapshot(tmp_path / "app")
    answer = init_json("app", cwd=tmp_path)
    assert {f["action"] for f in answer["files"]} == {"unchanged"}
    assert snapshot(tmp_path / "app") == before


def test_convex_json_functions_folder_is_honoured(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "convex.json").write_text(json.dumps({"functions": "src/backend/"}))
    answer = init_json(str(project), cwd=tmp_path)
    assert answer["functions_dir"] == "src/backend"
    assert (project / "src" / "backend" / "schema.ts").is_file()
    assert not (project / "convex").exists()
    (project / "convex.json").write_text(json.dumps({"functions": "../outside"}))
    assert "inside the project" in run_init(str(project), cwd=tmp_path, check=2).stderr


# --- an existing project -----------------------------------------------------------------------


def test_existing_folder_gets_offload_and_mastra_and_keeps_its_schema(tmp_path: Path) -> None:
    project = user_project(tmp_path)
    answer = init_json(str(project), cwd=tmp_path)
    written = {f["path"] for f in answer["files"]}
    assert written == {f"convex/{f}" for f in shipped_files() if f.startswith(("offload/", "mastra/"))}
    assert (project / "convex" / "schema.ts").read_text() == USER_SCHEMA
    assert (project / "convex" / "todos.ts").read_text() == USER_TODOS
    schema = answer["schema"]
    assert "todos" not in schema["missing_tables"]
    assert "mastra_threads" not in schema["missing_tables"]  # already declared by the user
    assert {"mastra_messages", "offload_refs", "offload_files"} <= set(schema["missing_tables"])
    assert 'import { offloadFilesTable, offloadRefsTable } from "./offload/tables";' in schema["imports"]


def test_printed_schema_additions_type_check_and_serve(tmp_path: Path) -> None:
    project = user_project(tmp_path)
    answer = init_json(str(project), cwd=tmp_path)
    schema_path = project / "convex" / "schema.ts"
    text = schema_path.read_text().replace("  mastra_threads: defineTable({ id: v.string() }),\n", "")
    imports = "\n".join(answer["schema"]["imports"])
    entries = "".join(f"  {e}\n" for e in answer["schema"]["entries"])
    missing_threads = init_json(str(project), "--dry-run", cwd=tmp_path)  # unchanged plan: still valid JSON
    assert missing_threads["schema"]["missing_tables"]
    text = (
        imports
        + "\n"
        + text.replace("export default defineSchema({\n", "export default defineSchema({\n" + entries)
    )
    text = text.replace("  todos:", "  mastra_threads: mastraThreadsTable,\n  todos:")
    text = text.replace("import { mastra", "import { mastraThreadsTable, mastra", 1)
    schema_path.write_text(text)
    assert init_json(str(project), cwd=tmp_path)["schema"]["missing_tables"] == []
    link_node_modules(project)
    tsc(project)
    with LocalConvex(functions=project / "convex") as server:
        answer = httpx.post(
            f"{server.url}/api/mutation",
            json={"path": "offload/files:generateUploadUrl", "args": {}},
            headers={"Authorization": f"Convex {server.admin_key}"},
        )
        assert answer.status_code == 200, answer.text
        todo = httpx.post(f"{server.url}/api/mutation", json={"path": "todos:add", "args": {"text": "x"}})
        assert todo.status_code == 200, todo.text


def test_init_refuses_to_overwrite_a_changed_file_and_writes_nothing(tmp_path: Path) -> None:
    project = user_project(tmp_path)
    mine = project / "convex" / "offload" / "records.ts"
    mine.parent.mkdir()
    mine.write_text("// my own file\n")
    before = snapshot(project)
    done = run_init(str(project), cwd=tmp_path, check=2)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "convex/offload/records.ts" in lines[0]
    assert "--force" in lines[0]
    assert snapshot(project) == before
    dry = run_init(str(project), "--dry-run", cwd=tmp_path, check=2)
    assert "--force" in dry.stderr
    assert snapshot(project) == before


def test_force_overwrites_but_never_the_users_schema(tmp_path: Path) -> None:
    project = user_project(tmp_path)
    mine = project / "convex" / "offload" / "records.ts"
    mine.parent.mkdir()
    mine.write_text("// my own file\n")
    answer = init_json(str(project), "--force", cwd=tmp_path)
    actions = {f["path"]: f["action"] for f in answer["files"]}
    assert actions["convex/offload/records.ts"] == "overwrite"
    assert mine.read_bytes() == (SHIPPED / "offload" / "records.ts").read_bytes()
    assert (project / "convex" / "schema.ts").read_text() == USER_SCHEMA


def test_init_on_a_file_fails_in_one_line(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    done = run_init(str(target), cwd=tmp_path, check=2)
    assert "is not a folder" in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1


# --- versions ----------------------------------------------------------------------------------


def test_package_versions_are_checked_and_the_change_is_named(tmp_path: Path) -> None:
    project = user_project(tmp_path, dependencies={"@mastra/convex": "^1.4.0", "convex": "^1.48.0"})
    answer = init_json(str(project), cwd=tmp_path, check=1)
    assert answer["ok"] is False
    checks = {c["package"]: c for c in answer["versions"]}
    assert checks["@mastra/core"]["status"] == "missing"
    assert 'add "@mastra/core": "1.71.0"' in checks["@mastra/core"]["advice"]
    assert checks["@mastra/convex"]["status"] == "wider"  # ^1.4.0 admits 1.5.2, and untested ones
    assert checks["convex"]["status"] == "ok"
    text = run_init(str(project), cwd=tmp_path, check=1).stdout
    assert 'add "@mastra/core": "1.71.0"' in text


def test_an_installed_unsupported_version_is_reported(tmp_path: Path) -> None:
    project = user_project(
        tmp_path, dependencies={"@mastra/convex": "^1.4.0", "@mastra/core": "1.71.0", "convex": "1.48.0"}
    )
    installed = project / "node_modules" / "@mastra" / "convex"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"name": "@mastra/convex", "version": "1.4.7"}))
    answer = init_json(str(project), cwd=tmp_path, check=1)
    check = next(c for c in answer["versions"] if c["package"] == "@mastra/convex")
    assert check["status"] == "unsupported"
    assert check["resolved"] == "1.4.7"
    assert 'set "@mastra/convex": "1.5.2"' in check["advice"]


@pytest.mark.parametrize(
    ("declared", "status"),
    [
        ("1.5.2", "ok"),
        ("~1.5.2", "ok"),
        ("1.5.x", "wider"),
        ("^1.5.2", "wider"),
        ("1.4.0", "unsupported"),
        ("2.0.0", "unsupported"),
        ("not a range", "unsupported"),
    ],
)
def test_version_rules(declared: str, status: str) -> None:
    check = check_version(
        "@mastra/convex", SUPPORTED_RANGES["@mastra/convex"], tested="1.5.2", declared=declared, resolved=None
    )
    assert check.status == status


def test_the_tested_versions_are_inside_the_supported_ranges() -> None:
    tested = json.loads((SHIPPED / "package.json").read_text())["dependencies"]
    for package, supported in SUPPORTED_RANGES.items():
        assert (
            check_version(
                package, supported, tested=tested[package], declared=tested[package], resolved=tested[package]
            ).status
            == "ok"
        )


def test_plan_lists_the_shipped_schema_tables(tmp_path: Path) -> None:
    plan = plan_init(user_project(tmp_path))
    assert plan.schema is not None
    shipped_schema = (SHIPPED / "schema.ts").read_text()
    for entry in plan.schema.entries:
        assert entry in shipped_schema
