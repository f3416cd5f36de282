"""The `convex-offload` command line, run for real against a Convex server and a bucket prefix of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convex_offload.config import OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes

CLI = str(Path(sys.executable).with_name("convex-offload"))
AWS_SECRET = "test"  # LocalStack's own secret: must never be printed either


@dataclass
class Site:
    convex: LocalConvex
    localstack: LocalStack
    prefix: str
    config_path: Path

    def run(
        self, *args: str, config: Path | None = None, check: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [CLI, *args]
        if config is not None or "--config" not in args:
            command += ["--config", str(config or self.config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_"))}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
        if check is not None:
            assert done.returncode == check, done.stdout + done.stderr
        return done

    def config(self) -> OffloadConfig:
        return OffloadConfig.load(self.config_path)


def toml(convex: LocalConvex, localstack: LocalStack, prefix: str, **bucket: str) -> str:
    lines = [
        f'convex_url = "{convex.url}"',
        f'convex_admin_key = "{convex.admin_key}"',
        "[buckets.images]",
        'provider = "s3"',
        f'bucket = "{bucket.get("bucket", "images")}"',
        f'endpoint_url = "{localstack.endpoint_url}"',
        f'region = "{localstack.region}"',
        f'access_key_id = "{localstack.access_key}"',
        f'secret_access_key = "{localstack.secret_key}"',
        f'prefix = "{prefix}"',
    ]
    lines += [f'{k} = "{v}"' for k, v in bucket.items() if k != "bucket"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def site(localstack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("cli")
    with LocalConvex() as convex:
        prefix = f"cli-{uuid.uuid4().hex[:8]}/"
        path = folder / "convex-offload.toml"
        path.write_text(toml(convex, localstack, prefix))
        yield Site(convex=convex, localstack=localstack, prefix=prefix, config_path=path)


def message(thread: str, index: int, img: bytes) -> Message:
    return Message(
        id=f"{thread}-{index}",
        thread_id=thread,
        resource_id="cli-user",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )


def test_help_reads_well() -> None:
    done = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "migrate", "gc", "verify", "stats", "doctor"):
        assert command in done.stdout
    for command in ("migrate", "gc", "verify", "stats", "doctor"):
        help_text = subprocess.run(
            [CLI, command, "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "--json" in help_text
        assert "--config" in help_text


def test_bad_configuration_exits_2_naming_the_field(site: Site, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(site.config_path.read_text().replace('provider = "s3"', 'provider = "ftp"'))
    done = site.run("verify", config=bad, check=2)
    assert "buckets.images.provider" in done.stderr
    missing = tmp_path / "nourl.toml"
    missing.write_text(
        "\n".join(
            line for line in site.config_path.read_text().splitlines() if not line.startswith("convex_")
        )
    )
    assert "convex_url" in site.run("stats", config=missing, check=2).stderr
    assert site.run("gc", "--grace", "soon", check=2).returncode == 2


async def test_verify_stats_and_gc_report_in_json(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    kept, lost = image_bytes("png", 40_000, seed=501), image_bytes("png", 40_000, seed=502)
    async with OffloadingStore.connect(site.config()) as store:
        await store.memory.save_messages([message(thread, 0, kept), message(thread, 1, lost)])
        lost_key = store.offloader.key_for(
            "images", "cli-user", __import__("hashlib").sha256(lost).hexdigest()
        )
    assert json.loads(site.run("verify", "--json", check=0).stdout)["ok"] is True

    site.localstack.s3_client().delete_object(Bucket="images", Key=lost_key)
    broken = site.run("verify", "--json", check=1)
    problems = json.loads(broken.stdout)["problems"]
    assert {"kind": "missing", "key": lost_key} in [{"kind": p["kind"], "key": p["key"]} for p in problems]
    assert "1 problem" in site.run("verify", check=1).stdout

    report = json.loads(site.run("stats", "--json", check=0).stdout)
    assert report["tables"]["mastra_messages"]["with_attachments"] >= 2
    assert report["buckets"]["images"]["objects"] >= 1
    dry = json.loads(site.run("gc", "--grace", "0s", "--dry-run", "--json", check=0).stdout)
    assert dry["dry_run"] is True
    assert dry["deleted"] == []


def test_doctor_probes_buckets_and_convex(site: Site, tmp_path: Path) -> None:
    good = json.loads(site.run("doctor", "--json", check=0).stdout)
    assert good["ok"] is True
    assert {c["name"]: c["status"] for c in good["checks"]}["bucket images probe"] == "ok"

    encrypted = tmp_path / "encrypted.toml"
    encrypted.write_text(toml(site.convex, site.localstack, site.prefix, bucket="encrypted", sse="AES256"))
    checks = {
        c["name"]: c
        for c in json.loads(site.run("doctor", "--json", config=encrypted, check=0).stdout)["checks"]
    }
    assert checks["bucket images encryption"]["status"] == "ok"
    assert "AES256" in checks["bucket images encryption"]["detail"]

    missing = tmp_path / "missing.toml"
    missing.write_text(toml(site.convex, site.localstack, site.prefix, bucket="no-such-bucket"))
    failed = json.loads(site.run("doctor", "--json", config=missing, check=1).stdout)
    assert {c["name"]: c["status"] for c in failed["checks"]}["bucket images probe"] == "problem"

    wrong_key = tmp_path / "wrongkey.toml"
    wrong_key.write_text(site.config_path.read_text().replace(site.convex.admin_key, "not-the-key"))
    refused = json.loads(site.run("doctor", "--json", config=wrong_key, check=1).stdout)
    assert {c["name"]: c["status"] for c in refused["checks"]}["convex"] == "problem"


def test_secrets_never_appear_in_output(site: Site, tmp_path: Path) -> None:
    unreachable = tmp_path / "down.toml"
    unreachable.write_text(site.config_path.read_text().replace(site.convex.url, "http://127.0.0.1:9"))
    outputs = [
        site.run("doctor"),
        site.run("doctor", "--json"),
        site.run("verify", config=unreachable),
        site.run("stats", "--json", config=unreachable),
        site.run("doctor", config=unreachable),
    ]
    for done in outputs:
        text = done.stdout + done.stderr
        assert site.convex.admin_key not in text
        assert f'secret_access_key = "{AWS_SECRET}"' not in text
    assert outputs[2].returncode == 1
    assert "ConvexTransportError" in outputs[2].stderr


async def test_migrate_resumes_after_being_killed(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    images = [image_bytes("png", 30_000, seed=600 + i) for i in range(6)]
    async with ConvexStore(site.convex.url, site.convex.admin_key) as plain:
        await plain.memory.save_messages(
            [
                Message(
                    id=f"{thread}-{i}",
                    thread_id=thread,
                    resource_id="legacy",
                    role="user",
                    content={
                        "format": 2,
                        "parts": [
                            {"type": "file", "mimeType": "image/png", "data": data_url(img, "image/png")}
                        ],
                    },
                )
                for i, img in enumerate(images)
            ]
        )
        before = [m.content for m in (await plain.memory.list_messages(thread, per_page=False)).messages]
    state = site.config_path.parent / f"migrate-{thread}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_"))}
    command = [
        CLI,
        "migrate",
        "--config",
        str(site.config_path),
        "--state",
        str(state),
        "--table",
        "mastra_messages",
        "--page-size",
        "1",
        "--progress-lines",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first == {"event": "page", "table": "mastra_messages", "pages": 1}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(state.read_text())
    assert saved["cursors"]["mastra_messages"], "progress was saved before the kill"
    assert "mastra_messages" not in saved["done"]

    resumed = site.run("migrate", "--state", str(state), "--table", "mastra_messages", "--json", check=0)
    assert json.loads(resumed.stdout)["failed"] == 0
    again = json.loads(site.run("migrate", "--table", "mastra_messages", "--json", check=0).stdout)
    assert again["migrated"] == 0

    async with OffloadingStore.connect(site.config()) as store:
        after = [m.content for m in (await store.memory.list_messages(thread, per_page=False)).messages]
        stored: list[Any] = [
            m.content for m in (await store.store.memory.list_messages(thread, per_page=False)).messages
        ]
    assert after == before
    assert all(b64(img)[:100] not in json.dumps(stored) for img in images)
