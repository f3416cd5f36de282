"""The benchmark suite runs end to end in its quick mode (so it cannot rot); timings are not judged."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

CASES = {
    "1 save with attachments",
    "1 checksum: SHA-256 (ours) vs CRC32",
    "2 vs naive sequential",
    "2 vs naive, bucket 20 ms away",
    "2 vs naive, bucket 50 ms away",
    "2 ceiling here: boto3 × 16 vs naive, bucket 20 ms away",
    "2 ceiling here: boto3 × 16 vs naive, bucket 50 ms away",
    "3 re-save unchanged",
    "4 text-only save",
    "5 restore (cold)",
    "5 restore (cached)",
    "5 restore (urls mode)",
    "5 restore (urls mode, signing)",
    "1L save, local bucket",
    "5L restore (cold), local",
    "5L restore (cached), local",
    "6 CPU per MB",
    "7 peak memory, save",
    "7 peak memory, restore",
    "8 scale: CPU per message",
    "8 scale: wall per message",
    "8 scale: plain store, wall",
    "8T pages: wall per message",
    "8T pages: offloader's share per message",
    "8T pages: plain store, wall per message",
    "8P 4 writer processes",
    "8P aggregate MB/s",
    "8G gc: peak RSS",
    "8G gc: wall per object",
    "8G verify: peak RSS",
    "8G verify: wall per object",
    "8G gc: CPU per object",
    "8G verify: CPU per object",
}


def test_quick_benchmarks_produce_every_case(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(output.read_text())
    assert document["quick"] is True
    assert document["machine"]["cores"]
    results = document["results"]
    assert {r["case"] for r in results} == CASES
    for r in results:
        assert r["ours"], r
        assert all(math.isfinite(v) and v >= 0 for v in r["ours"] + r["floor"]), r
        assert r["ratio"] is not None, r
        assert math.isfinite(r["ratio"]), r
    resave = next(r for r in results if r["case"] == "3 re-save unchanged")
    assert resave["notes"]["uploads_during_resaves"] == 0
    assert "convex-offload benchmarks" in done.stdout
