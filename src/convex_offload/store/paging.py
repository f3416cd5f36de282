"""Pagination, ordering and filter rules of @mastra/core's storage, as the TS ConvexStore applies them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from convex_offload.errors import InvalidInputError
from convex_offload.store.models import DateRange, Message, OrderBy, parse_iso, safely_parse_json

T = TypeVar("T")
PerPage = int | Literal[False] | None
"""A page size: a number, False for everything, None for the default."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
_SAFE_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MAX_KEY_LENGTH: Final = 128
_DISALLOWED_KEYS: Final = frozenset({"__proto__", "prototype", "constructor"})


def normalize_per_page(per_page: PerPage, default: int) -> int:
    """@mastra/core's `normalizePerPage`: False is everything, None the default."""
    if per_page is False:
        return MAX_SAFE_INTEGER
    if per_page is None:
        return default
    if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 0:
        raise InvalidInputError("perPage must be >= 0")
    return per_page


def pagination(page: int, per_page: PerPage, normalized: int) -> tuple[int, int | Literal[False]]:
    """@mastra/core's `calculatePagination`: the offset and the perPage to report."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise InvalidInputError("page must be >= 0")
    if per_page is False:
        return 0, False
    return page * normalized, normalized


def validate_pagination_input(page: int, per_page: PerPage, default: int) -> None:
    """@mastra/core's `validatePaginationInput` (used by `list_threads`)."""
    if per_page is False:
        if page != 0:
            raise InvalidInputError("page must be 0 when perPage is false")
        return
    size = default if per_page is None else per_page
    if isinstance(size, bool) or not isinstance(size, int) or abs(size) > MAX_SAFE_INTEGER:
        raise InvalidInputError("perPage must be false or a safe integer")
    if size < 0:
        raise InvalidInputError("perPage must be >= 0")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0 or page > MAX_SAFE_INTEGER:
        raise InvalidInputError("page must be >= 0")
    if size and page * size > MAX_SAFE_INTEGER:
        raise InvalidInputError("page value too large")


def order_of(order_by: OrderBy | None, default_direction: Literal["ASC", "DESC"]) -> tuple[str, bool]:
    """The sort field and whether it is descending (`parseOrderBy`)."""
    field = order_by.field if order_by else "createdAt"
    direction = (order_by.direction if order_by else None) or default_direction
    return field, direction == "DESC"


def check_thread_metadata_keys(metadata: Mapping[str, Any] | None) -> None:
    """`validateMetadataKeys` of `list_threads`: keys must be safe identifiers."""
    for key in metadata or {}:
        if key in _DISALLOWED_KEYS:
            raise InvalidInputError(f'Invalid metadata key: "{key}".')
        if not _SAFE_KEY.match(key):
            raise InvalidInputError(
                f'Invalid metadata key: "{key}". Keys must start with a letter or underscore and '
                "contain only alphanumeric characters and underscores."
            )
        if len(key) > _MAX_KEY_LENGTH:
            raise InvalidInputError(
                f'Metadata key "{key}" exceeds maximum length of {_MAX_KEY_LENGTH} characters.'
            )


def message_metadata_filter(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`validateStorageMetadataFilter`: safe keys, primitive values; empty means no filter."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInputError("Metadata filter must be an object.")
    for key, value in metadata.items():
        if len(key) > _MAX_KEY_LENGTH or not _SAFE_KEY.match(key) or key in _DISALLOWED_KEYS:
            raise InvalidInputError(f'Invalid metadata filter key "{key}".')
        if not (value is None or isinstance(value, str | bool | int | float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidInputError(
                f'Invalid metadata filter value for key "{key}". '
                "Values must be string, finite number, boolean, or null."
            )
    return dict(metadata) if metadata else None


def row_matches_metadata(content: Any, expected: Mapping[str, Any] | None) -> bool:
    """`storageMessageMatchesMetadataFilter` on a stored row's content."""
    if not expected:
        return True
    parsed = safely_parse_json(content) if isinstance(content, str) else content
    metadata = parsed.get("metadata") if isinstance(parsed, dict) else None
    return isinstance(metadata, dict) and metadata_matches(metadata, expected)


def metadata_matches(metadata: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Every expected key is present and `===` its expected value."""
    return all(key in metadata and js_equal(metadata[key], value) for key, value in expected.items())


def js_equal(a: Any, b: Any) -> bool:
    """JavaScript `===` on JSON values: primitives by value and type, objects never equal."""
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def in_date_range(created_at: datetime, window: DateRange | None) -> bool:
    """`filterByDateRange` for one item."""
    if window is None:
        return True
    if window.start is not None and not (
        created_at > window.start if window.start_exclusive else created_at >= window.start
    ):
        return False
    return window.end is None or (
        created_at < window.end if window.end_exclusive else created_at <= window.end
    )


def sort_rows(rows: list[T], field: str, descending: bool, value: Callable[[T, str], Any]) -> list[T]:
    """Sort as the TS store's comparator does: by time for date fields, stable otherwise."""

    def key(item: T) -> Any:
        raw = value(item, field)
        if field in ("createdAt", "updatedAt"):
            if isinstance(raw, datetime):
                return raw.timestamp()
            # A missing date is NaN in JS; its comparator then keeps the order it found.
            return parse_iso(raw).timestamp() if isinstance(raw, str) else 0.0
        return raw

    return sorted(rows, key=key, reverse=descending) if rows else rows


def row_field(row: dict[str, Any], field: str) -> Any:
    """Field of a stored row, for `sort_rows`."""
    return row.get(field)


def message_field(message: Message, field: str) -> Any:
    """Field of a parsed message, for `sort_rows` (messages have no updatedAt)."""
    return message.created_at if field == "createdAt" else None


def message_list(messages: Iterable[Message]) -> list[Message]:
    """What `new MessageList().add(messages, "memory").get.all.db()` returns for stored v2 messages.

    One message per id (a later one replaces an earlier one in place), ordered by createdAt
    ascending, ties kept in the order given.
    """
    by_id: dict[str, Message] = {}
    for message in messages:
        by_id[message.id] = message
    return sorted(by_id.values(), key=lambda m: m.created_at)
