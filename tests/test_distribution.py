"""`pip install convex-offload` works on its own, as a new user would meet it.

The wheel and sdist are built from this checkout; the wheel is installed into a fresh virtualenv in
a temporary folder outside the checkout, with its own npm cache folder; there `convex-offload init`
makes a project whose npm packages come from the shipped lock file and which `tsc` type-checks,
`convex-offload demo --json` succeeds, and `convex-offload dev` on the init'ed folder stores and
reads a message (a script run by the fresh virtualenv's python). Needs node and npm: without them
these tests fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_FILES = ("server.mjs", "package.json", "package-lock.json")

ROUND_TRIP = """
import asyncio, base64, json
from datetime import UTC, datetime

import httpx

from convex_offload import Message, OffloadConfig, OffloadingStore, Thread
from convex_offload.demo import png


async def main() -> None:
    config = OffloadConfig.load()  # CONVEX_URL, CONVEX_ADMIN_KEY, CONVEX_OFFLOAD_BUCKETS__LOCAL__*
    image = png(160, 160, seed=5)
    content = {
        "format": 2,
        "parts": [
            {"type": "text", "text": "what is this?"},
            {"type": "file", "mimeType": "image/png", "data": base64.b64encode(image).decode()},
        ],
    }
    async with OffloadingStore.connect(config) as store:
        await store.memory.save_thread(Thread(id="dist-t1", resource_id="dist-u1", title="dist"))
        message = Message(id="dist-m1", thread_id="dist-t1", resource_id="dist-u1", role="user",
                          content=content, created_at=datetime.now(UTC))
        await store.memory.save_messages([message])
        inline = (await store.memory.list_messages("dist-t1", per_page=False)).messages
        ui = store.with_restore_mode("urls")
        urls = (await ui.memory.list_messages("dist-t1", per_page=False)).messages
        stored = (await store.store.memory.list_messages("dist-t1", per_page=False)).messages
    url = urls[0].content["parts"][1]["data"]
    fetched = httpx.get(url, timeout=30)
    print(json.dumps({
        "inline_equal": inline[0].content == content,
        "stored_bytes": len(json.dumps(stored[0].content)),
        "url": url,
        "status": fetched.status_code,
        "content_type": fetched.headers.get("content-type"),
        "bytes_equal": fetched.content == image,
    }))


asyncio.run(main())
"""


def need(tool: str) -> str:
    """The tool's path; the test fails (never skips) when it is missing."""
    found = shutil.which(tool)
    assert found is not None, f"{tool} is needed for the distribution tests and is not on PATH"
    return found


def run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Fresh:
    """A virtualenv outside the checkout with only the wheel installed, and its own environment."""

    root: Path
    python: Path
    cli: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=REPO, env=dict(os.environ))
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1
    assert len(sdists) == 1
    return Built(wheel=wheels[0], sdist=sdists[0])


@pytest.fixture(scope="module")
def fresh(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Fresh:
    need("node")
    need("npm")
    root = tmp_path_factory.mktemp("fresh")
    assert not root.resolve().is_relative_to(REPO)
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=dict(os.environ))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_", "VIRTUAL_ENV"))}
    env = {**base, "CONVEX_OFFLOAD_CACHE_DIR": str(root / "cache"), "COLUMNS": "120"}
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(built.wheel)], cwd=root, env=env)
    return Fresh(root=root, python=venv / "bin" / "python", cli=venv / "bin" / "convex-offload", env=env)


@pytest.fixture(scope="module")
def project(fresh: Fresh) -> Path:
    """An empty folder after `convex-offload init`, its npm packages installed from the shipped lock."""
    folder = fresh.root / "my-app"
    folder.mkdir()
    run([str(fresh.cli), "init", str(folder)], cwd=fresh.root, env=fresh.env)
    run([need("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, env=fresh.env)
    return folder


def tracked(folder: str) -> set[str]:
    listed = run(["git", "ls-files", folder], cwd=REPO, env=dict(os.environ)).split()
    return {path.removeprefix(f"{folder}/") for path in listed}


# --- what is shipped ---------------------------------------------------------------------------


def test_wheel_ships_the_tracked_functions_folder_the_server_sources_and_the_license(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    data = "convex_offload/_data/"
    assert {n.removeprefix(data + "convex/") for n in names if n.startswith(data + "convex/")} == tracked(
        "convex"
    )
    server = {n.removeprefix(data + "localconvex/") for n in names if n.startswith(data + "localconvex/")}
    expected = {p for p in tracked("localconvex") if p in SERVER_FILES or p.startswith("lib/")}
    assert server == expected
    assert not [n for n in names if "node_modules" in n]
    assert not [n for n in names if "faultproxy" in n or n.startswith(("tests/", "testkit/", "benchmarks/"))]
    assert "convex_offload/__main__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(built.wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert "Classifier: Programming Language :: Python :: 3.11" in text


def test_sdist_carries_everything_the_wheel_is_built_from(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"convex/{p}" for p in tracked("convex")} <= names
    assert {"localconvex/server.mjs", "localconvex/package-lock.json", "LICENSE", "CHANGELOG.md"} <= names
    assert not [n for n in names if "node_modules" in n]


@pytest.mark.parametrize("member", ["convex", "localconvex"])
def test_standalone_lock_has_the_workspace_locks_versions(member: str) -> None:
    workspace = json.loads((REPO / "package-lock.json").read_text())["packages"]
    own = json.loads((REPO / member / "package-lock.json").read_text())
    manifest = json.loads((REPO / member / "package.json").read_text())

    def resolved(packages: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (path.rsplit("node_modules/", 1)[1], entry["version"], entry.get("integrity", ""))
            for path, entry in packages.items()
            if "node_modules/" in path and not entry.get("link")
        }

    assert own["packages"][""]["dependencies"] == manifest["dependencies"]
    assert resolved(own["packages"]) <= resolved(workspace)
    for name, version in manifest["dependencies"].items():
        assert own["packages"][f"node_modules/{name}"]["version"] == version


# --- the installed wheel, outside the checkout -------------------------------------------------


def test_installed_wheel_has_version_and_python_dash_m(fresh: Fresh) -> None:
    version = run([str(fresh.cli), "--version"], cwd=fresh.root, env=fresh.env).strip()
    assert version.startswith("convex-offload ")
    module = run([str(fresh.python), "-m", "convex_offload", "--version"], cwd=fresh.root, env=fresh.env)
    assert module.strip() == version
    where = run(
        [str(fresh.python), "-c", "import convex_offload, sys; print(convex_offload.__file__)"],
        cwd=fresh.root,
        env=fresh.env,
    )
    assert not Path(where.strip()).resolve().is_relative_to(REPO)


def test_init_into_an_empty_folder_type_checks_with_tsc(fresh: Fresh, project: Path) -> None:
    assert (project / "convex" / "schema.ts").is_file()
    assert (project / "convex" / "offload" / "records.ts").is_file()
    assert json.loads((project / "package.json").read_text())["dependencies"]["@mastra/convex"] == "1.5.2"
    tsc = project / "node_modules" / ".bin" / "tsc"
    run([str(tsc), "--noEmit", "-p", "convex"], cwd=project, env=fresh.env)


def test_demo_from_the_installed_wheel_installs_its_runtime_and_succeeds(fresh: Fresh) -> None:
    done = subprocess.run(
        [str(fresh.cli), "demo", "--json"],
        cwd=fresh.root,
        env=fresh.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["messages"]
    assert all(m["restored_exactly"] for m in result["messages"])
    runtime = Path(fresh.env["CONVEX_OFFLOAD_CACHE_DIR"])
    assert list(runtime.glob("*/node_modules/convex-test/package.json"))
    assert "Traceback" not in done.stderr


@pytest.fixture
def dev_server(fresh: Fresh, project: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    command = [str(fresh.cli), "dev", "--dir", str(project / "convex"), "--bucket-dir", "bucket", "--json"]
    with subprocess.Popen(
        command, cwd=project, env=fresh.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            assert line, f"dev exited {proc.wait()}: {proc.stderr.read() if proc.stderr else ''}"
            ready = json.loads(line)
            assert ready["ok"] is True
            yield proc, ready["env"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


def test_dev_on_the_init_folder_saves_and_reads_a_message(
    fresh: Fresh, project: Path, dev_server: tuple[subprocess.Popen[str], dict[str, str]]
) -> None:
    proc, env = dev_server
    assert env["CONVEX_URL"].startswith("http://127.0.0.1:")
    assert env["CONVEX_OFFLOAD_BUCKETS__LOCAL__SERVE_URL"].startswith("http://127.0.0.1:")
    script = fresh.root / "round_trip.py"
    script.write_text(ROUND_TRIP)
    out = run([str(fresh.python), str(script)], cwd=fresh.root, env={**fresh.env, **env}, timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["inline_equal"] is True
    assert result["stored_bytes"] < 5000
    assert result["url"].startswith(env["CONVEX_OFFLOAD_BUCKETS__LOCAL__SERVE_URL"] + "/")
    assert result["status"] == 200
    assert result["content_type"] == "image/png"
    assert result["bytes_equal"] is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
