"""The local Convex stand-in's indexed reads answer exactly what convex-test's full scans answer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_indexed_reads_match_convex_test_on_random_operations() -> None:
    done = subprocess.run(
        ["node", str(ROOT / "localconvex" / "check_indexed_reads.mjs"), "1500"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"steps": 1500, "mismatches": 0}
