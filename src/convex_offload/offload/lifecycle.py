"""What happens to objects after day one: deletion when nothing references them any more.

An object is deleted only after the registry grants a claim on it (no record references it, no
writer holds a lease on it); while the claim holds, no writer can reference it. Then the object
goes, the caches forget it, and the claim ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from convex_offload.errors import ConvexOffloadError
from convex_offload.offload.engine import Offloader
from convex_offload.offload.registry import ConvexRefRegistry, ObjectKey

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 600
"""How long a deletion claim holds: far longer than deleting one object takes."""


@dataclass
class DeletionReport:
    """What `delete_unreferenced` did."""

    deleted: list[ObjectKey]
    kept: list[ObjectKey]
    """Objects a record or a lease took back before the claim (they stay)."""
    failed: list[ObjectKey]
    """Objects whose deletion failed; the garbage collector will retry them."""


class Lifecycle:
    """Deletes objects nobody references, safely against concurrent writers."""

    def __init__(self, offloader: Offloader, registry: ConvexRefRegistry) -> None:
        self.offloader = offloader
        self.registry = registry

    def __repr__(self) -> str:
        return f"Lifecycle({self.registry!r})"

    async def delete_unreferenced(self, objects: Sequence[ObjectKey]) -> DeletionReport:
        """Claim, delete and release each object; never raises for one object's failure."""
        report = DeletionReport(deleted=[], kept=[], failed=[])
        for bucket, key in objects:
            if bucket not in self.offloader.buckets:
                logger.warning("object %s in unconfigured bucket %s left in place", key, bucket)
                report.failed.append((bucket, key))
                continue
            token = uuid.uuid4().hex
            try:
                if not await self.registry.claim(bucket, key, token, CLAIM_SECONDS):
                    report.kept.append((bucket, key))
                    continue
                try:
                    await self.offloader.buckets[bucket].delete(key)
                    self.offloader.forget(bucket, key)
                    report.deleted.append((bucket, key))
                finally:
                    await self.registry.finalize(bucket, key, token)
            except ConvexOffloadError as exc:
                logger.warning("could not delete %s/%s now (gc will retry): %s", bucket, key, exc)
                report.failed.append((bucket, key))
        return report
