"""Convex's value rules, checked locally so bad input fails before anything is sent.

Sizes follow `convex/values/size.js`: a string is 2 + its UTF-8 bytes, a number 9, an object
2 + Σ(key bytes + 1 + value size); a stored document adds its system fields (`_id`, `_creationTime`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from convex_offload.errors import InvalidValueError

MAX_DOCUMENT_BYTES: Final = 1 << 20
"""Convex's limit on one document (1 MiB), system fields included."""
MAX_TRANSACTION_READ_BYTES: Final = 16 << 20
"""Convex's limit on the bytes one query or mutation may read (16 MiB)."""
MAX_ARGUMENT_BYTES: Final = 16 << 20
"""Convex's limit on a function's arguments (16 MiB)."""
SYSTEM_FIELDS_BYTES: Final = 38 + 23
"""What `_id` and `_creationTime` add to a document (convex's own estimate)."""
MAX_NESTING_DEPTH: Final = 16
MAX_ARRAY_LENGTH: Final = 8192
MAX_OBJECT_FIELDS: Final = 1024
MAX_FIELD_NAME_LENGTH: Final = 1024
MAX_TOP_LEVEL_FIELD_NAME_LENGTH: Final = 64


def convex_size(value: Any) -> int:
    """Size in bytes Convex counts for a JSON-like value."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 9
    if isinstance(value, str):
        return 2 + utf8_length(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return 2 + len(value)
    if isinstance(value, list | tuple):
        return 2 + sum(convex_size(item) for item in value)
    if isinstance(value, dict):
        return 2 + sum(utf8_length(k) + 1 + convex_size(v) for k, v in value.items())
    raise InvalidValueError(f"{type(value).__name__} is not a Convex value")


def document_size(document: dict[str, Any]) -> int:
    """Size of `document` once stored, counting the system fields Convex adds."""
    extra = 0 if "_id" in document else 38
    extra += 0 if "_creationTime" in document else 23
    return convex_size(document) + extra


def utf8_length(text: str) -> int:
    """UTF-8 byte length of `text`, without encoding it when it is pure ASCII."""
    if text.isascii():
        return len(text)
    # Lone surrogates are counted as JS's TextEncoder does: each becomes U+FFFD (3 bytes).
    return len(text.encode("utf-8", "replace"))


def check_value(value: Any, *, where: str, top_level_record: bool = False) -> None:
    """Raise `InvalidValueError` naming the path of the first thing Convex would refuse in `value`.

    Checks field names (no `$` prefix, printable ASCII only, length), nesting depth, array length,
    fields per object and non-finite numbers. With `top_level_record`, also the rules for a
    document's own fields (no `_` prefix, at most 64 characters).
    """
    _check(value, where, 0, top_level_record)


def _check(value: Any, path: str, depth: int, top: bool) -> None:
    if isinstance(value, dict):
        if depth >= MAX_NESTING_DEPTH:
            raise InvalidValueError(f"{path}: nested deeper than Convex's limit of {MAX_NESTING_DEPTH}")
        if len(value) > MAX_OBJECT_FIELDS:
            raise InvalidValueError(
                f"{path}: {len(value)} fields, over Convex's limit of {MAX_OBJECT_FIELDS}"
            )
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValueError(f"{path}: field name {key!r} is not a string")
            check_field_name(key, where=path, top_level=top)
            _check(item, f"{path}.{key}", depth + 1, False)
    elif isinstance(value, list | tuple):
        if depth >= MAX_NESTING_DEPTH:
            raise InvalidValueError(f"{path}: nested deeper than Convex's limit of {MAX_NESTING_DEPTH}")
        if len(value) > MAX_ARRAY_LENGTH:
            raise InvalidValueError(
                f"{path}: array of {len(value)} elements, over Convex's limit of {MAX_ARRAY_LENGTH}"
            )
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, False)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValueError(f"{path}: {value} cannot be sent to Convex as JSON")
    elif value is not None and not isinstance(value, str | int | bool):
        raise InvalidValueError(f"{path}: {type(value).__name__} is not a Convex value")


def check_field_name(name: str, *, where: str, top_level: bool = False) -> None:
    """Raise `InvalidValueError` if Convex would refuse `name` as a field name."""
    if name.startswith("$"):
        raise InvalidValueError(f"{where}: field name {name!r} starts with a '$', which Convex reserves")
    if len(name) > MAX_FIELD_NAME_LENGTH:
        raise InvalidValueError(f"{where}: field name of {len(name)} characters is over Convex's limit")
    bad = next((ch for ch in name if not 32 <= ord(ch) < 127), None)
    if bad is not None:
        raise InvalidValueError(
            f"{where}: field name {name!r} has {bad!r}; Convex allows only printable ASCII in field names"
        )
    if top_level:
        if name.startswith("_"):
            raise InvalidValueError(
                f"{where}: top-level field {name!r} starts with '_', which Convex reserves"
            )
        if len(name) > MAX_TOP_LEVEL_FIELD_NAME_LENGTH:
            raise InvalidValueError(f"{where}: top-level field name {name!r} is over 64 characters")


def dumps(value: Any) -> str:
    """JSON text as JavaScript's `JSON.stringify` writes it (compact, non-ASCII kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
