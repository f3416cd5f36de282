"""`ClientOwner`: a Convex client given or made from a URL and key, closed with its owner."""

from __future__ import annotations

from pydantic import SecretStr

from convex_offload.closing import AsyncClosing
from convex_offload.convex.client import ConvexClient
from convex_offload.errors import InvalidInputError


class ClientOwner(AsyncClosing):
    """Base of the stores: holds a `ConvexClient` (made from `url` and `admin_key`, or given), and
    closes it on `aclose()` / `async with` if it made it (or was given it with `owns_client`)."""

    def __init__(
        self,
        url: str | None,
        admin_key: str | SecretStr | None,
        client: ConvexClient | None,
        *,
        owns_client: bool = False,
    ) -> None:
        if client is None:
            if url is None or admin_key is None:
                raise InvalidInputError(f"{type(self).__name__} needs a url and an admin_key, or a client")
            client = ConvexClient(url, admin_key)
            owns_client = True
        self._owns_client = owns_client
        self.client = client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"

    async def aclose(self) -> None:
        """Close the client if this object created it."""
        if self._owns_client:
            await self.client.aclose()
