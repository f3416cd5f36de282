"""Waiting on conditions the tests need, never on the clock alone."""

from __future__ import annotations

import asyncio
import time

from convex_offload import OffloadingStore


async def leases_expired(store: OffloadingStore, *, within: float) -> None:
    """Wait until every lease and claim a dead process left has run out (what gc waits for),
    polling the registry; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        now_ms = time.time() * 1000
        live = [
            r
            async for r in store.registry.rows()
            if r.state != "committed" and (r.expires_at_ms or 0) >= now_ms
        ]
        if not live:
            return
        assert time.monotonic() < deadline, f"leases never expired: {live[:3]}"
        await asyncio.sleep(0.1)
