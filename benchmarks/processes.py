"""Case 8P: 4 writer processes saving at once, next to 4 processes of the boto3 floor.

Each run starts 4 fresh workers (`python -m benchmarks.processes --role ours|floor ...`). A worker
connects, warms up and builds its payloads, prints `{"ready": ...}`, then waits for a `go` line on
stdin; the parent writes `go` to all 4 at once and measures wall time until all 4 have printed
their `{"done": ...}` line. Ours: one `OffloadingStore` per worker, each message saved with
`save_messages([msg])`. Floor (as case 1's): per message, the same bytes put with boto3 in parallel
on warm threads, then one plain `ConvexStore` save of a record rewritten as ours is (copies, under
new ids, of a message the parent saved through an `OffloadingStore` before the runs).
Runs alternate ours/floor. After each run of ours, every message is read back through a fresh
`OffloadingStore` in the parent and compared with what was saved (by digest of its content).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.cases import (
    KB,
    MB,
    Images,
    Result,
    Suite,
    add_server_arguments,
    message,
    put_all,
    server_args,
    stored_twin,
    warm_pool,
)
from convex_offload.blobs.factory import s3_connection
from convex_offload.blobs.s3 import make_client
from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message
from convex_offload.store.store import ConvexStore

WORKERS = 4
K = 4
ADMIN_KEY_ENV = "CONVEX_OFFLOAD_CONVEX_ADMIN_KEY"
ACCESS_KEY_ENV = "BENCH_S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "BENCH_S3_SECRET_ACCESS_KEY"
READY_TIMEOUT = 300.0
RUN_TIMEOUT = 900.0


def sizes_for(quick: bool) -> list[int]:
    """The K attachment sizes of every message (2 MB a message; 1 MB in quick mode)."""
    return [200 * KB, 300 * KB, 200 * KB, 300 * KB] if quick else [200 * KB, 600 * KB, 200 * KB, 1 * MB]


def digest(content: Any) -> str:
    """sha256 of a record's content as canonical JSON."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


# --- the worker ---------------------------------------------------------------------------------


def worker_config(args: argparse.Namespace) -> OffloadConfig:
    """The config the parent's suite would build, from arguments and the environment."""
    bucket = BucketConfig.model_validate(
        {
            "provider": "s3",
            "bucket": "bench",
            "endpoint_url": args.endpoint,
            "region": args.region,
            "access_key_id": os.environ[ACCESS_KEY_ENV],
            "secret_access_key": os.environ[SECRET_KEY_ENV],
            "prefix": args.prefix,
        }
    )
    return OffloadConfig(
        convex_url=args.convex_url, convex_admin_key=os.environ[ADMIN_KEY_ENV], buckets={"bench": bucket}
    )


def emit(line: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def wait_for_go() -> None:
    """Block until the parent writes `go`."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit(f"expected 'go', got {line!r}")


async def work_ours(args: argparse.Namespace, thread: str) -> dict[str, Any]:
    """Save M messages through one OffloadingStore, one save each."""
    images, sizes = Images(), sizes_for(args.quick)
    config = worker_config(args)
    async with OffloadingStore.connect(config) as store:
        await store.memory.save_messages([message(thread, -1, [images.png(s) for s in sizes])])
        messages = [message(thread, i, [images.png(s) for s in sizes]) for i in range(args.messages)]
        digests = [digest(m.content) for m in messages]
        emit({"ready": os.getpid()})
        await wait_for_go()
        start, cpu = time.perf_counter(), time.process_time()
        for msg in messages:
            await store.memory.save_messages([msg])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "ids": [m.id for m in messages], "digests": digests}


async def work_floor(args: argparse.Namespace, thread: str) -> dict[str, Any]:
    """Per message: the same bytes put with boto3 in parallel, then one plain save of a rewritten record."""
    images, sizes = Images(), sizes_for(args.quick)
    config = worker_config(args)
    s3 = make_client(s3_connection(config.buckets["bench"]), max_pool_connections=config.concurrency)
    pool = warm_pool(config.concurrency)
    twin = Message.model_validate_json(Path(args.record).read_text())
    records = [
        twin.model_copy(update={"id": f"{twin.id}-{thread}-{i}", "thread_id": thread})
        for i in range(args.messages + 1)
    ]
    try:
        async with ConvexStore(args.convex_url, os.environ[ADMIN_KEY_ENV]) as plain:
            payloads = [
                [(f"floor/{uuid.uuid4().hex}", images.png(s)) for s in sizes]
                for _ in range(args.messages + 1)
            ]
            # Warm up this process's boto3 connections and plain store as ours warms up its own.
            await asyncio.to_thread(put_all, s3, pool, payloads[-1], min(K, config.concurrency))
            await plain.memory.save_messages([records[-1]])
            emit({"ready": os.getpid()})
            await wait_for_go()
            start, cpu = time.perf_counter(), time.process_time()
            for keys, record in zip(payloads[:-1], records[:-1], strict=True):
                await asyncio.to_thread(put_all, s3, pool, keys, min(K, config.concurrency))
                await plain.memory.save_messages([record])
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        pool.shutdown()
        s3.close()
    return {"seconds": seconds, "cpu": cpu, "ids": [r.id for r in records[:-1]], "digests": []}


def worker_main() -> None:
    """Worker mode: prepare, print ready, wait for go, save, print one done line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.processes")
    parser.add_argument("--role", choices=("ours", "floor"), required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--quick", action="store_true")
    add_server_arguments(parser)
    parser.add_argument("--thread", required=True)
    parser.add_argument("--record", help="floor: a JSON file of a stored (rewritten) record to copy")
    args = parser.parse_args()
    work = work_ours if args.role == "ours" else work_floor
    emit({"done": asyncio.run(work(args, args.thread))})


# --- the parent ---------------------------------------------------------------------------------


def tree_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a live process and its live descendants."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid: (parent, cpu seconds)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {pid}, 0.0
    for _ in range(8):  # a few levels deep is plenty for our servers
        tree |= {child for child, (parent, _) in stats.items() if parent in tree}
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


@dataclass
class Worker:
    """One started worker process and where its stderr goes."""

    process: asyncio.subprocess.Process
    stderr: IO[bytes]

    async def line(self, key: str, timeout: float) -> Any:
        """The next JSON line from the worker, which must carry `key`."""
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            await asyncio.wait_for(self.process.wait(), 30)
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"worker {self.process.pid} exited ({self.process.returncode}):\n{tail}")
        value = json.loads(raw)
        if key not in value:
            raise RuntimeError(f"worker {self.process.pid}: expected {key!r}, got {value!r}")
        return value[key]


async def start_worker(
    suite: Suite, role: str, messages: int, prefix: str, thread: str, record: Path, stderr: IO[bytes]
) -> Worker:
    """Start one worker (secrets go through its environment, never its argv)."""
    args = [
        "-m",
        "benchmarks.processes",
        "--role",
        role,
        "--messages",
        str(messages),
        *server_args(suite, prefix),
        "--thread",
        thread,
        "--record",
        str(record),
    ] + (["--quick"] if suite.quick else [])
    env = {
        **os.environ,
        ADMIN_KEY_ENV: suite.convex.admin_key,
        ACCESS_KEY_ENV: suite.localstack.access_key,
        SECRET_KEY_ENV: suite.localstack.secret_key,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
        limit=1 << 20,
    )
    return Worker(process, stderr)


class Runs:
    """Runs of 4 fresh workers each. A run's workers exit while the next run's start and prepare
    (both untimed); the next `go` waits until they are gone."""

    def __init__(self, suite: Suite, prefix: str, record: Path) -> None:
        self.suite, self.prefix, self.record = suite, prefix, record
        self.leaving: list[Worker] = []

    async def settle(self) -> None:
        """Wait for the last run's workers to exit; each must exit 0."""
        leaving, self.leaving = self.leaving, []
        try:
            codes = await asyncio.wait_for(asyncio.gather(*(w.process.wait() for w in leaving)), 60)
        finally:
            stop(leaving)
        for w, code in zip(leaving, codes, strict=True):
            if code != 0:
                raise RuntimeError(f"worker {w.process.pid} exited with {code}")

    def close(self) -> None:
        """Kill whatever is left (after an error)."""
        stop(self.leaving)
        self.leaving = []

    async def run(
        self,
        role: str,
        messages: int,
        check: Callable[[list[dict[str, Any]]], Awaitable[int]] | None = None,
    ) -> tuple[float, list[dict[str, Any]], int]:
        """Start 4 workers, wait until all are ready, release them at once; wall time until all
        are done. `check` (ours' read-back) then runs on their reports while they exit."""
        suite, workers = self.suite, list[Worker]()
        try:
            run = uuid.uuid4().hex[:6]
            for n in range(WORKERS):
                thread = f"bench-procs-{role}-{run}-{n}"
                log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
                workers.append(
                    await start_worker(suite, role, messages, self.prefix, thread, self.record, log)
                )
            await asyncio.gather(self.settle(), *(w.line("ready", READY_TIMEOUT) for w in workers))
            servers = {"localstack": suite.localstack.pid, "convex": suite.convex.pid}
            before = {name: tree_cpu(pid) for name, pid in servers.items()}
            start = time.perf_counter()
            for w in workers:
                assert w.process.stdin is not None
                w.process.stdin.write(b"go\n")
            await asyncio.gather(*(w.process.stdin.drain() for w in workers if w.process.stdin))
            done: list[dict[str, Any]] = await asyncio.gather(*(w.line("done", RUN_TIMEOUT) for w in workers))
            wall = time.perf_counter() - start
            for name, pid in servers.items():
                done[0][f"{name}_cpu"] = tree_cpu(pid) - before[name]
            self.leaving = workers
            return wall, done, await check(done) if check is not None else 0
        except BaseException:
            stop(workers)
            raise


def stop(workers: list[Worker]) -> None:
    """Kill the workers still running and close their logs."""
    for w in workers:
        if w.process.returncode is None:
            w.process.kill()
        w.stderr.close()


async def shaped_record(suite: Suite, config: OffloadConfig, images: Images) -> Message:
    """A message of the runs' shape saved through an OffloadingStore: its stored row, for the floor."""
    async with (
        OffloadingStore.connect(config) as store,
        ConvexStore(suite.convex.url, suite.convex.admin_key) as plain,
    ):
        shaped = message("bench-procs-shape", 0, [images.png(s) for s in sizes_for(suite.quick)])
        await store.memory.save_messages([shaped])
        return await stored_twin(plain, shaped)


async def verify(config: OffloadConfig, done: list[dict[str, Any]], messages: int) -> int:
    """Every message of a run of ours reads back, through a fresh OffloadingStore, as it was saved."""
    checked = 0
    async with OffloadingStore.connect(config) as reader:
        for report in done:
            ids: list[str] = report["ids"]
            assert len(ids) == messages, report
            read: list[Message] = await reader.memory.list_messages_by_id(ids)
            by_id = {m.id: m for m in read}
            assert set(by_id) == set(ids), f"missing: {set(ids) - set(by_id)}"
            for record_id, expected in zip(ids, report["digests"], strict=True):
                assert digest(by_id[record_id].content) == expected, f"{record_id} reads back different"
                checked += 1
    return checked


async def case_processes(
    suite: Suite, images: Images, results: list[Result], progress: Callable[[str], None]
) -> None:
    """8P. 4 writer processes at once, against 4 processes of the boto3 floor (wall time of a run)."""
    messages = 3 if suite.quick else 20
    repeats = 1 if suite.quick else 5  # a shared 2-core machine: ±20% between runs
    config = suite.config()
    prefix = config.buckets["bench"].prefix or ""
    times: dict[str, list[float]] = {"ours": [], "floor": []}
    seconds_each: dict[str, list[float]] = {"ours": [], "floor": []}
    cpu: dict[str, dict[str, list[float]]] = {
        role: {"workers": [], "localstack": [], "convex": []} for role in ("ours", "floor")
    }
    verified = 0
    folder = Path(tempfile.mkdtemp(prefix="bench-procs-"))
    record = folder / "record.json"
    runs = Runs(suite, prefix, record)
    try:
        record.write_text((await shaped_record(suite, config, images)).model_dump_json())
        check = functools.partial(verify, config, messages=messages)
        if not suite.quick:  # untimed: the first run on fresh servers is slower, whichever role it is
            progress("4 writer processes: warm-up run (floor, 3 messages, untimed)")
            await runs.run("floor", 3)
        for repeat in range(repeats):
            roles = ["ours", "floor"] if repeat % 2 == 0 else ["floor", "ours"]
            for role in roles:
                progress(f"4 writer processes: {role}, run {repeat + 1} of {repeats}")
                wall, done, checked = await runs.run(role, messages, check if role == "ours" else None)
                verified += checked
                times[role].append(wall)
                seconds_each[role] += [report["seconds"] for report in done]
                cpu[role]["workers"].append(sum(report["cpu"] for report in done))
                for server in ("localstack", "convex"):
                    cpu[role][server].append(done[0][f"{server}_cpu"])
        await runs.settle()
    finally:
        runs.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert verified == repeats * WORKERS * messages
    total = WORKERS * messages * sum(sizes_for(suite.quick))
    params = f"{WORKERS} × {messages} msgs × K={K}, {total / MB:.0f} MB"
    notes = {
        "runs_each": repeats,
        "bytes_per_run": total,
        "messages_verified": verified,
        "worker_seconds_median": {k: statistics.median(v) for k, v in seconds_each.items()},
        "worker_seconds_max": {k: max(v) for k, v in seconds_each.items()},
        "cpu_seconds_per_run_median": {
            role: {part: statistics.median(v) for part, v in parts.items()} for role, parts in cpu.items()
        },
        "cores": os.cpu_count(),
    }
    results.append(
        Result(
            "8P 4 writer processes",
            params,
            times["ours"],
            times["floor"],
            "≥ 0.8× boto3 × 4 throughput",
            0.8,
            higher_is_better=True,
            notes=notes,
        )
    )
    # Aggregate MB/s; the values are rates, so the ratio shown (ours / floor) is not inverted.
    results.append(
        Result(
            "8P aggregate MB/s",
            params,
            [total / MB / t for t in times["ours"]],
            [total / MB / t for t in times["floor"]],
            "informational",
            float("inf"),
            unit="MB/s",
            notes=notes,
        )
    )


if __name__ == "__main__":
    worker_main()
