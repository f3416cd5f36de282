"""JSON trees: paths, RFC 6901 pointers, and copy-on-write edits that never touch the caller's objects."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from convex_offload.errors import ForbiddenReferenceError

Token = str | int
Path = tuple[Token, ...]


def pointer(path: Sequence[Token]) -> str:
    """RFC 6901 JSON Pointer of a path (`/parts/0/data`)."""
    return "".join("/" + str(token).replace("~", "~0").replace("/", "~1") for token in path)


@functools.lru_cache(maxsize=8192)
def parse_pointer(text: str) -> tuple[str, ...]:
    """The tokens of an RFC 6901 JSON Pointer; array indexes stay strings until resolved.

    A pointer that does not start with `/` comes from a damaged or forged manifest:
    `ForbiddenReferenceError`.
    """
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ForbiddenReferenceError(f"JSON pointer {text[:80]!r} must start with '/'")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/"))


def get_at(root: Any, path: Sequence[Token]) -> Any:
    """The value at `path` through plain objects only, or None when any step is missing."""
    node = root
    for token in path:
        if isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return None
    return node


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


def without_key(tree: Any, key: str) -> Any:
    """`tree` without `key` (a shallow copy), or `tree` itself when it has no such key."""
    if isinstance(tree, dict) and key in tree:
        return {k: v for k, v in tree.items() if k != key}
    return tree


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
