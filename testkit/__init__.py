"""Test-only helpers shared by tests/ and benchmarks/ (never shipped in the wheel)."""
