"""The soaks' operations and what they may leave: one mixed operation on an offloading store, and
the ledger of what each message must hold (or may hold, after a write that failed)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from convex_offload.convex.values import dumps
from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.models import Message, MessageUpdate, Thread
from media import b64, data_url, image_bytes
from testkit.faultproxy import INTERNAL_ERROR, SLOW_DOWN, Fault

POOL = [image_bytes("png", 20_000 + 7_000 * (i % 5), seed=1000 + i) for i in range(12)]
OPERATIONS = ["save", "resave", "update", "delete", "delete_thread", "list", "thread"]
WEIGHTS = [40, 15, 12, 8, 2, 18, 5]
REFUSED = b'{"status":"error","errorMessage":"Server Error\\nUncaught Error: injected by the soak"}'
S3_FAULTS = [
    Fault("status", status=503, body=SLOW_DOWN),
    Fault("status", status=500, body=INTERNAL_ERROR),
    Fault("reset", after_bytes=0),
    Fault("reset", after_bytes=4096),
]
"""What the soaks inject on S3: throttling, server errors, connections cut before and in a body."""
CONVEX_FAULTS = [
    Fault("status", status=503, body=b"", content_type="text/plain"),
    Fault("reset", after_bytes=0),
    Fault("drop"),
    Fault("status", status=560, body=REFUSED, content_type="application/json"),
]
"""What the soaks inject on Convex: unavailable, cut, dropped, and a function that failed."""


@dataclass
class Ledger:
    """What the soak knows each message must hold (or may hold, after a write that failed)."""

    possible: dict[str, set[str | None]] = field(default_factory=dict)
    """message id → contents it may hold (None: absent)."""

    def acknowledged(self, mid: str, content: str | None) -> None:
        self.possible[mid] = {content}

    def uncertain(self, mid: str, content: str | None) -> None:
        self.possible.setdefault(mid, {None}).add(content)

    def to_json(self) -> dict[str, list[str | None]]:
        """As a worker process reports it."""
        return {mid: sorted(allowed, key=lambda c: c or "") for mid, allowed in self.possible.items()}


def content(rng: random.Random, n: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"turn {n} " + "lorem " * rng.randrange(1, 40)}]
    for _ in range(rng.choice([0, 1, 1, 2])):
        img = rng.choice(POOL)
        if rng.random() < 0.5:
            parts.append({"type": "file", "mimeType": "image/png", "data": b64(img)})
        else:
            parts.append({"type": "file", "url": data_url(img, "image/png"), "mediaType": "image/png"})
    return {"format": 2, "parts": parts}


async def run(
    op: str,
    n: int,
    rng: random.Random,
    store: OffloadingStore,
    threads: list[str],
    messages: dict[str, str],
    ledger: Ledger,
) -> None:
    """One operation; the ledger learns what it acknowledged (or may have done, if it raised)."""
    if op in ("save", "resave", "update", "delete") and not messages:
        op = "save"
    if op == "save":
        thread = rng.choice(threads)
        mid = f"{thread}-{n}"
        message = Message(
            id=mid, thread_id=thread, resource_id="soak-user", role="user", content=content(rng, n)
        )
        await attempt(ledger, mid, dumps(message.content), store.memory.save_messages([message]))
        messages[mid] = thread
    elif op == "resave":
        mid = rng.choice(sorted(messages))
        known = [c for c in ledger.possible.get(mid, set()) if c is not None]
        if len(known) == 1:
            message = Message(
                id=mid,
                thread_id=messages[mid],
                resource_id="soak-user",
                role="user",
                content=json.loads(known[0]),
            )
            await attempt(ledger, mid, known[0], store.memory.save_messages([message]))
    elif op == "update":
        mid = rng.choice(sorted(messages))
        update = {"parts": content(rng, n)["parts"]}
        known = [c for c in ledger.possible.get(mid, set()) if c is not None]
        if len(known) == 1:
            merged = dumps({**json.loads(known[0]), **update})
            updated = await attempt(
                ledger, mid, merged, store.memory.update_messages([MessageUpdate(id=mid, content=update)])
            )
            assert updated, "the message existed, so the update returned it"
    elif op == "delete":
        mid = rng.choice(sorted(messages))
        await attempt(ledger, mid, None, store.memory.delete_messages([mid]))
    elif op == "delete_thread":
        thread = rng.choice(threads)
        doomed = [mid for mid, t in messages.items() if t == thread]
        try:
            await store.memory.delete_thread(thread)
        except ConvexOffloadError:
            for mid in doomed:
                ledger.uncertain(mid, None)
            raise
        for mid in doomed:
            ledger.acknowledged(mid, None)
    elif op == "list":
        await store.memory.list_messages(rng.choice(threads), per_page=False)
    elif op == "thread":
        thread = rng.choice(threads)
        await store.memory.save_thread(Thread(id=thread, resource_id="soak-user", metadata={"n": n}))


async def attempt(ledger: Ledger, mid: str, content: str | None, work: Any) -> Any:
    """Await `work`; acknowledged if it returns, uncertain (old or new) if it raises."""
    try:
        result = await work
    except ConvexOffloadError:
        ledger.uncertain(mid, content)
        raise
    ledger.acknowledged(mid, content)
    return result
