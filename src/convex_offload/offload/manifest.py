"""The manifest written into a record: exactly what was replaced and how to restore it.

It lives under the key `convex_offload` of a plain object inside the record (a message's
`content.metadata`, a thread's `metadata`, a resource's `metadata`, a workflow snapshot's top
level), so the record stays valid Mastra content and Convex accepts its field names. Version 1:

    {"v": 1, "created_metadata": false, "refs": [
      {"path": "/parts/1/data", "form": "base64" | "data_url" | "embedded",
       "header": "data:image/png;base64,",
       "span": [start, end] (embedded only: where the URL sits in the rewritten string),
       "bucket": "images", "key": "chat/t/<tenant>/<sha256>.png", "size": 123456, "sha256": "<hex>",
       "declared_type": "image/png", "sniffed_type": "image/png", "url": "<what replaced the payload>"}]}

Restoring puts `header + base64(bytes)` back at `path` (or at `span` inside the string) for each
ref whose place still holds its `url`, then removes the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convex_offload.errors import ForbiddenReferenceError
from convex_offload.offload.scan import Token

MANIFEST_KEY: Final = "convex_offload"
MANIFEST_VERSION: Final = 1


class Ref(BaseModel):
    """One replaced payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    form: Literal["base64", "data_url", "embedded"]
    header: str = ""
    span: tuple[int, int] | None = None
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    declared_type: str | None = None
    sniffed_type: str
    url: str


class Manifest(BaseModel):
    """All the refs of one record."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = MANIFEST_VERSION
    created_metadata: bool = False
    refs: list[Ref]

    def to_json(self) -> dict[str, Any]:
        """The manifest as stored (absent `span`/types omitted, never null)."""
        return self.model_dump(exclude_none=True)


def read_manifest(holder: Any) -> Manifest | None:
    """The manifest inside `holder` (a plain object), None when there is none.

    A manifest that does not parse is refused (`ForbiddenReferenceError`): restoring from a
    damaged or forged manifest could put the wrong bytes in a message.
    """
    if not isinstance(holder, dict):
        return None
    raw = holder.get(MANIFEST_KEY)
    if raw is None:
        return None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ForbiddenReferenceError(
            f"unreadable {MANIFEST_KEY} manifest ({where}: {error['msg']})"
        ) from None


class CopyOnWrite:
    """Edits a JSON tree without touching the caller's objects: each container on an edited path
    is shallow-copied once, everything else is shared."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self._copies: set[int] = set()

    def get(self, path: Sequence[Token]) -> Any:
        """The value at `path` (KeyError/IndexError when absent)."""
        node = self.root
        for token in path:
            node = node[token]
        return node

    def set(self, path: Sequence[Token], value: Any) -> None:
        """Set the value at `path`, copying the containers on the way."""
        if not path:
            self.root = value
            return
        self.root = self._own(self.root)
        node = self.root
        for token in path[:-1]:
            child = self._own(node[token])
            node[token] = child
            node = child
        node[path[-1]] = value

    def ensure_dict(self, path: Sequence[Token]) -> bool:
        """Make sure a plain object sits at `path`; True if it had to be created."""
        try:
            existing = self.get(path)
        except (KeyError, IndexError, TypeError):
            existing = None
        if isinstance(existing, dict):
            return False
        self.set(path, {})
        return True

    def _own(self, node: Any) -> Any:
        if id(node) in self._copies:
            return node
        copy: Any = dict(node) if isinstance(node, dict) else list(node)
        self._copies.add(id(copy))
        return copy


def resolve(root: Any, tokens: Sequence[str]) -> tuple[Any, Token] | None:
    """The container and key/index of a JSON pointer's target, or None if it does not exist."""
    node = root
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(node, dict):
            if token not in node:
                return None
            if last:
                return node, token
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or int(token) >= len(node):
                return None
            if last:
                return node, int(token)
            node = node[int(token)]
        else:
            return None
    return None
