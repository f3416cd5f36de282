"""`python -m benchmarks [--quick] [--json PATH]`: every case next to its floor, in one run.

Starts its own local Convex server and LocalStack on free loopback ports, measures each case and
its floor alternately (so load on this shared machine hits both alike), and prints a table of
medians, spreads and ratios; the same numbers go to JSON. Timings are never asserted: the tests
only check that the suite runs (`tests/test_benchmarks_quick.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.cases import Result, Suite, run_suite
from convex_offload.devservers.local_convex import LocalConvex
from convex_offload.devservers.localstack import LocalStack

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    import subprocess

    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "uname": " ".join(platform.uname()),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "node": node,
        "convex_test": _npm_version("convex-test"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _npm_version(package: str) -> str:
    try:
        manifest = json.loads((Path("node_modules") / package / "package.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return str(manifest.get("version", "unknown"))


def load_average() -> str:
    """The 1/5/15-minute load averages: how busy this shared machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def render(results: list[Result], console: Console) -> None:
    """The table."""
    table = Table(title="convex-offload benchmarks (medians; spread = interquartile range)")
    for column in ("case", "params", "ours", "spread", "floor", "ratio", "target", "met"):
        table.add_column(column, justify="left" if column in ("case", "params", "target") else "right")
    for r in results:
        table.add_row(
            r.case,
            r.params,
            r.ours_text,
            r.spread_text,
            r.floor_text,
            f"{r.ratio:.2f}×" if r.ratio is not None else "-",
            r.target,
            {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[r.met],
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the suite."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CI)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results (default {DEFAULT_JSON})"
    )
    parser.add_argument("--only", action="append", help="run only cases whose name starts with this")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    load_before = load_average()
    with LocalConvex() as convex, LocalStack(buckets=["bench"]) as localstack:
        suite = Suite(convex=convex, localstack=localstack, quick=args.quick, only=args.only or [])
        results = asyncio.run(run_suite(suite, progress=lambda text: console.print(f"[dim]{text}[/dim]")))
    render(results, console)
    about = machine()
    about["load_average_before"] = load_before
    about["load_average_after"] = load_average()
    console.print(
        f"{about['date']}: {about['cpu']}, {about['cores']} cores; {about['uname']}; "
        f"Python {about['python']}, Node {about['node']}, convex-test {about['convex_test']}; "
        f"load average {about['load_average_before']} before, {about['load_average_after']} after"
    )
    document = {"machine": about, "quick": args.quick, "results": [r.to_json() for r in results]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2))
    console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
