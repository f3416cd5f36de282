"""A process that runs one operation and stops for good at one named step, to be SIGKILLed there.

    python -m crash.child CONFIG.toml OPERATION STEP < ARGS.json

Prints `AT <step>` (flushed) when the store reaches STEP, then waits forever: the test kills it.
Prints `DONE` if the operation finished without reaching the step (the test fails on that).
Operations: `save` (messages), `update` (message updates), `delete` (message ids), `gc`, `migrate`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

from convex_offload import Message, MessageUpdate, OffloadConfig, OffloadingStore
from convex_offload.offload.operations import migrate


async def main(config_path: str, operation: str, step: str, args: dict[str, Any]) -> None:
    config = OffloadConfig.load(config_path)
    forever = asyncio.Event()

    async def checkpoint(name: str) -> None:
        if name == step:
            print(f"AT {name}", flush=True)
            await forever.wait()

    async with OffloadingStore.connect(config, checkpoint=checkpoint) as store:
        if operation == "save":
            await store.memory.save_messages([Message.model_validate(m) for m in args["messages"]])
        elif operation == "update":
            await store.memory.update_messages([MessageUpdate.model_validate(u) for u in args["updates"]])
        elif operation == "delete":
            await store.memory.delete_messages(args["ids"])
        elif operation == "gc":
            await store.lifecycle.gc(grace=timedelta(0))
        elif operation == "migrate":
            await migrate(store, tables=["mastra_messages"], page_size=args.get("page_size", 50))
        else:
            raise SystemExit(f"unknown operation {operation}")
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.stdin.read())))
