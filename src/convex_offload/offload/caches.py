"""The offloader's caches, each bounded, least recently used out.

- `ValueCache`: restored field values (data URL or base64 text), so a listing read again and again
  restores without fetching.
- `RestoredTrees`: whole stored texts as restored, so a listing read again parses and restores
  nothing (valid while the values it took are cached).
- `DigestCache`: what a payload string was found to be (sha256, size, sniffed type), so re-saving
  the same message (Mastra re-saves history) decodes and hashes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from convex_offload.offload.payload import Prepared


class ValueCache:
    """Restored field values by (bucket, key, header), bounded in characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def __repr__(self) -> str:
        return f"ValueCache(items={len(self._items)}, used={self.used}, limit={self.limit})"

    def get(self, bucket: str, key: str, header: str) -> str | None:
        """The cached value, or None."""
        return self.find((bucket, key, header))

    def find(self, ident: tuple[str, str, str]) -> str | None:
        """The cached value of (bucket, key, header), or None."""
        item = self._items.get(ident)
        if item is not None:
            self._items.move_to_end(ident)
        return item

    def put(self, bucket: str, key: str, header: str, value: str) -> None:
        """Remember a value (values larger than the whole cache are not kept)."""
        if len(value) > self.limit:
            return
        ident = (bucket, key, header)
        if ident in self._items:
            return
        self._items[ident] = value
        self.used += len(value)
        while self.used > self.limit:
            _, evicted = self._items.popitem(last=False)
            self.used -= len(evicted)

    def drop(self, bucket: str, key: str) -> None:
        """Forget every value of one object (after deleting it)."""
        for ident in [i for i in self._items if i[0] == bucket and i[1] == key]:
            self.used -= len(self._items.pop(ident))


class DigestCache:
    """What a payload string was found to be, so re-saving the same message decodes nothing.

    Looked up by a fingerprint (length, bounds and three short samples of the text), then
    confirmed by comparing the whole text: hashing a fresh multi-megabyte string for a dict key
    would cost a pass over it on every first save (0.14 ms per MB), while a comparison runs only
    on a likely hit and is cheaper still. The bytes are not kept.
    """

    _SAMPLE: Final = 48

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[tuple[int, int, int, str], tuple[str, Prepared]] = OrderedDict()

    def __repr__(self) -> str:
        return f"DigestCache(items={len(self._items)}, used={self.used}, limit={self.limit})"

    def _fingerprint(self, text: str, start: int, end: int) -> tuple[int, int, int, str]:
        middle = (start + end) // 2
        n = self._SAMPLE
        return (
            len(text),
            start,
            end,
            text[start : start + n] + text[middle : middle + n] + text[end - n : end],
        )

    def get(self, text: str, start: int, end: int) -> Prepared | None:
        """What `text[start:end]` was found to be, or None."""
        fingerprint = self._fingerprint(text, start, end)
        item = self._items.get(fingerprint)
        if item is None or item[0] != text:
            return None
        self._items.move_to_end(fingerprint)
        return item[1]

    def put(self, text: str, start: int, end: int, prepared: Prepared) -> None:
        """Remember what `text[start:end]` is (without its bytes)."""
        if len(text) > self.limit:
            return
        fingerprint = self._fingerprint(text, start, end)
        replaced = self._items.pop(fingerprint, None)
        if replaced is not None:
            self.used -= len(replaced[0])
        self._items[fingerprint] = (
            text,
            Prepared(prepared.sha256, prepared.size, prepared.sniffed_type, None),
        )
        self.used += len(text)
        while self.used > self.limit:
            _, (evicted, _) = self._items.popitem(last=False)
            self.used -= len(evicted)


def copy_tree(node: Any) -> Any:
    """A copy of a JSON tree's objects and arrays; strings and numbers are shared (immutable)."""
    if type(node) is dict:
        return {key: copy_tree(value) for key, value in node.items()}
    if type(node) is list:
        return [copy_tree(value) for value in node]
    return node


ValueKey = tuple[str, str, str]
"""(bucket, key, header) of a restored value; header "" for a URL."""


@dataclass(frozen=True, slots=True)
class RestoredTree:
    """A stored text restored once: the tree, and the cached values it took (each must still be
    the one cached for the tree to be used again)."""

    tree: Any
    values: tuple[tuple[ValueKey, str], ...]
    places: int
    """How many places the restore filled."""


class RestoredTrees:
    """Restored trees of stored texts read again and again, by (text, tenant).

    A listing read twice gets the same stored texts back; the tree restored the first time serves
    the next reads (a copy each time), with neither the JSON parse nor the manifest walk. An entry
    holds only while every value it took is still the one its cache gives (`holds`), so deleting an
    object (`forget`), the cache letting a value go, or a URL passing half its life retires it.
    Bounded in entries and in the characters of the values entries hold (`limit`: no more than the
    value cache's own).
    """

    def __init__(self, holds: Callable[[ValueKey, str], bool], *, entries: int, limit: int) -> None:
        self.holds = holds
        """Whether a value an entry took is still the one its cache gives."""
        self.capacity = entries
        self.limit = limit
        self.held = 0
        self._items: OrderedDict[tuple[str, str | None], RestoredTree] = OrderedDict()

    def __repr__(self) -> str:
        return f"RestoredTrees(items={len(self._items)}, held={self.held})"

    def __len__(self) -> int:
        return len(self._items)

    def entries(self) -> list[tuple[str, str | None, RestoredTree]]:
        """Every (text, tenant, entry), oldest first (for inspection)."""
        return [(text, tenant, entry) for (text, tenant), entry in self._items.items()]

    def get(self, text: str, tenant: str | None) -> RestoredTree | None:
        """The entry of `text` for `tenant` if every value it took is still cached, else None."""
        ident = (text, tenant)
        entry = self._items.get(ident)
        if entry is None:
            return None
        for key, value in entry.values:
            if not self.holds(key, value):
                self._drop(ident)
                return None
        self._items.move_to_end(ident)
        return entry

    def put(self, text: str, tenant: str | None, entry: RestoredTree) -> None:
        """Remember `entry` (a private copy of its tree) for `text` and `tenant`."""
        ident = (text, tenant)
        if ident in self._items:
            self._drop(ident)
        size = sum(len(value) for _key, value in entry.values)
        if size > self.limit:
            return
        self._items[ident] = entry
        self.held += size
        while self.held > self.limit or len(self._items) > self.capacity:
            self._drop(next(iter(self._items)))

    def _drop(self, ident: tuple[str, str | None]) -> None:
        entry = self._items.pop(ident)
        self.held -= sum(len(value) for _key, value in entry.values)
