"""Turning pydantic's validation errors into the one-line messages of `InvalidInputError`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from convex_offload.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)


def first_error(exc: ValidationError) -> str:
    """`field.path: message` of the first thing pydantic refused."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def validated(cls: type[M], value: M | Mapping[str, Any], what: str) -> M:
    """`value` as a `cls` (a model passes as it is); `InvalidInputError` naming `what` and the field."""
    if isinstance(value, cls):
        return value
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        raise InvalidInputError(f"{what}: {first_error(exc)}") from None


def is_non_negative_number(value: object) -> bool:
    """Whether `value` is a finite int or float >= 0 (a bool is not a number here)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )
