"""The `convex-offload` command line.

Exit codes mean something: 0 all is well, 1 problems were found (or the command failed),
2 usage or configuration error. Every command can answer in JSON (`--json`) for scripts.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from convex_offload.config import OffloadConfig
from convex_offload.errors import BucketConfigError, ConvexOffloadError

if TYPE_CHECKING:
    from convex_offload.offload.store import OffloadingStore

app = typer.Typer(
    name="convex-offload",
    help="Keep Mastra conversations in Convex small: attachments go to S3, R2, Convex files or a folder.",
    epilog="Examples: convex-offload doctor -c convex-offload.toml | convex-offload migrate --dry-run "
    "| convex-offload gc --grace 2h | convex-offload verify --deep --json",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


@app.callback()
def _root() -> None:
    """Keep Mastra conversations in Convex small: attachments go to S3, R2, Convex files or a folder."""


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML configuration (buckets, rules, Convex URL). CONVEX_OFFLOAD_* and CONVEX_URL / "
        "CONVEX_ADMIN_KEY environment variables apply too and win over the file.",
        exists=False,
        dir_okay=False,
    ),
]
T = TypeVar("T")


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


@app.command()
def demo(
    as_json: JsonOption = False,
    keep: Annotated[
        Path | None, typer.Option("--bucket-dir", help="Keep the demo's bucket in this folder.")
    ] = None,
) -> None:
    """Run an image chat on a local Convex server and a local folder bucket (the main job).

    Prints, per message, the size the app saved, the size of the record Convex stored, and
    whether reading it back restored the attachments byte for byte.
    """
    from convex_offload.demo import run_demo
    from convex_offload.devservers.local_convex import LocalConvex

    with LocalConvex() as server:
        result = asyncio.run(run_demo(server.url, server.admin_key, keep))
    if as_json:
        _emit_json(
            {
                "thread": result.thread_id,
                "ok": result.ok,
                "uploads": result.uploads,
                "objects": result.objects,
                "bucket_bytes": result.bucket_bytes,
                "messages": [row.__dict__ for row in result.rows],
            }
        )
    else:
        table = Table(title=f"Image chat {result.thread_id}: saved through the offloader, read back")
        table.add_column("message")
        table.add_column("role")
        table.add_column("offloaded", justify="right")
        table.add_column("saved, bytes", justify="right")
        table.add_column("in Convex, bytes", justify="right")
        table.add_column("restored exactly")
        for row in result.rows:
            table.add_row(
                row.message_id.rsplit("-", 1)[-1],
                row.role,
                str(row.attachments),
                f"{row.saved_bytes:,}",
                f"{row.stored_bytes:,}",
                "[green]yes[/green]" if row.restored_exactly else "[red]NO[/red]",
            )
        console.print(table)
        console.print(
            f"{result.objects} objects ({result.bucket_bytes:,} bytes) in the local bucket "
            f"{result.bucket_path}; {result.uploads} uploads for {2 * len(result.rows)} saves "
            "(every message was saved twice, as Mastra re-saves history)."
        )
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEMS)


def _config(path: Path | None) -> OffloadConfig:
    config = OffloadConfig.load(path)
    if not config.buckets:
        raise BucketConfigError("buckets: no bucket is configured")
    if config.convex_url is None or config.convex_admin_key is None:
        raise BucketConfigError(
            "convex_url / convex_admin_key: not configured (or set CONVEX_URL, CONVEX_ADMIN_KEY)"
        )
    return config


def _with_store(config: OffloadConfig, work: Callable[[OffloadingStore], Awaitable[T]]) -> T:
    from convex_offload.offload.store import OffloadingStore

    async def run() -> T:
        async with OffloadingStore.connect(config) as store:
            return await work(store)

    return asyncio.run(run())


@contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar with counts and bytes when stdout is a terminal (and not --json)."""
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None, counts="")

        def update(what: str, count: int, size: int) -> None:
            bar.update(task, counts=f"{count:,} {what}" + (f", {size / (1 << 20):,.1f} MiB" if size else ""))

        yield update


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2d` (or plain seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 1h or 2d")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


@app.command()
def migrate(
    config_path: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would move; change nothing.")
    ] = False,
    state: Annotated[
        Path | None, typer.Option("--state", help="Progress file: an interrupted run resumes from it.")
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", help="Only this table (repeatable): mastra_messages, mastra_threads, ..."),
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", min=1, max=500, help="Records read per page.")
    ] = 50,
    progress_lines: Annotated[
        bool, typer.Option("--progress-lines", help="Print one JSON line per finished page (for scripts).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Offload inline base64 already stored in Convex, in place.

    Resumable (--state), idempotent, safe to run while the app writes: records written by the
    TypeScript app (or before this library) are rewritten only if they still hold what was read.
    Exit 1 if any record could not be migrated.
    """
    from convex_offload.offload.lifecycle import SCANNED_TABLES
    from convex_offload.offload.operations import MigrateReport
    from convex_offload.offload.operations import migrate as run_migrate

    config = _config(config_path)
    tables = table or list(SCANNED_TABLES)
    unknown = [t for t in tables if t not in SCANNED_TABLES]
    if unknown:
        raise typer.BadParameter(f"unknown table {unknown[0]!r}; one of {', '.join(SCANNED_TABLES)}")

    def on_page(name: str, pages: int) -> None:
        if progress_lines:
            sys.stdout.write(json.dumps({"event": "page", "table": name, "pages": pages}) + "\n")
            sys.stdout.flush()

    with _progress(not as_json and not progress_lines, "migrating") as progress:
        report: MigrateReport = _with_store(
            config,
            lambda store: run_migrate(
                store,
                dry_run=dry_run,
                state_path=state,
                tables=tables,
                page_size=page_size,
                progress=progress,
                on_page=on_page,
            ),
        )
    if as_json or progress_lines:
        _emit_json({"event": "done", "dry_run": dry_run, **report.__dict__})
    else:
        table_view = Table(title="migrate (dry run: nothing changed)" if dry_run else "migrate")
        table_view.add_column("records scanned", justify="right")
        table_view.add_column("with inline payloads", justify="right")
        table_view.add_column("migrated" if not dry_run else "would migrate", justify="right")
        table_view.add_column("attachments", justify="right")
        table_view.add_column("bytes offloaded", justify="right")
        table_view.add_column("conflicts", justify="right")
        table_view.add_column("failed", justify="right")
        table_view.add_row(
            f"{report.scanned:,}",
            f"{report.candidates:,}",
            f"{report.migrated:,}",
            f"{report.payloads:,}",
            f"{report.bytes_offloaded:,}",
            str(report.conflicts),
            str(report.failed),
        )
        console.print(table_view)
        for line in report.errors[:20]:
            errors.print(f"[red]failed:[/red] {line}")
        if report.conflicts:
            console.print("Records changed while being migrated were left alone: run migrate again.")
    raise typer.Exit(EXIT_PROBLEMS if report.failed else EXIT_OK)


@app.command()
def gc(
    config_path: ConfigOption = None,
    grace: Annotated[
        str, typer.Option("--grace", help="Leave objects younger than this (90s, 15m, 1h, 2d).")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete objects no record references (garbage collection).

    Catches uploads whose record was never written (a crash) and leftovers of records deleted
    elsewhere. Never deletes an object a record references, even one written during the run.
    """
    config = _config(config_path)
    period = parse_duration(grace)
    with _progress(not as_json, "collecting") as progress:
        report = _with_store(
            config,
            lambda store: store.lifecycle.gc(
                grace=period,
                dry_run=dry_run,
                progress=(lambda what, n: progress(what, n, 0)) if progress else None,
            ),
        )
    if as_json:
        _emit_json({"dry_run": dry_run, **report.__dict__})
    else:
        view = Table(title="gc (dry run: nothing deleted)" if dry_run else "gc")
        for column in (
            "records",
            "objects",
            "referenced",
            "younger than grace",
            "orphans",
            "deleted",
            "kept",
            "failed",
            "freed",
        ):
            view.add_column(column, justify="right")
        view.add_row(
            f"{report.records_scanned:,}",
            f"{report.objects_scanned:,}",
            f"{report.referenced:,}",
            f"{report.young:,}",
            f"{len(report.orphans):,}",
            f"{len(report.deleted):,}",
            f"{len(report.kept):,}",
            f"{len(report.failed):,}",
            f"{report.bytes_freed:,} B",
        )
        console.print(view)
        if report.expired_leases or report.reconciled_rows:
            console.print(
                f"{report.expired_leases} expired leases dropped, "
                f"{report.reconciled_rows} reference rows reconciled."
            )
    raise typer.Exit(EXIT_PROBLEMS if report.failed else EXIT_OK)


@app.command()
def verify(
    config_path: ConfigOption = None,
    deep: Annotated[bool, typer.Option("--deep", help="Download every object and check its sha256.")] = False,
    grace: Annotated[
        str, typer.Option("--grace", help="Unreferenced objects younger than this are not reported.")
    ] = "15m",
    as_json: JsonOption = False,
) -> None:
    """Check every attachment reference resolves; exit 1 if anything is wrong.

    Sizes (and sha256 with --deep) must match the manifests, no record may be over the limit, and
    no object may be left that no record references (what deleting a conversation promises).
    """
    from convex_offload.offload.operations import verify as run_verify

    config = _config(config_path)
    period = parse_duration(grace)
    with _progress(not as_json, "verifying") as progress:
        report = _with_store(
            config, lambda store: run_verify(store, deep=deep, grace=period, progress=progress)
        )
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "records": report.records,
                "references": report.references,
                "objects": report.objects,
                "problems": [p.__dict__ for p in report.problems],
            }
        )
    else:
        console.print(
            f"{report.records:,} records, {report.references:,} references, "
            f"{report.objects:,} objects checked"
            + (" (sha256 of every object)" if deep else " (sizes; --deep also checks sha256)")
        )
        if report.ok:
            console.print("[green]no problems[/green]")
        else:
            view = Table(title=f"{len(report.problems)} problem(s)")
            for column in ("kind", "record", "bucket", "key", "detail"):
                view.add_column(column)
            for p in report.problems[:200]:
                view.add_row(p.kind, p.record, p.bucket, p.key, p.detail)
            console.print(view)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEMS)


@app.command()
def stats(
    config_path: ConfigOption = None,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="How many of the largest records.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Records, attachments and bytes per table and per bucket, and the largest records."""
    from convex_offload.offload.operations import stats as run_stats

    config = _config(config_path)
    with _progress(not as_json, "counting") as progress:
        report = _with_store(config, lambda store: run_stats(store, top=top, progress=progress))
    if as_json:
        _emit_json(report.to_json())
        raise typer.Exit(EXIT_OK)
    tables = Table(title="records")
    for column in ("table", "records", "bytes", "with attachments", "references", "inline base64"):
        tables.add_column(column, justify="right" if column != "table" else "left")
    for name, t in report.tables.items():
        tables.add_row(
            name,
            f"{t.records:,}",
            f"{t.bytes:,}",
            f"{t.with_attachments:,}",
            f"{t.references:,}",
            f"{t.inline_base64:,}",
        )
    console.print(tables)
    buckets = Table(title="buckets")
    for column in ("bucket", "objects", "bytes"):
        buckets.add_column(column, justify="right" if column != "bucket" else "left")
    for name, b in report.buckets.items():
        buckets.add_row(name, f"{b.objects:,}", f"{b.bytes:,}")
    console.print(buckets)
    if report.reference_rows:
        console.print(
            "reference rows: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.reference_rows.items()))
        )
    largest = Table(title=f"largest {len(report.largest)} records")
    largest.add_column("record")
    largest.add_column("bytes", justify="right")
    for label, size in report.largest:
        largest.add_row(label, f"{size:,}")
    console.print(largest)


@app.command()
def doctor(config_path: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check the configuration can work; exit 1 on any problem.

    Convex must be reachable and accept the key; each bucket is probed with a put/get/delete, and
    its encryption and CORS are compared with the config.
    """
    from convex_offload.doctor import run_doctor

    config = OffloadConfig.load(config_path)
    checks = asyncio.run(run_doctor(config))
    problems = [c for c in checks if c.status == "problem"]
    if as_json:
        _emit_json({"ok": not problems, "checks": [c.to_json() for c in checks]})
    else:
        view = Table(title="doctor")
        view.add_column("check")
        view.add_column("status")
        view.add_column("detail")
        colour = {"ok": "green", "problem": "red", "skipped": "dim"}
        for c in checks:
            view.add_row(c.name, f"[{colour[c.status]}]{c.status}[/{colour[c.status]}]", c.detail)
        console.print(view)
    raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)


def main() -> None:
    """Entry point of the `convex-offload` script."""
    try:
        app()
    except BucketConfigError as exc:
        errors.print(f"[red]configuration error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(EXIT_USAGE)
    except ConvexOffloadError as exc:
        errors.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", markup=True, highlight=False)
        sys.exit(EXIT_PROBLEMS)
