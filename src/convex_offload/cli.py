"""The `convex-offload` command line.

Exit codes mean something: 0 all is well, 1 problems were found (or the command failed),
2 usage or configuration error. Every command can answer in JSON (`--json`) for scripts: one
document whose `ok` agrees with the exit code; a failure prints `{"ok": false, "error": {...}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from convex_offload.config import OffloadConfig
from convex_offload.errors import BucketConfigError, ConvexOffloadError, DevToolsError, ProjectSetupError

if TYPE_CHECKING:
    from convex_offload.offload.store import OffloadingStore

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="convex-offload",
    epilog=(
        "Examples:\n\n"
        "  convex-offload demo\n"
        "  convex-offload init ./my-app\n"
        "  convex-offload dev --dir ./my-app/convex\n"
        "  convex-offload doctor -c convex-offload.toml\n"
        "  convex-offload migrate --dry-run -c convex-offload.toml\n"
        "  convex-offload verify --deep --json -c convex-offload.toml\n"
        "  convex-offload gc --grace 2h -c convex-offload.toml\n\n"
        "Run 'convex-offload COMMAND --help' for a command's options and examples."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
errors = Console(stderr=True, highlight=False)
T = TypeVar("T")


def _show_version(value: bool) -> None:
    if value:
        from convex_offload import __version__

        console.print(f"convex-offload {__version__}", highlight=False)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Keep Mastra conversations in Convex small: attachments go to S3, R2, Convex files or a folder.

    Every command but demo, init and dev reads a TOML file (-c/--config) and the environment (CONVEX_URL,
    CONVEX_ADMIN_KEY, CONVEX_OFFLOAD_*). Exit codes: 0 all is well, 1 problems found, 2 usage or
    configuration error. --json prints one JSON document for scripts.
    """


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (its 'ok' agrees with the exit code).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="<file>",
        help="TOML configuration: buckets, rules, Convex URL and key. The environment (CONVEX_URL, "
        "CONVEX_ADMIN_KEY, CONVEX_OFFLOAD_*) applies too and wins over the file.",
        dir_okay=False,
    ),
]


def _examples(*lines: str, note: str) -> str:
    # The unindented note also keeps typer's cleandoc from stripping the examples' indent.
    return "Examples:\n\n" + "\n".join(f"  {line}" for line in lines) + f"\n\n{note}"


# --- plumbing --------------------------------------------------------------------------------


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _emit_line(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def _fail(code: int, label: str, exc: Exception, as_json: bool) -> NoReturn:
    plain = isinstance(exc, BucketConfigError | DevToolsError | ProjectSetupError)
    message = _one_line(str(exc)) if plain else f"{type(exc).__name__}: {exc}"
    errors.print(f"[red]{label}:[/red] {escape(message)}", markup=True, soft_wrap=True)
    if as_json:  # one line, so it also ends a --progress-lines stream
        _emit_line({"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}})
    raise typer.Exit(code)


@contextmanager
def _reporting_errors(as_json: bool) -> Iterator[None]:
    """Configuration errors exit 2, anything else the library raises exits 1; both said plainly.

    The library's errors never carry secrets, so their messages are safe to print.
    """
    from convex_offload.devservers.localstack import LocalStackError

    try:
        yield
    except BucketConfigError as exc:
        _fail(EXIT_USAGE, "configuration error", exc, as_json)
    except (DevToolsError, ProjectSetupError) as exc:
        _fail(EXIT_USAGE, "cannot run", exc, as_json)
    except LocalStackError as exc:
        _fail(EXIT_USAGE, "cannot run", DevToolsError(_one_line(str(exc))), as_json)
    except ConvexOffloadError as exc:
        _fail(EXIT_PROBLEMS, "error", exc, as_json)


def _one_line(text: str) -> str:
    """The first line of a message (long server logs stay out of a one-line reason)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


def _config(path: Path | None) -> OffloadConfig:
    """The configuration, with what every command but demo needs: Convex URL and key, a bucket."""
    config = OffloadConfig.load(path)
    if config.convex_url is None:
        raise BucketConfigError("convex_url: not set (in the config file, or CONVEX_URL)")
    if not config.convex_url.startswith(("http://", "https://")):
        raise BucketConfigError(f"convex_url: {config.convex_url!r} is not an http(s) URL")
    if config.convex_admin_key is None or not config.convex_admin_key.get_secret_value().strip():
        raise BucketConfigError("convex_admin_key: not set (in the config file, or CONVEX_ADMIN_KEY)")
    if not config.buckets:
        raise BucketConfigError("buckets: none configured (add a [buckets.<name>] table)")
    return config


def _with_store(config: OffloadConfig, work: Callable[[OffloadingStore], Awaitable[T]]) -> T:
    from convex_offload.offload.store import OffloadingStore

    async def run() -> T:
        async with OffloadingStore.connect(config) as store:
            return await work(store)

    return asyncio.run(run())


class _Bar:
    """A progress line (what, counts, bytes, time); does nothing when not shown."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        """Whether a bar is on screen (callers pass no callback otherwise)."""
        return self._progress is not None

    def advance(self, what: str, count: int, size: int = 0) -> None:
        """`count` of `what` done so far, `size` bytes."""
        if self._progress is not None and self._task is not None:
            counts = f"{count:,} {what}" + (f", {decimal(size)}" if size else "")
            self._progress.update(self._task, counts=counts)

    def describe(self, text: str) -> None:
        """What is being worked on now."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def _progress(wanted: bool, description: str) -> Iterator[_Bar]:
    """A progress bar on stdout when `wanted` and stdout is a terminal; gone when done."""
    if not wanted or not console.is_terminal:
        yield _Bar()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield _Bar(progress, progress.add_task(description, total=None, counts=""))


def parse_duration(text: str, option: str = "--grace") -> timedelta:
    """`90s`, `15m`, `1h`, `2d` (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration like 90s, 15m, 1h or 2d", param_hint=f"'{option}'"
        )
    value, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def _facts(title: str, rows: list[tuple[str, str]]) -> Table:
    view = Table(title=title, show_header=False, title_justify="left")
    view.add_column("what")
    view.add_column("value", justify="right")
    for row in rows:
        view.add_row(*row)
    return view


def _note(line: str) -> None:
    """A progress line for the user, on stderr (stdout stays for results and JSON)."""
    errors.print(escape(line), style="dim", soft_wrap=True)


# --- commands --------------------------------------------------------------------------------


@app.command(
    epilog=_examples(
        "convex-offload demo",
        "convex-offload demo --json",
        "convex-offload demo --bucket-dir ./bucket",
        note="Needs Node.js for the local Convex server; no bucket or Convex account.",
    )
)
def demo(
    as_json: JsonOption = False,
    keep: Annotated[
        Path | None,
        typer.Option("--bucket-dir", metavar="<dir>", help="Keep the demo's bucket in this folder."),
    ] = None,
) -> None:
    """Run an image chat through the offloader on a local Convex server and a folder bucket.

    Starts its own local servers (nothing to configure). Prints, per message, the size the app
    saved, the size of the record Convex stored, and whether reading it back restored the
    attachments byte for byte. Exit 1 if any message did not come back exactly.
    """
    from convex_offload.demo import run_demo
    from convex_offload.devservers.local_convex import LocalConvex
    from convex_offload.devservers.runtime import prepare_runtime

    with _reporting_errors(as_json):
        ready = prepare_runtime(progress=_note)
        with LocalConvex(functions=ready.functions) as server:
            result = asyncio.run(run_demo(server.url, server.admin_key, keep))
    if as_json:
        _emit_json(
            {
                "ok": result.ok,
                "thread": result.thread_id,
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


@app.command(
    name="init",
    epilog=_examples(
        "convex-offload init",
        "convex-offload init ./my-app --dry-run",
        "convex-offload init ./my-app --force --json",
        note="Then: npm install (or npm ci), npx convex deploy; convex-offload dev for local work. "
        "Exit 1 if package.json needs a change, 2 if files would be overwritten without --force.",
    ),
)
def init_project(
    directory: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="The Convex project (where package.json is).")
    ] = Path(),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that exist with other contents.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Put convex-offload's Convex functions into a project's convex/ folder.

    A new convex/ gets the whole folder (and package.json + package-lock.json when the project
    has none); an existing one gets offload/ and mastra/*.ts, and the tables its schema.ts lacks
    are printed, never written. Also checks package.json's @mastra/convex, @mastra/core and
    convex versions against the ones this release supports.
    """
    from convex_offload.project import apply_init, plan_init

    with _reporting_errors(as_json):
        plan = plan_init(directory, force=force)
        if not dry_run:
            apply_init(plan)
        else:
            plan.refuse_conflicts()
    problems = plan.version_problems
    if as_json:
        _emit_json({"ok": not problems, "dry_run": dry_run, **plan.to_json()})
        raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)
    where = f"{plan.functions_dir}/ ({'new' if plan.new_folder else 'existing'} folder)"
    console.print(f"{'init, dry run: nothing written' if dry_run else 'init'}: {plan.project} → {where}")
    for step in plan.steps:
        verb = "CONFLICT" if step.action == "conflict" else step.action
        shown = verb if not dry_run or step.action in ("unchanged", "conflict") else f"would {verb}"
        console.print(f"  {shown:<16} {step.path}", highlight=False)
    if plan.schema is not None:
        if plan.schema.missing_tables:
            console.print()
            console.print(plan.schema.text, highlight=False, markup=False)
        else:
            console.print(f"{plan.schema.path} already has every table convex-offload needs")
    for check in plan.versions:
        colour = {"ok": "green", "wider": "yellow", "unsupported": "red", "missing": "red"}[check.status]
        console.print(f"[{colour}]{check.status}[/{colour}] {escape(check.advice)}", soft_wrap=True)
    console.print("next: npm install, then npx convex deploy; for local work: convex-offload dev")
    raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)


@app.command(
    epilog=_examples(
        "convex-offload dev",
        "convex-offload dev --dir ./convex --port 3210 > .env.local",
        "convex-offload dev -c convex-offload.toml --s3",
        note="stdout is KEY=value lines (a .env file); notes go to stderr. Ctrl-C or SIGTERM stops it.",
    )
)
def dev(
    functions_dir: Annotated[
        Path, typer.Option("--dir", metavar="<dir>", help="Your Convex functions folder.")
    ] = Path("convex"),
    port: Annotated[
        int, typer.Option("--port", metavar="<n>", min=0, max=65535, help="Convex's port (0: a free one).")
    ] = 0,
    bucket_dir: Annotated[
        Path,
        typer.Option("--bucket-dir", metavar="<dir>", help="Folder of the local bucket (without -c)."),
    ] = Path(".convex-offload/bucket"),
    bucket_port: Annotated[
        int,
        typer.Option(
            "--bucket-port", metavar="<n>", min=0, max=65535, help="The bucket server's port (0: a free one)."
        ),
    ] = 0,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="<file>",
            dir_okay=False,
            help="Serve this config's local buckets (with --s3 also its s3 buckets), not --bucket-dir.",
        ),
    ] = None,
    s3: Annotated[
        bool, typer.Option("--s3", help="Also start LocalStack S3 with the buckets (needs LocalStack).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a local Convex server on your own convex/ folder, and serve local buckets over HTTP.

    Prints CONVEX_URL, CONVEX_ADMIN_KEY and CONVEX_OFFLOAD_BUCKETS__* lines for your app and its
    tests, then runs until Ctrl-C or SIGTERM. Local buckets get signed, expiring URLs, so the
    "urls" restore mode works in a browser. Data lives in memory and is gone when it stops.
    """
    from convex_offload.devservers.dev import dev_servers, stop_requests, wait_until_stopped

    with _reporting_errors(as_json), stop_requests() as stop:
        config = OffloadConfig.load(config_path) if config_path is not None else None
        with dev_servers(
            functions_dir,
            port=port,
            bucket_dir=bucket_dir,
            bucket_port=bucket_port,
            config=config,
            s3=s3,
            progress=_note,
        ) as servers:
            if as_json:
                _emit_line({"ok": True, "event": "ready", "env": servers.env})
            else:
                for key, value in servers.env.items():
                    sys.stdout.write(f"{key}={value}\n")
                sys.stdout.flush()
                _note(f"serving {functions_dir} at {servers.convex.url}; Ctrl-C stops")
            code = wait_until_stopped(servers, stop)
        if code:
            raise DevToolsError(f"the local Convex server stopped by itself (exit {code})")
        _note("stopped")
    raise typer.Exit(EXIT_OK)


@app.command(
    epilog=_examples(
        "convex-offload migrate --dry-run -c convex-offload.toml",
        "convex-offload migrate --state migrate.json -c convex-offload.toml",
        "convex-offload migrate --table mastra_messages --page-size 20 --json",
        note="With --state, an interrupted run (Ctrl-C, a crash, kill -9) resumes where its last "
        "page ended; without it, a rerun rescans and finds nothing left to move.",
    )
)
def migrate(
    config_path: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would move; change nothing.")
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="<file>",
            help="Progress file, saved after every page: a rerun resumes from it.",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            metavar="<table>",
            help="Only this table (repeatable): mastra_messages, mastra_threads, mastra_resources, "
            "mastra_workflow_snapshots, mastra_background_tasks. Default: all.",
        ),
    ] = None,
    page_size: Annotated[
        int, typer.Option("--page-size", metavar="<n>", min=1, max=500, help="Records read per page.")
    ] = 50,
    progress_lines: Annotated[
        bool,
        typer.Option(
            "--progress-lines",
            help='Print a JSON line per finished page ({"event": "page", "table": ..., "pages": n}) '
            'and a last {"event": "done", ...} line with the report; flushed as they happen.',
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Offload inline base64 already stored in Convex, in place.

    For records written by the TypeScript app or before this library. Resumable (--state),
    idempotent, and safe while the app writes: a record is rewritten only if it still holds what
    was read (a changed one is counted as a conflict and left for the next run).
    Exit 1 if any record could not be migrated.
    """
    from convex_offload.offload.kinds import RecordKinds
    from convex_offload.offload.operations import MigrateReport
    from convex_offload.offload.operations import migrate as run_migrate

    known = [kind.storage.table for kind in RecordKinds.default()]
    tables = table or known
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown table {unknown[0]!r}; one of {', '.join(known)}", param_hint="'--table'"
        )
    as_document = as_json or progress_lines
    with _reporting_errors(as_document), _progress(not as_document, "migrating") as bar:
        config = _config(config_path)

        def on_page(name: str, pages: int) -> None:
            if progress_lines:
                _emit_line({"event": "page", "table": name, "pages": pages})
            bar.describe(f"migrating {name}, page {pages}")

        report: MigrateReport = _with_store(
            config,
            lambda store: run_migrate(
                store,
                dry_run=dry_run,
                state_path=state,
                tables=tables,
                page_size=page_size,
                progress=(lambda what, n, size: bar.advance(f"{what} migrated", n, size))
                if bar.shown
                else None,
                on_page=on_page,
            ),
        )
    document = {"ok": report.failed == 0, "dry_run": dry_run, **report.__dict__}
    if progress_lines:
        _emit_line({"event": "done", **document})
    elif as_json:
        _emit_json(document)
    else:
        console.print(
            _facts(
                "migrate: dry run, nothing changed" if dry_run else "migrate",
                [
                    ("records scanned", f"{report.scanned:,}"),
                    ("with inline payloads", f"{report.candidates:,}"),
                    ("would migrate" if dry_run else "migrated", f"{report.migrated:,}"),
                    ("attachments offloaded", f"{report.payloads:,}"),
                    ("bytes offloaded", f"{report.bytes_offloaded:,}"),
                    ("record bytes before", f"{report.bytes_before:,}"),
                    ("record bytes after", "-" if dry_run else f"{report.bytes_after:,}"),
                    ("changed while migrating (conflicts)", f"{report.conflicts:,}"),
                    ("failed", f"{report.failed:,}"),
                ],
            )
        )
        for line in report.errors[:20]:
            errors.print(f"[red]failed:[/red] {escape(line)}", markup=True, soft_wrap=True)
        if len(report.errors) > 20:
            errors.print(f"... and {len(report.errors) - 20} more (--json lists all)")
        if report.conflicts:
            console.print(
                "Records the app changed while they were being migrated were left alone: run again."
            )
    raise typer.Exit(EXIT_PROBLEMS if report.failed else EXIT_OK)


@app.command(
    epilog=_examples(
        "convex-offload gc --dry-run -c convex-offload.toml",
        "convex-offload gc --grace 2h -c convex-offload.toml",
        "convex-offload gc --grace 1d --json",
        note="Exit 0 also when it deleted things; 1 only if a deletion failed.",
    )
)
def gc(
    config_path: ConfigOption = None,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="<duration>",
            help="Leave objects younger than this alone (90s, 15m, 1h, 2d): their record may be on its way.",
        ),
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete objects no record references (garbage collection).

    Drops expired leases of writers that died, reconciles references with the records, and
    deletes unreferenced objects older than --grace: uploads whose record was never written and
    leftovers of records deleted elsewhere. Never deletes an object a record references, even one
    written during the run, nor objects under keys this library did not write.
    """
    period = parse_duration(grace)
    with _reporting_errors(as_json), _progress(not as_json, "collecting") as bar:
        config = _config(config_path)
        report = _with_store(
            config,
            lambda store: store.lifecycle.gc(
                grace=period,
                dry_run=dry_run,
                progress=bar.advance if bar.shown else None,
            ),
        )

    def objects(keys: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"bucket": bucket, "key": key} for bucket, key in keys]

    if as_json:
        _emit_json(
            {
                "ok": not report.failed,
                "dry_run": dry_run,
                "grace_seconds": period.total_seconds(),
                **report.__dict__,
                "orphans": objects(report.orphans),
                "deleted": objects(report.deleted),
                "kept": objects(report.kept),
                "failed": objects(report.failed),
            }
        )
    else:
        console.print(
            _facts(
                "gc: dry run, nothing deleted" if dry_run else "gc",
                [
                    ("records scanned", f"{report.records_scanned:,}"),
                    ("objects scanned", f"{report.objects_scanned:,}"),
                    ("referenced", f"{report.referenced:,}"),
                    (f"younger than {grace}", f"{report.young:,}"),
                    ("unreferenced" + (", would delete" if dry_run else ""), f"{len(report.orphans):,}"),
                    ("deleted", f"{len(report.deleted):,}"),
                    ("kept (referenced again meanwhile)", f"{len(report.kept):,}"),
                    ("failed to delete", f"{len(report.failed):,}"),
                    ("bytes freed", f"{report.bytes_freed:,}"),
                    ("expired leases dropped", f"{report.expired_leases:,}"),
                    ("reference rows reconciled", f"{report.reconciled_rows:,}"),
                ],
            )
        )
        if dry_run and report.orphans:
            for bucket, key in report.orphans[:20]:
                console.print(f"would delete {bucket}:{key}", highlight=False)
            if len(report.orphans) > 20:
                console.print(f"... and {len(report.orphans) - 20} more (--json lists all)")
        for bucket, key in report.failed[:20]:
            errors.print(f"[red]could not delete[/red] {escape(bucket)}:{escape(key)}", markup=True)
    raise typer.Exit(EXIT_PROBLEMS if report.failed else EXIT_OK)


@app.command(
    epilog=_examples(
        "convex-offload verify -c convex-offload.toml",
        "convex-offload verify --deep --json -c convex-offload.toml",
        note="Problem kinds: missing, size, corrupt, over_limit, foreign_bucket, unreferenced.",
    )
)
def verify(
    config_path: ConfigOption = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Download every object and check its sha256 (slower).")
    ] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="<duration>",
            help="Unreferenced objects younger than this are not reported (an upload may be in flight).",
        ),
    ] = "15m",
    as_json: JsonOption = False,
) -> None:
    """Check every attachment reference resolves; exit 1 if anything is wrong.

    Each referenced object must exist with the size in its manifest (and the sha256, with
    --deep); no record may be over the size limit; and no object may be left that no record
    references (what deleting a conversation promises).
    """
    from convex_offload.offload.operations import verify as run_verify

    period = parse_duration(grace)
    with _reporting_errors(as_json), _progress(not as_json, "verifying") as bar:
        config = _config(config_path)
        report = _with_store(
            config,
            lambda store: run_verify(
                store, deep=deep, grace=period, progress=bar.advance if bar.shown else None
            ),
        )
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "deep": deep,
                "records": report.records,
                "references": report.references,
                "objects": report.objects,
                "problems": [p.__dict__ for p in report.problems],
            }
        )
    else:
        console.print(
            f"{report.records:,} records, {report.references:,} references, {report.objects:,} objects "
            + ("checked: sizes and sha256" if deep else "checked: sizes (--deep also checks sha256)")
        )
        if report.ok:
            console.print("[green]no problems[/green]")
        else:
            view = Table(title=f"{len(report.problems)} problem(s)", title_justify="left")
            view.add_column("kind")
            view.add_column("record")
            view.add_column("object", overflow="fold")
            view.add_column("detail")
            for p in report.problems[:200]:
                where = f"{p.bucket}:{p.key}" if p.key else p.bucket
                view.add_row(escape(p.kind), escape(p.record), escape(where), escape(p.detail))
            console.print(view)
            if len(report.problems) > 200:
                console.print(f"... and {len(report.problems) - 200} more (--json lists all)")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEMS)


@app.command(
    epilog=_examples(
        "convex-offload stats -c convex-offload.toml",
        "convex-offload stats --top 3 --json",
        note="Record bytes are Convex document sizes; bucket bytes are the stored objects' sizes.",
    )
)
def stats(
    config_path: ConfigOption = None,
    top: Annotated[
        int, typer.Option("--top", metavar="<n>", min=1, max=100, help="How many of the largest records.")
    ] = 10,
    as_json: JsonOption = False,
) -> None:
    """Records, attachments and bytes per table and per bucket, and the largest records."""
    from convex_offload.offload.operations import stats as run_stats

    with _reporting_errors(as_json), _progress(not as_json, "counting") as bar:
        config = _config(config_path)
        report = _with_store(
            config, lambda store: run_stats(store, top=top, progress=bar.advance if bar.shown else None)
        )
    if as_json:
        _emit_json({"ok": True, **report.to_json()})
        raise typer.Exit(EXIT_OK)
    tables = Table(title="records", title_justify="left")
    for column in ("table", "records", "bytes", "with attachments", "references", "inline base64"):
        tables.add_column(column, justify="left" if column == "table" else "right")
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
    buckets = Table(title="buckets", title_justify="left")
    for column in ("bucket", "objects", "bytes"):
        buckets.add_column(column, justify="left" if column == "bucket" else "right")
    for name, b in report.buckets.items():
        buckets.add_row(name, f"{b.objects:,}", f"{b.bytes:,}")
    console.print(buckets)
    if report.reference_rows:
        console.print(
            "reference rows: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.reference_rows.items()))
        )
    largest = Table(title=f"largest {len(report.largest)} records", title_justify="left")
    largest.add_column("record")
    largest.add_column("bytes", justify="right")
    for label, size in report.largest:
        largest.add_row(label, f"{size:,}")
    console.print(largest)


@app.command(
    epilog=_examples(
        "convex-offload doctor -c convex-offload.toml",
        "CONVEX_URL=https://my-app.convex.cloud CONVEX_ADMIN_KEY=... convex-offload doctor --json",
        note="The probe object is written under <prefix>_doctor/ and deleted again.",
    )
)
def doctor(config_path: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check the configuration can work; exit 1 on any problem.

    Convex must be reachable, accept the admin key and have this project's functions; each bucket
    is probed with a put, get and delete of a small object; the probe's encryption (sse,
    kms_key_id) and the bucket's CORS (cors_origins) are compared with the config.
    """
    from convex_offload.doctor import run_doctor

    with _reporting_errors(as_json):
        config = _config(config_path)
        checks = asyncio.run(run_doctor(config))
    problems = [c for c in checks if c.status == "problem"]
    if as_json:
        _emit_json({"ok": not problems, "checks": [c.to_json() for c in checks]})
    else:
        view = Table(title="doctor", title_justify="left")
        view.add_column("check")
        view.add_column("status")
        view.add_column("detail")
        colour = {"ok": "green", "problem": "red", "skipped": "dim"}
        for c in checks:
            view.add_row(
                escape(c.name), f"[{colour[c.status]}]{c.status}[/{colour[c.status]}]", escape(c.detail)
            )
        console.print(view)
        console.print(
            f"[red]{len(problems)} problem(s)[/red]" if problems else "[green]all checks passed[/green]"
        )
    raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)


def main() -> None:
    """Entry point of the `convex-offload` script."""
    # Retries and similar warnings go to stderr, one plain line each.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app(prog_name="convex-offload")
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
    except BucketConfigError as exc:  # raised outside a command's own reporting
        errors.print(f"[red]configuration error:[/red] {escape(str(exc))}", markup=True, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except (DevToolsError, ProjectSetupError) as exc:
        errors.print(f"[red]cannot run:[/red] {escape(_one_line(str(exc)))}", markup=True, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except ConvexOffloadError as exc:
        errors.print(
            f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}", markup=True, soft_wrap=True
        )
        sys.exit(EXIT_PROBLEMS)
