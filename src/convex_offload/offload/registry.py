"""The reference registry: which record references which object, kept in Convex (`offload_refs`).

It is what makes uploads safe to garbage-collect: a writer leases its objects (`reserve`) before
uploading them; a record and its references are written in one transaction (`write`, through
`convex/offload/records.ts`); the collector may delete only an object no row keeps alive, after
claiming it (`claim`), which also stops any writer from referencing it meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from convex_offload.convex.client import ConvexClient
from convex_offload.errors import ConvexFunctionError, StorageOperationError
from convex_offload.offload.kinds import RecordKinds

REFS = "offload/refs"
RECORDS = "offload/records"
ObjectKey = tuple[str, str]
"""(bucket, key)"""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object a record references."""

    bucket: str
    key: str
    tenant: str
    size: int
    sha256: str

    @property
    def ident(self) -> ObjectKey:
        """(bucket, key)"""
        return (self.bucket, self.key)

    def to_json(self) -> dict[str, Any]:
        """As the Convex functions take it."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "tenant": self.tenant,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class Guard:
    """A compare-and-swap precondition of a write: record `id` of Mastra table `table` must still
    hold `value` in `field`."""

    table: str
    id: str
    field: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        """As the Convex functions take it."""
        return {"table": self.table, "id": self.id, "field": self.field, "value": self.value}


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve` found: objects already referenced (no upload needed), objects being deleted."""

    present: frozenset[ObjectKey]
    busy: frozenset[ObjectKey]


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    """What `write` did: nothing (`ok` False, `missing` named), or the requests' results."""

    ok: bool
    missing: list[ObjectKey]
    results: list[Any]
    conflicts: list[str]
    """Records whose `expect` precondition failed (nothing was written)."""
    released: list[ObjectKey]
    """Objects that no record references any more after this write: delete them."""


@dataclass(frozen=True, slots=True)
class RefRow:
    """One row of `offload_refs`."""

    bucket: str
    key: str
    tenant: str
    owner: str
    state: str
    size: int
    sha256: str
    created_at_ms: int
    expires_at_ms: int | None = None


class Reserver(Protocol):
    """The part of the registry the offloader itself needs."""

    async def reserve(
        self, token: str, owner: str, objects: Sequence[ObjectRef], lease_seconds: float
    ) -> Reservation:
        """Lease `objects` for `token` until the lease ends."""
        ...


class ConvexRefRegistry:
    """The registry in the Convex deployment, through `convex/offload/refs.ts` and `records.ts`."""

    def __init__(self, client: ConvexClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"ConvexRefRegistry({self.client!r})"

    async def reserve(
        self, token: str, owner: str, objects: Sequence[ObjectRef], lease_seconds: float
    ) -> Reservation:
        """Lease `objects` (one pending row each) before uploading them."""
        now = _now_ms()
        answer = await self.client.mutation(
            f"{REFS}:reserve",
            {
                "token": token,
                "owner": owner,
                "now": now,
                "expiresAt": now + int(lease_seconds * 1000),
                "objects": [o.to_json() for o in objects],
            },
        )
        return Reservation(present=_keys(answer["present"]), busy=_keys(answer["busy"]))

    async def abandon(self, token: str) -> list[ObjectKey]:
        """Drop a failed writer's leases; answers objects nobody references any more."""
        return sorted(_keys(await self.client.mutation(f"{REFS}:abandon", {"token": token})))

    async def write(
        self,
        requests: Sequence[dict[str, Any]],
        owners: Mapping[str, Sequence[ObjectRef]],
        *,
        kinds: RecordKinds,
        release: Sequence[str] = (),
        token: str | None = None,
        guards: Sequence[Guard] = (),
    ) -> WriteAnswer:
        """Run storage requests and set each owner's references, in one transaction.

        `guards` are compare-and-swap preconditions: if a stored field no longer holds its value,
        nothing is written and the record is named in `conflicts`. Only `WriteTransaction` calls
        this: every write goes through it.
        """
        args: dict[str, Any] = {
            "requests": list(requests),
            "owners": [{"owner": o, "objects": [r.to_json() for r in refs]} for o, refs in owners.items()],
            "release": list(release),
            "now": _now_ms(),
        }
        if token is not None:
            args["token"] = token
        if guards:
            args["expect"] = [guard.to_json() for guard in guards]
            args["catalog"] = kinds.wire()
        try:
            answer = await self.client.mutation(f"{RECORDS}:write", args)
        except ConvexFunctionError as exc:
            if isinstance(exc.data, dict) and exc.data.get("kind") == "storage":
                raise StorageOperationError(
                    f"{RECORDS}:write request {exc.data.get('index')}: {exc.data.get('error')}",
                    path=exc.path,
                    convex_message=exc.convex_message,
                    data=exc.data,
                ) from None
            raise
        return WriteAnswer(
            ok=bool(answer["ok"]),
            missing=sorted(_keys(answer["missing"])),
            results=list(answer["results"]),
            released=sorted(_keys(answer["released"])),
            conflicts=list(answer["conflicts"]),
        )

    async def claim_many(
        self, objects: Sequence[ObjectKey], token: str, ttl_seconds: float
    ) -> frozenset[ObjectKey]:
        """Claim unreferenced objects for deletion under `token`, in one transaction; answers those
        granted (an object anything keeps alive is not)."""
        now = _now_ms()
        args = {
            "objects": [{"bucket": bucket, "key": key} for bucket, key in objects],
            "token": token,
            "now": now,
            "expiresAt": now + int(ttl_seconds * 1000),
        }
        return _keys(await self.client.mutation(f"{REFS}:claimMany", args))

    async def finalize_many(self, objects: Sequence[ObjectKey], token: str) -> None:
        """End the claims under `token` after deleting (or giving up on) their objects."""
        args = {"objects": [{"bucket": bucket, "key": key} for bucket, key in objects], "token": token}
        await self.client.mutation(f"{REFS}:finalizeMany", args)

    async def expire_pending(self, limit: int = 500) -> tuple[int, list[ObjectKey]]:
        """Delete expired leases; answers how many, and objects left unreferenced."""
        answer = await self.client.mutation(f"{REFS}:expirePending", {"now": _now_ms(), "limit": limit})
        return int(answer["expired"]), sorted(_keys(answer["unreferenced"]))

    async def reconcile(self, owners: Sequence[str], kinds: RecordKinds) -> tuple[int, list[ObjectKey]]:
        """Set each owner's rows from its record's manifest (read in the same transaction)."""
        answer = await self.client.mutation(
            f"{REFS}:reconcile", {"owners": list(owners), "now": _now_ms(), "catalog": kinds.wire()}
        )
        return int(answer["changed"]), sorted(_keys(answer["unreferenced"]))

    async def rows_of(self, bucket: str, key: str) -> list[RefRow]:
        """Every row of one object."""
        return [_row(r) for r in await self.client.query(f"{REFS}:ofObject", {"bucket": bucket, "key": key})]

    async def rows(self, page_size: int = 500) -> AsyncIterator[RefRow]:
        """Every row, in (bucket, key) order."""
        cursor: str | None = None
        while True:
            page = await self.client.query(f"{REFS}:list", {"cursor": cursor, "pageSize": page_size})
            for raw in page["page"]:
                yield _row(raw)
            if page["isDone"]:
                return
            cursor = page["continueCursor"]


def _keys(items: Sequence[Mapping[str, str]]) -> frozenset[ObjectKey]:
    return frozenset((item["bucket"], item["key"]) for item in items)


def _row(raw: Mapping[str, Any]) -> RefRow:
    return RefRow(
        bucket=raw["bucket"],
        key=raw["key"],
        tenant=raw["tenant"],
        owner=raw["owner"],
        state=raw["state"],
        size=int(raw["size"]),
        sha256=raw["sha256"],
        created_at_ms=int(raw["createdAt"]),
        expires_at_ms=int(raw["expiresAt"]) if raw.get("expiresAt") is not None else None,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
