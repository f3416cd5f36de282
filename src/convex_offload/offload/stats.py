"""Counters of what the offloader did, for benchmarks, the CLI and the soak."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class OffloadStats:
    """What one offloader has done since it was made (every part of it counts here)."""

    payloads_found: int = 0
    offloaded: int = 0
    uploads: int = 0
    uploaded_bytes: int = 0
    dedup_skips: int = 0
    restored: int = 0
    fetches: int = 0
    fetched_bytes: int = 0
    cache_hits: int = 0
