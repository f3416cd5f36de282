"""The `convex-offload` command line, run for real (the installed script, in a subprocess).

Each test gets its own local Convex server (it starts in well under a second) and its own key
prefix in the session's LocalStack, so `verify`, `stats` and `gc`, which look at a whole
deployment, see only what the test made.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convex_offload.blobs.base import ObjectInfo
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack
from convex_offload.doctor import check_encryption, same_kms_key
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore
from media import b64, data_url, image_bytes

CLI = str(Path(sys.executable).with_name("convex-offload"))
COMMANDS = ("demo", "init", "dev", "migrate", "gc", "verify", "stats", "doctor")


def render_toml(top: dict[str, Any], buckets: dict[str, dict[str, Any]]) -> str:
    """A config file (JSON's strings, lists and numbers are valid TOML values)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in top.items()]
    for name, fields in buckets.items():
        lines.append(f"[buckets.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that would configure the CLI behind the test's back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEX_", "AWS_"))}
    return {**env, "COLUMNS": "120", **extra}


@dataclass
class Site:
    """A Convex server, a bucket prefix and config files pointing at them."""

    convex: LocalConvex
    localstack: LocalStack
    prefix: str
    folder: Path
    aws_secret: str

    def s3(self, bucket: str = "images", **extra: Any) -> dict[str, Any]:
        return {
            "provider": "s3",
            "bucket": bucket,
            "endpoint_url": self.localstack.endpoint_url,
            "region": self.localstack.region,
            "access_key_id": self.localstack.access_key,
            "secret_access_key": self.aws_secret,  # LocalStack accepts any secret
            "prefix": self.prefix,
            **extra,
        }

    def connection(self) -> dict[str, Any]:
        return {"convex_url": self.convex.url, "convex_admin_key": self.convex.admin_key}

    def write_config(
        self,
        name: str = "convex-offload.toml",
        *,
        top: dict[str, Any] | None = None,
        buckets: dict[str, dict[str, Any]] | None = None,
    ) -> Path:
        path = self.folder / name
        path.write_text(
            render_toml(self.connection() if top is None else top, buckets or {"images": self.s3()})
        )
        return path

    @property
    def config_path(self) -> Path:
        return self.folder / "convex-offload.toml"

    def config(self) -> OffloadConfig:
        return OffloadConfig.load(self.config_path)

    def command(self, *args: str, config: Path | None = None, bare: bool = False) -> list[str]:
        return [CLI, *args] if bare else [CLI, *args, "--config", str(config or self.config_path)]

    def run(
        self,
        *args: str,
        config: Path | None = None,
        bare: bool = False,
        env: dict[str, str] | None = None,
        check: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args, config=config, bare=bare),
            capture_output=True,
            text=True,
            env=env or clean_env(),
            timeout=120,
            check=False,
        )
        if check is not None:
            assert done.returncode == check, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, check: int = 0, config: Path | None = None) -> Any:
        return json.loads(self.run(*args, "--json", config=config, check=check).stdout)


@pytest.fixture
def site(localstack: LocalStack, tmp_path: Path) -> Iterator[Site]:
    with LocalConvex() as convex:
        place = Site(
            convex=convex,
            localstack=localstack,
            prefix=f"cli-{uuid.uuid4().hex[:8]}/",
            folder=tmp_path,
            aws_secret=f"aws-secret-{secrets.token_hex(12)}",
        )
        place.write_config()
        yield place


def offloaded(thread: str, index: int, img: bytes) -> Message:
    """A message whose image the offloader moves to the bucket."""
    return Message(
        id=f"{thread}-{index}",
        thread_id=thread,
        resource_id="cli-user",
        role="user",
        content={"format": 2, "parts": [{"type": "file", "mimeType": "image/png", "data": b64(img)}]},
    )


def legacy(thread: str, index: int, img: bytes) -> Message:
    """A message as the TypeScript app stores it: the image inline, as a data URL."""
    return Message(
        id=f"{thread}-{index}",
        thread_id=thread,
        resource_id="legacy",
        role="user",
        content={
            "format": 2,
            "parts": [{"type": "file", "mimeType": "image/png", "data": data_url(img, "image/png")}],
        },
    )


async def save_legacy(site: Site, thread: str, images: list[bytes]) -> list[Any]:
    async with ConvexStore(site.convex.url, site.convex.admin_key) as plain:
        await plain.memory.save_messages([legacy(thread, i, img) for i, img in enumerate(images)])
        return [m.content for m in (await plain.memory.list_messages(thread, per_page=False)).messages]


async def stored_contents(site: Site, thread: str) -> str:
    """The thread's records as Convex holds them (no restoring)."""
    async with ConvexStore(site.convex.url, site.convex.admin_key) as plain:
        page = await plain.memory.list_messages(thread, per_page=False)
    return json.dumps([m.content for m in page.messages])


# --- help ------------------------------------------------------------------------------------


def test_help_lists_every_command_with_exit_codes_and_examples() -> None:
    done = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True, env=clean_env())
    for command in COMMANDS:
        assert f" {command} " in done.stdout
    assert "Exit codes: 0 all is well, 1 problems found, 2 usage or" in done.stdout
    assert "convex-offload doctor -c convex-offload.toml" in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_has_options_and_examples(command: str) -> None:
    done = subprocess.run(
        [CLI, command, "--help"], capture_output=True, text=True, check=True, env=clean_env()
    )
    assert "--json" in done.stdout
    assert ("--config" in done.stdout) is (command not in ("demo", "init"))
    assert "Examples:" in done.stdout
    examples = done.stdout.split("Examples:")[1]
    assert f"\n   convex-offload {command}" in examples, "examples are listed, indented"


# --- configuration and usage errors ----------------------------------------------------------


def test_bad_configuration_exits_2_naming_the_field(site: Site) -> None:
    bad = site.write_config("bad.toml", buckets={"images": site.s3(provider="ftp")})
    done = site.run("verify", config=bad, check=2)
    assert "buckets.images.provider" in done.stderr
    answer = json.loads(site.run("verify", "--json", config=bad, check=2).stdout)
    assert answer["ok"] is False
    assert answer["error"]["type"] == "BucketConfigError"
    assert "buckets.images.provider" in answer["error"]["message"]

    origins = site.write_config("cors.toml", buckets={"images": site.s3(cors_origins=["app.example.com"])})
    assert "buckets.images.cors_origins" in site.run("doctor", config=origins, check=2).stderr


@pytest.mark.parametrize("missing", ["convex_url", "convex_admin_key"])
def test_missing_convex_connection_exits_2_naming_the_field(site: Site, missing: str) -> None:
    top = {k: v for k, v in site.connection().items() if k != missing}
    config = site.write_config("partial.toml", top=top)
    for command in ("migrate", "gc", "verify", "stats", "doctor"):
        assert f"{missing}: not set" in site.run(command, config=config, check=2).stderr


def test_missing_file_no_buckets_bad_duration_and_unknown_table_exit_2(site: Site) -> None:
    assert "does not exist" in site.run("stats", config=site.folder / "nope.toml", check=2).stderr
    empty = site.folder / "empty.toml"
    empty.write_text(render_toml(site.connection(), {}))
    assert "buckets: none configured" in site.run("stats", config=empty, check=2).stderr
    assert "not a duration" in site.run("gc", "--grace", "soon", check=2).stderr
    assert "unknown table 'mastra_nope'" in site.run("migrate", "--table", "mastra_nope", check=2).stderr


def test_environment_supplies_what_the_file_leaves_out(site: Site) -> None:
    config = site.write_config("buckets-only.toml", top={})
    env = clean_env(CONVEX_URL=site.convex.url, CONVEX_ADMIN_KEY=site.convex.admin_key)
    done = site.run("stats", "--json", config=config, env=env, check=0)
    assert json.loads(done.stdout)["buckets"] == {"images": {"objects": 0, "bytes": 0}}


# --- verify, stats, gc -----------------------------------------------------------------------


async def test_verify_exits_0_when_clean_and_1_on_a_missing_object(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    kept, lost = image_bytes("png", 40_000, seed=501), image_bytes("png", 40_000, seed=502)
    async with OffloadingStore.connect(site.config()) as store:
        await store.memory.save_messages([offloaded(thread, 0, kept), offloaded(thread, 1, lost)])
        lost_key = store.offloader.key_for("images", "cli-user", hashlib.sha256(lost).hexdigest())
    clean = site.json("verify", "--deep")
    assert (clean["ok"], clean["records"], clean["references"], clean["problems"]) == (True, 2, 2, [])
    assert "no problems" in site.run("verify", check=0).stdout

    site.localstack.s3_client().delete_object(Bucket="images", Key=lost_key)
    broken = site.json("verify", check=1)
    assert broken["ok"] is False
    assert [(p["kind"], p["bucket"], p["key"]) for p in broken["problems"]] == [
        ("missing", "images", lost_key)
    ]
    table = site.run("verify", env=clean_env(COLUMNS="300"), check=1).stdout
    assert "1 problem(s)" in table
    row = next(line for line in table.splitlines() if lost_key in line)
    assert "missing" in row
    assert f"mastra_messages:{thread}-1" in row


async def test_stats_counts_records_objects_and_bytes(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    images = [image_bytes("png", 30_000 + 10_000 * i, seed=510 + i) for i in range(3)]
    async with OffloadingStore.connect(site.config()) as store:
        await store.memory.save_messages([offloaded(thread, i, img) for i, img in enumerate(images)])
    await save_legacy(site, f"{thread}-legacy", [image_bytes("png", 30_000, seed=520)])

    report = site.json("stats", "--top", "2")
    assert report["ok"] is True
    messages = report["tables"]["mastra_messages"]
    assert (messages["records"], messages["with_attachments"], messages["inline_base64"]) == (4, 3, 1)
    assert report["buckets"]["images"] == {"objects": 3, "bytes": sum(len(img) for img in images)}
    assert len(report["largest_records"]) == 2
    assert report["largest_records"][0]["record"] == f"mastra_messages:{thread}-legacy-0"
    human = site.run("stats", check=0).stdout
    assert "mastra_messages" in human
    assert f"{sum(len(img) for img in images):,}" in human


async def test_gc_deletes_an_orphan_older_than_grace_and_exits_0(site: Site) -> None:
    orphan = image_bytes("png", 20_000, seed=530)
    async with OffloadingStore.connect(site.config()) as store:
        key = store.offloader.key_for("images", "cli-user", hashlib.sha256(orphan).hexdigest())
    # An upload whose record was never written (its writer died before the record write).
    s3 = site.localstack.s3_client()
    s3.put_object(Bucket="images", Key=key, Body=orphan)

    assert site.json("verify")["ok"] is True, "a fresh upload is within verify's grace"
    unreferenced = site.json("verify", "--grace", "0s", check=1)["problems"]
    assert [(p["kind"], p["key"]) for p in unreferenced] == [("unreferenced", key)]

    young = site.json("gc", "--grace", "1h")
    assert (young["young"], young["deleted"]) == (1, [])
    dry = site.json("gc", "--grace", "0s", "--dry-run")
    assert (dry["dry_run"], dry["orphans"], dry["deleted"]) == (True, [{"bucket": "images", "key": key}], [])
    assert s3.list_objects_v2(Bucket="images", Prefix=key)["KeyCount"] == 1

    done = site.json("gc", "--grace", "0s")
    assert (done["ok"], done["deleted"], done["bytes_freed"]) == (
        True,
        [{"bucket": "images", "key": key}],
        len(orphan),
    )
    assert s3.list_objects_v2(Bucket="images", Prefix=key)["KeyCount"] == 0
    assert site.json("verify", "--grace", "0s")["ok"] is True


# --- migrate ---------------------------------------------------------------------------------


async def test_migrate_dry_run_changes_nothing_then_migrate_offloads(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    images = [image_bytes("png", 30_000, seed=540 + i) for i in range(3)]
    before = await save_legacy(site, thread, images)

    dry = site.json("migrate", "--dry-run")
    assert (dry["ok"], dry["dry_run"], dry["migrated"], dry["payloads"]) == (True, True, 3, 3)
    assert b64(images[0])[:100] in await stored_contents(site, thread)

    done = site.run("migrate", "--page-size", "2", "--progress-lines", check=0)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"event": "page", "table": "mastra_messages", "pages": 1}
    assert lines[1] == {"event": "page", "table": "mastra_messages", "pages": 2}
    last = lines[-1]
    assert (last["event"], last["ok"], last["migrated"], last["failed"]) == ("done", True, 3, 0)
    stored = await stored_contents(site, thread)
    assert all(b64(img)[:100] not in stored for img in images)
    async with OffloadingStore.connect(site.config()) as store:
        after = [m.content for m in (await store.memory.list_messages(thread, per_page=False)).messages]
    assert after == before
    assert site.json("verify", "--deep")["ok"] is True


async def test_migrate_exits_1_when_records_cannot_be_migrated(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    await save_legacy(site, thread, [image_bytes("png", 30_000, seed=550)])
    nowhere = site.write_config("nowhere.toml", buckets={"images": site.s3(bucket="no-such-bucket")})
    report = site.json("migrate", config=nowhere, check=1)
    assert (report["ok"], report["migrated"], report["failed"]) == (False, 0, 1)
    assert f"mastra_messages:{thread}-0" in report["errors"][0]
    assert "failed" in site.run("migrate", config=nowhere, check=1).stderr


async def test_migrate_resumes_after_being_killed(site: Site) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    images = [image_bytes("png", 30_000, seed=600 + i) for i in range(6)]
    before = await save_legacy(site, thread, images)
    state = site.folder / "migrate-state.json"
    command = site.command(
        "migrate", "--state", str(state), "--table", "mastra_messages", "--page-size", "1", "--progress-lines"
    )
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first == {"event": "page", "table": "mastra_messages", "pages": 1}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(state.read_text())
    assert saved["cursors"]["mastra_messages"], "progress was saved before the kill"
    assert "mastra_messages" not in saved["done"]

    resumed = site.json("migrate", "--state", str(state), "--table", "mastra_messages")
    assert resumed["failed"] == 0
    assert resumed["scanned"] < len(images), "the resumed run started after the saved page"
    assert site.json("migrate", "--table", "mastra_messages")["migrated"] == 0

    async with OffloadingStore.connect(site.config()) as store:
        after = [m.content for m in (await store.memory.list_messages(thread, per_page=False)).messages]
    assert after == before
    stored = await stored_contents(site, thread)
    assert all(b64(img)[:100] not in stored for img in images)


# --- doctor ----------------------------------------------------------------------------------


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_doctor_passes_on_a_working_configuration_and_leaves_no_probe(site: Site) -> None:
    report = site.json("doctor")
    assert report["ok"] is True
    assert statuses(report) == {
        "config": "ok",
        "convex": "ok",
        "bucket images probe": "ok",
        "bucket images encryption": "skipped",
        "bucket images CORS": "skipped",
    }
    listed = site.localstack.s3_client().list_objects_v2(Bucket="images", Prefix=f"{site.prefix}_doctor/")
    assert listed["KeyCount"] == 0
    assert "all checks passed" in site.run("doctor", check=0).stdout


def test_doctor_reports_a_bucket_that_does_not_exist(site: Site) -> None:
    config = site.write_config(
        "missing.toml", buckets={"images": site.s3(), "gone": site.s3(bucket="no-such-bucket", sse="AES256")}
    )
    report = site.json("doctor", config=config, check=1)
    found = {c["name"]: c for c in report["checks"]}
    assert found["bucket images probe"]["status"] == "ok"
    assert found["bucket gone probe"]["status"] == "problem"
    assert "NoSuchBucket" in found["bucket gone probe"]["detail"]
    assert found["bucket gone encryption"]["status"] == "skipped"
    assert "1 problem(s)" in site.run("doctor", config=config, check=1).stdout


def test_doctor_reports_a_refused_admin_key_and_an_unreachable_convex(site: Site) -> None:
    wrong = site.write_config("wrong.toml", top={**site.connection(), "convex_admin_key": "not-the-key"})
    refused = {c["name"]: c for c in site.json("doctor", config=wrong, check=1)["checks"]}
    assert refused["convex"]["status"] == "problem"
    assert "refused the admin key" in refused["convex"]["detail"]

    down = site.write_config("down.toml", top={**site.connection(), "convex_url": "http://127.0.0.1:9"})
    unreachable = {c["name"]: c for c in site.json("doctor", config=down, check=1)["checks"]}
    assert "not reachable" in unreachable["convex"]["detail"]


def test_doctor_checks_the_encryption_the_bucket_reports(site: Site) -> None:
    aes = site.write_config("aes.toml", buckets={"vault": site.s3(bucket="encrypted", sse="AES256")})
    found = {c["name"]: c for c in site.json("doctor", config=aes)["checks"]}
    assert found["bucket vault encryption"]["status"] == "ok"
    detail = found["bucket vault encryption"]["detail"]
    assert "ServerSideEncryption=AES256" in detail
    # LocalStack echoes what it was sent; the check must not claim more than that.
    assert "not that data is encrypted" in detail

    key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
    kms = site.write_config(
        "kms.toml", buckets={"vault": site.s3(bucket="encrypted", sse="aws:kms", kms_key_id=key_id)}
    )
    found = {c["name"]: c for c in site.json("doctor", config=kms)["checks"]}
    assert found["bucket vault encryption"]["status"] == "ok"
    assert "SSEKMSKeyId=arn:aws:kms:" in found["bucket vault encryption"]["detail"]


def bucket_config(**fields: Any) -> BucketConfig:
    return BucketConfig.model_validate(
        {"provider": "s3", "bucket": "b", "endpoint_url": "https://s3.eu-west-1.amazonaws.com", **fields}
    )


@pytest.mark.parametrize(
    ("fields", "head", "status", "words"),
    [
        ({"sse": "AES256"}, {"encryption": None}, "problem", "reports none"),
        ({"sse": "aws:kms"}, {"encryption": "AES256"}, "problem", "configured aws:kms"),
        (
            {"sse": "aws:kms", "kms_key_id": "k-1"},
            {"encryption": "aws:kms", "kms_key_id": None},
            "problem",
            "no KMS key id",
        ),
        (
            {"sse": "aws:kms", "kms_key_id": "k-1"},
            {"encryption": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:1:key/k-2"},
            "problem",
            "configured k-1",
        ),
        (
            {"sse": "aws:kms", "kms_key_id": "k-1"},
            {"encryption": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:1:key/k-1"},
            "ok",
            "SSEKMSKeyId=arn:aws:kms:eu-west-1:1:key/k-1",
        ),
        (
            {"sse": "aws:kms", "kms_key_id": "alias/chat"},
            {"encryption": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:1:key/k-1"},
            "ok",
            "alias/chat was not resolved",
        ),
        ({}, {"encryption": "AES256"}, "skipped", "no sse configured"),
    ],
)
def test_encryption_check_compares_what_head_reports(
    fields: dict[str, Any], head: dict[str, Any], status: str, words: str
) -> None:
    check = check_encryption("b", bucket_config(**fields), ObjectInfo(key="k", size=1, **head))
    assert check.status == status
    assert words in check.detail
    assert "local endpoint" not in check.detail


def test_same_kms_key_matches_ids_and_arns_and_not_other_keys() -> None:
    arn = "arn:aws:kms:eu-west-1:111122223333:key/k-1"
    assert same_kms_key("k-1", arn) is True
    assert same_kms_key(arn, arn) is True
    assert same_kms_key("k-2", arn) is False
    assert same_kms_key("-1", arn) is False
    assert same_kms_key("arn:aws:kms:eu-west-1:111122223333:alias/chat", arn) is None


def test_doctor_checks_cors_origins_for_get(site: Site) -> None:
    s3 = site.localstack.s3_client()
    with_cors, without_cors = f"cli-cors-{uuid.uuid4().hex[:8]}", f"cli-nocors-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=with_cors)
    s3.create_bucket(Bucket=without_cors)
    s3.put_bucket_cors(
        Bucket=with_cors,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedMethods": ["GET", "HEAD"],
                    "AllowedOrigins": ["https://app.example.com", "https://*.example.org"],
                },
                {"AllowedMethods": ["PUT"], "AllowedOrigins": ["https://upload.example.net"]},
            ]
        },
    )
    try:
        allowed = ["https://app.example.com", "https://chat.example.org"]
        config = site.write_config(
            "cors.toml",
            buckets={
                "good": site.s3(bucket=with_cors, cors_origins=allowed),
                "put_only": site.s3(bucket=with_cors, cors_origins=["https://upload.example.net"]),
                "bare": site.s3(bucket=without_cors, cors_origins=allowed),
                "folder": {"provider": "local", "path": str(site.folder / "bucket"), "cors_origins": allowed},
            },
        )
        found = {c["name"]: c for c in site.json("doctor", config=config, check=1)["checks"]}
        assert found["bucket good CORS"]["status"] == "ok"
        assert found["bucket put_only CORS"]["status"] == "problem"
        assert "GET from https://upload.example.net" in found["bucket put_only CORS"]["detail"]
        assert found["bucket bare CORS"]["status"] == "problem"
        assert "no CORS rules" in found["bucket bare CORS"]["detail"]
        assert found["bucket folder CORS"] == {
            "name": "bucket folder CORS",
            "status": "skipped",
            "detail": "not applicable to local buckets",
        }
        assert found["bucket folder probe"]["status"] == "ok"
    finally:
        for bucket in (with_cors, without_cors):
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
            s3.delete_bucket(Bucket=bucket)


# --- output ----------------------------------------------------------------------------------


async def test_secrets_never_appear_in_output(site: Site) -> None:
    token = f"aws-token-{secrets.token_hex(12)}"
    good = site.write_config("secrets.toml", buckets={"images": site.s3(session_token=token)})
    await save_legacy(site, f"cli-{uuid.uuid4().hex[:8]}", [image_bytes("png", 30_000, seed=560)])
    down = site.write_config(
        "down.toml",
        top={**site.connection(), "convex_url": "http://127.0.0.1:9"},
        buckets={"images": site.s3(session_token=token)},
    )
    nowhere = site.write_config(
        "nowhere.toml", buckets={"images": site.s3(bucket="no-such-bucket", session_token=token)}
    )
    invalid = site.write_config(
        "invalid.toml", buckets={"images": site.s3(session_token=token, presign_ttl=10**9)}
    )
    runs: list[tuple[list[str], int, dict[str, str]]] = []
    for command in (["doctor"], ["stats"], ["verify"], ["gc", "--dry-run"], ["migrate", "--dry-run"]):
        for output in ([], ["--json"]):
            runs.append((site.command(*command, *output, config=good), 0, clean_env()))
        runs.append((site.command(*command, config=down), 1, clean_env()))
        runs.append((site.command(*command, "--json", config=invalid), 2, clean_env()))
    runs.append((site.command("doctor", config=nowhere), 1, clean_env()))
    runs.append((site.command("migrate", config=nowhere), 1, clean_env()))
    without_secret = {k: v for k, v in site.s3().items() if k != "secret_access_key"}
    env_only = site.write_config("env-only.toml", top={}, buckets={"images": without_secret})
    runs.append(
        (
            site.command("doctor", config=env_only),
            0,
            clean_env(
                CONVEX_URL=site.convex.url,
                CONVEX_ADMIN_KEY=site.convex.admin_key,
                CONVEX_OFFLOAD_BUCKETS__IMAGES__SECRET_ACCESS_KEY=site.aws_secret,
            ),
        )
    )
    procs = [
        (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), cmd, code)
        for cmd, code, env in runs
    ]
    for proc, cmd, code in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, f"{cmd}: exit {proc.returncode}\n{out}\n{err}"
        for secret in (site.convex.admin_key, site.aws_secret, token):
            assert secret not in out + err, f"{cmd} printed a secret"


def in_terminal(command: list[str]) -> str:
    """What `command` shows on a terminal (a pseudo-terminal as its stdout)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(command, stdout=terminal, stderr=subprocess.PIPE, env=clean_env(TERM="xterm"))
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert proc.wait(timeout=60) == 0
    return shown.decode()


def test_progress_bar_in_a_terminal_but_never_with_json(site: Site) -> None:
    bar = in_terminal(site.command("verify"))
    assert "verifying" in bar
    assert "no problems" in bar
    document = in_terminal(site.command("verify", "--json"))
    assert "verifying" not in document
    assert json.loads(document)["ok"] is True
