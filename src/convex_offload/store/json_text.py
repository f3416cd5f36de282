"""JSON text fields of the schedules, background-tasks and channels rows, as the TS store encodes them.

@mastra/convex keeps user payloads (task args and results, schedule targets, channel data) as JSON
strings, because Convex refuses field names such as `$schema` inside documents.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from convex_offload.convex.values import dumps
from convex_offload.errors import InvalidInputError


def encode(value: Any, *, where: str) -> str:
    """`JSON.stringify(value)`; a value JSON cannot hold raises `InvalidInputError` naming `where`."""
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: not JSON-encodable ({exc})") from None


def encode_nullable(value: Any, *, where: str) -> str | None:
    """None stays None (the column's null); anything else is encoded."""
    return None if value is None else encode(value, where=where)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_strict(text: str) -> Any:
    """`JSON.parse(text)`: raises `ValueError` on anything JavaScript would refuse (NaN included)."""
    return json.loads(text, parse_constant=_no_constants)


def parse_lenient(value: Any) -> Any:
    """The TS store's `parseJson`: None stays None, a string that is not JSON stays that string."""
    if not isinstance(value, str):
        return value
    try:
        return parse_strict(value)
    except ValueError:
        return value
