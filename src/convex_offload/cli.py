"""The `convex-offload` command line.

Exit codes mean something: 0 all is well, 1 problems were found (or the command failed),
2 usage or configuration error. Every command can answer in JSON (`--json`) for scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from convex_offload.errors import BucketConfigError, ConvexOffloadError

app = typer.Typer(
    name="convex-offload",
    help="Keep Mastra conversations in Convex small: attachments go to S3, R2, Convex files or a folder.",
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


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


@app.command()
def demo(
    as_json: JsonOption = False,
    keep: Annotated[
        Path | None, typer.Option("--bucket-dir", help="Keep the demo's bucket in this folder.")
    ] = None,
) -> None:
    """Run an image chat on embedded defaults: a local Convex server and a local folder bucket.

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


def main() -> None:
    """Entry point of the `convex-offload` script."""
    try:
        app()
    except BucketConfigError as exc:
        errors.print(f"[red]configuration error:[/red] {exc}")
        sys.exit(EXIT_USAGE)
    except ConvexOffloadError as exc:
        errors.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        sys.exit(EXIT_PROBLEMS)
