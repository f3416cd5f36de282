"""`ConvexServerCache`: Mastra's server cache in Convex, as @mastra/convex's `ConvexServerCache`.

Every call is one mutation of `mastra/cache:handle` (@mastra/convex's `mastraCache`) with the
TS client's request: `{op, key, keyPrefix?, value?, expiresAt?, from?, to?}`. Keys are stored
with the cache's `key_prefix` in front; values are stored as JSON text (`mastra_cache` rows for
values, lists and counters, one `mastra_cache_list_items` row per list entry). An expired or
deleted key is cleaned up by the next call that touches it, 25 rows per transaction: the
handler answers `hasMore` and the call is repeated, as TypeScript does, up to 1,000 times.
"""

from __future__ import annotations

import time
from typing import Any, Final

from pydantic import SecretStr

from convex_offload.convex.client import ConvexClient
from convex_offload.convex.owner import ClientOwner
from convex_offload.convex.values import check_value
from convex_offload.errors import InvalidInputError, StorageOperationError
from convex_offload.store.validation import is_non_negative_number

DEFAULT_CACHE_FUNCTION: Final = "mastra/cache:handle"
DEFAULT_KEY_PREFIX: Final = "mastra:cache:"
DEFAULT_TTL_MS: Final = 300_000
MAX_CACHE_OPERATION_BATCHES: Final = 1000


class ConvexServerCache(ClientOwner):
    """Python twin of @mastra/convex's `ConvexServerCache`, sharing its rows.

    `ttl_ms` is the default time to live of `set`, and the one `list_push` and `increment`
    renew on every write; 0 means no expiry. `clear()` removes only rows stored under exactly
    this `key_prefix`. Like every mutation of `ConvexClient`, a call that fails with a 5xx or a
    lost connection is retried, so `list_push` and `increment` are at-least-once.
    """

    def __init__(
        self,
        url: str | None = None,
        admin_key: str | SecretStr | None = None,
        *,
        client: ConvexClient | None = None,
        cache_function: str = DEFAULT_CACHE_FUNCTION,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl_ms: float = DEFAULT_TTL_MS,
        owns_client: bool = False,
    ) -> None:
        _require_ttl(ttl_ms)
        if not cache_function.strip():
            raise InvalidInputError("cache_function must not be empty")
        super().__init__(url, admin_key, client, owns_client=owns_client)
        self.cache_function = cache_function.strip()
        self.key_prefix = key_prefix
        self.ttl_ms = ttl_ms

    def __repr__(self) -> str:
        return f"ConvexServerCache({self.client!r}, key_prefix={self.key_prefix!r})"

    def key(self, key: str) -> str:
        """The stored key of `key`: the prefix, then the key."""
        if not isinstance(key, str):
            raise InvalidInputError(f"cache key must be a string, got {type(key).__name__}")
        return f"{self.key_prefix}{key}"

    def expires_at(self, ttl_ms: float | None = None) -> int | None:
        """Epoch milliseconds when a write now expires (`ttl_ms` or the default), None for never."""
        effective = self.ttl_ms if ttl_ms is None else ttl_ms
        return int(time.time() * 1000 + effective) if effective > 0 else None

    async def get(self, key: str) -> Any:
        """The value stored at `key`, or None (also for a list, a counter, or an expired value)."""
        return await self._settled({"op": "get", "key": self.key(key)})

    async def set(self, key: str, value: Any, ttl_ms: float | None = None) -> None:
        """Store a JSON value at `key` (replacing a list or counter there), for `ttl_ms` or the default."""
        if ttl_ms is not None:
            _require_ttl(ttl_ms)
        check_value(value, where=f"cache value of {key!r}")
        await self._settled(
            {
                "op": "set",
                "key": self.key(key),
                "keyPrefix": self.key_prefix,
                "value": value,
                "expiresAt": self.expires_at(ttl_ms),
            }
        )

    async def list_length(self, key: str) -> int:
        """The length of the list at `key` (0 if none); StorageOperationError if it is not a list."""
        return int(await self._settled({"op": "listLength", "key": self.key(key)}))

    async def list_push(self, key: str, value: Any) -> None:
        """Append a JSON value to the list at `key`, creating it; renews the list's expiry."""
        check_value(value, where=f"cache list item of {key!r}")
        await self._settled(
            {
                "op": "listPush",
                "key": self.key(key),
                "keyPrefix": self.key_prefix,
                "value": value,
                "expiresAt": self.expires_at(),
            }
        )

    async def list_from_to(self, key: str, from_index: int, to_index: int = -1) -> list[Any]:
        """Items `from_index` to `to_index`, both inclusive; negative indexes count from the end."""
        for name, index in (("from_index", from_index), ("to_index", to_index)):
            if isinstance(index, bool) or not isinstance(index, int):
                raise InvalidInputError(f"{name} must be an integer, got {index!r}")
        return list(
            await self._settled(
                {"op": "listFromTo", "key": self.key(key), "from": from_index, "to": to_index}
            )
        )

    async def delete(self, key: str) -> None:
        """Delete whatever is stored at `key`."""
        await self._settled({"op": "delete", "key": self.key(key)})

    async def clear(self) -> None:
        """Delete every key stored under this cache's `key_prefix`."""
        await self._settled({"op": "clear", "keyPrefix": self.key_prefix})

    async def increment(self, key: str) -> int:
        """Add one to the counter at `key` (created at 0) and return it; renews its expiry."""
        result = await self._settled(
            {
                "op": "increment",
                "key": self.key(key),
                "keyPrefix": self.key_prefix,
                "expiresAt": self.expires_at(),
            }
        )
        return int(result)

    async def _settled(self, request: dict[str, Any]) -> Any:
        """Send `request` until the handler no longer answers `hasMore`; return its last result."""
        for _ in range(MAX_CACHE_OPERATION_BATCHES):
            answer = await self.client.mutation(self.cache_function, request)
            if not isinstance(answer, dict) or not answer.get("ok"):
                message = str((answer.get("error") if isinstance(answer, dict) else None) or "Unknown error")
                raise StorageOperationError(
                    f"{self.cache_function} {request['op']}: {message}",
                    path=self.cache_function,
                    convex_message=message,
                )
            if not answer.get("hasMore"):
                return answer.get("result")
        raise StorageOperationError(
            f"ConvexServerCache operation exceeded {MAX_CACHE_OPERATION_BATCHES} batches.",
            path=self.cache_function,
            convex_message="hasMore after every batch",
        )


def _require_ttl(ttl_ms: float) -> None:
    if not is_non_negative_number(ttl_ms):
        raise InvalidInputError(
            f"ttl_ms must be a number of milliseconds >= 0 (0: no expiry), got {ttl_ms!r}"
        )
