"""Real servers for the tests, each started once per session on a free loopback port and stopped.

- `local_convex`: the local Convex stand-in (convex-test behind Convex's HTTP API) serving the
  project's own `convex/` folder: the real @mastra/convex handler and schema.
- `localstack`: LocalStack S3 with the test buckets.

Tests never clear shared state; they use fresh ids (`uid`) so they cannot see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from convex_offload.config import BucketConfig, OffloadConfig, RoutingRule
from convex_offload.devservers.localstack import LocalStack
from convex_offload.offload.store import OffloadingStore
from convex_offload.store.store import ConvexStore
from ts_mastra import TsMastra

if TYPE_CHECKING:
    from convex_offload.devservers.local_convex import LocalConvex

FIXTURES = Path(__file__).parent / "fixtures"
S3_BUCKETS = ("images", "documents", "r2-images", "encrypted")


@pytest.fixture(scope="session")
def local_convex() -> Iterator[LocalConvex]:
    """The local Convex server, with the test-only functions of tests/fixtures/convex mounted."""
    from convex_offload.devservers.local_convex import LocalConvex as Server

    with Server(extra_functions=FIXTURES / "convex") as server:
        yield server


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStack]:
    """LocalStack S3 with the test buckets."""
    with LocalStack(buckets=S3_BUCKETS) as server:
        yield server


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Fresh ids: `uid("thread")` → `thread-3f2a…`."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(local_convex: LocalConvex) -> AsyncIterator[ConvexStore]:
    """A plain Python ConvexStore on the local Convex server."""
    async with ConvexStore(local_convex.url, local_convex.admin_key) as convex_store:
        yield convex_store


@pytest.fixture
def ts(local_convex: LocalConvex) -> Iterator[TsMastra]:
    """The real TypeScript @mastra/convex stores on the same server."""
    with TsMastra(local_convex.url, local_convex.admin_key) as client:
        yield client


def s3_bucket(localstack: LocalStack, bucket: str, **extra: object) -> BucketConfig:
    """A bucket config for one of LocalStack's buckets."""
    return BucketConfig.model_validate(
        {
            "provider": "s3",
            "bucket": bucket,
            "endpoint_url": localstack.endpoint_url,
            "region": localstack.region,
            "access_key_id": localstack.access_key,
            "secret_access_key": localstack.secret_key,
            **extra,
        }
    )


@pytest.fixture
def s3_config(localstack: LocalStack, local_convex: LocalConvex) -> OffloadConfig:
    """Images to one LocalStack bucket, PDFs to another."""
    return OffloadConfig(
        convex_url=local_convex.url,
        convex_admin_key=local_convex.admin_key,
        buckets={
            "images": s3_bucket(localstack, "images", prefix="chat/"),
            "documents": s3_bucket(localstack, "documents"),
        },
        default_bucket="images",
        rules=[RoutingRule(bucket="documents", types=["application/pdf"])],
    )


@pytest.fixture
async def offloading(s3_config: OffloadConfig) -> AsyncIterator[OffloadingStore]:
    """An OffloadingStore over the local Convex server and LocalStack."""
    async with OffloadingStore.connect(s3_config) as offloading_store:
        yield offloading_store
